"""Shared fixtures: a throwaway PostgreSQL cluster for the whole session, a
database URL per test for both backends (SQLite file, fresh PostgreSQL
database), Settings pointing at a per-test state directory, and an App with
the schema migrated. PostgreSQL tests never skip: if the cluster cannot
start, they fail and say why."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pgcluster import PgCluster, PgClusterError

from gateway.settings import DatabaseSettings, OutboundSettings, Settings, StorageSettings

if TYPE_CHECKING:
    from gateway.app import App

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL 15 cluster per test session (started on first use)."""
    try:
        cluster = PgCluster()
        cluster.start()
    except (PgClusterError, OSError) as exc:
        pytest.fail(f"cannot start the test PostgreSQL cluster: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for an empty database: a SQLite file in tmp_path, or a
    fresh database in the session's PostgreSQL cluster (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database()
    try:
        yield url
    finally:
        cluster.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GATEWAY__* / GATEWAY_CONFIG from the developer's shell leaks in."""
    for key in list(os.environ):
        if key.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(key)


@pytest.fixture
def settings(db_url: str, tmp_path: Path, clean_env: None) -> Settings:
    return Settings(
        database=DatabaseSettings(url=db_url),
        storage=StorageSettings(blobs=str(tmp_path / "blobs")),
        outbound=OutboundSettings(maildir=str(tmp_path / "sent")),
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    """The composition root on a migrated database."""
    from gateway.app import App  # imported late: unit tests need not import the whole app

    application = App(settings)
    application.db_upgrade()
    try:
        yield application
    finally:
        if "engine" in application.__dict__:  # cached_property was used
            application.engine.dispose()


@contextlib.contextmanager
def _pg_app(cluster: PgCluster, blobs: str, tmp_path: Path) -> Iterator[App]:
    """An App on a fresh database of the session's cluster (dropped after)."""
    from gateway.app import App

    url = cluster.create_database()
    application = App(Settings(database=DatabaseSettings(url=url), storage=StorageSettings(blobs=blobs),
                               outbound=OutboundSettings(maildir=str(tmp_path / "sent"))))
    application.db_upgrade()
    try:
        yield application
    finally:
        application.engine.dispose()
        cluster.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def pg_app(pg_cluster: PgCluster, tmp_path: Path, clean_env: None) -> Iterator[App]:
    """An App on PostgreSQL only, blobs in files: for what only PostgreSQL
    does (workers' transactions side by side)."""
    with _pg_app(pg_cluster, str(tmp_path / "blobs"), tmp_path) as application:
        yield application


@pytest.fixture
def pg_blobs_app(pg_cluster: PgCluster, tmp_path: Path, clean_env: None) -> Iterator[App]:
    """An App on PostgreSQL with database blobs, for races between a put and
    a removal of the same bytes (on SQLite one write transaction runs at a
    time: no race to test)."""
    with _pg_app(pg_cluster, "database", tmp_path) as application:
        yield application
