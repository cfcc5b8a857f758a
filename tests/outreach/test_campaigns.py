"""Campaigns on a real database: audience joins, each step drafted for review, approved drafts
through the policy guard, reports per run, stop on opt-out, one member's trouble contained, a
critical error halting the campaign, the daily schedule in the campaign's time zone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from leadrelay.capture.provider_models import LeadMessage, MessageChannel, MessageDirection
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.jobs import JobRuntime
from leadrelay.identity.models import Role
from leadrelay.outreach.campaigns import _due, report_text
from leadrelay.outreach.models import Campaign, CampaignRun, CampaignStatus
from tests.capture.test_intake_api import make_source
from tests.factories import TenantCtx, TenantFactory
from tests.outreach.test_send import SENDER
from tests.support import run_jobs

STEPS = [
    {"channel": "email", "cta": "book_call"},
    {"channel": "email", "delay_days": 3, "cta": "reply", "tone": "direct"},
]


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


async def seed(
    client: httpx.AsyncClient, tenant: TenantCtx, leads: list[dict[str, Any]], *, sender: bool
) -> list[str]:
    admin = await tenant.headers(Role.ADMIN)
    if sender:
        response = await client.patch("/v1/drafting/sender", json=SENDER, headers=admin)
        assert response.status_code == 200, response.text
    await make_source(
        client,
        tenant,
        "Form",
        legal_basis="legitimate_interest",
        assessment="Trade-show visitors asked to be contacted at work.",
    )
    ids = []
    for lead in leads:
        created = await client.post("/v1/leads", json={"source": "Form", **lead}, headers=admin)
        assert created.status_code == 202, created.text
        ids.append(created.json()["lead_id"])
    return ids


async def campaign(client: httpx.AsyncClient, tenant: TenantCtx, **extra: Any) -> str:
    rep = await tenant.headers(Role.REP)
    created = await client.post(
        "/v1/campaigns", json={"name": "Spring", "steps": STEPS, **extra}, headers=rep
    )
    assert created.status_code == 201, created.text
    campaign_id: str = created.json()["campaign"]["id"]
    activated = await client.post(f"/v1/campaigns/{campaign_id}/activate", headers=rep)
    assert activated.status_code == 200, activated.text
    return campaign_id


async def run(client: httpx.AsyncClient, tenant: TenantCtx, campaign_id: str) -> dict[str, Any]:
    rep = await tenant.headers(Role.REP)
    response = await client.post(f"/v1/campaigns/{campaign_id}/run", headers=rep)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()["report"]
    return report


class TestCampaignRuns:
    async def test_steps_are_drafted_for_review_then_sent_through_the_guard(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        leads = await seed(
            client,
            tenant,
            [
                {"email": "ada@engines.example", "full_name": "Ada Lovelace", "company": "AE"},
                {"email": "grace@navy.example", "full_name": "Grace Hopper", "company": "Navy"},
                {"email": "gone@acme.example", "full_name": "Gone Away", "company": "Acme"},
                {"phone": "+44 20 7946 0958", "full_name": "Phone Only", "company": "Tel"},
            ],
            sender=True,
        )
        rep = await tenant.headers(Role.REP)
        await client.post(
            "/v1/suppressions", json={"kind": "email", "address": "gone@acme.example"}, headers=rep
        )
        campaign_id = await campaign(client, tenant)

        first = await run(client, tenant, campaign_id)
        assert first["joined"] == 4
        assert first["drafted"] == 4
        assert first["awaiting_approval"] == 4  # nothing leaves before a human approves

        reviewer = await tenant.headers(Role.REVIEWER)
        bulk = await client.post("/v1/approvals/bulk", json={"channel": "email"}, headers=reviewer)
        assert len(bulk.json()["approved"]) == 4, bulk.text

        second = await run(client, tenant, campaign_id)
        assert second["queued"] == 2
        assert second["blocked:suppression"] == 1
        assert second["stopped:blocked by suppression"] == 1
        assert second["failed"] == 1  # the lead without an address; the others went on
        assert second["failed:not-sendable"] == 1

        detail = (await client.get(f"/v1/campaigns/{campaign_id}", headers=rep)).json()
        assert detail["members"] == {"active": 3, "stopped": 1}
        assert [r["trigger"] for r in detail["runs"]] == ["manual", "manual"]
        members = (
            await client.get(
                f"/v1/campaigns/{campaign_id}/members", params={"state": "active"}, headers=rep
            )
        ).json()
        moved = [m for m in members if m["step"] == 1]
        assert len(moved) == 2  # waiting three days for the next step
        messages = (await client.get("/v1/messages", headers=rep)).json()
        assert {m["kind"] for m in messages} == {"campaign"}
        assert {m["lead_id"] for m in messages if m["status"] == "queued"} == set(leads[:2])

        third = await run(client, tenant, campaign_id)
        assert third["due"] == 1  # only the failed member is tried again; the rest wait

        paused = await client.post(f"/v1/campaigns/{campaign_id}/pause", headers=rep)
        assert paused.json()["campaign"]["status"] == "paused"
        refused = await client.post(f"/v1/campaigns/{campaign_id}/run", headers=rep)
        assert refused.status_code == 409
        resumed = await client.post(f"/v1/campaigns/{campaign_id}/resume", headers=rep)
        assert resumed.json()["campaign"]["status"] == "active"

    async def test_a_missing_sender_halts_the_campaign(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await seed(client, tenant, [{"email": "a@acme.example", "company": "Acme"}], sender=False)
        campaign_id = await campaign(client, tenant)
        report = await run(client, tenant, campaign_id)
        assert report["joined"] == 1
        rep = await tenant.headers(Role.REP)
        detail = (await client.get(f"/v1/campaigns/{campaign_id}", headers=rep)).json()
        assert detail["campaign"]["status"] == "halted"
        assert "sender" in detail["campaign"]["halted_reason"]
        assert detail["runs"][0]["error"] == detail["campaign"]["halted_reason"]
        admin = await tenant.headers(Role.ADMIN)
        events = await client.get("/v1/audit", params={"action": "campaign.halted"}, headers=admin)
        assert len(events.json()) == 1

    async def test_bad_definitions_are_field_errors(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        rep = await tenant.headers(Role.REP)
        bad = await client.post(
            "/v1/campaigns",
            json={
                "name": "Bad",
                "steps": [{"channel": "email", "cta": "bribe"}],
                "timezone": "Mars/Olympus",
            },
            headers=rep,
        )
        assert bad.status_code == 422
        fields = {e["field"] for e in bad.json()["errors"]}
        assert fields == {"steps[0].cta", "timezone"}
        none = await client.post("/v1/campaigns", json={"name": "x", "steps": []}, headers=rep)
        assert none.status_code == 422


def test_the_daily_run_is_due_after_the_local_send_time_once_a_day() -> None:
    tokyo = Campaign(send_time="10:00", timezone="Asia/Tokyo", status=CampaignStatus.ACTIVE)
    before = datetime(2026, 12, 1, 0, 59, tzinfo=UTC)  # 09:59 in Tokyo
    after = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
    assert not _due(tokyo, before)
    assert _due(tokyo, after)
    tokyo.last_run_on = "2026-12-01"
    assert not _due(tokyo, after)
    assert _due(tokyo, datetime(2026, 12, 2, 1, 0, tzinfo=UTC))


class TestRunReport:
    async def test_each_run_is_emailed_to_the_operator(
        self, client: httpx.AsyncClient, tenant: TenantCtx, job_runtime: JobRuntime
    ) -> None:
        await seed(client, tenant, [{"email": "a@acme.example", "company": "Acme"}], sender=True)
        rep = await tenant.headers(Role.REP)
        bad = await client.post(
            "/v1/campaigns",
            json={"name": "Ops", "steps": STEPS, "report_to": "not an address"},
            headers=rep,
        )
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "report_to"
        campaign_id = await campaign(client, tenant, report_to="Ops@Relay.example")
        await run(client, tenant, campaign_id)
        await run_jobs()
        detail = (await client.get(f"/v1/campaigns/{campaign_id}", headers=rep)).json()
        assert detail["campaign"]["report_to"] == "Ops@relay.example"
        email = detail["runs"][0]["report_email"]
        assert email["to"] == "Ops@relay.example"
        assert email["provider"] == "dryrun"  # the tenant is in dry-run: recorded, not sent
        assert email["status"] == "sent"


def test_the_report_reads_like_a_report() -> None:
    spring = Campaign(name="Spring", status=CampaignStatus.ACTIVE)
    run_row = CampaignRun(
        trigger="schedule",
        started_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        report={"selected": 5, "queued": 3, "blocked:suppression": 1, "stopped:opted out": 1},
        error=None,
    )
    subject, body = report_text(spring, run_row)
    assert subject == "Spring: run report (3 queued)"
    assert "Blocked: suppression 1" in body
    assert "Stopped: opted out 1" in body


async def test_a_step_after_a_reply_does_not_run(
    client: httpx.AsyncClient, tenant: TenantCtx, db: Database
) -> None:
    """ "Call 3 days later if no reply": a lead that wrote back since joining leaves at the
    next step; an auto-reply is not a reply."""
    steps = [{"channel": "email"}, {"channel": "email", "delay_days": 0}]  # if no reply
    replied, away = await seed(
        client,
        tenant,
        [
            {"email": "ada@engines.example", "full_name": "Ada Lovelace", "company": "AE"},
            {"email": "grace@navy.example", "full_name": "Grace Hopper", "company": "Navy"},
        ],
        sender=True,
    )
    campaign_id = await campaign(client, tenant, steps=steps)
    assert (await run(client, tenant, campaign_id))["drafted"] == 2
    reviewer = await tenant.headers(Role.REVIEWER)
    await client.post("/v1/approvals/bulk", json={"channel": "email"}, headers=reviewer)
    assert (await run(client, tenant, campaign_id))["queued"] == 2  # the first step for both

    async with db.session(tenant.id) as session:
        for lead_id, classification in ((replied, "reply"), (away, "auto_reply")):
            session.add(
                LeadMessage(
                    tenant_id=tenant.id,
                    lead_id=uuid.UUID(lead_id),
                    channel=MessageChannel.EMAIL,
                    direction=MessageDirection.INBOUND,
                    provider_message_id=f"<{uuid.uuid4()}@mail.example>",
                    message_type="text",
                    body="Thanks, let's talk",
                    received_at=utcnow(),
                    raw={},
                    classification=classification,
                )
            )
    second = await run(client, tenant, campaign_id)
    assert second["stopped:replied"] == 1
    assert second["drafted"] == 1  # the auto-reply did not count: its lead goes on
    rep = await tenant.headers(Role.REP)
    members = {
        m["lead_id"]: m
        for m in (await client.get(f"/v1/campaigns/{campaign_id}/members", headers=rep)).json()
    }
    assert members[replied]["state"] == "stopped"
    assert members[away]["state"] == "active"

    invalid = await client.post(
        "/v1/campaigns",
        json={"name": "Bad", "steps": [{"channel": "email", "if_no_reply": "maybe"}]},
        headers=rep,
    )
    assert invalid.status_code == 422
    assert [e["field"] for e in invalid.json()["errors"]] == ["steps.0.if_no_reply"]
