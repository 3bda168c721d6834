"""An SMTP server that requires AUTH, for the real-systemd test: started inside the machine's
network namespace (its loopback is the only network the service has), it appends one JSON line
per accepted message (subject, login) to OUT, and writes READY once it listens.

    python smtp_sink.py PORT USER PASSWORD OUT READY
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from smtp_server import SmtpServer


def main() -> None:
    port, user, password, out, ready = sys.argv[1:6]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    written = 0
    with SmtpServer(auth=(user, password), auth_require_tls=False, port=int(port)) as server:
        Path(ready).write_text(str(server.port))
        while not stop.wait(0.1):
            mails = server.received()
            with Path(out).open("a") as f:
                for mail in mails[written:]:
                    record = {"subject": str(mail.message["Subject"]), "login": mail.login}
                    f.write(json.dumps(record) + "\n")
            written = len(mails)


if __name__ == "__main__":
    main()
