"""Requeueing one outbound mail for an immediate new attempt, through the
caller's ORM ``Session`` (opened with ``store.db.transaction``): the storage
behind the operator's ``outbox retry``. Whether a mail may be retried is
decided by ``gateway.admin``."""

from __future__ import annotations

from sqlmodel import Session

from gateway.domain import OutboxStatus
from gateway.store.models import OutboundMail, utcnow


def outbound_for_update(session: Session, outbound_id: int) -> OutboundMail | None:
    """The outbound mail ``outbound_id`` with its row locked for the rest of
    the transaction, so that the status the caller checks is the one it
    changes; None if there is none."""
    return session.get(OutboundMail, outbound_id, with_for_update=True)


def requeue(session: Session, out: OutboundMail) -> None:
    """Make ``out`` due now, keeping its attempt count."""
    out.status = OutboxStatus.queued.value
    out.next_attempt_at = utcnow()
    session.add(out)
    session.flush()
