"""Real parts: an embedded PostgreSQL for the whole run, built by the migrations, and the app
on top. Tests isolate themselves by tenant (each makes its own), which is what RLS is for."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from leadrelay.app import create_app
from leadrelay.core import embedded_pg
from leadrelay.core.db import Database, DatabaseUrls, ensure_database
from leadrelay.core.jobs import JobRuntime
from leadrelay.core.migrate import migrate
from leadrelay.core.settings import Settings
from tests.factories import TenantFactory

TEST_DATABASE = "leadrelay_test"
APP_PASSWORD = "app-test-password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded_pg.EmbeddedServer]:
    server = embedded_pg.EmbeddedServer(tmp_path_factory.mktemp("pg"), free_port())
    embedded_pg.ensure_running(server, fast_unsafe=True)
    yield server
    embedded_pg.stop(server)


@pytest.fixture(scope="session")
def urls(pg_server: embedded_pg.EmbeddedServer) -> DatabaseUrls:
    """A database made from nothing by the migrations, as in production."""
    with psycopg.connect(pg_server.url(), autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {TEST_DATABASE}")
    ensure_database(pg_server.url(), TEST_DATABASE)
    owner = pg_server.url(database=TEST_DATABASE)
    app = f"postgresql://leadrelay_app:{APP_PASSWORD}@127.0.0.1:{pg_server.port}/{TEST_DATABASE}"
    result = DatabaseUrls(owner=owner, app=app, app_role="leadrelay_app", app_password=APP_PASSWORD)
    migrate(result)
    return result


@pytest.fixture(scope="session")
def settings(urls: DatabaseUrls, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        env="test",
        database_url=urls.owner,
        database_app_url=urls.app,
        data_dir=Path(tmp_path_factory.mktemp("var")),
        webhook_allow_private_targets=True,
        webhook_timeout_seconds=5,
        log_level="WARNING",
    )


@pytest.fixture(scope="session")
async def db(urls: DatabaseUrls) -> AsyncIterator[Database]:
    database = Database(urls)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def app(settings: Settings, db: Database) -> FastAPI:
    return create_app(settings, db=db)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def tenants(db: Database) -> TenantFactory:
    return TenantFactory(db)


@pytest.fixture(scope="session")
def api_server(settings: Settings) -> Iterator[str]:
    """Base URL of the app served by uvicorn on loopback (real HTTP)."""
    from tests.live import serve

    with serve(settings, free_port()) as base:
        yield base


@pytest.fixture(scope="session")
async def job_runtime(settings: Settings, urls: DatabaseUrls) -> AsyncIterator[JobRuntime]:
    """The worker's runtime (queue open, tasks able to run) for tests that drain jobs."""
    from leadrelay.worker import job_runtime as open_runtime

    async with open_runtime(settings, urls) as runtime:
        yield runtime
