"""Live phone channels through the whole send path: SMS and a call via Twilio's REST API on
loopback (the documented requests), the call's TwiML served to a signed request, the callee's
"remove me" suppressing the number at once, and unsigned requests refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from leadrelay.core.db import Database
from leadrelay.core.security import secret_keys
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role
from leadrelay.identity.service import system_principal
from leadrelay.outreach import service
from leadrelay.outreach.models import Message, MessageKind, MessageStatus
from tests.capture.test_intake_api import make_source
from tests.factories import TenantCtx, TenantFactory
from tests.outreach.test_send import SENDER
from tests.outreach.test_twilio import TwilioApi, api, fixture

__all__ = ["api"]  # the loopback Twilio API fixture

SID = "AC" + "1" * 32
TOKEN = "twilio-test-auth-token"
NUMBER = "+442079460958"  # Ofcom's drama range: London, never a real subscriber


def noon_on_a_weekday() -> datetime:
    """Calls are only placed 11:00–17:00 on weekdays in the callee's zone (London here); the
    next such noon, after the consent and approval the test records now."""
    day = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def signed(url: str, form: dict[str, str]) -> str:
    """X-Twilio-Signature as Twilio computes it (twilio-python RequestValidator)."""
    data = url + "".join(k + form[k] for k in sorted(form))
    return base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


@pytest.fixture
def live(settings: Settings, api: TwilioApi) -> Settings:
    return settings.model_copy(
        update={
            "dry_run": False,
            "twilio_account_sid": SID,
            "twilio_auth_token": type(settings.twilio_auth_token)(TOKEN),
            "twilio_base_url": api.base_url,
            "twilio_from_number": "+14155550100",
            "twilio_voice_from": "+14155550101",
        }
    )


async def approved_phone_draft(
    client: httpx.AsyncClient, tenant: TenantCtx, channel: str
) -> tuple[str, str]:
    """A lead with a London number, consent for `channel`, tenant live; (lead, draft) ids."""
    admin = await tenant.headers(Role.ADMIN)
    await client.patch("/v1/drafting/sender", json=SENDER, headers=admin)
    await client.patch(
        "/v1/outreach/policy",
        json={"dry_run": False, "confirmation": service.LIVE_CONFIRMATION},
        headers=admin,
    )
    await make_source(client, tenant, "Form")
    lead = await client.post(
        "/v1/leads",
        json={"source": "Form", "phone": NUMBER, "full_name": "Ada Lovelace", "company": "AE"},
        headers=admin,
    )
    lead_id = lead.json()["lead_id"]
    consent = await client.post(
        f"/v1/leads/{lead_id}/consents",
        json={"channel": channel, "state": "granted", "purpose": "demo", "method": "web form"},
        headers=admin,
    )
    assert consent.status_code == 201, consent.text
    rep = await tenant.headers(Role.REP)
    draft = await client.post(
        "/v1/drafts", json={"lead_id": lead_id, "channel": channel, "submit": True}, headers=rep
    )
    assert draft.status_code == 201, draft.text
    draft_id = draft.json()["draft"]["id"]
    reviewer = await tenant.headers(Role.REVIEWER)
    approved = await client.post(f"/v1/approvals/{draft_id}/approve", json={}, headers=reviewer)
    assert approved.status_code == 200, approved.text
    return lead_id, draft_id


async def send(
    db: Database, tenant: TenantCtx, live: Settings, draft_id: str
) -> tuple[Message, Message | None]:
    keys, now = secret_keys(live), noon_on_a_weekday()
    async with db.session(tenant.id) as session:
        queued, _ = await service.queue_draft(
            session,
            system_principal(tenant.id),
            uuid.UUID(draft_id),
            settings=live,
            keys=keys,
            kind=MessageKind.ONE_TO_ONE,
            idempotency_key=None,
            now=now,
        )
    async with db.session(tenant.id) as session:
        handover = await service.begin_delivery(
            session, queued.id, settings=live, keys=keys, now=now
        )
    if handover is None:
        return queued, None
    result = await service.hand_over(handover, live)
    async with db.session(tenant.id) as session:
        done, _ = await service.finish_delivery(
            session, queued.id, result, settings=live, keys=keys, now=now
        )
    return queued, done


class TestTwilioChannels:
    async def test_an_sms_goes_out_through_twilio(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        live: Settings,
        api: TwilioApi,
    ) -> None:
        _, draft_id = await approved_phone_draft(client, tenant, "sms")
        api.reply(201, fixture("message_created.json"))
        queued, done = await send(db, tenant, live, draft_id)
        assert queued.provider == "twilio"
        assert done is not None, (queued.status, queued.block_reason)
        assert done.status == MessageStatus.SENT
        assert done.provider_message_id == json.loads(fixture("message_created.json"))["sid"]
        [request] = api.requests
        assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
        form = dict(request.form)
        assert form["To"] == NUMBER
        assert form["From"] == "+14155550100"
        assert form["Body"].endswith("Reply STOP to opt out.")  # the first SMS carries STOP

    async def test_a_call_speaks_the_script_and_remove_me_suppresses_the_number(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        live: Settings,
        api: TwilioApi,
        settings: Settings,
        app: FastAPI,
    ) -> None:
        lead_id, draft_id = await approved_phone_draft(client, tenant, "voice")
        api.reply(201, fixture("call_created.json"))
        queued, done = await send(db, tenant, live, draft_id)
        assert done is not None
        assert done.status == MessageStatus.SENT, done.error
        form = dict(api.requests[0].form)
        assert form["MachineDetection"] == "DetectMessageEnd"
        twiml_url = form["Url"]
        assert twiml_url.startswith(settings.public_url.rstrip("/") + "/voice/")
        assert form["StatusCallback"] == twiml_url + "/status"

        # Twilio fetches the TwiML: signed by the account, or refused.
        path = urlsplit(twiml_url).path
        call = {"CallSid": "CA" + "2" * 32, "AnsweredBy": "human"}
        app.state.settings = live
        try:
            unsigned = await client.post(path, data=call)
            assert unsigned.status_code == 403
            twiml = await client.post(
                path, data=call, headers={"x-twilio-signature": signed(twiml_url, call)}
            )
            assert twiml.status_code == 200, twiml.text
            assert twiml.headers["content-type"].startswith("application/xml")
            assert "<Gather" in twiml.text
            assert "calling from LeadRelay Demo Ltd" in twiml.text

            machine = {"CallSid": call["CallSid"], "AnsweredBy": "machine_end_beep"}
            voicemail = await client.post(
                path, data=machine, headers={"x-twilio-signature": signed(twiml_url, machine)}
            )
            assert "<Gather" not in voicemail.text

            said = {"CallSid": call["CallSid"], "SpeechResult": "Please take me off your list"}
            gather_url = twiml_url + "/gather"
            answer = await client.post(
                path + "/gather",
                data=said,
                headers={"x-twilio-signature": signed(gather_url, said)},
            )
            assert answer.status_code == 200, answer.text
            status = {"CallSid": call["CallSid"], "CallStatus": "completed", "CallDuration": "42"}
            status_url = twiml_url + "/status"
            done_call = await client.post(
                path + "/status",
                data=status,
                headers={"x-twilio-signature": signed(status_url, status)},
            )
            assert done_call.status_code == 204
        finally:
            app.state.settings = settings

        rep = await tenant.headers(Role.REP)
        message = (await client.get(f"/v1/messages/{queued.id}", headers=rep)).json()
        assert message["status"] == "sent"
        check = await client.get(
            "/v1/suppressions/check", params={"kind": "phone", "address": NUMBER}, headers=rep
        )
        assert check.json()["reasons"] == ["phone_opted_out"]
        consents = (await client.get(f"/v1/leads/{lead_id}/consents", headers=rep)).json()
        assert consents[0]["state"] == "withdrawn"
        async with db.session(tenant.id) as session:
            row = await session.get(Message, queued.id)
            assert row is not None
            assert row.outcome is not None
            assert row.outcome["intent"] == "remove_me"
            assert row.outcome["duration_seconds"] == 42

    async def test_live_without_a_provider_fails_visibly(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        settings: Settings,
    ) -> None:
        _, draft_id = await approved_phone_draft(client, tenant, "sms")
        unconfigured = settings.model_copy(update={"dry_run": False})
        queued, done = await send(db, tenant, unconfigured, draft_id)
        assert queued.provider == "none"
        assert done is not None
        assert done.status == MessageStatus.FAILED
        assert done.error == "no sms provider configured"


def test_signature_helper_matches_twilio_documentation_example() -> None:
    # https://www.twilio.com/docs/usage/security#validating-requests (the documented example)
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    data = url + "".join(k + params[k] for k in sorted(params))
    digest = hmac.new(b"12345", data.encode(), hashlib.sha1).digest()
    assert base64.b64encode(digest).decode() == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert urlencode(params)  # the form Twilio posts
