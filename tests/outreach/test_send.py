"""Sending on real parts: an approved draft through the policy guard to the dry-run channel (the
default) or to a real SMTP relay on loopback; caps and throttles held by PostgreSQL under
concurrent senders; idempotency; unsubscribe links; failures that never send twice."""

from __future__ import annotations

import asyncio
import email
import json
import sys
import uuid
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select, update

from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.jobs import JobRuntime
from leadrelay.core.security import secret_keys
from leadrelay.core.settings import Settings
from leadrelay.drafting.evidence import Channel
from leadrelay.identity.models import Role, Tenant
from leadrelay.identity.service import system_principal
from leadrelay.outreach import service
from leadrelay.outreach.models import Message, MessageKind, MessageStatus
from tests.capture.test_intake_api import make_source
from tests.factories import TenantCtx, TenantFactory
from tests.outreach.test_email_message import dns_serving, verify
from tests.outreach.test_smtp import Relay, serve
from tests.support import run_jobs

SENDER = {
    "name": "Sam Patel",
    "email": "sam@relay.example",
    "company": "LeadRelay Demo Ltd",
    "postal_address": "1 Market Street, Springfield",
}


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


async def setup(
    client: httpx.AsyncClient, tenant: TenantCtx, *, basis: str = "legitimate_interest"
) -> None:
    admin = await tenant.headers(Role.ADMIN)
    response = await client.patch("/v1/drafting/sender", json=SENDER, headers=admin)
    assert response.status_code == 200, response.text
    extra: dict[str, Any] = {"legal_basis": basis}
    if basis == "legitimate_interest":
        extra["assessment"] = "Trade-show visitors asked to be contacted at work."
    await make_source(client, tenant, "Form", **extra)


async def approved_draft(
    client: httpx.AsyncClient, tenant: TenantCtx, email_address: str, *, approve: bool = True
) -> str:
    admin = await tenant.headers(Role.ADMIN)
    lead = await client.post(
        "/v1/leads",
        json={
            "source": "Form",
            "email": email_address,
            "full_name": "Dana Scully",
            "company": "Northwind Traders",
        },
        headers=admin,
    )
    assert lead.status_code in (200, 202), lead.text
    rep = await tenant.headers(Role.REP)
    draft = await client.post(
        "/v1/drafts",
        json={"lead_id": lead.json()["lead_id"], "channel": "email", "submit": True},
        headers=rep,
    )
    assert draft.status_code == 201, draft.text
    draft_id: str = draft.json()["draft"]["id"]
    if approve:
        reviewer = await tenant.headers(Role.REVIEWER)
        decision = await client.post(
            f"/v1/approvals/{draft_id}/approve", json={"revision": 1}, headers=reviewer
        )
        assert decision.status_code == 200, decision.text
    return draft_id


async def send(
    client: httpx.AsyncClient, tenant: TenantCtx, draft_id: str, **headers: str
) -> httpx.Response:
    rep = await tenant.headers(Role.REP)
    return await client.post(
        "/v1/messages", json={"draft_id": draft_id}, headers={**rep, **headers}
    )


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


class TestDryRun:
    async def test_an_approved_draft_is_recorded_not_sent(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        job_runtime: JobRuntime,
    ) -> None:
        await setup(client, tenant)
        draft_id = await approved_draft(client, tenant, "dana@northwind.example")
        queued = await send(client, tenant, draft_id)
        assert queued.status_code == 202, queued.text
        message = queued.json()
        assert message["status"] == "queued"
        assert message["dry_run"] is True
        assert message["provider"] == "dryrun"
        checks = [step["check"] for step in message["policy_trace"]]
        assert checks == [
            "consent",
            "suppression",
            "dnc",
            "approval",
            "daily_cap",
            "domain_throttle",
            "country_call_cap",
            "cooldown",
            "schedule",
            "local_time",
        ]
        assert "dana@" not in str(message["policy_trace"])  # no address in the trace

        again = await send(client, tenant, draft_id)
        assert again.status_code == 200
        assert again.json()["id"] == message["id"]  # one message per approved revision

        await run_jobs()
        rep = await tenant.headers(Role.REP)
        sent = (await client.get(f"/v1/messages/{message['id']}", headers=rep)).json()
        assert sent["status"] == "sent"
        assert sent["provider_message_id"] == f"dryrun-{message['id']}"
        outbox = await client.get("/v1/messages", params={"dry_run": "true"}, headers=rep)
        assert [m["id"] for m in outbox.json()] == [message["id"]]
        draft = await client.get(f"/v1/drafts/{draft_id}", headers=rep)
        assert draft.json()["draft"]["status"] == "sent"

        # A second send of a sent draft finds the same message: nothing leaves twice.
        assert (await send(client, tenant, draft_id)).json()["status"] == "sent"

    async def test_the_same_send_twice_at_once_makes_one_message(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await setup(client, tenant)
        draft_id = await approved_draft(client, tenant, "twice@acme.example")
        first, second = await asyncio.gather(
            send(client, tenant, draft_id), send(client, tenant, draft_id)
        )
        assert sorted([first.status_code, second.status_code]) == [200, 202]
        assert first.json()["id"] == second.json()["id"]

    async def test_every_way_around_the_guard_is_blocked(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await setup(client, tenant)
        unapproved = await approved_draft(client, tenant, "a@acme.example", approve=False)
        blocked = (await send(client, tenant, unapproved)).json()
        assert blocked["status"] == "blocked"
        assert blocked["blocked_by"] == "approval"
        assert "approval" in blocked["block_reason"]
        reviewer = await tenant.headers(Role.REVIEWER)
        await client.post(f"/v1/approvals/{unapproved}/approve", json={}, headers=reviewer)
        again = await send(client, tenant, unapproved)
        assert again.status_code == 200
        assert again.json()["id"] == blocked["id"]  # the same message, decided anew
        assert again.json()["status"] == "queued"

        opted_out = await approved_draft(client, tenant, "b@acme.example")
        rep = await tenant.headers(Role.REP)
        await client.post(
            "/v1/suppressions", json={"kind": "email", "address": "B@acme.example"}, headers=rep
        )
        suppressed = (await send(client, tenant, opted_out)).json()
        assert suppressed["status"] == "blocked"
        assert suppressed["blocked_by"] == "suppression"
        assert suppressed["retry_at"] is None

        forbidden = await client.post(
            "/v1/messages",
            json={"draft_id": opted_out},
            headers=await tenant.headers(Role.REVIEWER),
        )
        assert forbidden.status_code == 403

    async def test_consent_basis_needs_consent_on_the_channel(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await setup(client, tenant, basis="consent")
        draft_id = await approved_draft(client, tenant, "c@acme.example")
        blocked = (await send(client, tenant, draft_id)).json()
        assert blocked["blocked_by"] == "consent"


class TestLimits:
    async def test_caps_and_domain_throttle_hold_under_concurrent_senders(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await setup(client, tenant)
        admin = await tenant.headers(Role.ADMIN)
        lowered = await client.patch(
            "/v1/outreach/policy", json={"daily_caps": {"email": 7}}, headers=admin
        )
        assert lowered.status_code == 200, lowered.text  # lowering needs no confirmation
        drafts = [
            await approved_draft(client, tenant, f"p{n}@{'same' if n < 8 else 'other'}.example")
            for n in range(12)
        ]
        answers = await asyncio.gather(*(send(client, tenant, d) for d in drafts))
        messages = [a.json() for a in answers]
        queued = [m for m in messages if m["status"] == "queued"]
        deferred = [m for m in messages if m["status"] == "deferred"]
        assert len(queued) == 7  # the daily cap, never more
        same_domain = [m for m in queued if m["recipient_domain"] == "same.example"]
        assert len(same_domain) <= 5  # five an hour to one domain
        assert len(queued) + len(deferred) == 12
        assert {m["blocked_by"] for m in deferred} <= {"daily_cap", "domain_throttle"}
        assert all(m["retry_at"] for m in deferred)

    async def test_leaving_dry_run_takes_the_typed_confirmation(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        admin = await tenant.headers(Role.ADMIN)
        refused = await client.patch("/v1/outreach/policy", json={"dry_run": False}, headers=admin)
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "confirmation"
        raised = await client.patch(
            "/v1/outreach/policy", json={"daily_caps": {"email": 5000}}, headers=admin
        )
        assert raised.status_code == 422
        live = await client.patch(
            "/v1/outreach/policy",
            json={"dry_run": False, "confirmation": service.LIVE_CONFIRMATION},
            headers=admin,
        )
        assert live.status_code == 200, live.text
        assert live.json()["tenant_dry_run"] is False
        # The process setting (LEADRELAY_DRY_RUN, true here) still keeps everything in.
        assert live.json()["dry_run"] is True
        assert live.json()["forced_by_settings"] is True
        manager = await client.patch(
            "/v1/outreach/policy",
            json={"dry_run": True},
            headers=await tenant.headers(Role.MANAGER),
        )
        assert manager.status_code == 403
        audit = await client.get(
            "/v1/audit", params={"action": "outreach.policy_changed"}, headers=admin
        )
        assert len(audit.json()) == 1


class TestUnsubscribe:
    async def test_the_link_and_one_click_record_the_opt_out_at_once(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        settings: Settings,
        job_runtime: JobRuntime,
    ) -> None:
        await setup(client, tenant)
        draft_id = await approved_draft(client, tenant, "u@acme.example")
        message = (await send(client, tenant, draft_id)).json()
        await run_jobs()
        row = Message(id=uuid.UUID(message["id"]), tenant_id=tenant.id)
        url = service.unsubscribe_url(settings, secret_keys(settings), row)
        path = httpx.URL(url).path
        page = await client.get(path)
        assert page.status_code == 200
        assert "unsubscribed" in page.text
        rep = await tenant.headers(Role.REP)
        check = await client.get(
            "/v1/suppressions/check",
            params={"kind": "email", "address": "u@acme.example"},
            headers=rep,
        )
        assert check.json()["reasons"] == ["email_opted_out"]
        one_click = await client.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert one_click.status_code == 200
        consents = await client.get(f"/v1/leads/{message['lead_id']}/consents", headers=rep)
        assert consents.json()[0]["state"] == "withdrawn"
        assert consents.json()[0]["method"] == "unsubscribe link"
        tampered = await client.post(path[:-2] + ("AA" if not path.endswith("AA") else "BB"))
        assert tampered.status_code == 400


class TestSmtpDelivery:
    """The delivery steps the job runs, against a real relay, with live settings."""

    async def live(
        self, client: httpx.AsyncClient, tenant: TenantCtx, settings: Settings, port: int
    ) -> Settings:
        await setup(client, tenant)
        admin = await tenant.headers(Role.ADMIN)
        await client.patch(
            "/v1/outreach/policy",
            json={"dry_run": False, "confirmation": service.LIVE_CONFIRMATION},
            headers=admin,
        )
        return settings.model_copy(
            update={"dry_run": False, "smtp_host": "127.0.0.1", "smtp_port": port,
                    "smtp_security": "none", "smtp_timeout_seconds": 5.0}
        )  # fmt: skip

    async def queue(
        self, db: Database, tenant: TenantCtx, live: Settings, draft_id: str
    ) -> Message:
        async with db.session(tenant.id) as session:
            message, _ = await service.queue_draft(
                session,
                system_principal(tenant.id),
                uuid.UUID(draft_id),
                settings=live,
                keys=secret_keys(live),
                kind=MessageKind.ONE_TO_ONE,
                idempotency_key=None,
                now=utcnow(),
            )
            return message

    async def deliver(
        self, db: Database, tenant: TenantCtx, live: Settings, message_id: uuid.UUID
    ) -> tuple[Message | None, float | None]:
        keys = secret_keys(live)
        async with db.session(tenant.id) as session:
            handover = await service.begin_delivery(
                session, message_id, settings=live, keys=keys, now=utcnow()
            )
        if handover is None:
            return None, None
        result = await service.hand_over(handover, live)
        async with db.session(tenant.id) as session:
            return await service.finish_delivery(
                session, message_id, result, settings=live, keys=keys, now=utcnow()
            )

    async def test_sent_over_smtp_with_one_click_unsubscribe(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        relay = Relay()
        with serve(relay) as port:
            live = await self.live(client, tenant, settings, port)
            draft_id = await approved_draft(client, tenant, "dana@northwind.example")
            message = await self.queue(db, tenant, live, draft_id)
            assert message.provider == "smtp"
            assert message.dry_run is False
            sent, retry = await self.deliver(db, tenant, live, message.id)
        assert sent is not None
        assert sent.status == MessageStatus.SENT
        assert retry is None
        [delivery] = relay.deliveries
        assert delivery.rcpt_tos == ["dana@northwind.example"]
        assert delivery.mail_from == "sam@relay.example"
        received = parse(delivery.content)
        assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "/unsubscribe/" in received["List-Unsubscribe"]
        body = received.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert "{{unsubscribe_url}}" not in text
        assert "/unsubscribe/" in text
        assert "Hi Dana," in text

    async def test_dkim_signs_what_leaves_when_a_key_is_configured(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        settings: Settings,
        tmp_path: Path,
    ) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = tmp_path / "dkim.pem"
        pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        relay = Relay()
        with serve(relay) as port:
            live = await self.live(client, tenant, settings, port)
            live = live.model_copy(
                update={
                    "dkim_domain": "navylabs.example",
                    "dkim_selector": "lr2025",
                    "dkim_private_key_path": str(pem),
                }
            )
            message = await self.queue(
                db, tenant, live, await approved_draft(client, tenant, "dkim@acme.example")
            )
            sent, _ = await self.deliver(db, tenant, live, message.id)
        assert sent is not None
        assert sent.status == MessageStatus.SENT
        [delivery] = relay.deliveries
        assert verify(delivery.content, dns_serving(key))

    async def test_a_hard_bounce_suppresses_and_a_busy_relay_retries(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        relay = Relay(
            rcpt_replies={
                "gone@acme.example": "550 5.1.1 <gone@acme.example>: User unknown",
                "busy@acme.example": "451 4.3.0 Try again later",
            }
        )
        with serve(relay) as port:
            live = await self.live(client, tenant, settings, port)
            gone = await self.queue(
                db, tenant, live, await approved_draft(client, tenant, "gone@acme.example")
            )
            bounced, _ = await self.deliver(db, tenant, live, gone.id)
            busy = await self.queue(
                db, tenant, live, await approved_draft(client, tenant, "busy@acme.example")
            )
            later, retry_in = await self.deliver(db, tenant, live, busy.id)
        assert bounced is not None
        assert bounced.status == MessageStatus.FAILED
        assert "5.1.1" in (bounced.error or "")
        rep = await tenant.headers(Role.REP)
        check = await client.get(
            "/v1/suppressions/check",
            params={"kind": "email", "address": "gone@acme.example"},
            headers=rep,
        )
        assert check.json()["reasons"] == ["email_hard_bounce"]
        assert later is not None
        assert later.status == MessageStatus.QUEUED  # tried again later, not skipped
        assert retry_in is not None
        assert retry_in >= 60  # the relay asked us to slow down
        assert relay.deliveries == []

    async def test_an_interrupted_hand_over_is_never_sent_twice(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        relay = Relay()
        with serve(relay) as port:
            live = await self.live(client, tenant, settings, port)
            message = await self.queue(
                db, tenant, live, await approved_draft(client, tenant, "once@acme.example")
            )
            # The worker died after marking it `sending` (it may have left).
            async with db.session(tenant.id) as session:
                await session.execute(
                    update(Message)
                    .where(Message.id == message.id)
                    .values(status=MessageStatus.SENDING, attempts=1)
                )
            result, _ = await self.deliver(db, tenant, live, message.id)
            assert result is None
        assert relay.deliveries == []
        async with db.session(tenant.id) as session:
            row = await session.scalar(select(Message).where(Message.id == message.id))
        assert row is not None
        assert row.status == MessageStatus.FAILED
        assert "outcome unknown" in (row.error or "")


class TestSeveralWorkers:
    async def test_no_window_exceeds_its_limit_across_processes(
        self, client: httpx.AsyncClient, tenant: TenantCtx, urls: DatabaseUrls
    ) -> None:
        """Three OS processes, each with its own connections, send at the same moment: the
        caps are counted in PostgreSQL, so together they never pass them."""
        await setup(client, tenant)
        admin = await tenant.headers(Role.ADMIN)
        await client.patch(
            "/v1/outreach/policy",
            json={"daily_caps": {"email": 10}, "domain_hourly_cap": 4},
            headers=admin,
        )
        drafts = [
            await approved_draft(client, tenant, f"w{n}@{'one' if n % 2 else 'two'}.example")
            for n in range(24)
        ]
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.outreach.send_worker",
                urls.owner,
                urls.app,
                str(tenant.id),
                *drafts[n::3],
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(Path(__file__).parents[2]),
            )
            for n in range(3)
        ]
        statuses: list[str] = []
        for worker in workers:
            out, err = await worker.communicate()
            assert worker.returncode == 0, err.decode()
            statuses += [json.loads(line) for line in out.decode().splitlines()]
        assert len(statuses) == 24
        rep = await tenant.headers(Role.REP)
        messages = (await client.get("/v1/messages", params={"limit": 100}, headers=rep)).json()
        queued = [m for m in messages if m["status"] == "queued"]
        assert len(queued) == statuses.count("queued")
        # Two domains at four an hour each: eight may leave now, the daily cap (10) holds too.
        assert len(queued) == 8
        for domain in ("one.example", "two.example"):
            assert sum(m["recipient_domain"] == domain for m in queued) == 4
        assert {m["blocked_by"] for m in messages if m["status"] == "deferred"} == {
            "domain_throttle"
        }


class TestCountryRules:
    async def test_per_country_call_caps_and_windows_reach_the_guard(
        self, client: httpx.AsyncClient, tenant: TenantCtx, settings: Settings
    ) -> None:
        admin = await tenant.headers(Role.ADMIN)
        bad = await client.patch(
            "/v1/outreach/policy",
            json={"country_call_windows": {"GB": {"start": "12:00", "end": "12:00"}}},
            headers=admin,
        )
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "country_call_windows.GB"
        unknown = await client.patch(
            "/v1/outreach/policy", json={"country_call_caps": {"ZZ": 1}}, headers=admin
        )
        assert unknown.status_code == 422
        assert "ZZ" in unknown.json()["errors"][0]["reason"]
        saved = await client.patch(
            "/v1/outreach/policy",
            json={
                "country_call_caps": {"gb": 2},
                "country_call_windows": {"gb": {"start": "10:00", "end": "12:00", "days": [0]}},
                "confirmation": service.LIVE_CONFIRMATION,  # calls from 10:00: before the default
            },
            headers=admin,
        )
        assert saved.status_code == 200, saved.text
        assert saved.json()["country_call_caps"] == {"GB": 2}
        assert saved.json()["country_call_windows"]["GB"]["days"] == [0]

        async with tenant.db.session(tenant.id) as session:
            row = await session.get(Tenant, tenant.id)
            assert row is not None
            rules = service.guard_policy(service.outreach_policy(row, settings))
        assert rules.country_call_cap("GB") == 2
        windows, source = rules.windows_for(Channel.VOICE, "GB")
        assert source == "the override for GB"
        assert windows is not None
        [window] = windows
        assert (window.start, window.end, window.days) == ("10:00", "12:00", frozenset({0}))
