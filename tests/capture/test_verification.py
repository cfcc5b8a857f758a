"""Verification after intake: a job per chunk stores e-mail and phone results on each lead,
judged against the tenant's thresholds. No DNS server is configured here, so deliverability is
"unknown" (never a failure) and no query leaves the machine."""

from __future__ import annotations

from datetime import timedelta

import httpx
from pydantic import SecretStr
from sqlalchemy import select, update

from leadrelay.capture.models import Lead
from leadrelay.capture.verification import verifiers_for
from leadrelay.capture.verification_store import DatabaseVerificationCache, VerificationRecord
from leadrelay.capture.verifiers.kickbox import KickboxEmailVerifier
from leadrelay.capture.verifiers.twilio_lookup import TwilioLookupVerifier
from leadrelay.capture.verify import VerificationKind, VerificationStatus, verify_cached
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.jobs import JobRuntime
from leadrelay.core.settings import Settings
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


class TestSharedCache:
    async def test_results_are_shared_through_the_database_as_keyed_hashes(
        self, db: Database, settings: Settings
    ) -> None:
        now = utcnow()
        first = verifiers_for(settings, db)
        result = await verify_cached(first.phone, first.cache, "+447911123456", now=now)
        assert result.status == VerificationStatus.VALID
        assert isinstance(first.cache, DatabaseVerificationCache)
        await first.cache.flush()
        async with db.session() as session:
            rows = list(await session.scalars(select(VerificationRecord)))
        stored = [row for row in rows if row.kind == "phone"]
        assert stored
        assert all("7911" not in row.value_hash for row in stored)  # never the number itself

        second = verifiers_for(settings, db)  # another worker: empty memory
        assert isinstance(second.cache, DatabaseVerificationCache)
        assert await second.cache.get(VerificationKind.PHONE, "+447911123456", now=now) is None
        await second.cache.prefetch(VerificationKind.PHONE, ["+447911123456"], now=now)
        cached = await second.cache.get(VerificationKind.PHONE, "+447911123456", now=now)
        assert cached is not None
        assert (cached.status, cached.provider) == (result.status, result.provider)
        stale = await second.cache.get(
            VerificationKind.PHONE, "+447911123456", now=now + timedelta(days=31)
        )
        assert stale is None


class TestVerifierChoice:
    def test_offline_by_default_and_paid_adapters_when_configured(self, settings: Settings) -> None:
        offline = verifiers_for(settings)
        assert (offline.email.provider, offline.phone.provider) == ("offline", "offline")
        paid = verifiers_for(
            settings.model_copy(
                update={
                    "kickbox_api_key": SecretStr("test_kickbox"),
                    "twilio_account_sid": "ACxxxxxxxx",
                    "twilio_auth_token": SecretStr("token"),
                }
            )
        )
        assert isinstance(paid.email, KickboxEmailVerifier)
        assert isinstance(paid.phone, TwilioLookupVerifier)
