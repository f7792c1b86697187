"""A throwaway Dovecot IMAP server for tests and benchmarks: its own config,
state, logs and Maildir store under a temporary directory, one passwd-file
user, plain IMAP on a free 127.0.0.1 port, and (``tls=True``) IMAPS plus
STARTTLS with a self-signed certificate and plaintext login refused.

The test side manipulates mailboxes with the standard library's imaplib,
not with the code under test, so a bug in the poller cannot hide itself.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from netutil import free_port
from tlsutil import self_signed_cert

USER = "desk@xitrust.com"
PASSWORD = "s3cret pass"  # a space: the client must quote it


class DovecotError(Exception):
    """Dovecot is missing or would not start; the message says why."""


class Dovecot:
    """One Dovecot master process (``dovecot -F``) and its files."""

    def __init__(self, tls: bool = False) -> None:
        binary = shutil.which("dovecot") or (
            "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
        )
        if binary is None:
            raise DovecotError("dovecot is not installed: `apt-get install -y dovecot-imapd` (see .ci/run)")
        self.binary = binary
        self.tls = tls
        # Not under pytest's tmp_path: that is mode 0700 root, and Dovecot's
        # login and mail processes run as nobody and must reach these files.
        self.root = Path(tempfile.mkdtemp(prefix="gw-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.imaps_port = free_port() if tls else 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.cafile: Path | None = None
        self._write_config()

    # -- files -----------------------------------------------------------
    def _write_config(self) -> None:
        nobody = pwd.getpwnam("nobody")
        mail = self.root / "mail"
        mail.mkdir()
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        (self.root / "passwd").write_text(
            f"{USER}:{{PLAIN}}{PASSWORD}:{nobody.pw_uid}:{nobody.pw_gid}::{mail}/home::\n"
        )
        (self.root / "password").write_text(PASSWORD + "\n")
        tls_lines = "ssl = no\ndisable_plaintext_auth = no\n"
        imaps = "  inet_listener imaps {\n    port = 0\n  }\n"
        if self.tls:
            cert, key = self_signed_cert(self.root)
            self.cafile = cert
            tls_lines = (
                f"ssl = required\nssl_cert = <{cert}\nssl_key = <{key}\n"
                "disable_plaintext_auth = yes\nssl_min_protocol = TLSv1.2\n"
            )
            imaps = (
                "  inet_listener imaps {\n    address = 127.0.0.1\n"
                f"    port = {self.imaps_port}\n    ssl = yes\n  }}\n"
            )
        (self.root / "dovecot.conf").write_text(
            f"""protocols = imap
listen = 127.0.0.1
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
info_log_path = {self.root}/dovecot.log
default_internal_user = nobody
default_internal_group = nogroup
default_login_user = nobody
{tls_lines}auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.root}/passwd
}}
mail_location = maildir:{mail}/%u
namespace inbox {{
  inbox = yes
  separator = /
}}
mailbox_idle_check_interval = 1 secs
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
{imaps}}}
service anvil {{
  chroot =
  # No auth penalty (seconds of delay per failed login from one IP): the
  # wrong-password test makes many attempts.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  chroot =
}}
"""
        )

    @property
    def conf(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    def log_text(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- process ---------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Its own process group: stop() signals the master and every
            # child (a foreground master leaves logged-in imap processes
            # running when only it is stopped).
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise DovecotError(f"dovecot exited with {self.proc.returncode}: {err}{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise DovecotError(f"dovecot did not listen on port {self.port} within {timeout}s: {self.log_text()}")

    def stop(self) -> None:
        """Stop the master; Dovecot tells its IMAP clients ``* BYE``."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # session leader: group id == its pid
        # SIGTERM to the whole group, like a service manager's stop: each
        # imap process says "* BYE Server shutting down." and exits.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        # The master waits for its children; make sure the port is free
        # again before a restart binds it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
            except OSError:
                return
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- test-side mailbox access (stdlib imaplib) -----------------------
    @contextlib.contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        if self.tls:
            ctx = ssl.create_default_context(cafile=str(self.cafile))
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=ctx)
        else:
            conn = imaplib.IMAP4("127.0.0.1", self.port)
        try:
            conn.login(USER, PASSWORD)
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    def append(self, raws: list[bytes], folder: str = "INBOX") -> None:
        with self.client() as c:
            self._ensure(c, folder)
            for raw in raws:
                typ, data = c.append(_q(folder), "", None, raw)
                if typ != "OK":
                    raise DovecotError(f"APPEND failed: {data!r}")

    def create(self, folder: str) -> None:
        with self.client() as c:
            self._ensure(c, folder)

    def delete(self, folder: str) -> None:
        with self.client() as c:
            typ, data = c.delete(_q(folder))
            if typ != "OK":
                raise DovecotError(f"DELETE failed: {data!r}")

    def messages(self, folder: str = "INBOX") -> list[tuple[int, set[str], bytes]]:
        """(uid, flags, raw) of every message in the folder, in UID order;
        empty when the folder does not exist."""
        with self.client() as c:
            typ, _ = c.select(_q(folder), readonly=True)
            if typ != "OK":
                return []
            typ, data = c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            out = []
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head = item[0].decode()
                uid = int(re.search(r"UID (\d+)", head).group(1))  # type: ignore[union-attr]
                flags = set(re.search(r"FLAGS \(([^)]*)\)", head).group(1).split())  # type: ignore[union-attr]
                out.append((uid, flags, item[1]))
            return sorted(out)

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.client() as c:
            typ, data = c.status(_q(folder), "(UIDVALIDITY)")
            if typ != "OK":
                raise DovecotError(f"STATUS failed: {data!r}")
            return int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))  # type: ignore[union-attr, arg-type]

    @staticmethod
    def _ensure(c: imaplib.IMAP4, folder: str) -> None:
        if folder.upper() != "INBOX":
            typ, data = c.create(_q(folder))
            if typ != "OK" and b"ALREADYEXISTS" not in (data[0] or b""):
                raise DovecotError(f"CREATE failed: {data!r}")


def _q(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
