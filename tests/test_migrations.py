"""Migrations are reviewed code: they build the schema the models describe, and go both ways."""

from __future__ import annotations

import uuid

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


def test_provenance_rows_become_observations_and_back(pg_server: EmbeddedServer) -> None:
    """0024 regroups a row per field into a row per observation, losing nothing: a field seen
    twice in one group (two rows of a file for the same person) opens a second observation,
    and the downgrade gives back the rows it started from."""
    name = "leadrelay_observations"
    with psycopg.connect(pg_server.url(), autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
    ensure_database(pg_server.url(), name)
    owner = pg_server.url(database=name)
    config = alembic_config(owner)
    command.upgrade(config, "0023")
    tenant, source, lead, other = (uuid.uuid4() for _ in range(4))
    rows = [
        (lead, "email", "ada@x.io", " ADA@x.io ", "2026-01-01T00:00:00Z"),
        (lead, "full_name", "Ada", "ada", "2026-01-01T00:00:00Z"),
        (lead, "email", "ada@x.io", "ada@x.io", "2026-01-01T00:00:00Z"),  # same file, twice
        (lead, "city", "Paris", None, "2026-02-01T00:00:00Z"),
        (other, "answer:car", "Honda", "Honda", "2026-01-01T00:00:00Z"),
    ]
    with psycopg.connect(owner) as connection:
        connection.execute("INSERT INTO tenants (id, name, slug) VALUES (%s, 'T', 't')", (tenant,))
        connection.execute(
            "INSERT INTO sources (id, tenant_id, name, kind, legal_basis) "
            "VALUES (%s, %s, 'S', 'csv_upload', 'consent')",
            (source, tenant),
        )
        for lead_id in (lead, other):
            connection.execute(
                "INSERT INTO leads (id, tenant_id, source_id) VALUES (%s, %s, %s)",
                (lead_id, tenant, source),
            )
        for lead_id, field, value, raw, at in rows:
            connection.execute(
                "INSERT INTO lead_field_values (tenant_id, lead_id, field, value, raw_value, "
                "source_id, observed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (tenant, lead_id, field, value, raw, source, at),
            )

    command.upgrade(config, "0024")
    with psycopg.connect(owner) as connection:
        observations = connection.execute(
            "SELECT lead_id, fields FROM lead_observations ORDER BY id"
        ).fetchall()
    assert observations == [
        (
            lead,
            {
                "email": {"value": "ada@x.io", "raw_value": " ADA@x.io "},
                "full_name": {"value": "Ada", "raw_value": "ada"},
            },
        ),
        (lead, {"email": {"value": "ada@x.io", "raw_value": "ada@x.io"}}),
        (lead, {"city": {"value": "Paris", "raw_value": None}}),
        (other, {"answer:car": {"value": "Honda", "raw_value": "Honda"}}),
    ]

    command.downgrade(config, "0023")
    with psycopg.connect(owner) as connection:
        back = connection.execute(
            "SELECT lead_id, field, value, raw_value, to_char(observed_at AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS"Z"\') FROM lead_field_values'
        ).fetchall()
    assert sorted(back, key=str) == sorted(rows, key=str)
