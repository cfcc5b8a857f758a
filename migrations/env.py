"""Alembic runs as the owner role. The URL comes from `config.attributes["url"]` (set by
`leadrelay migrate`) or from the settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from leadrelay.core.db import resolve_urls, sqlalchemy_url
from leadrelay.core.settings import get_settings
from leadrelay.models import metadata

config = context.config


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # procrastinate's tables come from its own schema file (migration 0002), not our models.
    return not (type_ == "table" and name is not None and name.startswith("procrastinate_"))


def _url() -> str:
    url = config.attributes.get("url")
    if url is None:
        url = resolve_urls(get_settings()).owner
    return sqlalchemy_url(str(url))


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(
            connection=connectable,
            target_metadata=metadata,
            compare_type=True,
            include_object=_include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            compare_type=True,
            include_object=_include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
