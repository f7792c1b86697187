"""A person's rights at the command line (GDPR, #16): ``gateway account
export EMAIL`` writes everything the desk stores about them as JSON
(Art. 15), ``gateway account erase EMAIL`` removes their personal data
(Art. 17).

What an erasure takes and keeps, and why, is in ``store/erasure.py``; the
export's shape in ``store/export.py``. Here: finding the person, running the
erasure in one transaction, and the rehearsal that shows the operator what
would go — the same erasure, counted and rolled back, so the numbers are
exactly what ``--yes`` then does."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from gateway.domain import Refused, erased_address, is_erased_address, normalize_address
from gateway.store import erasure, export
from gateway.store.blobs import BlobStore
from gateway.store.db import connection, read_connection
from gateway.store.models import utcnow
from gateway.store.personal import find_person

# What each count of an erasure is, for the operator (in this order).
ERASURE_COUNTS = {
    "tickets_erased": "tickets only they were on: summary, description and fields erased",
    "descriptions_erased": "tickets they reported that others are on: description erased, kept",
    "comments_erased": "their comments: text erased",
    "comments_kept": "their comments as an agent: kept, the desk's words",
    "files_deleted": "their files",
    "own_mails_erased": "mails they sent: raw message and subject erased",
    "mails_naming_erased": "others' mails naming them: raw message erased",
    "mail_to_them_erased": "mails to them: subject and data erased, none sent any more",
    "tickets_unassigned": "tickets assigned to them: now nobody's",
    "tickets_changed": "tickets with an 'erased' history entry",
    "mentions_replaced": "other rows naming them: address and name replaced",
    "blobs_deleted": "stored files and raw messages deleted",
    "sessions_ended": "portal sessions ended",
    "tokens_deleted": "signup and reset links deleted",
    "rate_limits_deleted": "rate-limit counters deleted",
}


class NoAccount(LookupError):
    """No account has the address (CLI exit 1)."""


class ExportError(Refused):
    """The export file cannot be written (or exists: it is never written
    over)."""


@dataclass(frozen=True)
class ErasureReport:
    """What ``erase_account`` did, or (``erased`` False) would do."""

    email: str  # the address that was erased
    placeholder: str  # the address the account has now
    erased: bool
    counts: dict[str, int]
    already: bool = False  # the address is an erased account's already

    def as_json(self) -> dict[str, Any]:
        return {"email": self.email, "account": self.placeholder, "erased": self.erased,
                "counts": self.counts}


class _Rehearsal(Exception):
    """Raised inside the transaction to roll it back after counting."""

    def __init__(self, counts: dict[str, int]) -> None:
        super().__init__("rehearsal")
        self.counts = counts


def erase_account(engine: Engine, blobs: BlobStore, email: str, *, confirmed: bool) -> ErasureReport:
    """Erase the person with the address ``email`` in one transaction; not
    ``confirmed``: rehearse it (count everything, change nothing)."""
    address = normalize_address(email)
    if is_erased_address(address):
        return ErasureReport(address, address, True, {}, already=True)
    with read_connection(engine) as conn:
        person = find_person(conn, address)
        if person is None:
            raise NoAccount(f"no account {address}")
        # Reads mails' raw bytes: outside the write transaction below.
        scanned = erasure.prescan(conn, person, blobs)
    placeholder = erased_address(person.id)
    try:
        with connection(engine) as conn:
            person = erasure.lock_person(conn, address)
            if person is None:
                raise NoAccount(f"no account {address} (erased meanwhile?)")
            counts = erasure.erase(conn, person, scanned, blobs, delete_blobs=confirmed)
            if not confirmed:
                raise _Rehearsal(counts)
    except _Rehearsal as rehearsal:
        return ErasureReport(address, placeholder, False, _ordered(rehearsal.counts))
    return ErasureReport(address, placeholder, True, _ordered(counts))


def _ordered(counts: dict[str, int]) -> dict[str, int]:
    return {key: counts[key] for key in ERASURE_COUNTS if key in counts}


def export_account(engine: Engine, blobs: BlobStore, email: str, *, with_files: bool) -> dict[str, Any]:
    """Everything stored about the person with the address ``email``; with
    ``with_files`` their files and raw mails too (base64)."""
    address = normalize_address(email)
    with read_connection(engine) as conn:
        person = find_person(conn, address)
        if person is None:
            raise NoAccount(f"no account {address}")
        return export.account_export(conn, person, blobs if with_files else None, utcnow())


def write_export(document: dict[str, Any], path: str) -> None:
    """Write the export to a new file that only its owner can read: it is
    a person's data, and an earlier export is never overwritten."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ExportError(f"{path} exists: choose another file (an export is never overwritten)") from None
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
