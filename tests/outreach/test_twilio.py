"""The Twilio channels against a real HTTP server on loopback playing Twilio's REST API: the
exact requests Twilio documents (path, Basic auth, form fields) and every way it says yes,
slow down, no, or nothing at all. Response bodies are in `fixtures/twilio` (see its README)."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from typing_extensions import override

from leadrelay.outreach.channels.twilio import (
    OutboundCall,
    OutboundText,
    TwilioMessaging,
    TwilioSettings,
    TwilioVoice,
    mask_phone,
)
from leadrelay.outreach.voice import intro_twiml
from tests.conftest import free_port

FIXTURES = Path(__file__).parent / "fixtures" / "twilio"
NOW = datetime(2025, 3, 4, 9, 30, 15, tzinfo=UTC)
SID = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
TOKEN = "twilio-test-auth-token"
MESSAGES_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"
CALLS_PATH = f"/2010-04-01/Accounts/{SID}/Calls.json"
RECIPIENT = "+14155552671"
SMS_FROM = "+15017122661"
WHATSAPP_FROM = "+14155238886"
SERVICE_SID = "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
STATUS_URL = "https://leadrelay.example.com/webhooks/twilio/status"
VOICE_BASE = "https://leadrelay.example.com/webhooks/twilio/voice"
BASIC = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# --- Twilio's REST API on loopback ------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def form(self) -> list[tuple[str, str]]:
        return parse_qsl(self.body.decode(), keep_blank_values=True, strict_parsing=True)


@dataclass
class TwilioApi:
    """Answers queued (status, body, headers, delay) replies in order, 500 when none is left."""

    base_url: str = ""
    requests: list[Seen] = field(default_factory=list)
    replies: deque[tuple[int, str, dict[str, str], float]] = field(default_factory=deque)

    def reply(
        self,
        status: int,
        body: str | Mapping[str, object],
        *,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.replies.append((status, text, dict(headers or {}), delay))


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    @override
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and left is the point of some tests


@pytest.fixture
def api() -> Iterator[TwilioApi]:
    state = TwilioApi()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            state.requests.append(
                Seen(
                    method="POST",
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length),
                )
            )
            status, body, headers, delay = (
                state.replies.popleft() if state.replies else (500, "", {}, 0.0)
            )
            time.sleep(delay)
            payload = body.encode()
            self.send_response(status)
            self.send_header("content-type", "application/json; charset=utf-8")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        @override
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def settings(base_url: str, **overrides: Any) -> TwilioSettings:
    fields: dict[str, Any] = {
        "account_sid": SID,
        "auth_token": TOKEN,
        "base_url": base_url,
        "from_number": SMS_FROM,
        "whatsapp_from": WHATSAPP_FROM,
        "voice_from": SMS_FROM,
        "status_callback_url": STATUS_URL,
        "voice_url_base": VOICE_BASE,
        "timeout": 2.0,
    }
    fields.update(overrides)
    return TwilioSettings(**fields)


def messaging(
    api: TwilioApi, client: httpx.AsyncClient | None, **overrides: Any
) -> TwilioMessaging:
    return TwilioMessaging(settings(api.base_url, **overrides), client=client, clock=lambda: NOW)


def voice(api: TwilioApi, client: httpx.AsyncClient, **overrides: Any) -> TwilioVoice:
    return TwilioVoice(settings(api.base_url, **overrides), client=client, clock=lambda: NOW)


def text(
    body: str = "Hi Grace, a short call this week? Reply STOP to opt out.", **kw: Any
) -> OutboundText:
    fields: dict[str, Any] = {
        "message_id": uuid.uuid4(),
        "channel": "sms",
        "to": RECIPIENT,
        "body": body,
    }
    fields.update(kw)
    return OutboundText(**fields)


# --- Messages ---------------------------------------------------------------------------------


class TestTwilioMessaging:
    async def test_sends_an_sms_as_documented(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(201, fixture("message_created.json"))
        message = text()
        result = await messaging(api, http_client).send(message)
        [seen] = api.requests
        assert (seen.method, seen.path) == ("POST", MESSAGES_PATH)
        assert seen.headers["authorization"] == BASIC
        assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
        assert seen.form == [
            ("To", RECIPIENT),
            ("From", SMS_FROM),
            ("Body", message.body),
            ("StatusCallback", STATUS_URL),
        ]
        assert (result.status, result.provider_message_id) == (
            "sent",
            "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        )
        assert result.raw == seen.body
        assert TOKEN.encode() not in result.raw

    async def test_prefers_the_messaging_service_over_a_number(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(201, fixture("message_created.json"))
        await messaging(api, http_client, messaging_service_sid=SERVICE_SID).send(text())
        form = dict(api.requests[0].form)
        assert form["MessagingServiceSid"] == SERVICE_SID
        assert "From" not in form

    async def test_whatsapp_addresses_both_ends_with_the_whatsapp_prefix(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(201, fixture("message_created.json"))
        result = await messaging(api, http_client).send(text(channel="whatsapp"))
        form = api.requests[0].form
        assert form[:2] == [("To", f"whatsapp:{RECIPIENT}"), ("From", f"whatsapp:{WHATSAPP_FROM}")]
        assert result.is_sent

    async def test_whatsapp_without_its_own_number_goes_through_the_service(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(201, fixture("message_created.json"))
        channel = messaging(api, http_client, whatsapp_from=None, messaging_service_sid=SERVICE_SID)
        await channel.send(text(channel="whatsapp"))
        assert api.requests[0].form[:2] == [
            ("To", f"whatsapp:{RECIPIENT}"),
            ("MessagingServiceSid", SERVICE_SID),
        ]

    async def test_a_channel_without_a_sender_fails_visibly_without_a_request(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        channel = messaging(api, http_client, whatsapp_from=None)
        result = await channel.send(text(channel="whatsapp"))
        assert (result.status, result.detail) == (
            "permanent",
            "no whatsapp sender configured for this Twilio account",
        )
        assert api.requests == []

    async def test_the_body_travels_form_encoded_byte_for_byte(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(201, fixture("message_created.json"))
        body = "Café & co: 100% = ✓ +1 (415) 555?\nNext line"
        await messaging(api, http_client).send(text(body))
        assert dict(api.requests[0].form)["Body"] == body

    async def test_without_a_status_callback_none_is_sent(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(201, fixture("message_created.json"))
        await messaging(api, http_client, status_callback_url=None).send(text())
        assert "StatusCallback" not in dict(api.requests[0].form)

    async def test_rate_limit_is_retried_after_twilios_retry_after(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(429, fixture("error_20429.json"), headers={"Retry-After": "7"})
        result = await messaging(api, http_client).send(text())
        assert (result.status, result.retry_after) == ("transient", 7.0)
        assert "20429" in result.detail
        assert result.provider_message_id is None
        assert len(api.requests) == 1  # the job retries, not the adapter

    async def test_rate_limit_without_retry_after_waits_the_configured_pause(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(429, fixture("error_20429.json"))
        result = await messaging(api, http_client, throttle_retry_after=45.0).send(text())
        assert (result.status, result.retry_after) == ("transient", 45.0)

    async def test_retry_after_may_be_an_http_date(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        a_minute_later = "Tue, 04 Mar 2025 09:31:15 GMT"
        api.reply(429, fixture("error_20429.json"), headers={"Retry-After": a_minute_later})
        result = await messaging(api, http_client).send(text())
        assert (result.status, result.retry_after) == ("transient", 60.0)

    async def test_error_20429_throttles_whatever_the_http_status(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(400, {**json.loads(fixture("error_20429.json")), "status": 400})
        result = await messaging(api, http_client).send(text())
        assert (result.status, result.retry_after) == ("transient", 30.0)

    async def test_a_full_sender_queue_is_retried_later(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(400, fixture("error_21611.json"))
        result = await messaging(api, http_client).send(text())
        assert (result.status, result.retry_after) == ("transient", 30.0)
        assert "21611" in result.detail

    @pytest.mark.parametrize("status", [500, 502, 503])
    async def test_server_errors_are_transient(
        self, api: TwilioApi, http_client: httpx.AsyncClient, status: int
    ) -> None:
        api.reply(status, {**json.loads(fixture("error_20500.json")), "status": status})
        result = await messaging(api, http_client).send(text())
        assert (result.status, result.retry_after) == ("transient", None)
        assert f"HTTP {status} Twilio error 20500: Internal Server Error" in result.detail

    async def test_a_503_with_retry_after_carries_it(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(503, "<html>Service Unavailable</html>", headers={"Retry-After": "120"})
        result = await messaging(api, http_client).send(text())
        assert (result.status, result.retry_after) == ("transient", 120.0)
        assert result.detail == "HTTP 503: <html>Service Unavailable</html>"

    @pytest.mark.parametrize(
        ("name", "code", "message"),
        [
            ("error_21211.json", 21211, "The 'To' number ********67 is not a valid phone number."),
            ("error_21610.json", 21610, "Attempt to send to unsubscribed recipient"),
            ("error_21614.json", 21614, "'To' number is not a valid mobile number"),
            (
                "error_63016.json",
                63016,
                "Outside messaging window. For WhatsApp, use a Message Template instead",
            ),
        ],
    )
    async def test_refusals_are_permanent_with_twilios_code_and_message(
        self,
        api: TwilioApi,
        http_client: httpx.AsyncClient,
        name: str,
        code: int,
        message: str,
    ) -> None:
        api.reply(400, fixture(name))
        result = await messaging(api, http_client).send(text(channel="whatsapp"))
        assert result.status == "permanent"
        assert result.detail == (
            f"HTTP 400 Twilio error {code}: {message} (https://www.twilio.com/docs/errors/{code})"
        )
        assert result.retry_after is None
        assert "5551234567" not in result.detail

    async def test_the_recipients_number_is_masked_in_the_detail(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(
            400,
            {
                "code": 21211,
                "message": f"The 'To' number whatsapp:{RECIPIENT} is not a valid phone number.",
                "more_info": "https://www.twilio.com/docs/errors/21211",
                "status": 400,
            },
        )
        result = await messaging(api, http_client).send(text(channel="whatsapp"))
        assert RECIPIENT not in result.detail
        assert RECIPIENT[1:] not in result.detail
        assert "whatsapp:+1********71 is not a valid" in result.detail

    async def test_refused_credentials_are_permanent_and_never_echo_the_token(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(401, fixture("error_20003.json"))
        result = await messaging(api, http_client).send(text())
        assert result.status == "permanent"
        assert result.detail.startswith(
            "Twilio refused our credentials: HTTP 401 Twilio error 20003"
        )
        assert TOKEN not in result.detail

    async def test_a_refused_connection_is_transient(self) -> None:
        channel = TwilioMessaging(settings(f"http://127.0.0.1:{free_port()}"))
        try:
            result = await channel.send(text())
        finally:
            await channel.aclose()
        assert result.status == "transient"
        assert result.detail.startswith("connection to Twilio failed: ConnectError")
        assert result.raw is not None

    async def test_a_slow_twilio_is_transient_and_says_the_outcome_is_unknown(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(201, fixture("message_created.json"), delay=1.0)
        result = await messaging(api, http_client, timeout=0.2).send(text())
        assert result.status == "transient"
        assert result.detail == (
            "no answer from Twilio within 0.2s; it may have accepted the request"
        )

    async def test_a_created_message_without_a_readable_sid_is_not_sent_twice(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(201, "not json")
        result = await messaging(api, http_client).send(text())
        assert (result.status, result.provider_message_id) == ("sent", None)
        assert result.detail == "HTTP 201 without a readable sid"


# --- Calls ------------------------------------------------------------------------------------


class TestTwilioVoice:
    async def test_places_a_call_as_documented(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(201, fixture("call_created.json"))
        call = OutboundCall(message_id=uuid.uuid4(), to=RECIPIENT)
        result = await voice(api, http_client).call(call)
        [seen] = api.requests
        assert (seen.method, seen.path) == ("POST", CALLS_PATH)
        assert seen.headers["authorization"] == BASIC
        assert seen.form == [
            ("To", RECIPIENT),
            ("From", SMS_FROM),
            ("Url", f"{VOICE_BASE}/{call.message_id}"),
            ("StatusCallback", STATUS_URL),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
            ("Timeout", "60"),
            ("MachineDetection", "DetectMessageEnd"),
        ]
        assert (result.status, result.provider_message_id) == (
            "sent",
            "CAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        )
        assert result.raw == seen.body

    async def test_an_explicit_twiml_url_is_used_as_given(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(201, fixture("call_created.json"))
        url = "https://leadrelay.example.com/twiml/intro?lead=42&lang=en"
        await voice(api, http_client).call(
            OutboundCall(message_id=uuid.uuid4(), to=RECIPIENT, twiml_url=url)
        )
        assert dict(api.requests[0].form)["Url"] == url

    async def test_inline_twiml_goes_in_the_twiml_field(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(201, fixture("call_created.json"))
        twiml = intro_twiml("Hi, this is Ada & co.", gather_action_url=f"{VOICE_BASE}/gather")
        await voice(api, http_client).call(
            OutboundCall(message_id=uuid.uuid4(), to=RECIPIENT, twiml=twiml)
        )
        form = dict(api.requests[0].form)
        assert form["Twiml"] == twiml
        assert "Url" not in form

    async def test_records_only_when_recording_is_enabled(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(201, fixture("call_created.json"))
        api.reply(201, fixture("call_created.json"))
        call = OutboundCall(message_id=uuid.uuid4(), to=RECIPIENT)
        await voice(api, http_client).call(call)
        await voice(api, http_client, record_calls=True, ring_timeout=25).call(call)
        plain, recorded = (request.form for request in api.requests)
        assert "Record" not in dict(plain)
        assert recorded[-4:] == [
            ("Timeout", "25"),
            ("MachineDetection", "DetectMessageEnd"),
            ("Record", "true"),
            ("RecordingStatusCallback", STATUS_URL),
        ]

    async def test_without_a_caller_id_fails_visibly_without_a_request(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        result = await voice(api, http_client, voice_from=None).call(
            OutboundCall(message_id=uuid.uuid4(), to=RECIPIENT)
        )
        assert (result.status, result.detail) == ("permanent", "no voice caller id configured")
        assert api.requests == []

    async def test_without_twiml_or_a_base_url_fails_visibly(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        result = await voice(api, http_client, voice_url_base=None).call(
            OutboundCall(message_id=uuid.uuid4(), to=RECIPIENT)
        )
        assert result.status == "permanent"
        assert api.requests == []

    async def test_rate_limited_calls_are_retried_later(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(429, fixture("error_20429.json"), headers={"Retry-After": "3"})
        result = await voice(api, http_client).call(
            OutboundCall(message_id=uuid.uuid4(), to=RECIPIENT)
        )
        assert (result.status, result.retry_after) == ("transient", 3.0)

    async def test_an_invalid_number_is_permanent(
        self, api: TwilioApi, http_client: httpx.AsyncClient
    ) -> None:
        api.reply(400, fixture("error_21211.json"))
        result = await voice(api, http_client).call(
            OutboundCall(message_id=uuid.uuid4(), to=RECIPIENT)
        )
        assert result.status == "permanent"
        assert "21211" in result.detail


# --- values -----------------------------------------------------------------------------------


class TestValues:
    @pytest.mark.parametrize(
        ("number", "masked"),
        [
            ("+14155552671", "+1********71"),
            ("+442079460958", "+44********58"),
            ("+35312345678", "+353******78"),
            ("5551234567", "********67"),
        ],
    )
    def test_masks_all_but_country_code_and_last_two_digits(self, number: str, masked: str) -> None:
        assert mask_phone(number) == masked

    def test_settings_want_an_http_base_url(self) -> None:
        with pytest.raises(ValueError, match="http"):
            settings("api.twilio.com")

    def test_settings_never_show_the_token(self) -> None:
        assert TOKEN not in repr(settings("https://api.twilio.com"))

    @pytest.mark.parametrize(
        "overrides",
        [
            {"from_number": "4155552671"},
            {"voice_from": "+1 415 555 2671"},
            {"account_sid": ""},
            {"auth_token": ""},
            {"ring_timeout": 0},
            {"timeout": 0},
        ],
    )
    def test_settings_reject_what_twilio_would(self, overrides: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match=r"."):
            settings("https://api.twilio.com", **overrides)

    @pytest.mark.parametrize(
        "overrides",
        [{"to": "4155552671"}, {"to": "whatsapp:+14155552671"}, {"channel": "mms"}, {"body": " "}],
    )
    def test_texts_reject_malformed_fields(self, overrides: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match=r"."):
            text(**overrides)

    def test_a_call_takes_a_url_or_inline_twiml_not_both(self) -> None:
        with pytest.raises(ValueError, match="not both"):
            OutboundCall(
                message_id=uuid.uuid4(),
                to=RECIPIENT,
                twiml_url="https://x.example/t",
                twiml="<Response/>",
            )
