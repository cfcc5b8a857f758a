"""`leadrelay migrate`: the app role, the schema, and the app role's grants, in that order."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql

from leadrelay.core.db import DatabaseUrls
from leadrelay.core.settings import PROJECT_ROOT


def alembic_config(owner_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(Path(PROJECT_ROOT) / "migrations"))
    config.attributes["url"] = owner_url
    return config


def ensure_app_role(owner_url: str, role: str, password: str) -> None:
    """The application's login role: no superuser, no BYPASSRLS, owns nothing."""
    with psycopg.connect(owner_url, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        statement = sql.SQL(
            "{verb} ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
        ).format(verb=sql.SQL(verb), role=sql.Identifier(role))
        if password:
            statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
        connection.execute(statement)


def grant_app_role(owner_url: str, role: str) -> None:
    """Data rights on every table, none on the audit chain beyond SELECT and INSERT."""
    ident = sql.Identifier(role)
    statements = [
        "GRANT USAGE ON SCHEMA public TO {role}",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role}",
        "REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM {role}",
        "REVOKE TRUNCATE ON ALL TABLES IN SCHEMA public FROM {role}",
    ]
    with psycopg.connect(owner_url, autocommit=True) as connection:
        for statement in statements:
            connection.execute(sql.SQL(statement).format(role=ident))


def migrate(urls: DatabaseUrls) -> None:
    ensure_app_role(urls.owner, urls.app_role, urls.app_password)
    command.upgrade(alembic_config(urls.owner), "head")
    grant_app_role(urls.owner, urls.app_role)
