"""A local SMTP listener for replies sent straight to us (`leadrelay inbound-smtp`): each
message is parsed with the standard `email` package and handed to `telemetry.inbound`, in
one transaction per message.

The SMTP answer carries the outcome: 250 once the message is stored (or kept as an
unmatched dead letter, or recognised as a duplicate), 550 for something that is not an
e-mail with a sender, and 451 when the database could not take it — the sending server then
tries again later, so nothing is lost. It speaks plain SMTP on the address it is given: run
it on loopback behind the MTA that receives the domain's mail, or behind a relay.

aiosmtpd is imported when the server starts (it is a development dependency today; the
deployment that runs this command installs it).
"""

from __future__ import annotations

import asyncio
import email
import hashlib
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from typing import TYPE_CHECKING

from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.errors import LeadRelayError
from leadrelay.core.logging import get_logger
from leadrelay.core.settings import Settings
from leadrelay.telemetry.inbound import (
    InboundReply,
    email_reply,
    receive_reply,
    text_of_html,
)

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

log = get_logger("leadrelay.telemetry.smtp_inbound")

DATA_SIZE_LIMIT = 30 * 1024 * 1024
ACCEPTED = "250 2.0.0 Message accepted"
NOT_AN_EMAIL = "550 5.6.0 Not an e-mail message with a sender"
TRY_LATER = "451 4.3.0 Cannot store the message now, try again later"


def message_text(message: EmailMessage) -> str:
    """The plain-text body (else the HTML one, reduced to text)."""
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    try:
        content = body.get_content()
    except (LookupError, ValueError):  # an unknown charset or a broken encoding
        payload = body.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    return text_of_html(content) if body.get_content_subtype() == "html" else content


def parse_email(
    content: bytes, *, mail_from: str | None, rcpt_tos: list[str], now: datetime
) -> InboundReply:
    """An inbound e-mail from its bytes; the sender is the From header (else the envelope's
    MAIL FROM). ValueError when it has neither."""
    parsed = email.message_from_bytes(content, policy=policy.default)
    if not isinstance(parsed, EmailMessage):
        raise ValueError("not an e-mail message")
    headers = [(str(name), str(value)) for name, value in parsed.items()]
    sender = str(parsed.get("From") or "") or (mail_from or "")
    if not sender or "@" not in sender:
        raise ValueError("no sender")
    message_id = str(parsed.get("Message-ID") or "").strip()
    if not message_id:
        # Replayed bytes hash the same: a second delivery is a duplicate.
        message_id = f"sha256:{hashlib.sha256(content).hexdigest()}"
    return email_reply(
        provider="smtp",
        sender=sender,
        recipient=rcpt_tos[0] if rcpt_tos else None,
        subject=str(parsed.get("Subject") or ""),
        text=message_text(parsed),
        headers=headers,
        message_id=message_id,
        now=now,
        raw={"smtp": {"mail_from": (mail_from or "")[:320], "rcpt_to": rcpt_tos[:10]}},
    )


@dataclass
class InboundSmtpHandler:
    """The aiosmtpd handler: one DATA, one transaction."""

    db: Database
    settings: Settings
    keys: str

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        if not content:
            return NOT_AN_EMAIL
        try:
            reply = parse_email(
                content, mail_from=envelope.mail_from, rcpt_tos=envelope.rcpt_tos, now=utcnow()
            )
        except (ValueError, LeadRelayError) as error:
            log.warning("inbound_smtp.refused", reason=str(error)[:200])
            return NOT_AN_EMAIL
        try:
            async with self.db.session() as db_session:
                result = await receive_reply(
                    db_session, reply, settings=self.settings, keys=self.keys, now=utcnow()
                )
        except Exception as error:  # the database, not the message: the sender retries
            log.error("inbound_smtp.failed", error=type(error).__name__)
            return TRY_LATER
        log.info("inbound_smtp.received", status=result.status.value)
        return ACCEPTED


async def start_server(handler: InboundSmtpHandler, *, host: str, port: int) -> asyncio.Server:
    """Listen on host:port in the running loop (where the handler's database lives)."""
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(
            handler,
            data_size_limit=DATA_SIZE_LIMIT,
            enable_SMTPUTF8=True,
            hostname=host if host not in ("", "0.0.0.0", "::") else None,  # noqa: S104
            ident="LeadRelay inbound",
        ),
        host=host,
        port=port,
    )


async def serve(handler: InboundSmtpHandler, *, host: str, port: int) -> None:
    """Serve until cancelled (Ctrl-C)."""
    server = await start_server(handler, host=host, port=port)
    log.info("inbound_smtp.listening", host=host, port=port)
    async with server:
        await server.serve_forever()
