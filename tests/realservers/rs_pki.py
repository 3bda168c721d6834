"""The certificates of the real-server suite, written as PEM files the servers load.

One private root CA (trustme) that both probes trust, and under it one server certificate per
TLS listener: valid, expired, expiring in 5 days, issued for another host, self-signed (under
no CA at all), and one issued by an intermediate CA that expires in 3 days (the served chain's
earliest expiry is then the intermediate's, not the leaf's). A second CA issues the client
certificate that the client-certificate listener requires.

trustme cannot give an intermediate a lifetime of its own, so that one (and the self-signed
certificate, which needs a subjectAltName trustme's CAs lack) is built with `cryptography`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The names every server certificate is valid for (except the wrong-host one). "site.test" is
# reached only through connect_to / curl --connect-to.
SERVER_NAMES = ("localhost", "127.0.0.1", "::1", "site.test")
EXPIRING_IN = dt.timedelta(days=5)
INTERMEDIATE_EXPIRES_IN = dt.timedelta(days=3)


@dataclass(frozen=True, slots=True)
class CertFiles:
    """A server's certificate chain (leaf first, then intermediates) and key, as files."""

    chain: Path
    key: Path
    leaf_not_after: float  # epoch seconds
    earliest_not_after: float  # over the chain the server sends


@dataclass(frozen=True, slots=True)
class Pki:
    ca: Path  # the private root CA: trusted by sentinel (ssl_context / ca_file) and curl
    servers: dict[str, CertFiles]  # "ok", "expired", "expiring", ...
    client_ca: Path  # the CA the client-certificate listener accepts
    client_cert: Path
    client_key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _epoch(moment: dt.datetime) -> float:
    return moment.timestamp()


def _write_leaf(leaf: trustme.LeafCert, where: Path, name: str) -> tuple[Path, Path]:
    chain, key = where / f"{name}.chain.pem", where / f"{name}.key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return chain, key


def _not_after(pem: bytes) -> float:
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc.timestamp()


def _sans(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    import ipaddress

    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _build(
    *,
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_after: dt.datetime,
    ca: bool,
    names: tuple[str, ...] = (),
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).add_extension(_sans(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_pki(where: Path) -> Pki:
    """Writes every certificate and key under `where` (which the servers can read)."""
    now = _now()
    ca = trustme.CA(organization_name="sentinel real-server suite")
    ca_path = where / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    servers: dict[str, CertFiles] = {}

    def issue(name: str, *names: str, not_after: dt.datetime | None = None) -> None:
        leaf = ca.issue_cert(*names, not_after=not_after or now + dt.timedelta(days=90))
        chain, key = _write_leaf(leaf, where, name)
        expiry = _not_after(leaf.cert_chain_pems[0].bytes())
        servers[name] = CertFiles(chain, key, expiry, expiry)

    issue("ok", *SERVER_NAMES)
    issue("expired", *SERVER_NAMES, not_after=now - dt.timedelta(days=2))
    issue("expiring", *SERVER_NAMES, not_after=now + EXPIRING_IN)
    issue("wrong_host", "other.example")

    # Self-signed: a leaf that is its own issuer, trusted by nobody.
    own_key = ec.generate_private_key(ec.SECP256R1())
    own = _build(
        subject="sentinel self-signed",
        key=own_key,
        issuer=None,
        issuer_key=own_key,
        not_after=now + dt.timedelta(days=90),
        ca=False,
        names=SERVER_NAMES,
    )
    chain, key = where / "self_signed.chain.pem", where / "self_signed.key.pem"
    chain.write_bytes(_pem(own))
    key.write_bytes(_key_pem(own_key))
    expiry = _epoch(now + dt.timedelta(days=90))
    servers["self_signed"] = CertFiles(chain, key, expiry, expiry)

    # A leaf valid for 90 days under an intermediate that expires in 3: the server sends both.
    root_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    root_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    mid_key = ec.generate_private_key(ec.SECP256R1())
    mid = _build(
        subject="sentinel intermediate expiring soon",
        key=mid_key,
        issuer=root_cert,
        issuer_key=root_key,
        not_after=now + INTERMEDIATE_EXPIRES_IN,
        ca=True,
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _build(
        subject="sentinel leaf under a short intermediate",
        key=leaf_key,
        issuer=mid,
        issuer_key=mid_key,
        not_after=now + dt.timedelta(days=90),
        ca=False,
        names=SERVER_NAMES,
    )
    chain, key = where / "intermediate.chain.pem", where / "intermediate.key.pem"
    chain.write_bytes(_pem(leaf) + _pem(mid))
    key.write_bytes(_key_pem(leaf_key))
    servers["intermediate"] = CertFiles(
        chain,
        key,
        _epoch(now + dt.timedelta(days=90)),
        _epoch(now + INTERMEDIATE_EXPIRES_IN),
    )

    client_ca = trustme.CA(organization_name="sentinel client CA")
    client_ca_path = where / "client-ca.pem"
    client_ca.cert_pem.write_to_path(str(client_ca_path))
    client = client_ca.issue_cert("sentinel-probe@example.org", common_name="sentinel probe")
    client_cert, client_key = _write_leaf(client, where, "client")
    return Pki(ca_path, servers, client_ca_path, client_cert, client_key)
