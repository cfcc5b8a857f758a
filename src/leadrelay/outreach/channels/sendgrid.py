"""SendGrid's v3 Mail Send API over HTTPS (httpx): one request per message.

The request, as documented in the Mail Send reference
(https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send) and built the same way by
SendGrid's own Python library (sendgrid/sendgrid-python, test/unit/test_mail_helpers.py):

    POST {base_url}/v3/mail/send
    Authorization: Bearer <API key>
    Content-Type: application/json
    Accept: application/json   (the v3 error table lists 406 for a missing Accept header)

    {"personalizations": [{"to": [{"email": "<recipient>"}]}],
     "from": {"email": "<sender>", "name": "<sender name>"},
     "reply_to": {"email": "<reply-to>"},                      (only when set)
     "subject": "...",
     "content": [{"type": "text/plain", "value": "<body, unsubscribe URL filled in>"}],
     "headers": {"List-Unsubscribe": "<https://…>, <mailto:…>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click", <extra headers>},
     "custom_args": {"leadrelay_message_id": "<our message uuid>"}}

`base_url` is https://api.sendgrid.com, or https://api.eu.sendgrid.com for EU regional subusers
(both named as servers in the reference). `tracking_settings` is left out: the account's
defaults apply. Header values "must be properly encoded if they contain unicode characters"
(the reference, `headers`): a non-ASCII extra header goes as RFC 2047 encoded words.

Message-ID: the `headers` object reserves only x-sg-id, x-sg-eid, Received, DKIM-Signature,
Content-Type, Content-Transfer-Encoding, To, From, Subject, Reply-To, Cc and Bcc, but SendGrid
uses the Message-ID (and `smtp-id`) for its own identifiers; SendGrid support advised carrying
one's own id in `custom_args` instead (anymail/django-anymail#109, which made Anymail switch to a
custom argument). The Event Webhook reports every event's `custom_args` as top-level fields, so
`leadrelay_message_id` comes back with each delivered, bounce or open event. The header check
below still runs `render_email`, so a message SendGrid gets is one the SMTP channel would send.

Outcomes:
- 2xx (202 Accepted documented): `sent`; the provider id is the `X-Message-Id` response header
  (SendGrid's glossary, "X-Message-ID"), the prefix of every event's `sg_message_id`
  (sendgrid/sendgrid-nodejs#412).
- 429: `transient`; `retry_after` is the later of `Retry-After` and `X-RateLimit-Reset` (epoch
  seconds, "How to use the v3 API › Rate limits"), else `default_retry_after`. A throttled
  message is retried later, never dropped.
- 408, 5xx, timeouts, refused or dropped connections: `transient`.
- 400, 401, 403, 413 and every other status: `permanent`; the detail keeps the status and the
  `errors[].message` (and `field`) of the body `{"errors": [{"message", "field", "help"}]}`
  ("Mail Send › Errors"). An untrusted TLS certificate is `permanent` too, as for SMTP.
Details never name the recipient (masked as `[recipient]`) and start with `HTTP <status>`, so
the send step never reads them as an SMTP hard bounce; bounces arrive through the Event Webhook.

Only `leadrelay.outreach.channels.email_message` builds messages; it has no public helper for
the body with its `{{unsubscribe_url}}` filled in nor for the List-Unsubscribe value, so the two
one-liners below (`_text_body`, `_list_unsubscribe`) mirror what `render_email` writes.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import parsedate_to_datetime
from typing import Final, Literal

import httpx
from pydantic import SecretStr

from leadrelay.core.clock import utcnow
from leadrelay.drafting.compose import UNSUBSCRIBE_PLACEHOLDER
from leadrelay.outreach.channels.base import OutboundEmail, SendResult
from leadrelay.outreach.channels.email_message import (
    ONE_CLICK,
    RenderedEmail,
    check_header_text,
    render_email,
)

DEFAULT_BASE_URL: Final = "https://api.sendgrid.com"
EU_BASE_URL: Final = "https://api.eu.sendgrid.com"
MAIL_SEND_PATH: Final = "/v3/mail/send"
# The custom argument the Event Webhook echoes back on every event of the message.
MESSAGE_ID_ARG: Final = "leadrelay_message_id"
TRANSIENT_STATUSES: Final = frozenset({408, 429})
MAX_DETAIL: Final = 500
# A reset further away than a day is not a throttle worth waiting for: try again tomorrow.
MAX_RETRY_AFTER: Final = 86_400.0

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True, slots=True)
class SendGridSettings:
    """How to reach SendGrid.

    `base_url`: `DEFAULT_BASE_URL`, `EU_BASE_URL` for EU regional subusers, or a test server;
    plain http is accepted for loopback hosts only (the API key travels in every request).
    `timeout` (seconds) covers connecting and each read and write. `default_retry_after` is
    what a 429 without a usable Retry-After or X-RateLimit-Reset is worth, in seconds.
    """

    api_key: SecretStr
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 30.0
    default_retry_after: float = 60.0

    def __post_init__(self) -> None:
        key = self.api_key.get_secret_value()
        if not key:
            raise ValueError("api_key is required")
        check_header_text("api_key", key)  # it goes into the Authorization header
        object.__setattr__(self, "base_url", _check_base_url(self.base_url))
        if not self.timeout > 0 or not self.default_retry_after >= 0:
            raise ValueError("timeout must be positive and default_retry_after not negative")


class SendGridChannel:
    """A `Channel`. With `client`, requests go through that shared httpx client (the caller
    closes it); without, each send opens and closes its own."""

    def __init__(
        self,
        settings: SendGridSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._client = client
        self._clock = clock

    @property
    def url(self) -> str:
        return self._settings.base_url + MAIL_SEND_PATH

    async def send(self, message: OutboundEmail) -> SendResult:
        # The checks every channel makes (addresses, header injection, unsubscribe URIs,
        # reserved extra headers) raise ValueError before anything leaves.
        rendered = render_email(message, now=self._clock())
        body = json.dumps(
            mail_send_payload(message, rendered), ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
        headers = {
            "Authorization": f"Bearer {self._settings.api_key.get_secret_value()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        if self._client is not None:
            return await self._post(self._client, body, headers, message, rendered)
        async with httpx.AsyncClient(timeout=self._settings.timeout) as client:
            return await self._post(client, body, headers, message, rendered)

    async def _post(
        self,
        client: httpx.AsyncClient,
        body: bytes,
        headers: dict[str, str],
        message: OutboundEmail,
        rendered: RenderedEmail,
    ) -> SendResult:
        recipients = (message.to_address.strip(), rendered.envelope_to)
        try:
            response = await client.post(
                self.url, content=body, headers=headers, timeout=self._settings.timeout
            )
        except httpx.TimeoutException as error:
            detail = f"timed out after {self._settings.timeout:g}s ({type(error).__name__})"
            return _result("transient", detail, body, recipients)
        except httpx.TransportError as error:
            certificate_error = _certificate_error(error)
            if certificate_error is not None:
                detail = f"TLS certificate not trusted: {certificate_error.verify_message}"
                return _result("permanent", detail, body, recipients)
            return _result("transient", f"connection failed: {error!r}", body, recipients)
        return self._answer(response, body, recipients)

    def _answer(
        self, response: httpx.Response, body: bytes, recipients: tuple[str, ...]
    ) -> SendResult:
        status = response.status_code
        if 200 <= status < 300:
            # Accepted: never retried, even without an id (events still carry our custom arg).
            provider_id = response.headers.get("x-message-id") or None
            detail = f"HTTP {status} {response.reason_phrase}".rstrip()
            if provider_id is None:
                detail += " (no X-Message-Id)"
            return _result("sent", detail, body, recipients, provider_message_id=provider_id)
        detail = f"HTTP {status}: {_error_text(response)}"
        if status == 429:
            retry_after = _retry_after(
                response, now=self._clock(), default=self._settings.default_retry_after
            )
            return _result("transient", detail, body, recipients, retry_after=retry_after)
        if status in TRANSIENT_STATUSES or status >= 500:
            return _result("transient", detail, body, recipients)
        return _result("permanent", detail, body, recipients)


def mail_send_payload(message: OutboundEmail, rendered: RenderedEmail) -> dict[str, object]:
    """The Mail Send JSON for `message`, whose checks `render_email` has passed (`rendered`):
    addresses as rendered (domains in A-labels), the body with its unsubscribe URL."""
    headers = {
        "List-Unsubscribe": _list_unsubscribe(message),
        "List-Unsubscribe-Post": ONE_CLICK,
        **{name: _encoded(value) for name, value in message.extra_headers.items()},
    }
    for name, value in headers.items():
        check_header_text(f"header {name}", value)
    sender: dict[str, str] = {"email": rendered.envelope_from}
    if message.from_name:
        sender["name"] = message.from_name
    payload: dict[str, object] = {
        "personalizations": [{"to": [{"email": rendered.envelope_to}]}],
        "from": sender,
        "subject": message.subject,
        "content": [{"type": "text/plain", "value": _text_body(message)}],
        "headers": headers,
        "custom_args": {MESSAGE_ID_ARG: str(message.message_id)},
    }
    if message.reply_to is not None:
        payload["reply_to"] = {"email": message.reply_to.strip()}
    return payload


def _encoded(value: str) -> str:
    """ASCII as it is, anything else as RFC 2047 encoded words, space-separated: never
    folded, a JSON header value has no line breaks."""
    return value if value.isascii() else Header(value, "utf-8").encode(linesep="")


def _text_body(message: OutboundEmail) -> str:
    return message.text_body.replace(UNSUBSCRIBE_PLACEHOLDER, message.unsubscribe_url)


def _list_unsubscribe(message: OutboundEmail) -> str:
    uris = [message.unsubscribe_url]
    if message.unsubscribe_mailto is not None:
        uris.append(message.unsubscribe_mailto)
    return ", ".join(f"<{uri}>" for uri in uris)


def _error_text(response: httpx.Response) -> str:
    """`errors[].message (field)` joined, else the body's text, else the reason phrase."""
    try:
        parsed: object = response.json()
    except ValueError:
        parsed = None
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    if isinstance(errors, list):
        texts = []
        for item in errors:
            if not isinstance(item, dict) or not isinstance(item.get("message"), str):
                continue
            text = item["message"].strip()
            field = item.get("field")
            if isinstance(field, str) and field:
                text += f" ({field})"
            texts.append(text)
        if texts:
            return "; ".join(texts)
    text = response.text.strip()
    return text[:MAX_DETAIL] if text else response.reason_phrase or "no detail"


def _retry_after(response: httpx.Response, *, now: datetime, default: float) -> float:
    """Seconds to wait: the later of Retry-After (seconds or an HTTP date) and X-RateLimit-Reset
    (epoch seconds), never negative, at most a day; `default` when neither is readable."""
    hints: list[float] = []
    retry_after = response.headers.get("retry-after", "").strip()
    if retry_after:
        try:
            hints.append(float(retry_after))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                hints.append((parsedate_to_datetime(retry_after) - now).total_seconds())
    reset = response.headers.get("x-ratelimit-reset", "").strip()
    if reset:
        with contextlib.suppress(ValueError):
            hints.append(float(reset) - now.timestamp())
    usable = [hint for hint in hints if math.isfinite(hint)]
    if not usable:
        return default
    return min(max(max(usable), 0.0), MAX_RETRY_AFTER)


def _result(
    status: Literal["sent", "transient", "permanent"],
    detail: str,
    body: bytes,
    recipients: tuple[str, ...],
    *,
    provider_message_id: str | None = None,
    retry_after: float | None = None,
) -> SendResult:
    return SendResult(
        status=status,
        provider_message_id=provider_message_id,
        detail=_clean_detail(detail, recipients),
        retry_after=retry_after,
        raw=body,
    )


def _clean_detail(detail: str, recipients: tuple[str, ...]) -> str:
    for recipient in recipients:
        if recipient:
            detail = re.sub(re.escape(recipient), "[recipient]", detail, flags=re.IGNORECASE)
    return " ".join(detail.split())[:MAX_DETAIL]


def _check_base_url(base_url: str) -> str:
    """`base_url` without its trailing slash; plain http only towards loopback."""
    text = base_url.strip()
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        raise ValueError("base_url is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("base_url must be an http(s) URL with a host")
    if url.userinfo or url.query or url.fragment or "?" in text or "#" in text:
        raise ValueError("base_url may not hold user info, a query or a fragment")
    if url.scheme == "http" and url.host.lower() not in _LOOPBACK_HOSTS:
        raise ValueError("base_url must use https (plain http is for loopback test servers)")
    return text.rstrip("/")


def _certificate_error(error: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not other for other in seen):
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.append(current)
        current = current.__cause__ or current.__context__
    return None
