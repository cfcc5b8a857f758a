"""Inbound replies over HTTP, signed the way each provider signs: Twilio's incoming-message
webhook (TwiML answers), SendGrid Inbound Parse (multipart, HTTP Basic) and Mailgun route
forwards (HMAC). Unsigned is 401/403, malformed 400/422, never a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from leadrelay.app import create_app
from leadrelay.capture.provider_models import LeadMessage
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.settings import Settings
from leadrelay.outreach.models import Message
from leadrelay.telemetry import inbound
from tests.factories import TenantCtx, TenantFactory
from tests.support import owner_connection
from tests.telemetry.test_inbound import (
    make_lead,
    sent_message,
    stored,
    suppressed,
    unique_email,
    unique_phone,
)

TWILIO_TOKEN = "twilio-auth-token-for-tests"
MAILGUN_KEY = "key-mailgun-webhook-signing-for-tests"
PARSE_USER, PARSE_PASSWORD = "parse", "parse-password-0123"
PUBLIC_URL = "https://relay.example.com"
PROBLEM_JSON = "application/problem+json"


@pytest.fixture(scope="module")
def live_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "public_url": PUBLIC_URL,
            "twilio_auth_token": SecretStr(TWILIO_TOKEN),
            "mailgun_webhook_signing_key": SecretStr(MAILGUN_KEY),
            "sendgrid_inbound_username": PARSE_USER,
            "sendgrid_inbound_password": SecretStr(PARSE_PASSWORD),
            "inbound_help_text": "Northwind alerts: reply STOP to stop. Help: 555-0100.",
        }
    )


@pytest.fixture(scope="module")
def replies_app(live_settings: Settings, db: Database) -> FastAPI:
    return create_app(live_settings, db=db)


@pytest.fixture
async def web(replies_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=replies_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


# --- signing as the providers do ------------------------------------------------------------


def twilio_signature(url: str, params: dict[str, str], token: str = TWILIO_TOKEN) -> str:
    """Twilio's scheme: the URL, then each POST field name+value in name order, HMAC-SHA1."""
    signed = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(
        hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    ).decode()


def twilio_form(
    sender: str, body: str, *, sid: str | None = None, to: str = "+14155550000"
) -> dict[str, str]:
    # The fields Twilio documents for an incoming message.
    return {
        "MessageSid": sid or f"SM{uuid.uuid4().hex}",
        "SmsSid": sid or "SM0",
        "AccountSid": "AC" + "a" * 32,
        "MessagingServiceSid": "MG" + "b" * 32,
        "From": sender,
        "To": to,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "FromCountry": "US",
        "ApiVersion": "2010-04-01",
    }  # fmt: skip


async def post_twilio(
    web: httpx.AsyncClient, form: dict[str, str], *, signature: str | None = None
) -> httpx.Response:
    path = "/v1/telemetry/twilio/inbound"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    headers["x-twilio-signature"] = (
        signature if signature is not None else twilio_signature(PUBLIC_URL + path, form)
    )
    return await web.post(path, content=urlencode(form).encode(), headers=headers)


def mailgun_fields(*, timestamp: int | None = None, key: str = MAILGUN_KEY) -> dict[str, str]:
    stamp = str(timestamp or int(time.time()))
    token = uuid.uuid4().hex + uuid.uuid4().hex[:18]  # 50 random characters
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": stamp, "token": token, "signature": signature}


def basic(user: str = PARSE_USER, password: str = PARSE_PASSWORD) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def parse_headers(sender: str, *, extra: str = "", message_id: str | None = None) -> str:
    message_id = message_id or f"<{uuid.uuid4()}@mail.gmail.com>"
    return (
        "Received: by mx.sendgrid.net with SMTP id abc; Wed, 02 Dec 2026 15:00:00 +0000\n"
        f"From: Dana Scully <{sender}>\n"
        "To: sam@reply.relay.example\n"
        "Subject: Re: A short call?\n"
        f"Message-ID: {message_id}\n"
        f"{extra}"
        "Date: Wed, 2 Dec 2026 15:00:00 +0000\n"
    )


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    return body


# --- Twilio -------------------------------------------------------------------------------------


class TestTwilio:
    async def test_stop_suppresses_and_answers_empty_twiml(
        self, web: httpx.AsyncClient, tenant: TenantCtx, db: Database, live_settings: Settings
    ) -> None:
        phone = unique_phone()
        lead_id = await make_lead(web, tenant, phone=phone)
        await sent_message(db, tenant, lead_id, channel="sms", recipient=phone)
        response = await post_twilio(web, twilio_form(phone, "Stop."))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/xml")
        # Twilio's Advanced Opt-Out sends the carrier confirmation itself.
        assert response.text == '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
        assert await suppressed(db, live_settings, tenant, phone=phone) == ["phone_opted_out"]
        (row,) = await stored(db, tenant)
        assert row.classification == "opt_out"
        assert "AccountSid" not in row.raw["twilio"]
        assert row.raw["provider"] == "twilio"

    async def test_help_is_answered_with_the_help_text(
        self, web: httpx.AsyncClient, tenant: TenantCtx, db: Database, live_settings: Settings
    ) -> None:
        phone = unique_phone()
        lead_id = await make_lead(web, tenant, phone=phone)
        await sent_message(db, tenant, lead_id, channel="sms", recipient=phone)
        form = twilio_form(phone, "help")
        response = await post_twilio(web, form)
        assert response.status_code == 200
        assert response.text == (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
            "LeadRelay Demo Ltd: Northwind alerts: reply STOP to stop. Help: 555-0100."
            "</Message></Response>"
        )
        # Twilio retrying the same message gets the same answer; it is stored once.
        again = await post_twilio(web, form)
        assert again.text == response.text
        assert len(await stored(db, tenant)) == 1

    async def test_a_whatsapp_reply_sets_replied_at(
        self, web: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        phone = unique_phone()
        lead_id = await make_lead(web, tenant, phone=phone)
        message_id = await sent_message(db, tenant, lead_id, channel="whatsapp", recipient=phone)
        form = twilio_form(
            f"whatsapp:{phone}", "Yes please, send the brochure", to="whatsapp:+14155550000"
        )
        response = await post_twilio(web, form)
        assert response.status_code == 200
        assert response.text.endswith("<Response></Response>")
        async with db.session(tenant.id) as session:
            message = await session.get(Message, message_id)
            assert message is not None
            assert message.replied_at is not None
            row = await session.scalar(select(LeadMessage))
            assert row is not None
            assert (row.channel, row.classification) == ("whatsapp", "reply")

    async def test_an_unknown_number_is_kept_and_answered(
        self, web: httpx.AsyncClient, urls: DatabaseUrls
    ) -> None:
        stranger = unique_phone()
        response = await post_twilio(web, twilio_form(stranger, "Who is this?"))
        assert response.status_code == 200
        with owner_connection(urls) as connection:
            letter = connection.execute(
                "SELECT payload FROM dead_letters WHERE task_name = %s AND payload->>'sender' = %s",
                (inbound.REPLY_TASK, stranger),
            ).fetchone()
        assert letter is not None
        assert letter["payload"]["text"] == "Who is this?"
        helpless = await post_twilio(web, twilio_form(stranger, "INFO"))
        assert "<Message>Northwind alerts: reply STOP to stop." in helpless.text

    async def test_unsigned_wrongly_signed_and_malformed(
        self, web: httpx.AsyncClient, tenant: TenantCtx, db: Database, live_settings: Settings
    ) -> None:
        phone = unique_phone()
        lead_id = await make_lead(web, tenant, phone=phone)
        await sent_message(db, tenant, lead_id, channel="sms", recipient=phone)
        form = twilio_form(phone, "STOP")
        assert_problem(await post_twilio(web, form, signature=""), 403)
        other = twilio_signature(PUBLIC_URL + "/v1/telemetry/twilio/inbound", form, "wrong")
        body = assert_problem(await post_twilio(web, form, signature=other), 403)
        assert body["code"] == "bad-twilio-signature"
        # Signed for another URL (a replay against a different endpoint).
        elsewhere = twilio_signature(PUBLIC_URL + "/v1/other", form)
        assert_problem(await post_twilio(web, form, signature=elsewhere), 403)
        assert await suppressed(db, live_settings, tenant, phone=phone) == []
        assert await stored(db, tenant) == []
        missing = {k: v for k, v in form.items() if k not in {"MessageSid", "SmsSid"}}
        problem = assert_problem(await post_twilio(web, missing), 422)
        assert problem["errors"] == [{"field": "MessageSid", "reason": "missing"}]

    async def test_refused_when_twilio_is_not_configured(self, client: httpx.AsyncClient) -> None:
        form = twilio_form(unique_phone(), "STOP")
        response = await client.post(
            "/v1/telemetry/twilio/inbound",
            content=urlencode(form).encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert_problem(response, 403)


# --- SendGrid Inbound Parse --------------------------------------------------------------------


class TestSendGrid:
    async def test_a_reply_is_matched_by_in_reply_to(
        self, web: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        address = unique_email()
        lead_id = await make_lead(web, tenant, email=address)
        first = await sent_message(db, tenant, lead_id, channel="email", recipient=address)
        headers = parse_headers(address, extra=f"In-Reply-To: <{first}@relay.example>\n")
        data = {
            "headers": headers,
            "from": f"Dana Scully <{address}>",
            "to": "sam@reply.relay.example",
            "subject": "Re: A short call?",
            "text": "Thursday works.\n\nOn Tue, Sam wrote:\n> Reply STOP to opt out",
            "html": "<p>Thursday works.</p>",
            "envelope": json.dumps({"to": ["sam@reply.relay.example"], "from": address}),
            "charsets": json.dumps({"to": "UTF-8", "subject": "UTF-8", "text": "utf-8"}),
            "spam_score": "0.1",
            "attachments": "0",
        }  # fmt: skip
        files = {"attachment1": ("note.txt", b"see you", "text/plain")}
        response = await web.post(
            "/v1/telemetry/sendgrid/inbound", data=data, files=files, headers=basic()
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "stored", "classification": "reply"}
        (row,) = await stored(db, tenant)
        assert row.message_id == first
        assert row.lead_id == lead_id
        assert row.raw["sendgrid"]["attachments"] == 1
        assert row.raw["to"] == "sam@reply.relay.example"
        assert not any(name == "Received" for name, _ in row.raw["headers"])
        async with db.session(tenant.id) as session:
            message = await session.get(Message, first)
            assert message is not None
            assert message.replied_at is not None

    async def test_a_latin1_opt_out_is_read_in_its_charset(
        self, web: httpx.AsyncClient, tenant: TenantCtx, db: Database, live_settings: Settings
    ) -> None:
        address = unique_email()
        lead_id = await make_lead(web, tenant, email=address)
        await sent_message(db, tenant, lead_id, channel="email", recipient=address)
        boundary = "xYzZY"
        parts = {
            "headers": parse_headers(address).encode(),
            "from": address.encode(),
            "subject": "Arrêt".encode("iso-8859-1"),
            "text": "Merci, arrêt s'il vous plaît. Remove me from your list.".encode("latin-1"),
            "charsets": json.dumps({"subject": "iso-8859-1", "text": "iso-8859-1"}).encode(),
        }  # fmt: skip
        body = (
            b"".join(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                + value
                + b"\r\n"
                for name, value in parts.items()
            )
            + f"--{boundary}--\r\n".encode()
        )
        response = await web.post(
            "/v1/telemetry/sendgrid/inbound",
            content=body,
            headers={**basic(), "content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.json() == {"status": "stored", "classification": "opt_out"}
        (row,) = await stored(db, tenant)
        assert row.body.startswith("Merci, arrêt")
        assert await suppressed(db, live_settings, tenant, email=address) == ["email_opted_out"]

    async def test_credentials_are_required(self, web: httpx.AsyncClient) -> None:
        data = {"from": "x@example.com", "text": "STOP", "headers": ""}
        url = "/v1/telemetry/sendgrid/inbound"
        assert_problem(await web.post(url, data=data), 401)
        body = assert_problem(await web.post(url, data=data, headers=basic(password="no")), 401)
        assert body["code"] == "bad-inbound-credentials"
        assert_problem(await web.post(url, data=data, headers={"authorization": "Basic %%%"}), 401)

    async def test_malformed_posts(self, web: httpx.AsyncClient) -> None:
        url = "/v1/telemetry/sendgrid/inbound"
        no_sender = await web.post(url, data={"text": "hi", "headers": ""}, headers=basic())
        assert assert_problem(no_sender, 422)["errors"] == [{"field": "from", "reason": "missing"}]
        bad_json = await web.post(
            url, data={"from": "a@b.example", "envelope": "{nope"}, headers=basic()
        )
        assert_problem(bad_json, 422)
        broken = await web.post(
            url,
            content=b"--b\r\nContent-Disposition: form-data\r\n\r\nx",
            headers={**basic(), "content-type": "multipart/form-data; boundary=b"},
        )
        assert broken.status_code in (400, 422), broken.text
        assert broken.headers["content-type"].startswith(PROBLEM_JSON)


# --- Mailgun ------------------------------------------------------------------------------------


class TestMailgun:
    async def test_an_out_of_office_is_stored_not_counted(
        self, web: httpx.AsyncClient, tenant: TenantCtx, db: Database, live_settings: Settings
    ) -> None:
        address = unique_email()
        lead_id = await make_lead(web, tenant, email=address)
        message_id = await sent_message(db, tenant, lead_id, channel="email", recipient=address)
        headers = [
            ["Received", "from mail.northwind.example"],
            ["From", f"Dana <{address}>"],
            ["Subject", "Out of Office: A short call?"],
            ["Auto-Submitted", "auto-replied"],
            ["In-Reply-To", f"<{message_id}@relay.example>"],
            ["Message-Id", f"<{uuid.uuid4()}@northwind.example>"],
        ]
        form = {
            **mailgun_fields(),
            "recipient": "sam@reply.relay.example",
            "sender": "bounces+srs=abc@northwind.example",
            "from": f"Dana <{address}>",
            "subject": "Out of Office: A short call?",
            "body-plain": "I am out of the office until Monday. To unsubscribe, reply STOP.",
            "stripped-text": "I am out of the office until Monday.",
            "message-headers": json.dumps(headers),
        }
        response = await web.post("/v1/telemetry/mailgun/inbound", data=form)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "stored", "classification": "auto_reply"}
        async with db.session(tenant.id) as session:
            message = await session.get(Message, message_id)
            assert message is not None
            assert message.replied_at is None
        assert await suppressed(db, live_settings, tenant, email=address) == []
        (row,) = await stored(db, tenant)
        assert row.message_id == message_id
        assert "signature" not in json.dumps(row.raw)
        assert "token" not in row.raw

    async def test_a_reply_with_in_reply_to_field_and_a_duplicate_delivery(
        self, web: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        address = unique_email()
        lead_id = await make_lead(web, tenant, email=address)
        message_id = await sent_message(db, tenant, lead_id, channel="email", recipient=address)
        fields = {
            "recipient": "sam@reply.relay.example",
            "sender": address,
            "from": address,
            "subject": "Re: A short call?",
            "body-plain": "Yes, Thursday at 10.",
            "Message-Id": f"<{uuid.uuid4()}@northwind.example>",
            "In-Reply-To": f"<{message_id}@relay.example>",
            "References": f"<{message_id}@relay.example>",
        }
        first = await web.post("/v1/telemetry/mailgun/inbound", data={**mailgun_fields(), **fields})
        again = await web.post("/v1/telemetry/mailgun/inbound", data={**mailgun_fields(), **fields})
        assert first.json() == {"status": "stored", "classification": "reply"}
        assert again.json() == {"status": "duplicate", "classification": "reply"}
        assert len(await stored(db, tenant)) == 1

    async def test_bad_and_stale_signatures_are_refused(
        self, web: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        address = unique_email()
        lead_id = await make_lead(web, tenant, email=address)
        await sent_message(db, tenant, lead_id, channel="email", recipient=address)
        fields = {"sender": address, "body-plain": "STOP", "subject": "stop"}
        url = "/v1/telemetry/mailgun/inbound"
        assert_problem(await web.post(url, data=fields), 403)
        wrong = await web.post(url, data={**mailgun_fields(key="other"), **fields})
        assert assert_problem(wrong, 403)["code"] == "bad-mailgun-signature"
        stale = mailgun_fields(timestamp=int(time.time()) - 3600)
        assert_problem(await web.post(url, data={**stale, **fields}), 403)
        assert await stored(db, tenant) == []

    async def test_malformed_forwards(self, web: httpx.AsyncClient) -> None:
        url = "/v1/telemetry/mailgun/inbound"
        no_sender = await web.post(url, data={**mailgun_fields(), "body-plain": "hi"})
        assert assert_problem(no_sender, 422)["errors"] == [
            {"field": "sender", "reason": "missing"}
        ]
        bad_headers = await web.post(
            url,
            data={**mailgun_fields(), "sender": "a@b.example", "message-headers": "[[oops"},
        )
        assert_problem(bad_headers, 422)
        not_an_address = await web.post(
            url, data={**mailgun_fields(), "sender": "nobody", "body-plain": "x"}
        )
        assert_problem(not_an_address, 422)
