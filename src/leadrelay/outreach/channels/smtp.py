"""SMTP submission with aiosmtplib, envelope sender = From address: one connection per message
(`SmtpChannel.send`), or one connection for many in a row (`SmtpChannel.session`).

Outcomes, by the reply that ended the attempt:
- 250 after DATA: `sent`; the provider id is our Message-ID, the one id bounces quote back.
- 421, 451, 452 (the codes relays use to throttle): `transient` with `retry_after`.
- other 4xx, no connection, a dropped connection, a timeout: `transient`.
- 5xx (`550 5.1.1`, `535` bad credentials, ...): `permanent`, the detail keeps code and text.
- an untrusted TLS certificate, no STARTTLS or no AUTH offered: `permanent` — retrying the same
  message cannot fix the relay's configuration; the operator replays it once it is fixed.
The recipient's address is masked in the detail: the delivery record names the lead already,
and reply texts end up in logs.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, get_args

import aiosmtplib

from leadrelay.core.clock import utcnow
from leadrelay.outreach.channels import http_api
from leadrelay.outreach.channels.base import OutboundEmail, SendResult
from leadrelay.outreach.channels.email_message import DkimKey, RenderedEmail, render_email

SmtpSecurity = Literal["starttls", "tls", "none"]
DEFAULT_PORTS: dict[SmtpSecurity, int] = {"starttls": 587, "tls": 465, "none": 25}
# RFC 5321 4.2.2/4.2.3: service not available (often "too many connections"), local error
# (greylisting, rate limits), insufficient storage (too many messages/recipients).
THROTTLE_CODES = frozenset({421, 451, 452})


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """How to reach the relay.

    `security`: "starttls" (port 587 by default) requires STARTTLS before anything else,
    "tls" (465) is TLS from the first byte, "none" (25) is plain text and refuses credentials
    unless `allow_plaintext_auth` is set. Certificates are checked against the system's trust
    store, or `ca_file` (a PEM bundle), or the given `tls_context`. `timeout` is in seconds and
    applies to the connection and each command. `throttle_retry_after` is what a throttling
    reply is worth in seconds: SMTP replies carry no Retry-After. A session
    (`SmtpChannel.session`) carries at most `messages_per_connection` messages on one connection.
    """

    host: str
    port: int | None = None
    security: SmtpSecurity = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    tls_context: ssl.SSLContext | None = None
    ca_file: str | None = None
    local_hostname: str | None = None
    dkim_key: DkimKey | None = None
    message_id_domain: str | None = None
    throttle_retry_after: float = 60.0
    allow_plaintext_auth: bool = False
    messages_per_connection: int = 100

    def __post_init__(self) -> None:
        if self.security not in get_args(SmtpSecurity):
            raise ValueError(f"security must be one of {get_args(SmtpSecurity)}")
        if not self.host:
            raise ValueError("host is required")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError("port must be between 1 and 65535")
        if self.timeout <= 0 or self.throttle_retry_after < 0:
            raise ValueError("timeout must be positive and throttle_retry_after not negative")
        if self.messages_per_connection < 1:
            raise ValueError("messages_per_connection must be at least 1")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.username is not None and self.security == "none" and not self.allow_plaintext_auth:
            raise ValueError("credentials over plain text: use starttls or tls")
        if self.tls_context is not None and self.ca_file is not None:
            raise ValueError("give either tls_context or ca_file, not both")

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.security]


class SmtpChannel:
    def __init__(self, settings: SmtpSettings, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._settings = settings
        self._clock = clock

    async def send(self, message: OutboundEmail) -> SendResult:
        """One message on a connection of its own."""
        async with self.session() as session:
            return await session.send(message)

    @property
    def settings(self) -> SmtpSettings:
        return self._settings

    def session(self) -> SmtpSession:
        """A connection that carries many messages, one after another (`SmtpSession`)."""
        return SmtpSession(self)

    def render(self, message: OutboundEmail) -> RenderedEmail:
        settings = self._settings
        return render_email(
            message,
            now=self._clock(),
            dkim_key=settings.dkim_key,
            message_id_domain=settings.message_id_domain,
        )

    def client(self) -> aiosmtplib.SMTP:
        settings = self._settings
        return aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.effective_port,
            username=settings.username,
            password=settings.password,
            local_hostname=settings.local_hostname,
            timeout=settings.timeout,
            use_tls=settings.security == "tls",
            start_tls=settings.security == "starttls",
            tls_context=settings.tls_context,
            cert_bundle=settings.ca_file,
        )

    async def attempt(
        self, client: aiosmtplib.SMTP, rendered: RenderedEmail
    ) -> tuple[SendResult, bool]:
        """The result, and whether the connection is still fit to carry on (or for a polite
        QUIT)."""
        try:
            if not client.is_connected:
                await client.connect()
            _, reply = await client.sendmail(
                rendered.envelope_from,
                [rendered.envelope_to],
                rendered.raw,
                mail_options=["SMTPUTF8"] if rendered.smtputf8 else None,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            refused = error.recipients[0]
            return self._reply(refused.code, refused.message, rendered), refused.code != 421
        except aiosmtplib.SMTPResponseException as error:
            # 421: the relay is closing the connection (RFC 5321 3.8).
            return self._reply(error.code, error.message, rendered), error.code != 421
        except TimeoutError as error:  # aiosmtplib's timeouts included
            detail = f"timed out after {self._settings.timeout:g}s: {error}"
            return self._result("transient", detail, rendered), False
        except OSError as error:  # refused, reset, dropped (SMTPServerDisconnected), TLS
            certificate_error = http_api.certificate_error(error)
            if certificate_error is not None:
                detail = f"TLS certificate not trusted: {certificate_error.verify_message}"
                return self._result("permanent", detail, rendered), False
            return self._result("transient", f"connection failed: {error}", rendered), False
        except aiosmtplib.SMTPException as error:  # no STARTTLS, no AUTH, no SMTPUTF8
            detail = f"relay cannot take this message: {error}"
            return self._result("permanent", detail, rendered), True
        return self._result("sent", f"250 {reply}", rendered), True

    def _reply(self, code: int, text: str, rendered: RenderedEmail) -> SendResult:
        detail = f"{code} {text}"
        if code in THROTTLE_CODES:
            return self._result(
                "transient", detail, rendered, retry_after=self._settings.throttle_retry_after
            )
        if 400 <= code < 500:
            return self._result("transient", detail, rendered)
        if 500 <= code < 600:
            return self._result("permanent", detail, rendered)
        # A reply out of sequence (say 354 where 250 belongs): a confused relay, try later.
        return self._result("transient", f"unexpected reply {detail}", rendered)

    def _result(
        self,
        status: Literal["sent", "transient", "permanent"],
        detail: str,
        rendered: RenderedEmail,
        *,
        retry_after: float | None = None,
    ) -> SendResult:
        return SendResult(
            status=status,
            provider_message_id=rendered.message_id if status == "sent" else None,
            detail=http_api.mask_recipients(detail, [rendered.envelope_to]),
            retry_after=retry_after,
            raw=rendered.raw,
        )


class SmtpSession:
    """One relay connection carrying many messages, one mail transaction after another (RFC 5321
    allows any number per session): the connection, greeting and TLS handshake are paid once,
    not per message. It connects on first use; after a failure that leaves the connection
    unfit (timeout, drop, 421) the next message gets a new one, as it does after
    `settings.messages_per_connection` messages (relays cap them). Each message is attempted
    once, on the connection at hand, and classified as `SmtpChannel.send` classifies it.

    Use it as an async context manager: leaving says goodbye (QUIT) when the connection is fit
    for it, and closes the socket in any case, also when the caller is cancelled."""

    def __init__(self, channel: SmtpChannel) -> None:
        self._channel = channel
        self._client: aiosmtplib.SMTP | None = None
        self._carried = 0  # messages on the current connection
        self._fit = True  # the current connection can carry on

    async def __aenter__(self) -> SmtpSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        cancelled = exc_info[0] is not None
        await self._retire(polite=not cancelled)

    async def send(self, message: OutboundEmail) -> SendResult:
        rendered = self._channel.render(message)
        limit = self._channel.settings.messages_per_connection
        if self._client is not None and (
            not self._fit or not self._client.is_connected or self._carried >= limit
        ):
            await self._retire(polite=self._fit)
        if self._client is None:
            self._client, self._carried, self._fit = self._channel.client(), 0, True
        result, self._fit = await self._channel.attempt(self._client, rendered)
        self._carried += 1
        return result

    async def _retire(self, *, polite: bool) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if polite and self._fit and client.is_connected:
                # The messages' fates are decided; a failed goodbye changes nothing.
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await client.quit()
        finally:
            client.close()
