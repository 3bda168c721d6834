"""sites.example.toml shows every option: each key of every config section model appears in it,
found by introspecting the pydantic models, so a new key without an example fails the build."""

from __future__ import annotations

import re
import tomllib
import types
import typing
from pathlib import Path

import pytest
import trustme
from pydantic import BaseModel

from sentinel.config import load_config, parse_config
from sentinel.parse.channels import ChannelSection
from sentinel.parse.early import HostSection, WatchSection
from sentinel.parse.file import FileSection, SiteOptions, SiteSection
from sentinel.parse.heartbeats import HeartbeatSection
from sentinel.parse.history import HistorySection, StatusPageSection
from sentinel.parse.maintenance import MaintenanceSection

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "sites.example.toml"

# FileSection passes these through as raw tables (validated later, entry by entry): the model
# that validates each.
PASSED_THROUGH: dict[str, type[BaseModel]] = {
    "watch": WatchSection,
    "host": HostSection,
    "maintenance": MaintenanceSection,
    "channels": ChannelSection,
    "heartbeats": HeartbeatSection,
    "history": HistorySection,
    "status_page": StatusPageSection,
}
# [[sites]] is not in FileSection at all (each entry is validated on its own); it only has to
# show what a site adds to [defaults].
OUTSIDE_FILE_SECTION: dict[str, type[BaseModel]] = {"sites": SiteSection}
INHERITED: dict[str, type[BaseModel]] = {"sites": SiteOptions}

_HEADER_RE = re.compile(r"^#?\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?")
_KEY_RE = re.compile(r"^#?\s*([A-Za-z0-9_-]+)\s*=")


def example_keys(text: str) -> dict[str, set[str]]:
    """Section -> the keys shown in it, set or commented out (`# key = ...`)."""
    keys: dict[str, set[str]] = {"": set()}
    section = ""
    for line in text.splitlines():
        if header := _HEADER_RE.match(line):
            section = header.group(1)
            keys.setdefault(section, set())
        elif key := _KEY_RE.match(line):
            keys[section].add(key.group(1))
    return keys


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The section models an annotation holds (`X`, `X | None`, `list[X]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, tuple):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _field_keys(model: type[BaseModel]) -> dict[str, str]:
    """TOML key -> the attribute it fills (`from` fills `from_`)."""
    return {(info.alias or name): name for name, info in model.model_fields.items()}


def schema_sections() -> dict[str, type[BaseModel]]:
    """Every section of the file and the model that validates its keys."""
    sections: dict[str, type[BaseModel]] = dict(OUTSIDE_FILE_SECTION)
    for key, name in _field_keys(FileSection).items():
        models = _models_in(FileSection.model_fields[name].annotation)
        model = models[0] if models else PASSED_THROUGH.get(key)
        assert model is not None, (
            f"FileSection.{name}: no model to check sites.example.toml against; "
            "add the section's model to PASSED_THROUGH in this test"
        )
        sections[key] = model
    return sections


def missing_keys(text: str) -> list[str]:
    shown = example_keys(text)
    missing = []
    for section, model in schema_sections().items():
        inherited = set(_field_keys(INHERITED[section])) if section in INHERITED else set()
        for key, name in _field_keys(model).items():
            if key in inherited or key in shown.get(section, set()):
                continue
            missing.append(
                f"sites.example.toml: [{section}] does not show key {key!r} "
                f"({model.__name__}.{name}); add it, commented out if it is optional"
            )
    return missing


def test_every_config_key_appears_in_the_example() -> None:
    assert missing_keys(EXAMPLE.read_text()) == []


def test_a_key_missing_from_the_example_is_named_with_its_section() -> None:
    text = EXAMPLE.read_text().replace("# outbox_limit =", "# outbox_limt =")
    assert missing_keys(text) == [
        "sites.example.toml: [email] does not show key 'outbox_limit' "
        "(EmailSection.outbox_limit); add it, commented out if it is optional"
    ]
    text = EXAMPLE.read_text().replace("# disk_min_growth =", "# disk_min_grow =")
    assert [line.split(" (")[0] for line in missing_keys(text)] == [
        "sites.example.toml: [host] does not show key 'disk_min_growth'"
    ]


def test_every_section_of_the_schema_appears_in_the_example() -> None:
    shown = example_keys(EXAMPLE.read_text())
    assert sorted(set(schema_sections()) - set(shown)) == []


def test_the_example_with_everything_uncommented_is_valid(tmp_path: Path) -> None:
    """Every commented-out key holds a value sentinel accepts: uncommenting it is safe (the
    certificate files it names are made here: sentinel checks that they exist and load)."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client = ca.issue_cert("probe@example.org")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "probe.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "probe.key"))
    text = EXAMPLE.read_text()
    for name, made in (
        ("private-ca.pem", "ca.pem"),
        ("probe.pem", "probe.pem"),
        ("probe.key", "probe.key"),
    ):
        text = text.replace(f"/etc/sentinel/{name}", str(tmp_path / made))
    lines = [
        line.removeprefix("#").lstrip() if _HEADER_RE.match(line) or _KEY_RE.match(line) else line
        for line in text.splitlines()
    ]
    config = parse_config(tomllib.loads("\n".join(lines)))
    assert config.email is not None and config.email.sender.endswith("<sentinel@example.org>")
    assert config.early is not None and len(config.early.watches) == 3
    assert config.early.host.disks == ("/", "/var")


def test_the_example_as_shipped_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.email is None  # the [email] section is commented out: alerts are only logged
    assert config.early is not None and config.early.watches == ()


@pytest.mark.parametrize("section", ["defaults", "email", "host"])
def test_the_example_documents_the_sections_it_once_lost(section: str) -> None:
    shown = example_keys(EXAMPLE.read_text())
    assert len(shown.get(section, set())) >= 6
