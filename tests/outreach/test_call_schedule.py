"""A campaign's calls on a real database: a run schedules them across the recipients' call
window instead of handing them over at once, reports how many and when, and each one meets the
whole policy guard again when its time comes (a number suppressed meanwhile is not called)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.jobs import JobRuntime
from leadrelay.core.security import secret_keys
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role
from leadrelay.identity.service import system_principal
from leadrelay.outreach import campaigns, service
from leadrelay.outreach.models import (
    Campaign,
    CampaignMember,
    CampaignRun,
    Message,
    MessageStatus,
)
from tests.capture.test_intake_api import make_source
from tests.factories import TenantCtx, TenantFactory
from tests.outreach.test_send import SENDER
from tests.support import run_jobs

PARIS = ZoneInfo("Europe/Paris")
# Paris numbers: the recipients' clock is Paris's.
CALLERS = [
    {"phone": "+33 1 42 68 53 00", "full_name": "Ada Lovelace", "company": "Engines"},
    {"phone": "+33 1 40 20 50 50", "full_name": "Grace Hopper", "company": "Navy"},
    {"phone": "+33 1 53 43 40 00", "full_name": "Alan Turing", "company": "Bletchley"},
    {"phone": "+33 1 44 78 12 33", "full_name": "Edsger Dijkstra", "company": "Eindhoven"},
]
CALL_STEPS = [{"channel": "voice", "cta": "book_call"}]


def next_in_paris(now: datetime, weekday: int, hour: int) -> datetime:
    """The first time the clock in Paris shows `hour`:00 on `weekday` (Monday = 0) after `now`:
    within the week approvals last."""
    local = now.astimezone(PARIS)
    day = local.date() + timedelta(days=(weekday - local.weekday()) % 7)
    found = datetime.combine(day, time(hour, 0), tzinfo=PARIS)
    return found if found > now else found + timedelta(days=7)


async def seed_callers(client: httpx.AsyncClient, tenant: TenantCtx) -> list[str]:
    """A sender, a contract source (it covers calls) and the callers' leads."""
    admin = await tenant.headers(Role.ADMIN)
    response = await client.patch("/v1/drafting/sender", json=SENDER, headers=admin)
    assert response.status_code == 200, response.text
    await make_source(client, tenant, "Customers", legal_basis="contract")
    ids = []
    for lead in CALLERS:
        created = await client.post(
            "/v1/leads", json={"source": "Customers", **lead}, headers=admin
        )
        assert created.status_code == 202, created.text
        ids.append(created.json()["lead_id"])
    return ids


async def approved_call_campaign(client: httpx.AsyncClient, tenant: TenantCtx) -> str:
    """An active campaign with one call step, run once: every caller drafted and approved."""
    rep = await tenant.headers(Role.REP)
    created = await client.post(
        "/v1/campaigns",
        json={"name": "Call round", "steps": CALL_STEPS, "timezone": "Europe/Paris"},
        headers=rep,
    )
    assert created.status_code == 201, created.text
    campaign_id: str = created.json()["campaign"]["id"]
    activated = await client.post(f"/v1/campaigns/{campaign_id}/activate", headers=rep)
    assert activated.status_code == 200, activated.text
    drafted = await client.post(f"/v1/campaigns/{campaign_id}/run", headers=rep)
    assert drafted.json()["report"]["awaiting_approval"] == len(CALLERS), drafted.text
    reviewer = await tenant.headers(Role.REVIEWER)
    bulk = await client.post("/v1/approvals/bulk", json={"channel": "voice"}, headers=reviewer)
    assert len(bulk.json()["approved"]) == len(CALLERS), bulk.text
    return campaign_id


async def run_at(
    db: Database, tenant: TenantCtx, settings: Settings, campaign_id: str, now: datetime
) -> CampaignRun:
    async with db.session(tenant.id) as session:
        return await campaigns.run(
            session,
            system_principal(tenant.id),
            uuid.UUID(campaign_id),
            settings=settings,
            keys=secret_keys(settings),
            drafter=None,
            trigger="manual",
            now=now,
        )


async def release_at(db: Database, tenant: TenantCtx, settings: Settings, now: datetime) -> int:
    async with db.session(tenant.id) as session:
        actor = system_principal(tenant.id)
        keys = secret_keys(settings)
        return await service.release_deferred(session, actor, settings=settings, keys=keys, now=now)


async def calls_in_member_order(db: Database, tenant: TenantCtx, campaign_id: str) -> list[Message]:
    """The campaign's messages, in the order its members were queued (joined together, so by
    id)."""
    async with db.session(tenant.id) as session:
        found = await session.execute(
            select(Message)
            .join(CampaignMember, CampaignMember.last_message_id == Message.id)
            .where(CampaignMember.campaign_id == uuid.UUID(campaign_id))
            .order_by(CampaignMember.due_at, CampaignMember.id)
            .execution_options(populate_existing=True)
        )
        return list(found.scalars())


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


class TestCallSchedule:
    async def test_a_run_spreads_its_calls_and_each_is_guarded_again_when_due(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        settings: Settings,
        job_runtime: JobRuntime,
    ) -> None:
        await seed_callers(client, tenant)
        campaign_id = await approved_call_campaign(client, tenant)
        monday = next_in_paris(utcnow(), 0, 9)  # before the 11:00–17:00 window opens

        run = await run_at(db, tenant, settings, campaign_id, monday)
        slots = [monday.replace(hour=11), monday.replace(hour=12, minute=30)]
        slots += [monday.replace(hour=14), monday.replace(hour=15, minute=30)]
        assert run.report["scheduled"] == len(CALLERS)
        assert "queued" not in run.report  # nothing handed over at the run's moment
        assert run.report[campaigns.SCHEDULED_FIRST] == slots[0].astimezone(UTC).isoformat()
        assert run.report[campaigns.SCHEDULED_LAST] == slots[-1].astimezone(UTC).isoformat()
        _, body = campaigns.report_text(await get_campaign(db, tenant, campaign_id), run)
        day = f"{monday:%a} {monday.day} {monday:%b}"
        assert f"Calls scheduled across the call window: 4, {day} 11:00 – 15:30 (Europe/Paris)" in (
            body
        )

        # Each call waits for its own time, evenly spaced in queue order; none counted yet.
        calls = await calls_in_member_order(db, tenant, campaign_id)
        assert [c.retry_at for c in calls] == slots
        for message in calls:
            assert message.status == MessageStatus.DEFERRED
            assert message.blocked_by == "schedule"
            assert message.counted_at is None
            assert message.policy_trace[-1]["check"] == "schedule"
        async with db.session(tenant.id) as session:
            waiting = await campaigns.scheduled_calls(session, uuid.UUID(campaign_id))
        assert waiting == campaigns.ScheduledCalls(4, slots[0], slots[-1])

        # At 13:00 the third number asks not to be called.
        rep = await tenant.headers(Role.REP)
        suppressed = await client.post(
            "/v1/suppressions", json={"kind": "phone", "address": calls[2].recipient}, headers=rep
        )
        assert suppressed.status_code == 201, suppressed.text

        assert await release_at(db, tenant, settings, slots[0] - timedelta(seconds=1)) == 0
        released = [await release_at(db, tenant, settings, slot) for slot in slots]
        assert released == [1, 1, 1, 1]
        calls = await calls_in_member_order(db, tenant, campaign_id)
        assert [c.status for c in calls] == [
            MessageStatus.QUEUED,
            MessageStatus.QUEUED,
            MessageStatus.BLOCKED,
            MessageStatus.QUEUED,
        ]
        assert calls[2].blocked_by == "suppression"
        for message, slot in zip(calls, slots, strict=True):
            trace = {step["check"]: step for step in message.policy_trace}
            if message.status == MessageStatus.QUEUED:
                assert message.counted_at == slot  # counted when its time came
                assert trace["schedule"]["outcome"] == "pass"
                assert trace["local_time"]["outcome"] == "pass"
                assert f"Monday {slot.astimezone(PARIS):%H:%M}" in trace["local_time"]["detail"]
        async with db.session(tenant.id) as session:
            assert await campaigns.scheduled_calls(session, uuid.UUID(campaign_id)) is None

        await run_jobs()  # the dry-run channel records the three calls
        calls = await calls_in_member_order(db, tenant, campaign_id)
        assert [c.status for c in calls] == [
            MessageStatus.SENT,
            MessageStatus.SENT,
            MessageStatus.BLOCKED,
            MessageStatus.SENT,
        ]

    async def test_calls_after_the_window_wait_for_the_next_weekday(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        await seed_callers(client, tenant)
        campaign_id = await approved_call_campaign(client, tenant)
        friday_evening = next_in_paris(utcnow(), 4, 18)
        run = await run_at(db, tenant, settings, campaign_id, friday_evening)
        assert run.report["scheduled"] == len(CALLERS)
        first = datetime.fromisoformat(run.report[campaigns.SCHEDULED_FIRST]).astimezone(PARIS)
        last = datetime.fromisoformat(run.report[campaigns.SCHEDULED_LAST]).astimezone(PARIS)
        monday = friday_evening.date() + timedelta(days=3)  # the weekend skipped
        assert (first.date(), first.time()) == (monday, time(11, 0))
        assert (last.date(), last.time()) == (monday, time(15, 30))

    async def test_a_reply_withdraws_the_leads_call_still_waiting(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        """The member moved past its call step when the call was scheduled: stopping it alone
        would not stop the call, so the reply withdraws the call too."""
        await seed_callers(client, tenant)
        campaign_id = await approved_call_campaign(client, tenant)
        monday = next_in_paris(utcnow(), 0, 9)
        await run_at(db, tenant, settings, campaign_id, monday)
        calls = await calls_in_member_order(db, tenant, campaign_id)
        async with db.session(tenant.id) as session:
            await campaigns.stop_for_lead(session, calls[1].lead_id, "replied", now=monday)

        assert await release_at(db, tenant, settings, monday.replace(hour=16)) == 3
        calls = await calls_in_member_order(db, tenant, campaign_id)
        assert [c.status for c in calls] == [
            MessageStatus.QUEUED,
            MessageStatus.BLOCKED,
            MessageStatus.QUEUED,
            MessageStatus.QUEUED,
        ]
        withdrawn = calls[1]
        assert (withdrawn.blocked_by, withdrawn.retry_at) == ("schedule", None)
        assert withdrawn.block_reason == (
            "withdrawn before its time: the lead left the campaign (replied)"
        )


async def get_campaign(db: Database, tenant: TenantCtx, campaign_id: str) -> Campaign:
    async with db.session(tenant.id) as session:
        return await campaigns.get(session, uuid.UUID(campaign_id))
