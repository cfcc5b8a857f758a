"""WhatsApp Cloud API inbound messages over HTTP, with Meta's example payloads: a message
creates (or matches) its sender's lead and is stored with it; replays and statuses are not."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from leadrelay.capture import whatsapp
from leadrelay.capture.meta import load_notification
from leadrelay.capture.models import Lead
from leadrelay.capture.provider_models import LeadMessage
from leadrelay.compliance.models import AuditEvent
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.jobs import JobRuntime
from leadrelay.core.jobs_models import DeadLetter
from leadrelay.identity.models import Role
from tests.capture.test_intake_api import make_source
from tests.capture.test_meta import PROBLEM_JSON, configure, fixture, signed
from tests.factories import TenantCtx, TenantFactory
from tests.support import jobs_for, run_jobs

TASK = whatsapp.MESSAGE_TASK
MESSAGE_ID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="


def message_webhook(message_id: str = MESSAGE_ID, body: str | None = None) -> bytes:
    payload = fixture("whatsapp_text_message.json")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["id"] = message_id
    if body is not None:
        message["text"]["body"] = body
    return json.dumps(payload).encode()


async def whatsapp_source(
    client: httpx.AsyncClient, tenant: TenantCtx, name: str = "WhatsApp", *, vet: bool = True
) -> str:
    source = await make_source(client, tenant, name, vet=vet)
    response = await configure(client, tenant, source["id"], provider="whatsapp")
    assert response.status_code == 200, response.text
    assert response.json()["callback_url"].endswith(f"/v1/inbound/whatsapp/{source['id']}")
    return str(source["id"])


async def post(client: httpx.AsyncClient, source_id: str, body: bytes) -> httpx.Response:
    return await client.post(
        f"/v1/inbound/whatsapp/{source_id}", content=body, headers=signed(body)
    )


async def messages_of(db: Database, tenant: TenantCtx) -> list[LeadMessage]:
    async with db.session(tenant.id) as session:
        return list(await session.scalars(select(LeadMessage).order_by(LeadMessage.received_at)))


async def audited(db: Database, tenant: TenantCtx, action: str) -> list[dict[str, object]]:
    async with db.session(tenant.id) as session:
        return list(
            await session.scalars(select(AuditEvent.data).where(AuditEvent.action == action))
        )


async def count_leads(db: Database, tenant: TenantCtx) -> int:
    async with db.session(tenant.id) as session:
        return int(await session.scalar(select(func.count()).select_from(Lead)) or 0)


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


class TestVerification:
    async def test_answers_the_challenge_and_refuses_a_wrong_token(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        source_id = await whatsapp_source(client, tenant)
        params = fixture("meta_verification_request.json")
        ok = await client.get(f"/v1/inbound/whatsapp/{source_id}", params=params)
        assert (ok.status_code, ok.text) == (200, "1158201444")
        wrong = await client.get(
            f"/v1/inbound/whatsapp/{source_id}", params={**params, "hub.verify_token": "nope"}
        )
        assert wrong.status_code == 403
        assert wrong.headers["content-type"] == PROBLEM_JSON
        # A WhatsApp source is no Lead Ads endpoint.
        meta = await client.get(f"/v1/inbound/meta/{source_id}", params=params)
        assert meta.status_code == 403


class TestInboundMessages:
    async def test_a_message_creates_a_lead_and_is_stored_with_it(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, job_runtime: JobRuntime
    ) -> None:
        source_id = await whatsapp_source(client, tenant)
        body = json.dumps(fixture("whatsapp_text_message.json")).encode()

        response = await post(client, source_id, body)

        assert response.status_code == 200, response.text
        assert response.json() == {
            "accepted": 1,
            "duplicates": 0,
            "ignored": 0,
            "ignored_fields": {},
        }
        await run_jobs()
        (message,) = await messages_of(db, tenant)
        assert message.lead_id is not None
        assert message.processed_at is not None
        assert (message.channel, message.direction) == ("whatsapp", "inbound")
        assert message.provider_message_id == MESSAGE_ID
        assert (message.message_type, message.body) == ("text", "Does it come in another color?")
        assert message.received_at == datetime.fromtimestamp(1749416383, UTC)
        assert message.raw["metadata"]["phone_number_id"] == "106540352242922"
        assert str(message.source_id) == source_id
        headers = await tenant.headers(Role.REP)
        detail = (await client.get(f"/v1/leads/{message.lead_id}", headers=headers)).json()
        assert detail["phone_e164"] == "+16505551234"
        assert detail["full_name"] == "Sheena Nelson"
        assert detail["source_id"] == source_id
        assert [e["external_id"] for e in detail["external_ids"]] == ["16505551234"]
        provenance = {(o["field"], o["raw_value"]) for o in detail["provenance"]}
        assert ("phone_e164", "+16505551234") in provenance
        assert ("full_name", "Sheena Nelson") in provenance
        (received,) = await audited(db, tenant, "provider_webhook.received")
        assert received == {"provider": "whatsapp", "accepted": 1, "duplicates": 0, "ignored": 0}

    async def test_a_second_message_from_the_same_number_matches_the_lead(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, job_runtime: JobRuntime
    ) -> None:
        source_id = await whatsapp_source(client, tenant)
        await post(client, source_id, message_webhook())
        await run_jobs()
        second = await post(client, source_id, message_webhook("wamid.SECOND", "In navy?"))
        assert second.json()["accepted"] == 1
        await run_jobs()
        first, then = await messages_of(db, tenant)
        assert then.body == "In navy?"
        assert then.lead_id == first.lead_id is not None
        assert await count_leads(db, tenant) == 1

    async def test_two_messages_from_a_new_number_in_one_delivery_make_one_lead(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, job_runtime: JobRuntime
    ) -> None:
        source_id = await whatsapp_source(client, tenant)
        payload = json.loads(message_webhook())
        value = payload["entry"][0]["changes"][0]["value"]
        extra = copy.deepcopy(value["messages"][0])
        extra["id"], extra["text"]["body"] = "wamid.OTHER", "Hello?"
        value["messages"].append(extra)
        response = await post(client, source_id, json.dumps(payload).encode())
        assert response.json()["accepted"] == 2
        await run_jobs()
        leads = {m.lead_id for m in await messages_of(db, tenant)}
        assert len(leads) == 1
        assert None not in leads
        assert await count_leads(db, tenant) == 1

    async def test_a_replayed_message_id_is_ignored(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        urls: DatabaseUrls,
        job_runtime: JobRuntime,
    ) -> None:
        source_id = await whatsapp_source(client, tenant)
        body = message_webhook()
        first = await post(client, source_id, body)
        again = await post(client, source_id, body)
        assert (first.json()["accepted"], again.json()["accepted"]) == (1, 0)
        assert again.json()["duplicates"] == 1
        await run_jobs()
        assert len(await messages_of(db, tenant)) == 1
        assert len(jobs_for(urls, TASK, source_id=source_id)) == 1
        assert await count_leads(db, tenant) == 1

    async def test_statuses_and_other_fields_are_counted_as_ignored(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, urls: DatabaseUrls
    ) -> None:
        source_id = await whatsapp_source(client, tenant)
        payload = fixture("whatsapp_status_delivered.json")
        payload["entry"][0]["changes"].append(
            {"field": "message_template_status_update", "value": {"event": "APPROVED"}}
        )
        response = await post(client, source_id, json.dumps(payload).encode())
        assert response.status_code == 200
        assert response.json() == {
            "accepted": 0,
            "duplicates": 0,
            "ignored": 2,
            "ignored_fields": {"statuses": 1, "message_template_status_update": 1},
            # Not a lead; handed to telemetry, which knows no message of ours by that id.
            "delivery_events": {
                "stored": 0,
                "duplicates": 0,
                "unmatched": 1,
                "moved": 0,
                "suppressed": 0,
            },
        }
        assert await messages_of(db, tenant) == []
        assert jobs_for(urls, TASK, source_id=source_id) == []
        assert await audited(db, tenant, "provider_webhook.received") == []  # logged only

    async def test_refuses_bad_signatures_bad_bodies_and_unvetted_sources(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, urls: DatabaseUrls
    ) -> None:
        source_id = await whatsapp_source(client, tenant)
        body = message_webhook()
        tampered = await client.post(
            f"/v1/inbound/whatsapp/{source_id}",
            content=body.replace(b"another color", b"another colour"),
            headers=signed(body),
        )
        assert tampered.status_code == 401
        page = json.dumps(fixture("meta_leadgen_webhook.json")).encode()
        wrong_object = await post(client, source_id, page)
        assert wrong_object.status_code == 400
        assert wrong_object.json()["code"] == "unexpected-object"
        broken = json.loads(body)
        broken["entry"][0]["changes"][0]["value"]["messages"][0]["from"] = "not a number"
        invalid = await post(client, source_id, json.dumps(broken).encode())
        assert invalid.status_code == 400
        pending = await whatsapp_source(client, tenant, "WhatsApp (pending)", vet=False)
        refused = await post(client, pending, body)
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["type"] == "not-vetted"
        assert await messages_of(db, tenant) == []
        assert jobs_for(urls, TASK, source_id=source_id) == []

    async def test_a_number_intake_rejects_is_a_dead_letter(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, job_runtime: JobRuntime
    ) -> None:
        source_id = await whatsapp_source(client, tenant)
        payload = json.loads(message_webhook("wamid.BADNUMBER"))
        value = payload["entry"][0]["changes"][0]["value"]
        value["messages"][0]["from"] = value["contacts"][0]["wa_id"] = "10000"
        await post(client, source_id, json.dumps(payload).encode())
        await run_jobs()
        (message,) = await messages_of(db, tenant)
        assert message.lead_id is None  # kept, unattached, for a replay
        async with db.session(tenant.id) as session:
            letter = await session.scalar(select(DeadLetter).where(DeadLetter.task_name == TASK))
        assert letter is not None
        assert letter.payload["message_id"] == str(message.id)
        assert "rejected by intake" in letter.error


class TestParsing:
    def test_a_sender_without_a_number_is_counted_not_dropped(self) -> None:
        payload: dict[str, Any] = json.loads(message_webhook())
        del payload["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
        notification = load_notification(
            json.dumps(payload).encode(), expected_object="whatsapp_business_account"
        )
        messages, ignored = whatsapp.parse_messages(notification)
        assert messages == []
        assert ignored == {"messages_without_phone": 1}

    def test_reads_the_body_of_replies_and_captions(self) -> None:
        assert whatsapp.message_body({"type": "text", "text": {"body": " hi "}}) == "hi"
        assert (
            whatsapp.message_body(
                {"type": "interactive", "interactive": {"button_reply": {"title": "Cancel"}}}
            )
            == "Cancel"
        )
        assert whatsapp.message_body({"type": "image", "image": {"caption": "Blue?"}}) == "Blue?"
        assert whatsapp.message_body({"type": "reaction", "reaction": {"emoji": "x"}}) == ""
