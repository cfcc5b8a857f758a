"""Verification after intake: a job per chunk stores e-mail and phone results on each lead,
judged against the tenant's thresholds. No DNS server is configured here, so deliverability is
"unknown" (never a failure) and no query leaves the machine."""

from __future__ import annotations

import httpx
from sqlalchemy import select, update

from leadrelay.capture.models import Lead
from leadrelay.core.db import Database
from leadrelay.core.jobs import JobRuntime
from leadrelay.identity.models import Role, Tenant
from tests.capture.test_intake_api import make_source
from tests.factories import TenantFactory
from tests.support import run_jobs


class TestVerificationJob:
    async def test_results_and_flags_follow_the_tenant_thresholds(
        self,
        client: httpx.AsyncClient,
        tenants: TenantFactory,
        db: Database,
        job_runtime: JobRuntime,
    ) -> None:
        tenant = await tenants.create()
        await make_source(client, tenant)
        async with db.session(tenant.id) as session:
            await session.execute(
                update(Tenant).values(settings={"verification_thresholds": {"email": 0.5}})
            )
        response = await client.post(
            "/v1/leads/batch",
            json={
                "source": "Website form",
                "leads": [
                    {"email": "ada@engines.io", "phone": "+44 7911 123456"},
                    {"email": "temp@mailinator.com"},
                ],
            },
            headers=await tenant.headers(Role.REP),
        )
        assert response.status_code == 200
        await run_jobs()
        async with db.session(tenant.id) as session:
            leads = {lead.email: lead for lead in await session.scalars(select(Lead))}
        ada, temp = leads["ada@engines.io"], leads["temp@mailinator.com"]
        assert ada.verification["email"]["status"] == "unknown"
        assert ada.verification["email"]["confidence"] == 0.5
        assert ada.verification["phone"]["status"] == "valid"
        assert {"email_verified", "phone_verified"} <= set(ada.flags)  # email threshold 0.5
        assert temp.verification["email"]["status"] == "risky"
        assert "email_verified" not in temp.flags
