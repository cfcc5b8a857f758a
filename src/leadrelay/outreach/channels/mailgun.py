"""Mailgun's Messages API over HTTPS (httpx): one request per message.

The request, as documented in Mailgun's API reference (mailgun/documentation,
source/api-sending.rst "Sending" and source/api-intro.rst "Base URL", "Authentication",
"Errors", "Mailgun Regions"):

    POST {base_url}/v3/{domain}/messages
    Authorization: Basic base64("api:<API key>")
    Content-Type: multipart/form-data

    from                     "Name" <sender>  (RFC 2047 encoded word for a non-ASCII name)
    to                       <recipient>
    subject, text            the body with its unsubscribe URL filled in
    h:Reply-To               (only when set)
    h:Message-Id             <uuid@domain>, the same id the SMTP channel writes
    h:List-Unsubscribe       <https://…>, <mailto:…>
    h:List-Unsubscribe-Post  List-Unsubscribe=One-Click
    h:<extra header>         each extra header (RFC 2047 encoded words when not ASCII)
    v:leadrelay_message_id   our message uuid

`base_url` is https://api.mailgun.net, or https://api.eu.mailgun.net for domains in the EU
region. `h:` fields become MIME headers ("h:Reply-To to specify Reply-To address"); Mailgun
keeps a Message-Id given this way ("Mailgun will automatically include a unique Message-ID or
you can set your own", FAQ; mailgun/mailgun.js#394: it must be `<id@domain>`). `v:` fields are
custom data, returned as `user-variables` in webhooks and events. Tracking options (`o:`) are
left out: the domain's settings apply.

Outcomes:
- 200 with `{"id": "<…>", "message": "Queued. Thank you."}`: `sent`, the provider id is `id`.
  A 2xx without an id is `permanent`: a wrong base URL or domain can be answered 200 "Mailgun
  Magnificent API" without queueing anything (noted by anymail/django-anymail's Mailgun
  backend), and calling that sent would skip the recipient silently.
- 429: `transient`, `retry_after` from `Retry-After` (seconds or an HTTP date), else
  `default_retry_after`: a throttled message is retried later, never dropped.
- 408, 5xx (500, 502, 503, 504 documented), timeouts, refused or dropped connections:
  `transient`.
- 400 (bad request), 401 (bad key), 402 (request failed), 404 (unknown domain or region) and
  every other status: `permanent`, the detail keeping the status and the body's `message`.
  An untrusted TLS certificate is `permanent` too, as for SMTP.
Details never name the recipient (masked as `[recipient]`) and start with `HTTP <status>`, so
the send step never reads them as an SMTP hard bounce; bounces arrive through webhooks.

Only `leadrelay.outreach.channels.email_message` builds messages; it has no public helper for
the body with its `{{unsubscribe_url}}` filled in nor for the List-Unsubscribe value, so the two
one-liners below (`_text_body`, `_list_unsubscribe`) mirror what `render_email` writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import quote
from typing import Final
from urllib.parse import quote as quote_path

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

DEFAULT_BASE_URL: Final = "https://api.mailgun.net"
EU_BASE_URL: Final = "https://api.eu.mailgun.net"
# Custom data Mailgun returns as `user-variables` on every event of the message.
MESSAGE_ID_VARIABLE: Final = "leadrelay_message_id"
TRANSIENT_STATUSES: Final = frozenset({408, 429})

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_SENDING_DOMAIN = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})+")


@dataclass(frozen=True, slots=True)
class MailgunSettings:
    """How to reach Mailgun.

    `domain`: the sending domain as registered with Mailgun (ASCII, e.g. `mg.example.com`).
    `base_url`: `DEFAULT_BASE_URL` (US), `EU_BASE_URL` for EU domains, or a test server; plain
    http is accepted for loopback hosts only (the API key travels in every request). `timeout`
    (seconds) covers connecting and each read and write. `default_retry_after` is what a 429
    without a usable Retry-After is worth, in seconds. `message_id_domain` names the domain of
    our Message-Id (`<uuid@domain>`), the From address's domain when None, as for SMTP.
    """

    api_key: SecretStr
    domain: str
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 30.0
    default_retry_after: float = 60.0
    message_id_domain: str | None = None

    def __post_init__(self) -> None:
        key = self.api_key.get_secret_value()
        if not key:
            raise ValueError("api_key is required")
        check_header_text("api_key", key)  # it goes into the Authorization header
        domain = self.domain.strip().lower()
        if not _SENDING_DOMAIN.fullmatch(domain):
            raise ValueError(f"domain {self.domain!r} is not a sending domain (ASCII labels)")
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "base_url", http_api.check_base_url(self.base_url))
        if not self.timeout > 0 or not self.default_retry_after >= 0:
            raise ValueError("timeout must be positive and default_retry_after not negative")


class MailgunChannel:
    """A `Channel`. With `client`, requests go through that shared httpx client (the caller
    closes it); without, each send opens and closes its own."""

    def __init__(
        self,
        settings: MailgunSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._client = client
        self._clock = clock

    @property
    def url(self) -> str:
        return f"{self._settings.base_url}/v3/{quote_path(self._settings.domain, safe='')}/messages"

    async def send(self, message: OutboundEmail) -> SendResult:
        # The checks every channel makes (addresses, header injection, unsubscribe URIs,
        # reserved extra headers) raise ValueError before anything leaves.
        rendered = render_email(
            message, now=self._clock(), message_id_domain=self._settings.message_id_domain
        )
        fields = message_fields(message, rendered)
        if self._client is not None:
            return await self._post(self._client, fields, message, rendered)
        async with httpx.AsyncClient(timeout=self._settings.timeout) as client:
            return await self._post(client, fields, message, rendered)

    async def _post(
        self,
        client: httpx.AsyncClient,
        fields: list[tuple[str, str]],
        message: OutboundEmail,
        rendered: RenderedEmail,
    ) -> SendResult:
        # (None, value): a form field without a file name, so the body is multipart/form-data.
        request = client.build_request(
            "POST",
            self.url,
            files=[(name, (None, value)) for name, value in fields],
            headers={"Accept": "application/json"},
            timeout=self._settings.timeout,
        )
        body = request.read()
        recipients = (message.to_address.strip(), rendered.envelope_to)
        try:
            response = await client.send(
                request, auth=httpx.BasicAuth("api", self._settings.api_key.get_secret_value())
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
        parsed = _json_object(response)
        if 200 <= status < 300:
            provider_id = parsed.get("id")
            if isinstance(provider_id, str) and provider_id.strip():
                detail = f"HTTP {status}: {_error_text(response, parsed)}"
                return http_api.result(
                    "sent", detail, body, recipients, provider_message_id=provider_id.strip()
                )
            detail = f"HTTP {status} without a message id, nothing queued (check the base URL "
            detail += f"and domain): {_error_text(response, parsed)}"
            return http_api.result("permanent", detail, body, recipients)
        detail = f"HTTP {status}: {_error_text(response, parsed)}"
        if status == 429:
            retry_after = http_api.retry_after(
                response,
                now=self._clock(),
                default=self._settings.default_retry_after,
            )
            return http_api.result("transient", detail, body, recipients, retry_after=retry_after)
        if status in TRANSIENT_STATUSES or status >= 500:
            return http_api.result("transient", detail, body, recipients)
        return http_api.result("permanent", detail, body, recipients)


def message_fields(message: OutboundEmail, rendered: RenderedEmail) -> list[tuple[str, str]]:
    """The form fields for `message`, whose checks `render_email` has passed (`rendered`):
    addresses as rendered (domains in A-labels), our Message-Id, the body with its
    unsubscribe URL."""
    headers: list[tuple[str, str]] = []
    if message.reply_to is not None:
        headers.append(("Reply-To", message.reply_to.strip()))
    headers += [
        ("Message-Id", rendered.message_id),
        ("List-Unsubscribe", http_api.list_unsubscribe(message)),
        ("List-Unsubscribe-Post", ONE_CLICK),
        *((name, http_api.encoded_header(value)) for name, value in message.extra_headers.items()),
    ]
    for name, value in headers:
        check_header_text(f"header {name}", value)
    return [
        ("from", _mailbox(message.from_name, rendered.envelope_from)),
        ("to", rendered.envelope_to),
        ("subject", message.subject),
        ("text", http_api.text_body(message)),
        *((f"h:{name}", value) for name, value in headers),
        (f"v:{MESSAGE_ID_VARIABLE}", str(message.message_id)),
    ]


def _mailbox(name: str, address: str) -> str:
    """`"Name" <address>`: an ASCII name as a quoted string, any other as RFC 2047 encoded
    words (space-separated, never folded: a form field has no line breaks)."""
    if not name:
        return address
    if name.isascii():
        return f'"{quote(name)}" <{address}>'
    return f"{http_api.encoded_header(name)} <{address}>"


def _json_object(response: httpx.Response) -> dict[str, object]:
    try:
        parsed: object = response.json()
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _error_text(response: httpx.Response, parsed: dict[str, object]) -> str:
    """The body's `message`, else its text (a 401 is plain "Forbidden"), else the reason."""
    message = parsed.get("message")
    if isinstance(message, str) and message.strip():
        return message.strip()
    text = response.text.strip()
    return text[: http_api.MAX_DETAIL] if text else response.reason_phrase or "no detail"
