"""Score a gateway's threading against the corpus manifest: given which
ticket each stored message landed in (``message_id -> ticket``), count per
message kind how many opened a ticket of their own, were threaded into the
ticket of their thread's first mail, landed in some other ticket, or were
not stored at all.

    python -m tests.corpus.score --manifest c.mbox.manifest.jsonl --map map.tsv [--json out.json]

``map.tsv`` holds ``message_id<TAB>ticket`` lines (brackets optional).

Per kind (new / reply / auto_reply / bounce):
  own_ticket  - the mail is the earliest (by manifest order) mail of its ticket
  threaded    - it landed in the ticket that holds its thread's first mail
  misthreaded - it landed in another ticket (a false merge, or, for a
                colleague's reply without a shared organization, the
                colleague's own earlier ticket)
  dropped     - it is not in the map
For a reply, own_ticket means "became a new ticket instead of threading".
Besides: "tickets" (distinct tickets in the map), "expected_tickets" (new
requests), "stored_msgs" (map entries that are manifest messages) and
"reply_subsets" (replies without In-Reply-To, and how many were threaded).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

KINDS = ("new", "reply", "auto_reply", "bounce")
OUTCOMES = ("own_ticket", "threaded", "misthreaded", "dropped", "total")


def normalize(mid: str) -> str:
    mid = (mid or "").strip()
    return mid if mid.startswith("<") else f"<{mid}>"


def read_manifest(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_map(path: Path) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip():
            mid, ticket = line.split("\t")[:2]
            mapping[normalize(mid)] = ticket
    return mapping


def score(manifest: Iterable[Mapping[str, Any]] | Path, mapping: Mapping[str, Hashable]) -> dict[str, Any]:
    """The counts described in the module docstring; every kind that occurs
    in the manifest gets all of OUTCOMES (zeros included)."""
    rows = read_manifest(manifest) if isinstance(manifest, Path) else list(manifest)
    tickets = {normalize(mid): ticket for mid, ticket in mapping.items()}
    order = {row["message_id"]: row["index"] for row in rows}
    first: dict[Hashable, int] = {}  # ticket -> manifest index of its earliest mail
    for mid, ticket in tickets.items():
        index = order.get(mid)
        if index is not None and (ticket not in first or index < first[ticket]):
            first[ticket] = index

    def outcome(row: Mapping[str, Any]) -> str:
        ticket = tickets.get(row["message_id"])
        if ticket is None:
            return "dropped"
        if first.get(ticket) == row["index"]:
            return "own_ticket"
        if row["kind"] != "new" and tickets.get(row["thread"]) == ticket:
            return "threaded"
        return "misthreaded"

    result: dict[str, Any] = {}
    subsets = {"no_in_reply_to_total": 0, "no_in_reply_to_threaded": 0}
    for row in rows:
        counts = result.setdefault(row["kind"], dict.fromkeys(OUTCOMES, 0))
        got = outcome(row)
        counts[got] += 1
        counts["total"] += 1
        if row["kind"] == "reply" and not row.get("in_reply_to"):
            subsets["no_in_reply_to_total"] += 1
            subsets["no_in_reply_to_threaded"] += got == "threaded"
    result = {kind: result[kind] for kind in sorted(result)}
    result["reply_subsets"] = subsets
    result["tickets"] = len(set(tickets.values()))
    result["stored_msgs"] = sum(1 for mid in tickets if mid in order)
    result["expected_tickets"] = sum(1 for row in rows if row["kind"] == "new")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--map", type=Path, required=True, help="message_id<TAB>ticket per line")
    ap.add_argument("--json", type=Path, help="also write the result here")
    a = ap.parse_args(argv)
    text = json.dumps(score(a.manifest, read_map(a.map)), indent=1, sort_keys=True)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
