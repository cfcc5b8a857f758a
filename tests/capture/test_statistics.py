"""Jobs after intake refresh the planner's statistics of leads when intake has outgrown them,
whatever way the leads came in (here: the batch API)."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from leadrelay.capture import statistics
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.jobs import JobRuntime
from leadrelay.identity.models import Role
from tests.capture.test_intake_api import make_source
from tests.factories import TenantCtx, TenantFactory
from tests.support import owner_connection, run_jobs


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


def last_analyze(urls: DatabaseUrls) -> datetime | None:
    """A manual ANALYZE (what `app_analyze_leads()` runs) sets `last_analyze`; autovacuum
    sets `last_autoanalyze`."""
    with owner_connection(urls) as connection:
        row = connection.execute(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'leads'"
        ).fetchone()
    return row["last_analyze"] if row else None


async def test_the_jobs_after_a_batch_refresh_stale_statistics_and_leave_fresh_ones(
    monkeypatch: pytest.MonkeyPatch,
    client: httpx.AsyncClient,
    tenant: TenantCtx,
    urls: DatabaseUrls,
    db: Database,
    job_runtime: JobRuntime,
) -> None:
    with owner_connection(urls) as connection:
        connection.execute("ANALYZE leads")
    analysed = last_analyze(urls)
    async with db.session() as session:
        assert await statistics.refresh_if_stale(session) is False  # just analysed
    assert last_analyze(urls) == analysed

    await make_source(client, tenant)
    response = await client.post(
        "/v1/leads/batch",
        json={"source": "Website form", "leads": [{"email": f"s{i}@grow.io"} for i in range(3)]},
        headers=await tenant.headers(Role.REP),
    )
    assert response.status_code == 200, response.text
    # PostgreSQL publishes a backend's row counts a second or more after its commits; these
    # three changes are published at once, so the test need not wait for the API's.
    with owner_connection(urls) as connection:
        connection.execute("UPDATE leads SET updated_at = updated_at WHERE email LIKE '%@grow.io'")
        connection.execute("SELECT pg_stat_force_next_flush()")
    monkeypatch.setattr(statistics, "FLOOR", 2)
    monkeypatch.setattr(statistics, "GROWTH", 0.0)  # stale at three changes, whatever the size

    before = utcnow()
    await run_jobs()  # verification and fuzzy matching of the batch
    refreshed = last_analyze(urls)
    assert refreshed is not None
    assert refreshed >= before
