"""Who may do what on a ticket (SPEC §3 and §6), in one place.

Seeing a ticket and posting on it are the same right: the reporter, a
participant, a member of the organization the ticket is shared with, or an
agent (with agent privileges in effect: by mail only from a trusted source).
What else a customer may do on a ticket they may see: mark it resolved and
reopen it while resolved; the reporter may also change whom it is shared
with. Everything else (priority, request type, fields, any status) is for
agents and for the desk itself."""

from __future__ import annotations

from sqlalchemy import Connection

from gateway.domain import TicketStatus
from gateway.store import repo
from gateway.store.repo import AccountRow, TicketRow

# Statuses a customer may move their own request to, from the statuses given.
_CUSTOMER_MOVES: dict[str, frozenset[str]] = {
    TicketStatus.resolved.value: frozenset(
        {TicketStatus.waiting_for_support.value, TicketStatus.waiting_for_customer.value}
    ),
    TicketStatus.waiting_for_support.value: frozenset({TicketStatus.resolved.value}),
}


def may_access(conn: Connection, account: AccountRow, ticket: TicketRow, *, as_agent: bool) -> bool:
    """Reporter, participant, member of the organization the ticket is
    shared with, or an agent (``as_agent``: agent privileges in effect)."""
    if as_agent or ticket.reporter_id == account.id:
        return True
    if ticket.organization_id is not None and ticket.organization_id == account.organization_id:
        return True
    return repo.is_participant(conn, ticket.id, account.id)


def customer_may_move(current: str, new: str) -> bool:
    """Mark resolved, or reopen a resolved request."""
    return current in _CUSTOMER_MOVES.get(new, frozenset())
