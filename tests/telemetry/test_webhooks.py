"""Delivery webhooks on real parts: signed requests built the way SendGrid, Mailgun and Twilio
sign them, bodies from their documentation (tests/telemetry/fixtures), the app over HTTP and
the embedded PostgreSQL behind it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select, text, update

from leadrelay.app import create_app
from leadrelay.compliance.models import AuditEvent
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.security import secret_keys
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role
from leadrelay.outreach.models import Message, MessageStatus
from leadrelay.telemetry import service
from leadrelay.telemetry.batcher import DeliveryBatcher
from leadrelay.telemetry.events import DeliveryEvent, parse_sendgrid
from leadrelay.telemetry.models import DeliveryEventRow
from leadrelay.telemetry.service import Receipt
from tests.capture.test_meta import fixture as whatsapp_fixture
from tests.capture.test_whatsapp import post as post_whatsapp
from tests.capture.test_whatsapp import whatsapp_source
from tests.factories import TenantCtx, TenantFactory
from tests.identity.test_api import assert_problem
from tests.outreach.test_send import approved_draft, send, setup

FIXTURES = Path(__file__).parent / "fixtures"
# The dedup key `delivery_events` generates (migration 0021), as SQL.
EVENT_KEY_SQL = "md5(CAST(:p AS text) || ':' || CAST(:e AS text))::uuid"
MAILGUN_KEY = "key-mailgun-webhook-signing"
TWILIO_TOKEN = "twilio-auth-token-for-tests"
PUBLIC_URL = "https://relay.example"
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(
    SENDGRID_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


@pytest.fixture(scope="module")
def hooked_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "public_url": PUBLIC_URL,
            "sendgrid_webhook_public_key": SENDGRID_PUBLIC,
            "mailgun_webhook_signing_key": SecretStr(MAILGUN_KEY),
            "twilio_account_sid": "AC" + "0" * 32,
            "twilio_auth_token": SecretStr(TWILIO_TOKEN),
        }
    )


@pytest.fixture(scope="module")
def hooked_app(hooked_settings: Settings, db: Database) -> FastAPI:
    return create_app(hooked_settings, db=db)


@pytest.fixture
async def hooks(hooked_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hooked_app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as c:
        yield c


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


async def a_message(
    client: httpx.AsyncClient,
    db: Database,
    tenant: TenantCtx,
    address: str,
    *,
    provider: str = "sendgrid",
    provider_message_id: str | None = None,
) -> uuid.UUID:
    """A message as a live provider left it: sent, with (or still without) its provider id."""
    draft_id = await approved_draft(client, tenant, address)
    queued = await send(client, tenant, draft_id)
    assert queued.status_code == 202, queued.text
    message_id = uuid.UUID(queued.json()["id"])
    async with db.session(tenant.id) as session:
        await session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(
                status=MessageStatus.SENT,
                dry_run=False,
                provider=provider,
                provider_message_id=provider_message_id,
                sent_at=utcnow(),
            )
        )
    return message_id


def sendgrid_events(name: str, message_id: uuid.UUID, **changes: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads((FIXTURES / f"sendgrid_{name}.json").read_text())
    for item in events:
        item["leadrelay_message_id"] = str(message_id)
        item.update(changes)
    return events


def sendgrid_headers(body: bytes) -> dict[str, str]:
    """X-Twilio-Email-Event-Webhook-* as SendGrid's EventWebhook helper checks them."""
    timestamp = str(int(time.time()))
    signature = SENDGRID_KEY.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "content-type": "application/json",
        "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
        "x-twilio-email-event-webhook-timestamp": timestamp,
    }


async def post_sendgrid(hooks: httpx.AsyncClient, events: list[dict[str, Any]]) -> httpx.Response:
    body = json.dumps(events).encode()
    return await hooks.post(
        "/v1/telemetry/sendgrid/events", content=body, headers=sendgrid_headers(body)
    )


def mailgun_body(name: str, message_id: uuid.UUID, *, key: str = MAILGUN_KEY) -> bytes:
    data = json.loads((FIXTURES / f"mailgun_{name}.json").read_text())
    data["event-data"]["user-variables"]["leadrelay_message_id"] = str(message_id)
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    digest = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    data["signature"] = {"timestamp": timestamp, "token": token, "signature": digest}
    return json.dumps(data).encode()


def twilio_form(name: str, **changes: str) -> dict[str, str]:
    raw = (FIXTURES / f"twilio_{name}.form").read_text().strip()
    return {**dict(parse_qsl(raw, keep_blank_values=True)), **changes}


async def post_twilio(
    hooks: httpx.AsyncClient, form: dict[str, str], *, token: str = TWILIO_TOKEN
) -> httpx.Response:
    url = PUBLIC_URL + "/v1/telemetry/twilio/status"
    data = url + "".join(k + form[k] for k in sorted(form))
    signature = base64.b64encode(
        hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    ).decode()
    return await hooks.post(
        "/v1/telemetry/twilio/status",
        content=urlencode(form).encode(),
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": signature,
        },
    )


async def message_row(db: Database, tenant: TenantCtx, message_id: uuid.UUID) -> Message:
    async with db.session(tenant.id) as session:
        row = await session.scalar(select(Message).where(Message.id == message_id))
    assert row is not None
    return row


async def suppression_reasons(
    client: httpx.AsyncClient, tenant: TenantCtx, kind: str, address: str
) -> list[str]:
    rep = await tenant.headers(Role.REP)
    check = await client.get(
        "/v1/suppressions/check", params={"kind": kind, "address": address}, headers=rep
    )
    assert check.status_code == 200, check.text
    reasons: list[str] = check.json()["reasons"]
    return reasons


class TestSendGrid:
    async def test_events_out_of_order_and_twice_move_the_state_only_forward(
        self,
        client: httpx.AsyncClient,
        hooks: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
    ) -> None:
        await setup(client, tenant)
        message_id = await a_message(client, db, tenant, "dana@northwind.example")
        now = int(time.time())
        click = sendgrid_events("click", message_id, timestamp=now - 60)
        delivered = sendgrid_events("delivered", message_id, timestamp=now - 300)
        opened = sendgrid_events("open", message_id, timestamp=now - 120)

        first = await post_sendgrid(hooks, click + opened)
        assert first.status_code == 200, first.text
        assert first.json() == {
            "stored": 2,
            "duplicates": 0,
            "unmatched": 0,
            "moved": 2,
            "suppressed": 0,
            "ignored": [],
        }
        late = await post_sendgrid(hooks, delivered + click)  # late, and a retry of the click
        assert late.json()["stored"] == 1
        assert late.json()["duplicates"] == 1
        assert late.json()["moved"] == 0  # delivered after clicked does not go back

        row = await message_row(db, tenant, message_id)
        assert row.delivery_status == "clicked"
        assert row.delivered_at is not None
        assert row.opened_at is not None
        assert row.clicked_at is not None
        assert int(row.delivered_at.timestamp()) == now - 300  # dated by the late event
        assert int(row.opened_at.timestamp()) == now - 120

        rep = await tenant.headers(Role.REP)
        shown = (await client.get(f"/v1/messages/{message_id}", headers=rep)).json()
        assert shown["delivery_status"] == "clicked"
        async with db.session(tenant.id) as session:
            kinds = sorted(
                (r.kind, r.applied)
                for r in await session.scalars(
                    select(DeliveryEventRow).where(DeliveryEventRow.message_id == message_id)
                )
            )
        assert kinds == [("clicked", True), ("delivered", False), ("opened", True)]

    async def test_a_hard_bounce_and_a_complaint_suppress_the_address(
        self,
        client: httpx.AsyncClient,
        hooks: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
    ) -> None:
        await setup(client, tenant)
        gone = await a_message(client, db, tenant, "gone@acme.example")
        angry = await a_message(client, db, tenant, "angry@acme.example")
        bounce = sendgrid_events("bounce", gone)
        assert bounce[0]["type"] == "bounce"  # SendGrid's hard bounce
        response = await post_sendgrid(hooks, bounce + sendgrid_events("spamreport", angry))
        assert response.json()["suppressed"] == 2
        assert await suppression_reasons(client, tenant, "email", "gone@acme.example") == [
            "email_hard_bounce"
        ]
        assert await suppression_reasons(client, tenant, "email", "angry@acme.example") == [
            "email_complaint"
        ]
        assert (await message_row(db, tenant, gone)).delivery_status == "bounced"

        # The next send to the bounced address is refused by the guard.
        draft = await approved_draft(client, tenant, "gone@acme.example")
        again = await send(client, tenant, draft)
        assert again.json()["status"] == "blocked"
        assert again.json()["blocked_by"] == "suppression"

    async def test_a_soft_bounce_does_not_suppress(
        self,
        client: httpx.AsyncClient,
        hooks: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
    ) -> None:
        await setup(client, tenant)
        message_id = await a_message(client, db, tenant, "full@acme.example")
        response = await post_sendgrid(hooks, sendgrid_events("bounce_blocked", message_id))
        assert response.json()["suppressed"] == 0
        assert await suppression_reasons(client, tenant, "email", "full@acme.example") == []

    async def test_unknown_types_are_counted_not_refused(
        self,
        client: httpx.AsyncClient,
        hooks: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
    ) -> None:
        await setup(client, tenant)
        message_id = await a_message(client, db, tenant, "dana@northwind.example")
        response = await post_sendgrid(
            hooks,
            sendgrid_events("group_resubscribe", message_id)
            + sendgrid_events("delivered", message_id),
        )
        assert response.status_code == 200
        assert response.json()["ignored"] == ["group_resubscribe"]
        assert response.json()["stored"] == 1

    async def test_a_forged_or_unsigned_body_changes_nothing(
        self,
        client: httpx.AsyncClient,
        hooks: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
    ) -> None:
        await setup(client, tenant)
        message_id = await a_message(client, db, tenant, "dana@northwind.example")
        body = json.dumps(sendgrid_events("spamreport", message_id)).encode()
        headers = sendgrid_headers(b"[]")  # signed for another body
        forged = await hooks.post("/v1/telemetry/sendgrid/events", content=body, headers=headers)
        assert_problem(forged, 401, "bad-webhook-signature")
        unsigned = await hooks.post(
            "/v1/telemetry/sendgrid/events",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert_problem(unsigned, 401, "bad-webhook-signature")
        assert (await message_row(db, tenant, message_id)).delivery_status is None
        assert await suppression_reasons(client, tenant, "email", "dana@northwind.example") == []

    async def test_without_a_key_every_request_is_refused(self, client: httpx.AsyncClient) -> None:
        body = b"[]"
        response = await client.post(
            "/v1/telemetry/sendgrid/events", content=body, headers=sendgrid_headers(body)
        )
        assert_problem(response, 401, "bad-webhook-signature")

    async def test_a_body_not_in_sendgrids_shape_is_a_400_naming_it(
        self, hooks: httpx.AsyncClient
    ) -> None:
        body = b'{"event": "delivered"}'  # an object, not SendGrid's array
        response = await hooks.post(
            "/v1/telemetry/sendgrid/events", content=body, headers=sendgrid_headers(body)
        )
        problem = assert_problem(response, 400, "malformed-webhook")
        assert problem["errors"][0]["field"] == "body"


class TestMailgun:
    async def test_a_signed_event_is_applied_and_a_wrong_key_refused(
        self,
        client: httpx.AsyncClient,
        hooks: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
    ) -> None:
        await setup(client, tenant)
        message_id = await a_message(client, db, tenant, "alice@example.com", provider="mailgun")
        forged = await hooks.post(
            "/v1/telemetry/mailgun/events",
            content=mailgun_body("delivered", message_id, key="not-the-key"),
            headers={"content-type": "application/json"},
        )
        assert_problem(forged, 401, "bad-webhook-signature")
        response = await hooks.post(
            "/v1/telemetry/mailgun/events",
            content=mailgun_body("delivered", message_id),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["moved"] == 1
        assert (await message_row(db, tenant, message_id)).delivery_status == "delivered"

    async def test_a_permanent_failure_suppresses(
        self,
        client: httpx.AsyncClient,
        hooks: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
    ) -> None:
        await setup(client, tenant)
        message_id = await a_message(client, db, tenant, "alice@example.com", provider="mailgun")
        response = await hooks.post(
            "/v1/telemetry/mailgun/events",
            content=mailgun_body("failed_permanent", message_id),
            headers={"content-type": "application/json"},
        )
        assert response.json()["suppressed"] == 1
        assert await suppression_reasons(client, tenant, "email", "alice@example.com") == [
            "email_hard_bounce"
        ]

    async def test_a_body_without_a_signature_is_refused(self, hooks: httpx.AsyncClient) -> None:
        response = await hooks.post(
            "/v1/telemetry/mailgun/events",
            content=b'{"event-data": {}}',
            headers={"content-type": "application/json"},
        )
        assert_problem(response, 401, "bad-webhook-signature")


class TestTwilio:
    async def test_a_report_that_overtakes_the_send_waits_for_its_message(
        self,
        client: httpx.AsyncClient,
        hooks: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
        hooked_settings: Settings,
    ) -> None:
        await setup(client, tenant)
        sid = "SM" + uuid.uuid4().hex
        message_id = await a_message(client, db, tenant, "dana@northwind.example")
        early = await post_twilio(hooks, twilio_form("sms_delivered", MessageSid=sid, SmsSid=sid))
        assert early.status_code == 200, early.text
        assert early.json()["unmatched"] == 1
        again = await post_twilio(hooks, twilio_form("sms_delivered", MessageSid=sid, SmsSid=sid))
        assert again.json() == {**early.json(), "unmatched": 0, "duplicates": 1}

        # The send records Twilio's id: what waited applies in the same transaction.
        async with db.session(tenant.id) as session:
            await session.execute(
                update(Message).where(Message.id == message_id).values(provider_message_id=sid)
            )
            claimed = await service.claim_unmatched(
                session,
                tenant.id,
                message_id,
                sid,
                keys=secret_keys(hooked_settings),
                now=utcnow(),
            )
        assert claimed.stored == 1
        assert claimed.moved == 1
        assert (await message_row(db, tenant, message_id)).delivery_status == "delivered"
        async with db.session() as session:
            left = await session.scalar(
                text(
                    "SELECT count(*) FROM unmatched_delivery_events WHERE provider_message_id = :p"
                ),
                {"p": sid},
            )
        assert left == 0

    async def test_a_recipient_who_replied_stop_is_suppressed(
        self,
        client: httpx.AsyncClient,
        hooks: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
    ) -> None:
        await setup(client, tenant)
        sid = "SM" + uuid.uuid4().hex
        message_id = await a_message(
            client, db, tenant, "dana@northwind.example", provider="twilio",
            provider_message_id=sid,
        )  # fmt: skip
        async with db.session(tenant.id) as session:
            await session.execute(
                update(Message)
                .where(Message.id == message_id)
                .values(channel="sms", recipient="+442079460958")
            )
        form = twilio_form("sms_undelivered", MessageSid=sid, SmsSid=sid, ErrorCode="21610")
        response = await post_twilio(hooks, form)
        assert response.status_code == 200, response.text
        assert response.json()["suppressed"] == 1
        assert await suppression_reasons(client, tenant, "phone", "+442079460958") == [
            "phone_opted_out"
        ]

    async def test_a_bad_signature_is_refused(self, hooks: httpx.AsyncClient) -> None:
        response = await post_twilio(hooks, twilio_form("sms_delivered"), token="wrong")
        assert_problem(response, 403, "bad-twilio-signature")


async def test_one_tenants_events_never_touch_another(
    client: httpx.AsyncClient,
    hooks: httpx.AsyncClient,
    db: Database,
    tenants: TenantFactory,
) -> None:
    ours, theirs = await tenants.create(), await tenants.create()
    await setup(client, ours)
    await setup(client, theirs)
    mine = await a_message(client, db, ours, "same@acme.example")
    other = await a_message(client, db, theirs, "same@acme.example")
    response = await post_sendgrid(hooks, sendgrid_events("spamreport", mine))
    assert response.json()["suppressed"] == 1
    assert (await message_row(db, theirs, other)).delivery_status is None
    assert await suppression_reasons(client, theirs, "email", "same@acme.example") == []
    async with db.session(theirs.id) as session:
        seen = await session.scalar(text("SELECT count(*) FROM delivery_events"))
    assert seen == 0  # row-level security: the other tenant's events are not even visible


async def test_a_whatsapp_source_reports_on_its_own_tenants_messages_only(
    client: httpx.AsyncClient, db: Database, tenants: TenantFactory
) -> None:
    """WhatsApp Cloud statuses come through a tenant's own signed source endpoint: they are
    placed among that tenant's messages, never another's, even with a matching id."""
    ours, theirs = await tenants.create(), await tenants.create()
    await setup(client, ours)
    await setup(client, theirs)
    payload = whatsapp_fixture("whatsapp_status_delivered.json")
    wamid = payload["entry"][0]["changes"][0]["value"]["statuses"][0]["id"]
    mine = await a_message(client, db, ours, "a@acme.example", provider="whatsapp")
    other = await a_message(client, db, theirs, "b@acme.example", provider="whatsapp")
    for tenant, message_id in ((ours, mine), (theirs, other)):
        async with db.session(tenant.id) as session:
            await session.execute(
                update(Message).where(Message.id == message_id).values(provider_message_id=wamid)
            )
    source_id = await whatsapp_source(client, ours, "WhatsApp Cloud")
    response = await post_whatsapp(client, source_id, json.dumps(payload).encode())
    assert response.status_code == 200, response.text
    assert response.json()["delivery_events"]["moved"] == 1
    assert (await message_row(db, ours, mine)).delivery_status == "delivered"
    assert (await message_row(db, theirs, other)).delivery_status is None


def sendgrid_event(
    message_id: uuid.UUID, kind: str, *, at: int, event_id: str
) -> list[DeliveryEvent]:
    """One parsed SendGrid event, as the endpoint hands it to the batcher."""
    item = {**sendgrid_events(kind, message_id)[0], "timestamp": at, "sg_event_id": event_id}
    return list(parse_sendgrid(json.dumps([item]).encode()).events)


class TestGroupCommit:
    async def test_concurrent_webhooks_are_written_together_each_answered_for_its_own(
        self,
        client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
        hooked_settings: Settings,
    ) -> None:
        await setup(client, tenant)
        first = await a_message(client, db, tenant, "dana@northwind.example")
        second = await a_message(client, db, tenant, "fox@northwind.example")
        now = int(time.time())
        delivered = sendgrid_event(first, "delivered", at=now - 60, event_id="d-1")
        webhooks = [
            delivered,
            sendgrid_event(first, "open", at=now - 30, event_id="o-1"),
            sendgrid_event(second, "delivered", at=now - 50, event_id="d-2"),
            delivered,  # the provider retrying while the first delivery is being written
        ]
        batcher = DeliveryBatcher(db, keys=secret_keys(hooked_settings))
        receipts = await asyncio.gather(*(batcher.submit(events) for events in webhooks))
        assert receipts == [
            Receipt(stored=1, moved=1),
            Receipt(stored=1, moved=1),
            Receipt(stored=1, moved=1),
            Receipt(duplicates=1),
        ]
        async with db.session(tenant.id) as session:
            received = set(
                await session.scalars(
                    select(DeliveryEventRow.received_at).where(
                        DeliveryEventRow.message_id.in_([first, second])
                    )
                )
            )
        assert len(received) == 1  # one transaction wrote them all
        assert (await message_row(db, tenant, first)).delivery_status == "opened"
        assert (await message_row(db, tenant, second)).delivery_status == "delivered"

    async def test_a_bad_webhook_in_a_batch_fails_alone(
        self,
        client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
        hooked_settings: Settings,
    ) -> None:
        await setup(client, tenant)
        message_id = await a_message(client, db, tenant, "dana@northwind.example")
        now = int(time.time())
        webhooks = [
            sendgrid_event(message_id, "delivered", at=now - 60, event_id="good-1"),
            sendgrid_event(message_id, "open", at=now - 50, event_id="x" * 400),  # too long
            sendgrid_event(message_id, "click", at=now - 40, event_id="good-2"),
        ]
        batcher = DeliveryBatcher(db, keys=secret_keys(hooked_settings))
        results = await asyncio.gather(
            *(batcher.submit(events) for events in webhooks), return_exceptions=True
        )
        assert results[0] == Receipt(stored=1, moved=1)
        assert isinstance(results[1], psycopg.errors.StringDataRightTruncation)
        assert results[2] == Receipt(stored=1, moved=1)
        row = await message_row(db, tenant, message_id)
        assert (row.delivery_status, row.opened_at is not None) == ("clicked", True)

    async def test_concurrent_requests_are_each_answered_once_stored(
        self,
        client: httpx.AsyncClient,
        hooks: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
    ) -> None:
        await setup(client, tenant)
        messages = [
            await a_message(client, db, tenant, f"lead{n}@northwind.example") for n in range(3)
        ]
        bodies = [sendgrid_events("delivered", m, sg_event_id=f"d-{m}") for m in messages]
        bodies.append(bodies[0])  # a retry racing the first
        responses = await asyncio.gather(*(post_sendgrid(hooks, body) for body in bodies))
        assert [r.status_code for r in responses] == [200] * 4
        assert sum(r.json()["stored"] for r in responses) == 3
        assert sum(r.json()["duplicates"] for r in responses) == 1
        for message_id in messages:
            assert (await message_row(db, tenant, message_id)).delivery_status == "delivered"


class TestStoreOnce:
    async def test_the_dedup_key_is_the_one_the_database_generates(self, db: Database) -> None:
        async with db.session() as session:
            for provider, event_id in (("sendgrid", "rWVYmVk90MjZJ9iohOBa3w"), ("twilio", "SMé:ü")):
                stored = await session.scalar(
                    text(f"SELECT {EVENT_KEY_SQL}"), {"p": provider, "e": event_id}
                )
                assert stored == service.event_key(provider, event_id)

    async def test_a_repeat_the_state_does_not_hold_changes_nothing_of_what_new_events_do(
        self,
        client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
        hooked_settings: Settings,
    ) -> None:
        """Every stored event has been folded into its message's state, so folding a repeat in
        again changes nothing. Should one ever not have been (here: written behind the
        service's back), the new events are folded on their own, as they always were."""
        await setup(client, tenant)
        message_id = await a_message(client, db, tenant, "dana@northwind.example")
        now = int(time.time())
        keys = secret_keys(hooked_settings)
        delivered = sendgrid_event(message_id, "delivered", at=now - 300, event_id="d")
        assert (await service.receive(db, delivered, keys=keys, now=utcnow())).moved == 1
        (click,) = sendgrid_event(message_id, "click", at=now - 200, event_id="c")
        async with db.session(tenant.id) as session:
            session.add(
                DeliveryEventRow(
                    tenant_id=tenant.id,
                    message_id=message_id,
                    provider="sendgrid",
                    kind="clicked",
                    provider_event_id="c",
                    occurred_at=click.occurred_at,
                    received_at=utcnow(),
                    applied=False,
                    raw={},
                )
            )
        opened = sendgrid_event(message_id, "open", at=now - 100, event_id="o")
        receipt = await service.receive(db, [click, *opened], keys=keys, now=utcnow())
        assert receipt == Receipt(stored=1, duplicates=1, moved=1)
        row = await message_row(db, tenant, message_id)
        assert (row.delivery_status, row.clicked_at) == ("opened", None)
        async with db.session(tenant.id) as session:
            applied = await session.scalar(
                select(DeliveryEventRow.applied).where(DeliveryEventRow.provider_event_id == "o")
            )
        assert applied is True

    async def test_an_event_whose_message_is_gone_is_neither_stored_nor_kept(
        self, db: Database, tenant: TenantCtx, hooked_settings: Settings
    ) -> None:
        events = sendgrid_event(uuid.uuid4(), "delivered", at=int(time.time()), event_id="g")
        async with db.session(tenant.id) as session:
            receipt = await service.apply(
                session,
                tenant.id,
                [(uuid.uuid4(), events[0])],
                keys=secret_keys(hooked_settings),
                now=utcnow(),
            )
            kept = await session.scalar(text("SELECT count(*) FROM delivery_events"))
        assert (receipt, kept) == (Receipt(unmatched=1), 0)

    async def test_an_open_after_the_delivery_leaves_the_funnel_row_alone(
        self,
        client: httpx.AsyncClient,
        hooks: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
    ) -> None:
        await setup(client, tenant)
        message_id = await a_message(client, db, tenant, "dana@northwind.example")
        now = int(time.time())
        await post_sendgrid(hooks, sendgrid_events("delivered", message_id, timestamp=now - 60))

        async def funnel_row() -> Any:
            async with db.session(tenant.id) as session:
                return (
                    await session.execute(
                        text(
                            "SELECT f.xmin::text AS version, f.delivered_live_at FROM "
                            "lead_funnel f JOIN messages m ON m.lead_id = f.lead_id "
                            "WHERE m.id = :m"
                        ),
                        {"m": message_id},
                    )
                ).one()

        before = await funnel_row()
        assert before.delivered_live_at is not None
        opened = await post_sendgrid(hooks, sendgrid_events("open", message_id, timestamp=now))
        assert opened.json()["moved"] == 1
        assert await funnel_row() == before  # not rewritten: no stage time moved

    async def test_a_raw_value_orjson_refuses_is_still_stored_as_sent(
        self,
        client: httpx.AsyncClient,
        hooks: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
    ) -> None:
        await setup(client, tenant)
        message_id = await a_message(client, db, tenant, "dana@northwind.example")
        huge = 10**30  # beyond 64 bits: orjson refuses it, the standard library does not
        response = await post_sendgrid(hooks, sendgrid_events("delivered", message_id, tls=huge))
        assert response.json()["stored"] == 1
        async with db.session(tenant.id) as session:
            raw = await session.scalar(
                select(DeliveryEventRow.raw).where(DeliveryEventRow.message_id == message_id)
            )
        assert raw is not None
        assert raw["tls"] == huge

    async def test_a_suppression_is_audited_under_its_own_requests_correlation_id(
        self,
        client: httpx.AsyncClient,
        hooks: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
    ) -> None:
        await setup(client, tenant)
        angry = await a_message(client, db, tenant, "angry@acme.example")
        happy = await a_message(client, db, tenant, "happy@acme.example")

        async def post(events: list[dict[str, Any]], correlation_id: str) -> httpx.Response:
            body = json.dumps(events).encode()
            headers = {**sendgrid_headers(body), "x-correlation-id": correlation_id}
            return await hooks.post("/v1/telemetry/sendgrid/events", content=body, headers=headers)

        # A plain delivery, batched, beside a complaint written by its own request.
        delivered, complained = await asyncio.gather(
            post(sendgrid_events("delivered", happy), "corr-delivered"),
            post(sendgrid_events("spamreport", angry), "corr-complaint"),
        )
        assert delivered.json()["stored"] == 1
        assert complained.json()["suppressed"] == 1
        async with db.session(tenant.id) as session:
            audited = (
                await session.execute(
                    select(AuditEvent.correlation_id).where(
                        AuditEvent.action == "suppression.added"
                    )
                )
            ).scalars()
            assert list(audited) == ["corr-complaint"]
