"""SMS and WhatsApp through Twilio Messaging, outbound calls through Twilio Programmable Voice.

Requests, as Twilio documents them (and as twilio-python's generated client sends them,
`tests/integration/api/v2010/account/test_message.py` and `test_call.py`):
- `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP Basic
  with the account SID and auth token: `To`, `From` or `MessagingServiceSid`, `Body`,
  `StatusCallback` (Messaging › API › Message resource, "Create a Message resource").
  WhatsApp addresses are `whatsapp:+E164` in `To` and `From` (Messaging › WhatsApp API).
- `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Calls.json`: `To`, `From`, `Url` or
  `Twiml`, `StatusCallback`, one `StatusCallbackEvent` field per event (initiated, ringing,
  answered, completed), `Timeout` (ring seconds, Twilio's default 60), `MachineDetection`, and
  `Record` / `RecordingStatusCallback` when recording is on (Voice › API › Call resource).
- AMD (Voice › Answering Machine Detection): `MachineDetection=DetectMessageEnd` makes Twilio
  report `AnsweredBy` = `human`, `fax`, `unknown` at once, or `machine_end_beep`,
  `machine_end_silence`, `machine_end_other` once the greeting is over — the moment to speak
  a voicemail. `AsyncAmd` is left at its default (`false`): Twilio then fetches `Url` only
  after detection, with `AnsweredBy` in the request, so our one TwiML endpoint answers either
  the introduction or the voicemail. Asynchronous AMD would connect first and need a second
  REST request to swap the TwiML mid-sentence; the price of the synchronous mode is a short
  silence before a human hears the introduction.
- Success is `201` with the created resource; its `sid` (`SM…`/`MM…`, `CA…`) correlates the
  status callbacks. Errors carry Twilio's error object
  `{"code": 21211, "message": "...", "more_info": "https://www.twilio.com/docs/errors/21211",
  "status": 400}` (Usage › Troubleshooting › "Debugging calls to the REST API").

Outcomes:
- `429`, or error 20429 ("Too many requests: ... never processed and always safe to retry"),
  or 21611 (the sender's queue is full): `transient` with `retry_after` — the `Retry-After`
  header when Twilio sends one, else `throttle_retry_after`. A provider's rate limit never
  drops a recipient: the job retries later or, out of attempts, fails visibly.
- `5xx`, connection refused or reset, a timeout: `transient`. A timeout after the request
  went out is ambiguous (Twilio may have accepted it and the API has no idempotency key);
  the detail says so.
- `401`/`403` (20003, bad credentials): `permanent` — retrying cannot fix the account; the
  operator replays once it is.
- any other `4xx`: `permanent`, the detail keeps Twilio's code and message — 21211 invalid
  `To`, 21610 the recipient replied STOP, 21614 not a mobile number, 63016 WhatsApp outside
  the 24-hour customer-service window (needs an approved template; Twilio usually reports
  this one later, in the status callback, rather than on create).
Phone numbers in the detail are masked down to the country code and the last two digits.
`raw` is the exact form body that was posted (credentials travel in the header, not there).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final, Literal, get_args
from urllib.parse import quote, urlencode

import httpx
import phonenumbers

from leadrelay.core.clock import utcnow
from leadrelay.outreach.channels.base import SendResult, SendStatus

DEFAULT_BASE_URL: Final = "https://api.twilio.com"
API_VERSION: Final = "2010-04-01"
# 20429: REST API concurrency exceeded; 21611: the From number's outbound queue is full.
THROTTLE_CODES: Final = frozenset({20429, 21611})
CALL_EVENTS: Final = ("initiated", "ringing", "answered", "completed")
MACHINE_DETECTION: Final = "DetectMessageEnd"
MAX_DETAIL: Final = 500

TextChannel = Literal["sms", "whatsapp"]

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# A number on its own, not digits inside a SID or a longer token.
_LONG_NUMBER = re.compile(r"(?<![0-9A-Za-z])\+?[0-9]{7,15}(?![0-9A-Za-z])")
_SECONDS = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True, slots=True)
class TwilioSettings:
    """One Twilio account and the senders LeadRelay may use on it.

    SMS goes out through `messaging_service_sid` (`MG…`) when set, else from `from_number`;
    WhatsApp from `whatsapp_from` (an E.164 number enabled for WhatsApp), else through the
    messaging service; calls from `voice_from`. `status_callback_url` receives Twilio's
    message and call status callbacks (the handler tells them apart by `MessageSid` /
    `CallSid`). A call whose TwiML is neither given nor addressed fetches it from
    `{voice_url_base}/{message_id}`. `record_calls` adds `Record=true`: only where the
    callee is told and the law allows it. `timeout` (seconds) bounds each HTTP request,
    `ring_timeout` how long a call rings, `throttle_retry_after` what a 429 without
    `Retry-After` is worth.
    """

    account_sid: str
    auth_token: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    messaging_service_sid: str | None = None
    from_number: str | None = None
    whatsapp_from: str | None = None
    voice_from: str | None = None
    status_callback_url: str | None = None
    voice_url_base: str | None = None
    timeout: float = 10.0
    ring_timeout: int = 60
    record_calls: bool = False
    throttle_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if not self.account_sid or not self.auth_token:
            raise ValueError("account_sid and auth_token are required")
        if not self.base_url.startswith(("https://", "http://")):
            raise ValueError("base_url must be an http(s) URL")
        for name in ("from_number", "whatsapp_from", "voice_from"):
            number = getattr(self, name)
            if number is not None and not _E164.fullmatch(number):
                raise ValueError(f"{name} must be an E.164 number such as +14155552671")
        if self.timeout <= 0 or self.throttle_retry_after < 0:
            raise ValueError("timeout must be positive and throttle_retry_after not negative")
        if not 1 <= self.ring_timeout <= 600:
            raise ValueError("ring_timeout must be between 1 and 600 seconds")


@dataclass(frozen=True, slots=True)
class OutboundText:
    """One approved SMS or WhatsApp message to one recipient (`to` in E.164)."""

    message_id: uuid.UUID
    channel: TextChannel
    to: str
    body: str

    def __post_init__(self) -> None:
        if self.channel not in get_args(TextChannel):
            raise ValueError(f"channel must be one of {get_args(TextChannel)}")
        if not _E164.fullmatch(self.to):
            raise ValueError("to must be an E.164 number such as +14155552671")
        if not self.body.strip():
            raise ValueError("body is empty")


@dataclass(frozen=True, slots=True)
class OutboundCall:
    """One approved call. Its TwiML comes from `twiml_url`, or inline from `twiml`, or (with
    neither) from `{voice_url_base}/{message_id}`."""

    message_id: uuid.UUID
    to: str
    twiml_url: str | None = None
    twiml: str | None = None

    def __post_init__(self) -> None:
        if not _E164.fullmatch(self.to):
            raise ValueError("to must be an E.164 number such as +14155552671")
        if self.twiml_url is not None and self.twiml is not None:
            raise ValueError("give either twiml_url or twiml, not both")


class _TwilioClient:
    """An httpx client (injected, or made on first use and closed by `aclose`) and the one
    way every answer from the REST API becomes a `SendResult`."""

    def __init__(
        self,
        settings: TwilioSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._client = client
        self._owns_client = client is None
        self._clock = clock

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._settings.timeout)
        return self._client

    def _url(self, resource: str) -> str:
        sid = quote(self._settings.account_sid, safe="")
        return f"{self._settings.base_url.rstrip('/')}/{API_VERSION}/Accounts/{sid}/{resource}"

    async def _post(self, resource: str, fields: Sequence[tuple[str, str]]) -> SendResult:
        raw = urlencode(fields).encode()
        settings = self._settings
        try:
            response = await self._http().post(
                self._url(resource),
                content=raw,
                headers={
                    "content-type": "application/x-www-form-urlencoded",
                    "accept": "application/json",
                },
                auth=(settings.account_sid, settings.auth_token),
                timeout=settings.timeout,
            )
        except httpx.ConnectTimeout:
            detail = f"could not connect to Twilio within {settings.timeout:g}s"
            return self._result("transient", detail, raw)
        except httpx.TimeoutException:
            detail = (
                f"no answer from Twilio within {settings.timeout:g}s; "
                "it may have accepted the request"
            )
            return self._result("transient", detail, raw)
        except httpx.HTTPError as error:  # refused, reset, TLS, a broken reply
            detail = f"connection to Twilio failed: {type(error).__name__}: {error}"
            return self._result("transient", detail, raw)
        return self._read(response, raw)

    def _read(self, response: httpx.Response, raw: bytes) -> SendResult:
        status = response.status_code
        body = _json_object(response)
        if 200 <= status < 300:
            sid = body.get("sid") if body is not None else None
            if isinstance(sid, str) and sid:
                return self._result("sent", f"HTTP {status} {sid}", raw, provider_id=sid)
            # Twilio created something; sending again would send twice.
            return self._result("sent", f"HTTP {status} without a readable sid", raw)
        code = body.get("code") if body is not None else None
        detail = _error_detail(status, body, response.text)
        retry_after = _retry_after(response.headers.get("retry-after"), now=self._clock())
        if status == 429 or code in THROTTLE_CODES:
            if retry_after is None:
                retry_after = self._settings.throttle_retry_after
            return self._result("transient", detail, raw, retry_after=retry_after)
        if status >= 500:
            return self._result("transient", detail, raw, retry_after=retry_after)
        if status in (401, 403):
            return self._result("permanent", f"Twilio refused our credentials: {detail}", raw)
        if 400 <= status < 500:
            return self._result("permanent", detail, raw)
        return self._result("transient", f"unexpected reply: {detail}", raw)

    def _result(
        self,
        status: SendStatus,
        detail: str,
        raw: bytes | None,
        *,
        provider_id: str | None = None,
        retry_after: float | None = None,
    ) -> SendResult:
        return SendResult(
            status=status,
            provider_message_id=provider_id,
            detail=_clean_detail(detail),
            retry_after=retry_after,
            raw=raw,
        )


class TwilioMessaging(_TwilioClient):
    async def send(self, message: OutboundText) -> SendResult:
        settings = self._settings
        if message.channel == "whatsapp":
            to = f"whatsapp:{message.to}"
            sender = _number(settings.whatsapp_from, prefix="whatsapp:") or _service(settings)
        else:
            to = message.to
            sender = _service(settings) or _number(settings.from_number)
        if sender is None:
            detail = f"no {message.channel} sender configured for this Twilio account"
            return self._result("permanent", detail, None)
        fields = [("To", to), sender, ("Body", message.body)]
        if settings.status_callback_url:
            fields.append(("StatusCallback", settings.status_callback_url))
        return await self._post("Messages.json", fields)


class TwilioVoice(_TwilioClient):
    async def call(self, call: OutboundCall) -> SendResult:
        settings = self._settings
        if settings.voice_from is None:
            return self._result("permanent", "no voice caller id configured", None)
        fields = [("To", call.to), ("From", settings.voice_from)]
        if call.twiml is not None:
            fields.append(("Twiml", call.twiml))
        elif call.twiml_url is not None:
            fields.append(("Url", call.twiml_url))
        elif settings.voice_url_base:
            fields.append(("Url", f"{settings.voice_url_base.rstrip('/')}/{call.message_id}"))
        else:
            return self._result("permanent", "no TwiML and no voice_url_base", None)
        if settings.status_callback_url:
            fields.append(("StatusCallback", settings.status_callback_url))
            fields.extend(("StatusCallbackEvent", event) for event in CALL_EVENTS)
        fields.append(("Timeout", str(settings.ring_timeout)))
        fields.append(("MachineDetection", MACHINE_DETECTION))
        if settings.record_calls:
            fields.append(("Record", "true"))
            if settings.status_callback_url:
                fields.append(("RecordingStatusCallback", settings.status_callback_url))
        return await self._post("Calls.json", fields)


def mask_phone(number: str) -> str:
    """`+14155552671` -> `+1********71`: the country code and the last two digits."""
    digits = number.lstrip("+")
    country = ""
    if number.startswith("+"):
        try:
            country = str(phonenumbers.parse(number).country_code)
        except phonenumbers.NumberParseException:
            country = ""
    rest = digits[len(country) :]
    hidden = "*" * max(len(rest) - 2, 0)
    return f"{'+' if number.startswith('+') else ''}{country}{hidden}{rest[-2:]}"


def _service(settings: TwilioSettings) -> tuple[str, str] | None:
    sid = settings.messaging_service_sid
    return ("MessagingServiceSid", sid) if sid is not None else None


def _number(number: str | None, *, prefix: str = "") -> tuple[str, str] | None:
    return ("From", f"{prefix}{number}") if number is not None else None


def _json_object(response: httpx.Response) -> dict[str, object] | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error_detail(status: int, body: dict[str, object] | None, text: str) -> str:
    if body is None or "code" not in body:
        return f"HTTP {status}: {text[:200]}"
    detail = f"HTTP {status} Twilio error {body.get('code')}: {body.get('message')}"
    more_info = body.get("more_info")
    return f"{detail} ({more_info})" if isinstance(more_info, str) else detail


def _retry_after(value: str | None, *, now: datetime) -> float | None:
    """RFC 9110 10.2.3: delay-seconds or an HTTP-date."""
    if value is None:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max((when - now).total_seconds(), 0.0)


def _clean_detail(detail: str) -> str:
    # Twilio's messages quote numbers ("The 'To' number +15005550001 is not a valid phone
    # number."); ours and any other.
    masked = _LONG_NUMBER.sub(lambda match: mask_phone(match.group()), detail)
    return " ".join(masked.split())[:MAX_DETAIL]
