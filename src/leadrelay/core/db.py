"""Engines, sessions and the tenant context.

Two roles reach the database. The *owner* runs migrations and owns every table. The *app* role
(no BYPASSRLS, owns nothing) serves every request and job; each of its transactions sets
`app.tenant_id`, and row-level-security policies on every tenant-owned table read it. A query
that forgets its tenant filter therefore still sees one tenant only.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from psycopg.types.json import set_json_dumps
from sqlalchemy import ColumnElement, MetaData, any_, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from leadrelay.core import embedded_pg
from leadrelay.core.settings import Settings

DATABASE_NAME = "leadrelay"


def json_bytes(value: Any) -> bytes:
    """JSON for jsonb parameters. orjson writes a routing trace or an audit payload several
    times faster than the standard library; the rare value it refuses (an integer beyond 64
    bits) goes through `json`, which raises as before for what JSON cannot hold."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(value).encode()


def any_uuid(ids: Collection[uuid.UUID]) -> ColumnElement[Any]:
    """`ANY(array)` of these ids, for `column == any_uuid(ids)`: one array parameter where
    `in_()` renders a placeholder per id, which costs more than the query for a big chunk."""
    return any_(bindparam(None, list(ids), type_=ARRAY(UUID(as_uuid=True))))


def json_text(value: Any) -> str:
    return json_bytes(value).decode()


# Every `Json`/`Jsonb` parameter psycopg sends, whichever module wraps it.
set_json_dumps(json_bytes)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


@dataclass(frozen=True, slots=True)
class DatabaseUrls:
    """libpq URLs (postgresql://…) for the owner and the application role."""

    owner: str
    app: str
    app_role: str
    app_password: str


def _with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:{password}@{host}" if password else f"{user}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _embedded_app_password(data_dir: Path) -> str:
    """A password for the app role on the embedded server, generated once, kept under var/."""
    path = data_dir / "db-credentials.json"
    if path.exists():
        return str(json.loads(path.read_text())["app_password"])
    data_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    path.write_text(json.dumps({"app_password": password}))
    path.chmod(0o600)
    return password


def embedded_server(settings: Settings) -> embedded_pg.EmbeddedServer:
    return embedded_pg.EmbeddedServer(settings.data_dir, settings.embedded_pg_port)


def resolve_urls(settings: Settings, *, start_embedded: bool = True) -> DatabaseUrls:
    """Owner and app URLs; starts the embedded server when no DATABASE_URL is set."""
    if settings.uses_embedded_postgres:
        server = embedded_server(settings)
        if start_embedded:
            embedded_pg.ensure_running(server)
            ensure_database(server.url(), DATABASE_NAME)
        owner = server.url(database=DATABASE_NAME)
        password = settings.app_db_password.get_secret_value() or _embedded_app_password(
            settings.data_dir
        )
    else:
        owner = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        password = settings.app_db_password.get_secret_value()
    app = settings.database_app_url or _with_user(owner, settings.app_db_role, password)
    return DatabaseUrls(owner=owner, app=app, app_role=settings.app_db_role, app_password=password)


def ensure_database(server_url: str, name: str) -> None:
    """Create database `name` on the server if it does not exist (autocommit; idempotent)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"application_name": "leadrelay"},
        json_serializer=json_text,  # the ORM's JSONB columns
    )


async def set_tenant(connection: AsyncConnection | AsyncSession, tenant_id: uuid.UUID) -> None:
    """Bind the current transaction to one tenant (read by every RLS policy)."""
    await connection.execute(
        text("SELECT set_config('app.tenant_id', :tenant, true)"), {"tenant": str(tenant_id)}
    )


async def all_tenants(session: AsyncSession) -> dict[str, uuid.UUID]:
    """Every tenant's slug and id (a narrow SECURITY DEFINER look-up; rows stay behind RLS)."""
    rows = await session.execute(text("SELECT slug, id FROM app_tenants()"))
    return {slug: tenant_id for slug, tenant_id in rows}


async def all_tenant_ids(session: AsyncSession) -> list[uuid.UUID]:
    return list((await all_tenants(session)).values())


class Database:
    """The application's handle on PostgreSQL: the app-role engine and its sessions."""

    def __init__(self, urls: DatabaseUrls, *, pool_size: int = 10) -> None:
        self.urls = urls
        self.engine = create_engine(urls.app, pool_size=pool_size)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self, tenant_id: uuid.UUID | None = None) -> AsyncIterator[AsyncSession]:
        """One transaction, committed on success and rolled back on error (the edge commits)."""
        async with self.sessions() as session, session.begin():
            if tenant_id is not None:
                await set_tenant(session, tenant_id)
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


async def raw_connection(session: AsyncSession) -> Any:
    """The psycopg connection under a session, for COPY and for deferring jobs in-transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection
