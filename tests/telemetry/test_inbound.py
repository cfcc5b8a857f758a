"""Replies and opt-outs on real parts: messages we "sent" (live, not dry-run) and the inbound
service placing each answer, storing it once and acting on it — suppression that the send
guard honours until START, campaigns stopped, replied_at, the owner's notice, unmatched
messages kept as dead letters, other tenants untouched."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import phonenumbers
import pytest
from sqlalchemy import func, select

from leadrelay.capture.provider_models import LeadMessage, MessageChannel
from leadrelay.compliance.models import AuditEvent
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.events import OutboxEvent
from leadrelay.core.jobs import JobRuntime
from leadrelay.core.jobs_models import DeadLetter
from leadrelay.core.security import secret_keys
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role, User
from leadrelay.identity.service import system_principal
from leadrelay.outreach import service, suppression
from leadrelay.outreach.models import (
    Campaign,
    CampaignMember,
    Consent,
    MemberState,
    Message,
    MessageKind,
    MessageStatus,
)
from leadrelay.routing.models import Assignment, Rep, Team
from leadrelay.telemetry import inbound
from leadrelay.telemetry.inbound import InboundReply, InboundStatus, receive_reply
from leadrelay.telemetry.replies import Intent
from tests.factories import TenantCtx, TenantFactory
from tests.outreach.test_send import setup
from tests.support import jobs_for, owner_connection, run_jobs

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


def unique_phone() -> str:
    """A valid US number no other test uses (the look-up spans tenants by design)."""
    while True:
        candidate = f"+1415{uuid.uuid4().int % 10_000_000:07d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            return candidate


def unique_email(name: str = "dana") -> str:
    return f"{name}.{uuid.uuid4().hex[:10]}@northwind.example"


async def make_lead(
    client: httpx.AsyncClient,
    tenant: TenantCtx,
    *,
    email: str | None = None,
    phone: str | None = None,
    prepared: bool = False,
) -> uuid.UUID:
    if not prepared:
        await setup(client, tenant)
    body: dict[str, Any] = {"source": "Form", "full_name": "Dana Scully", "company": "Northwind"}
    if email:
        body["email"] = email
    if phone:
        body["phone"] = phone
    response = await client.post("/v1/leads", json=body, headers=await tenant.headers(Role.ADMIN))
    assert response.status_code in (200, 202), response.text
    return uuid.UUID(response.json()["lead_id"])


async def sent_message(
    db: Database,
    tenant: TenantCtx,
    lead_id: uuid.UUID,
    *,
    channel: str,
    recipient: str,
    at: datetime | None = None,
    dry_run: bool = False,
) -> uuid.UUID:
    """A message as a live send leaves it: accepted by the provider, not a dry run."""
    at = at or utcnow() - timedelta(hours=1)
    message_id = uuid.uuid4()
    async with db.session(tenant.id) as session:
        session.add(
            Message(
                id=message_id,
                tenant_id=tenant.id,
                lead_id=lead_id,
                kind=MessageKind.ONE_TO_ONE,
                channel=channel,
                provider="smtp" if channel == "email" else "twilio",
                dry_run=dry_run,
                idempotency_key=f"test:{message_id}",
                status=MessageStatus.SENT,
                recipient=recipient,
                recipient_domain=recipient.rsplit("@", 1)[1] if "@" in recipient else None,
                subject="A short call?" if channel == "email" else None,
                body="Hi Dana, a short call? Reply STOP to opt out.",
                content_sha256=hashlib.sha256(b"x").hexdigest(),
                policy_trace=[],
                attempts=1,
                provider_message_id=f"SM{message_id.hex}",
                created_by="test",
                created_at=at,
                sent_at=at,
            )
        )
    return message_id


async def campaign_member(db: Database, tenant: TenantCtx, lead_id: uuid.UUID) -> uuid.UUID:
    async with db.session(tenant.id) as session:
        campaign = Campaign(
            tenant_id=tenant.id,
            name=f"Spring {uuid.uuid4().hex[:6]}",
            status="active",
            audience={},
            steps=[{"channel": "sms", "delay_days": 0}],
            send_time="09:00",
            timezone="UTC",
            created_by="test",
        )
        session.add(campaign)
        await session.flush()
        member = CampaignMember(
            tenant_id=tenant.id,
            campaign_id=campaign.id,
            lead_id=lead_id,
            due_at=utcnow(),
            state=MemberState.ACTIVE,
            joined_at=utcnow(),
        )
        session.add(member)
        await session.flush()
        return member.id


def sms(sender: str, text: str, *, sid: str | None = None) -> InboundReply:
    return InboundReply(
        channel=MessageChannel.SMS,
        provider="twilio",
        sender=sender,
        text=text,
        provider_message_id=sid or f"SM{uuid.uuid4().hex}",
        received_at=NOW,
    )


def mail(
    sender: str,
    text: str,
    *,
    subject: str = "Re: A short call?",
    headers: tuple[tuple[str, str], ...] = (),
    references: tuple[str, ...] = (),
) -> InboundReply:
    return InboundReply(
        channel=MessageChannel.EMAIL,
        provider="smtp",
        sender=sender,
        text=text,
        provider_message_id=f"<{uuid.uuid4()}@mail.example>",
        received_at=NOW,
        subject=subject,
        headers=(("From", sender), ("Subject", subject), *headers),
        references=references,
    )


async def receive(db: Database, settings: Settings, reply: InboundReply) -> inbound.InboundResult:
    async with db.session() as session:
        return await receive_reply(
            session, reply, settings=settings, keys=secret_keys(settings), now=utcnow()
        )


async def suppressed(
    db: Database, settings: Settings, tenant: TenantCtx, *, email: str | None = None,
    phone: str | None = None,
) -> list[str]:  # fmt: skip
    async with db.session(tenant.id) as session:
        return await suppression.suppression_reasons(
            session, secret_keys(settings), email=email, phone=phone
        )


async def stored(db: Database, tenant: TenantCtx) -> list[LeadMessage]:
    async with db.session(tenant.id) as session:
        return list(await session.scalars(select(LeadMessage).order_by(LeadMessage.created_at)))


async def member_state(db: Database, tenant: TenantCtx, member_id: uuid.UUID) -> str:
    async with db.session(tenant.id) as session:
        member = await session.get(CampaignMember, member_id)
        assert member is not None
        return str(member.state)


async def events_of(db: Database, tenant: TenantCtx, event_type: str) -> list[dict[str, Any]]:
    async with db.session(tenant.id) as session:
        rows = await session.scalars(select(OutboxEvent).where(OutboxEvent.type == event_type))
        return [row.payload for row in rows]


async def audit_actions(db: Database, tenant: TenantCtx) -> list[str]:
    async with db.session(tenant.id) as session:
        return list(await session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))


async def sms_draft(client: httpx.AsyncClient, tenant: TenantCtx, lead_id: uuid.UUID) -> str:
    draft = await client.post(
        "/v1/drafts",
        json={"lead_id": str(lead_id), "channel": "sms", "submit": True},
        headers=await tenant.headers(Role.REP),
    )
    assert draft.status_code == 201, draft.text
    draft_id: str = draft.json()["draft"]["id"]
    decision = await client.post(
        f"/v1/approvals/{draft_id}/approve",
        json={"revision": 1},
        headers=await tenant.headers(Role.REVIEWER),
    )
    assert decision.status_code == 200, decision.text
    return draft_id


async def queue(db: Database, settings: Settings, tenant: TenantCtx, draft_id: str) -> Message:
    async with db.session(tenant.id) as session:
        message, _ = await service.queue_draft(
            session,
            system_principal(tenant.id),
            uuid.UUID(draft_id),
            settings=settings,
            keys=secret_keys(settings),
            kind=MessageKind.ONE_TO_ONE,
            idempotency_key=None,
            now=utcnow(),
        )
        return message


class TestOptOut:
    async def test_stop_suppresses_at_once_and_the_guard_blocks_until_start(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        phone = unique_phone()
        lead_id = await make_lead(client, tenant, phone=phone)
        message_id = await sent_message(db, tenant, lead_id, channel="sms", recipient=phone)
        member_id = await campaign_member(db, tenant, lead_id)

        result = await receive(db, settings, sms(phone, "STOP"))

        assert result.status is InboundStatus.STORED
        assert result.intent is Intent.OPT_OUT
        assert result.tenant_id == tenant.id
        assert result.lead_id == lead_id
        assert await suppressed(db, settings, tenant, phone=phone) == ["phone_opted_out"]
        assert await member_state(db, tenant, member_id) == "stopped"
        (row,) = await stored(db, tenant)
        assert (row.classification, row.message_id, row.lead_id) == ("opt_out", message_id, lead_id)
        assert row.source_id is None
        assert row.direction == "inbound"
        assert row.body == "STOP"
        async with db.session(tenant.id) as session:
            consent = await suppression.consent_state(session, lead_id, "sms")
            assert consent is not None
            assert consent.state == "withdrawn"
            message = await session.get(Message, message_id)
            assert message is not None
            assert message.replied_at is None
        (event,) = await events_of(db, tenant, "lead.opted_out")
        assert event["lead_id"] == str(lead_id)
        assert event["channel"] == "sms"
        actions = await audit_actions(db, tenant)
        assert {"suppression.added", "consent.withdrawn", "inbound.opt_out"} <= set(actions)

        # The next send is refused by the guard, for as long as the opt-out stands.
        draft_id = await sms_draft(client, tenant, lead_id)
        blocked = await queue(db, settings, tenant, draft_id)
        assert blocked.status == MessageStatus.BLOCKED
        assert blocked.blocked_by in {"consent", "suppression"}
        again = await queue(db, settings, tenant, draft_id)
        assert again.status == MessageStatus.BLOCKED

        # START is the person opting back in: the suppression goes, consent is recorded.
        back = await receive(db, settings, sms(phone, "START"))
        assert back.intent is Intent.OPT_IN
        assert await suppressed(db, settings, tenant, phone=phone) == []
        allowed = await queue(db, settings, tenant, draft_id)
        assert allowed.id == blocked.id
        assert allowed.status in {MessageStatus.QUEUED, MessageStatus.DEFERRED}
        assert "suppression.lifted" in await audit_actions(db, tenant)

    @pytest.mark.parametrize(
        "text",
        ["Stop texting me, I'm not interested", "STOP please", "unsubscribe.", "  Opt-Out!  "],
    )
    async def test_stop_with_trailing_words_and_punctuation_opts_out(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        settings: Settings,
        text: str,
    ) -> None:
        phone = unique_phone()
        lead_id = await make_lead(client, tenant, phone=phone)
        await sent_message(db, tenant, lead_id, channel="sms", recipient=phone)
        result = await receive(db, settings, sms(phone, text))
        assert result.intent is Intent.OPT_OUT
        assert await suppressed(db, settings, tenant, phone=phone) == ["phone_opted_out"]

    async def test_yes_opts_back_in_only_when_opted_out(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        phone = unique_phone()
        lead_id = await make_lead(client, tenant, phone=phone)
        await sent_message(db, tenant, lead_id, channel="sms", recipient=phone)
        assert (await receive(db, settings, sms(phone, "Yes"))).intent is Intent.REPLY
        assert (await receive(db, settings, sms(phone, "stop"))).intent is Intent.OPT_OUT
        assert (await receive(db, settings, sms(phone, "YES"))).intent is Intent.OPT_IN
        assert await suppressed(db, settings, tenant, phone=phone) == []

    async def test_a_plain_language_request_by_email_suppresses_the_address(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        address = unique_email()
        lead_id = await make_lead(client, tenant, email=address)
        await sent_message(db, tenant, lead_id, channel="email", recipient=address)
        member_id = await campaign_member(db, tenant, lead_id)
        reply = mail(
            address.upper().replace("NORTHWIND.EXAMPLE", "Northwind.Example"),
            "Hi,\n\nplease remove me from your list.\n\nOn Tue, Sam wrote:\n> Reply STOP",
        )
        result = await receive(db, settings, reply)
        assert result.intent is Intent.OPT_OUT
        assert await suppressed(db, settings, tenant, email=address) == ["email_opted_out"]
        assert await member_state(db, tenant, member_id) == "stopped"

    async def test_a_bounce_suppression_is_not_lifted_by_start(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        phone = unique_phone()
        lead_id = await make_lead(client, tenant, phone=phone)
        await sent_message(db, tenant, lead_id, channel="sms", recipient=phone)
        async with db.session(tenant.id) as session:
            await suppression.suppress(
                session,
                system_principal(tenant.id),
                keys=secret_keys(settings),
                kind="phone",
                normalized=phone,
                reason=suppression.SuppressionReason.MANUAL,
                source="console",
                now=utcnow(),
            )
        assert (await receive(db, settings, sms(phone, "START"))).intent is Intent.OPT_IN
        assert await suppressed(db, settings, tenant, phone=phone) == ["phone_manual"]


class TestReplies:
    async def test_a_reply_sets_replied_at_stops_the_campaign_and_tells_the_owner(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        settings: Settings,
        urls: DatabaseUrls,
        job_runtime: JobRuntime,
    ) -> None:
        phone = unique_phone()
        lead_id = await make_lead(client, tenant, phone=phone)
        message_id = await sent_message(db, tenant, lead_id, channel="sms", recipient=phone)
        member_id = await campaign_member(db, tenant, lead_id)
        owner_email = await tenant.user(Role.REP)
        async with db.session(tenant.id) as session:
            user = await session.scalar(select(User).where(User.email == owner_email))
            assert user is not None
            team = Team(tenant_id=tenant.id, name="Inbound")
            session.add(team)
            await session.flush()
            rep = Rep(tenant_id=tenant.id, team_id=team.id, name="Rita", user_id=user.id)
            session.add(rep)
            await session.flush()
            session.add(
                Assignment(
                    tenant_id=tenant.id,
                    lead_id=lead_id,
                    status="assigned",
                    team_id=team.id,
                    rep_id=rep.id,
                    trace=[],
                    decided_at=utcnow(),
                )
            )

        result = await receive(db, settings, sms(phone, "Tuesday at 3 works, call me"))

        assert result.intent is Intent.REPLY
        async with db.session(tenant.id) as session:
            message = await session.get(Message, message_id)
            assert message is not None
            assert message.replied_at == NOW
        assert await member_state(db, tenant, member_id) == "stopped"
        (event,) = await events_of(db, tenant, "lead.replied")
        assert event == {
            "lead_id": str(lead_id),
            "lead_message_id": str(result.lead_message_id),
            "message_id": str(message_id),
            "channel": "sms",
        }
        assert await suppressed(db, settings, tenant, phone=phone) == []
        assert jobs_for(urls, inbound.NOTIFY_TASK, lead_message_id=str(result.lead_message_id))

        await run_jobs()
        (row,) = await stored(db, tenant)
        notice = row.raw["owner_notice"]
        assert notice["to"] == owner_email
        assert notice["provider"] == "dryrun"  # the tenant is in dry-run: recorded, not sent
        assert notice["status"] == "sent"

        # A second reply keeps the first replied_at.
        await receive(db, settings, sms(phone, "Also, bring the brochure"))
        async with db.session(tenant.id) as session:
            message = await session.get(Message, message_id)
            assert message is not None
            assert message.replied_at == NOW

    async def test_no_owner_means_only_the_event(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        settings: Settings,
        urls: DatabaseUrls,
    ) -> None:
        phone = unique_phone()
        lead_id = await make_lead(client, tenant, phone=phone)
        await sent_message(db, tenant, lead_id, channel="sms", recipient=phone)
        result = await receive(db, settings, sms(phone, "Sounds good"))
        assert result.intent is Intent.REPLY
        assert len(await events_of(db, tenant, "lead.replied")) == 1
        assert not jobs_for(urls, inbound.NOTIFY_TASK, lead_message_id=str(result.lead_message_id))

    async def test_an_out_of_office_is_stored_but_never_a_reply_or_an_opt_out(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        address = unique_email()
        lead_id = await make_lead(client, tenant, email=address)
        message_id = await sent_message(db, tenant, lead_id, channel="email", recipient=address)
        member_id = await campaign_member(db, tenant, lead_id)
        reply = mail(
            address,
            "I am out of the office until Monday with limited access to email. "
            "To stop receiving these, unsubscribe.",
            subject="Automatic reply: A short call?",
            headers=(("Auto-Submitted", "auto-replied"),),
        )
        result = await receive(db, settings, reply)
        assert result.status is InboundStatus.STORED
        assert result.intent is Intent.AUTO_REPLY
        async with db.session(tenant.id) as session:
            message = await session.get(Message, message_id)
            assert message is not None
            assert message.replied_at is None
        assert await member_state(db, tenant, member_id) == "active"
        assert await suppressed(db, settings, tenant, email=address) == []
        assert await events_of(db, tenant, "lead.replied") == []
        (row,) = await stored(db, tenant)
        assert row.classification == "auto_reply"
        assert ["Auto-Submitted", "auto-replied"] in row.raw["headers"]

    async def test_an_email_reply_is_matched_by_in_reply_to(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        address = unique_email()
        lead_id = await make_lead(client, tenant, email=address)
        first = await sent_message(db, tenant, lead_id, channel="email", recipient=address)
        await sent_message(db, tenant, lead_id, channel="email", recipient=address, at=utcnow())
        # Answered from another address (a colleague), naming our first message.
        reply = mail(
            "assistant@northwind.example",
            "Dana asked me to book the call for Thursday.",
            references=(f"<{first}@relay.example>", f"<{uuid.uuid4()}@elsewhere.example>"),
        )
        result = await receive(db, settings, reply)
        assert (result.status, result.intent, result.lead_id) == (
            InboundStatus.STORED,
            Intent.REPLY,
            lead_id,
        )
        (row,) = await stored(db, tenant)
        assert row.message_id == first


class TestPlacement:
    async def test_a_reply_from_an_unknown_number_is_kept_as_a_dead_letter(
        self, db: Database, settings: Settings, urls: DatabaseUrls
    ) -> None:
        stranger = unique_phone()
        reply = sms(stranger, "Who is this?")
        first = await receive(db, settings, reply)
        again = await receive(db, settings, reply)  # the provider retried
        assert first.status is again.status is InboundStatus.UNMATCHED
        with owner_connection(urls) as connection:
            letters = connection.execute(
                "SELECT * FROM dead_letters WHERE task_name = %s AND payload->>'sender' = %s",
                (inbound.REPLY_TASK, stranger),
            ).fetchall()
        (letter,) = letters
        assert letter["tenant_id"] is None  # no tenant: an operator's to read
        assert letter["payload"]["text"] == "Who is this?"
        assert "no lead matches" in letter["error"]
        async with db.session() as session:  # the operator's view (no tenant bound)
            seen = await session.scalar(select(DeadLetter).where(DeadLetter.id == letter["id"]))
            assert seen is not None

    async def test_replaying_the_dead_letter_places_it_once_the_number_is_known(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        settings: Settings,
        urls: DatabaseUrls,
        job_runtime: JobRuntime,
    ) -> None:
        from leadrelay.ops.service import replay_dead_letter

        phone = unique_phone()
        await receive(db, settings, sms(phone, "Hello?"))
        lead_id = await make_lead(client, tenant, phone=phone)
        await sent_message(db, tenant, lead_id, channel="sms", recipient=phone)
        async with db.session() as session:
            letter_id = await session.scalar(
                select(DeadLetter.id).where(
                    DeadLetter.task_name == inbound.REPLY_TASK,
                    DeadLetter.payload["sender"].astext == phone,
                )
            )
            assert letter_id is not None
            await replay_dead_letter(session, letter_id, actor=None, now=utcnow())
        await run_jobs()
        (row,) = await stored(db, tenant)
        assert (row.lead_id, row.body, row.classification) == (lead_id, "Hello?", "reply")

    async def test_a_dry_run_message_places_nothing(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        phone = unique_phone()
        lead_id = await make_lead(client, tenant, phone=phone)
        await sent_message(db, tenant, lead_id, channel="sms", recipient=phone, dry_run=True)
        result = await receive(db, settings, sms(phone, "STOP"))
        assert result.status is InboundStatus.UNMATCHED
        assert await stored(db, tenant) == []

    async def test_a_duplicate_delivery_is_stored_and_acted_on_once(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        phone = unique_phone()
        lead_id = await make_lead(client, tenant, phone=phone)
        await sent_message(db, tenant, lead_id, channel="sms", recipient=phone)
        reply = sms(phone, "STOP", sid="SMduplicate" + uuid.uuid4().hex[:8])
        first = await receive(db, settings, reply)
        second = await receive(db, settings, reply)
        assert first.status is InboundStatus.STORED
        assert second.status is InboundStatus.DUPLICATE
        assert second.intent is Intent.OPT_OUT
        assert second.lead_message_id == first.lead_message_id
        assert len(await stored(db, tenant)) == 1
        assert len(await events_of(db, tenant, "lead.opted_out")) == 1
        async with db.session(tenant.id) as session:
            withdrawn = await session.scalar(
                select(func.count()).select_from(Consent).where(Consent.lead_id == lead_id)
            )
        assert withdrawn == 1

    async def test_another_tenant_is_never_touched(
        self,
        client: httpx.AsyncClient,
        tenants: TenantFactory,
        db: Database,
        settings: Settings,
    ) -> None:
        a, b = await tenants.create(), await tenants.create()
        phone = unique_phone()
        lead_b = await make_lead(client, b, phone=phone)
        message_b = await sent_message(
            db, b, lead_b, channel="sms", recipient=phone, at=utcnow() - timedelta(days=2)
        )
        member_b = await campaign_member(db, b, lead_b)
        lead_a = await make_lead(client, a, phone=phone)
        await sent_message(db, a, lead_a, channel="sms", recipient=phone)

        # The latest message to the number was A's: the answers are A's.
        assert (await receive(db, settings, sms(phone, "Thanks!"))).tenant_id == a.id
        assert (await receive(db, settings, sms(phone, "STOP"))).tenant_id == a.id

        assert await suppressed(db, settings, a, phone=phone) == ["phone_opted_out"]
        assert await suppressed(db, settings, b, phone=phone) == []
        assert await stored(db, b) == []
        assert await member_state(db, b, member_b) == "active"
        async with db.session(b.id) as session:
            message = await session.get(Message, message_b)
            assert message is not None
            assert message.replied_at is None
            assert await suppression.consent_state(session, lead_b, "sms") is None
        assert await events_of(db, b, "lead.opted_out") == []


class TestPureParts:
    def test_our_message_ids_come_from_in_reply_to_and_references(self) -> None:
        ours, other = uuid.uuid4(), uuid.uuid4()
        found = inbound.our_message_ids(
            [f"<{ours}@relay.example>", f"<CAB123@mail.gmail.com> <{other}@x.example> <{ours}@a>"]
        )
        assert found == [ours, other]
        assert inbound.our_message_ids(["<not-ours@x>", ""]) == []

    def test_help_text_is_the_tenants_own_else_the_default(self, settings: Settings) -> None:
        from leadrelay.identity.models import Tenant

        tenant = Tenant(name="t", slug="t", settings={})
        assert inbound.help_text(tenant, settings) == settings.inbound_help_text
        tenant.settings = {
            "sender": {"company": "Northwind"},
            "outreach": {"help_text": "Help: call 555-0100. Reply STOP to opt out."},
        }
        assert inbound.help_text(tenant, settings) == (
            "Northwind: Help: call 555-0100. Reply STOP to opt out."
        )


class TestWhatsAppCloud:
    async def test_a_stop_through_the_whatsapp_webhook_opts_the_lead_out(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        settings: Settings,
        job_runtime: JobRuntime,
    ) -> None:
        from tests.capture.test_whatsapp import message_webhook, post, whatsapp_source

        source_id = await whatsapp_source(client, tenant)
        first = await post(client, source_id, message_webhook("wamid.first", body="Hi there"))
        assert first.status_code == 200, first.text
        await run_jobs()
        (hello,) = await stored(db, tenant)
        assert hello.lead_id is not None
        assert hello.classification == "reply"  # a lead writing first: read, nothing sent yet
        assert hello.message_id is None
        message_id = await sent_message(
            db, tenant, hello.lead_id, channel="whatsapp", recipient="+16505551234"
        )
        member_id = await campaign_member(db, tenant, hello.lead_id)

        stop = await post(client, source_id, message_webhook("wamid.second", body="STOP"))
        assert stop.status_code == 200, stop.text
        await run_jobs()

        rows = {row.provider_message_id: row for row in await stored(db, tenant)}
        assert rows["wamid.second"].classification == "opt_out"
        assert rows["wamid.second"].message_id == message_id
        assert await suppressed(db, settings, tenant, phone="+16505551234") == ["phone_opted_out"]
        assert await member_state(db, tenant, member_id) == "stopped"
        async with db.session(tenant.id) as session:
            consent = await suppression.consent_state(session, hello.lead_id, "whatsapp")
        assert consent is not None
        assert consent.state == "withdrawn"
