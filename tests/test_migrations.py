"""Migrations are reviewed code: they build the schema the models describe, and go both ways."""

from __future__ import annotations

import psycopg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool

from leadrelay.core.db import DatabaseUrls, ensure_database, sqlalchemy_url
from leadrelay.core.embedded_pg import EmbeddedServer
from leadrelay.core.migrate import alembic_config, migrate
from leadrelay.models import metadata


def _ignore_queue_tables(obj: object, name: str | None, type_: str, *_: object) -> bool:
    return not (type_ == "table" and name is not None and name.startswith("procrastinate_"))


def test_autogenerate_finds_no_difference(urls: DatabaseUrls) -> None:
    engine = create_engine(sqlalchemy_url(urls.owner), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "include_object": _ignore_queue_tables},
        )
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == []


def test_downgrade_to_empty_and_upgrade_again(pg_server: EmbeddedServer) -> None:
    name = "leadrelay_roundtrip"
    with psycopg.connect(pg_server.url(), autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
    ensure_database(pg_server.url(), name)
    owner = pg_server.url(database=name)
    urls = DatabaseUrls(
        owner=owner,
        app=f"postgresql://leadrelay_app:x@127.0.0.1:{pg_server.port}/{name}",
        app_role="leadrelay_app",
        app_password="app-test-password",
    )
    migrate(urls)
    config = alembic_config(owner)
    command.downgrade(config, "base")
    with psycopg.connect(owner) as connection:
        tables = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        ).fetchall()
    assert tables == []
    command.upgrade(config, "head")
    with psycopg.connect(owner) as connection:
        count = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
    assert count is not None
    assert count[0] > 15
