"""Tenant isolation is enforced by PostgreSQL, not by the queries we remember to write."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from leadrelay.core.db import Database, DatabaseUrls, set_tenant
from leadrelay.core.models import TENANT_TABLES
from leadrelay.identity.models import ApiKey, User
from tests.factories import TenantFactory


class TestRowLevelSecurity:
    async def test_query_without_tenant_filter_sees_one_tenant(
        self, db: Database, tenants: TenantFactory
    ) -> None:
        a, b = await tenants.create(), await tenants.create()
        await a.user()
        await b.user()
        await b.user()
        async with db.session(a.id) as session:
            # No WHERE clause at all: RLS alone narrows it to tenant A.
            users = list(await session.scalars(select(User)))
        assert users
        assert {u.tenant_id for u in users} == {a.id}

    async def test_no_tenant_set_sees_nothing(self, db: Database, tenants: TenantFactory) -> None:
        a = await tenants.create()
        await a.user()
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(User)) == 0

    async def test_cannot_write_rows_for_another_tenant(
        self, db: Database, tenants: TenantFactory
    ) -> None:
        a, b = await tenants.create(), await tenants.create()
        async with db.sessions() as session:
            await set_tenant(session, a.id)
            session.add(
                ApiKey(
                    tenant_id=b.id,
                    name="x",
                    prefix="lr_forged0001",
                    key_hash="0" * 64,
                    role="owner",
                )
            )
            with pytest.raises(DBAPIError, match="row-level security"):
                await session.flush()

    async def test_cannot_update_another_tenants_rows(
        self, db: Database, tenants: TenantFactory
    ) -> None:
        a, b = await tenants.create(), await tenants.create()
        email = await b.user()
        async with db.session(a.id) as session:
            result = await session.execute(
                text("UPDATE users SET name = 'pwned' WHERE email = :e"), {"e": email}
            )
            assert result.rowcount == 0  # type: ignore[attr-defined]

    def test_app_role_cannot_bypass_rls_and_owns_nothing(self, urls: DatabaseUrls) -> None:
        with psycopg.connect(urls.owner) as connection:
            role = connection.execute(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s",
                (urls.app_role,),
            ).fetchone()
            owned = connection.execute(
                "SELECT count(*) FROM pg_tables WHERE tableowner = %s", (urls.app_role,)
            ).fetchone()
        assert role == (False, False)
        assert owned == (0,)

    def test_every_tenant_table_has_rls_enabled(self, urls: DatabaseUrls) -> None:
        with psycopg.connect(urls.owner) as connection:
            rows = dict(
                connection.execute(
                    "SELECT relname, relrowsecurity FROM pg_class WHERE relname = ANY(%s)",
                    ([*list(TENANT_TABLES), "dead_letters"],),
                ).fetchall()
            )
            with_tenant_column = {
                r[0]
                for r in connection.execute(
                    "SELECT table_name FROM information_schema.columns "
                    "WHERE column_name = 'tenant_id' AND table_schema = 'public'"
                ).fetchall()
            }
        assert set(rows) == set(TENANT_TABLES) | {"dead_letters"}
        assert all(rows.values())
        # Every table with a tenant_id is listed (none forgotten).
        assert with_tenant_column <= set(TENANT_TABLES) | {"dead_letters"}
