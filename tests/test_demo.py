"""`make run` loads the demo on a first start: it must load, through the real paths, on an
empty database made by the migrations, and only once."""

from __future__ import annotations

import psycopg
from sqlalchemy import func, select

from leadrelay.approvals.models import Draft, DraftStatus
from leadrelay.core.db import Database, DatabaseUrls, all_tenants, ensure_database
from leadrelay.core.embedded_pg import EmbeddedServer
from leadrelay.core.migrate import migrate
from leadrelay.demo import count_demo, demo_logins, load_demo
from leadrelay.drafting.service import sender_of
from leadrelay.identity.models import Tenant
from tests.conftest import APP_PASSWORD


async def test_the_demo_loads_once_with_drafts_waiting_for_review(
    pg_server: EmbeddedServer,
) -> None:
    name = "leadrelay_demo"
    # The app role is cluster-wide: its password stays the one every other test uses.
    with psycopg.connect(pg_server.url(), autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
    ensure_database(pg_server.url(), name)
    urls = DatabaseUrls(
        owner=pg_server.url(database=name),
        app=f"postgresql://leadrelay_app:{APP_PASSWORD}@127.0.0.1:{pg_server.port}/{name}",
        app_role="leadrelay_app",
        app_password=APP_PASSWORD,
    )
    migrate(urls)
    db = Database(urls)
    try:
        logins = await load_demo(db)
        assert logins == demo_logins()
        assert await count_demo(db) == {"tenants": 2, "teams": 3, "reps": 6, "leads": 20}
        async with db.session() as session:
            tenants = await all_tenants(session)
        for tenant_id in tenants.values():
            async with db.session(tenant_id) as session:
                tenant = await session.get(Tenant, tenant_id)
                assert tenant is not None
                assert sender_of(tenant).postal_address
                pending = await session.scalar(
                    select(func.count())
                    .select_from(Draft)
                    .where(Draft.status == DraftStatus.PENDING)
                )
                assert pending == 3
        await load_demo(db)  # a second start loads nothing more
        assert (await count_demo(db))["leads"] == 20
    finally:
        await db.dispose()
