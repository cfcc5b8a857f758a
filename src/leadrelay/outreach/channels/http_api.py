"""What the e-mail providers reached over HTTP (SendGrid, Mailgun) share: their base URL's
check, the provider's wait hints, and one way an answer becomes a `SendResult` with the
recipient masked. `certificate_error` serves the SMTP channel too."""

from __future__ import annotations

import contextlib
import math
import re
import ssl
from collections.abc import Iterable
from datetime import datetime
from email.header import Header
from email.utils import parsedate_to_datetime
from typing import Final, Literal

import httpx

from leadrelay.drafting.compose import UNSUBSCRIBE_PLACEHOLDER
from leadrelay.outreach.channels.base import OutboundEmail, SendResult

MAX_DETAIL: Final = 500
# A provider asking us to wait longer than a day is treated as asking for a day.
MAX_RETRY_AFTER: Final = 86_400.0
LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


def check_base_url(base_url: str) -> str:
    """`base_url` without its trailing slash; plain http only towards loopback (the API key
    travels in every request)."""
    text = base_url.strip()
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        raise ValueError("base_url is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("base_url must be an http(s) URL with a host")
    if url.userinfo or url.query or url.fragment or "?" in text or "#" in text:
        raise ValueError("base_url may not hold user info, a query or a fragment")
    if url.scheme == "http" and url.host.lower() not in LOOPBACK_HOSTS:
        raise ValueError("base_url must use https (plain http is for loopback test servers)")
    return text.rstrip("/")


def encoded_header(value: str) -> str:
    """ASCII as it is, anything else as RFC 2047 encoded words, space-separated: never folded,
    an API's header value has no line breaks."""
    return value if value.isascii() else Header(value, "utf-8").encode(linesep="")


def text_body(message: OutboundEmail) -> str:
    """The body with this message's own unsubscribe link in place of the placeholder."""
    return message.text_body.replace(UNSUBSCRIBE_PLACEHOLDER, message.unsubscribe_url)


def list_unsubscribe(message: OutboundEmail) -> str:
    """The List-Unsubscribe value: the https link, and the mailto one when there is one."""
    uris = [message.unsubscribe_url]
    if message.unsubscribe_mailto is not None:
        uris.append(message.unsubscribe_mailto)
    return ", ".join(f"<{uri}>" for uri in uris)


def retry_after(
    response: httpx.Response, *, now: datetime, default: float, reset_header: str | None = None
) -> float:
    """Seconds to wait: the later of Retry-After (seconds or an HTTP date) and, when the
    provider sends one, `reset_header` (epoch seconds); never negative, at most a day;
    `default` when none is readable."""
    hints: list[float] = []
    header = response.headers.get("retry-after", "").strip()
    if header:
        try:
            hints.append(float(header))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                hints.append((parsedate_to_datetime(header) - now).total_seconds())
    reset = response.headers.get(reset_header, "").strip() if reset_header else ""
    if reset:
        with contextlib.suppress(ValueError):
            hints.append(float(reset) - now.timestamp())
    usable = [hint for hint in hints if math.isfinite(hint)]
    if not usable:
        return default
    return min(max(max(usable), 0.0), MAX_RETRY_AFTER)


def mask_recipients(detail: str, recipients: Iterable[str]) -> str:
    """A provider's text without the recipients' addresses (they stay out of logs), on one
    line, bounded."""
    for recipient in recipients:
        if not recipient:
            continue
        if detail.isascii() and recipient.isascii() and recipient.lower() not in detail.lower():
            continue  # it cannot match: spare compiling a pattern per message
        detail = re.sub(re.escape(recipient), "[recipient]", detail, flags=re.IGNORECASE)
    return " ".join(detail.split())[:MAX_DETAIL]


def result(
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
        detail=mask_recipients(detail, recipients),
        retry_after=retry_after,
        raw=body,
    )


def certificate_error(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate failure somewhere in an error's causes, if any (a relay or API with an
    untrusted certificate is a configuration error, not a passing one)."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not other for other in seen):
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.append(current)
        current = current.__cause__ or current.__context__
    return None
