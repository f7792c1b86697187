"""What the daemon, ``gateway ingest``, the scheduled jobs and the outbox
sender need from the composition root (``gateway.app.App``), as a Protocol:
they are handed an App but do not import it, so the root stays at the top
of the import graph (``tests/unit/test_layers.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from gateway.pipeline.runner import Runner
    from gateway.settings import Settings
    from gateway.store.blobs import BlobStore
    from gateway.store.spool import Spool


class Services(Protocol):
    """The process's shared parts, built once from one Settings."""

    settings: Settings

    @property
    def engine(self) -> Engine: ...

    @property
    def blobs(self) -> BlobStore: ...

    @property
    def spool(self) -> Spool: ...

    def ensure_schema(self) -> None: ...

    def runner(self, worker: str | None = None) -> Runner: ...

    @property
    def runner_factory(self) -> Callable[[Settings], Runner]:
        """A module-level function building a worker process's Runner from
        Settings (picklable by reference: worker processes are spawned)."""
        ...
