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

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import httpx
from pydantic import SecretStr

from leadrelay.core.clock import utcnow
from leadrelay.outreach.channels import http_api
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
        object.__setattr__(self, "base_url", http_api.check_base_url(self.base_url))
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
            return http_api.result("transient", detail, body, recipients)
        except httpx.TransportError as error:
            certificate_error = http_api.certificate_error(error)
            if certificate_error is not None:
                detail = f"TLS certificate not trusted: {certificate_error.verify_message}"
                return http_api.result("permanent", detail, body, recipients)
            return http_api.result("transient", f"connection failed: {error!r}", body, recipients)
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
            return http_api.result(
                "sent", detail, body, recipients, provider_message_id=provider_id
            )
        detail = f"HTTP {status}: {_error_text(response)}"
        if status == 429:
            retry_after = http_api.retry_after(
                response,
                now=self._clock(),
                default=self._settings.default_retry_after,
                reset_header="x-ratelimit-reset",
            )
            return http_api.result("transient", detail, body, recipients, retry_after=retry_after)
        if status in TRANSIENT_STATUSES or status >= 500:
            return http_api.result("transient", detail, body, recipients)
        return http_api.result("permanent", detail, body, recipients)


def mail_send_payload(message: OutboundEmail, rendered: RenderedEmail) -> dict[str, object]:
    """The Mail Send JSON for `message`, whose checks `render_email` has passed (`rendered`):
    addresses as rendered (domains in A-labels), the body with its unsubscribe URL."""
    headers = {
        "List-Unsubscribe": http_api.list_unsubscribe(message),
        "List-Unsubscribe-Post": ONE_CLICK,
        **{name: http_api.encoded_header(value) for name, value in message.extra_headers.items()},
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
        "content": [{"type": "text/plain", "value": http_api.text_body(message)}],
        "headers": headers,
        "custom_args": {MESSAGE_ID_ARG: str(message.message_id)},
    }
    if message.reply_to is not None:
        payload["reply_to"] = {"email": message.reply_to.strip()}
    return payload


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
    return text[: http_api.MAX_DETAIL] if text else response.reason_phrase or "no detail"
