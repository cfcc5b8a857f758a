"""Routing's lock comes first: a sweep that gives a breaching rep's lead to someone else takes
the tenant's routing lock before it audits the breach or gives the rep capacity back. The other
way round, it could hold the audit chain's head or the rep's row that a chunk being routed
meanwhile waits for, while it waits for that chunk's lock — a deadlock PostgreSQL breaks by
aborting one of them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import psycopg
import pytest

from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.identity.models import Role
from leadrelay.routing import service
from tests.factories import TenantCtx, TenantFactory
from tests.routing.test_routing_api import add_leads, post
from tests.support import until_a_backend_waits_for_a_lock


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


async def test_an_sla_reassignment_waits_for_routing_before_it_locks_anything_else(
    client: httpx.AsyncClient, tenant: TenantCtx, db: Database, urls: DatabaseUrls
) -> None:
    headers = await tenant.headers(Role.MANAGER)
    team = await post(
        client, "/v1/teams", {"name": "T", "sla_minutes": 5, "sla_reassign": True}, headers
    )
    for name in ("A", "B"):
        await post(client, "/v1/reps", {"team_id": team["id"], "name": name}, headers)
    await post(
        client,
        "/v1/routing/rules",
        {"name": "All", "position": 0, "team_id": team["id"], "when": []},
        headers,
    )
    (lead,) = await add_leads(db, tenant, 1)
    async with db.session(tenant.id) as session:
        (routed,) = await service.route_leads(session, tenant.id, [lead], now=utcnow())
    assert routed.decision.rep_id is not None

    async def sweep() -> service.SlaSweep:
        async with db.session(tenant.id) as session:
            return await service.enforce_sla(
                session, tenant.id, now=utcnow() + timedelta(minutes=6)
            )

    async with db.session(tenant.id) as routing:
        await service.lock_routing(routing, tenant.id)  # a chunk being routed
        sweeping = asyncio.create_task(sweep())
        await until_a_backend_waits_for_a_lock(urls)
        # While the sweep waits, the rep's row and the audit chain's head are free: it has
        # taken neither (NOWAIT raises if a lock is held).
        async with await psycopg.AsyncConnection.connect(urls.owner) as probe:
            await probe.execute(
                "SELECT 1 FROM reps WHERE id = %s FOR UPDATE NOWAIT", (routed.decision.rep_id,)
            )
            await probe.execute(
                "SELECT 1 FROM audit_heads WHERE tenant_id = %s FOR UPDATE NOWAIT", (tenant.id,)
            )
            await probe.rollback()
        assert not sweeping.done()
    done = await asyncio.wait_for(sweeping, 10)
    assert (done.breached, done.reassigned) == (1, 1)
