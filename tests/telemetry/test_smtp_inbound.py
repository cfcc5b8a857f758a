"""The local SMTP listener on loopback, fed by smtplib: a reply is stored against its lead,
an unsubscribe request suppresses the address, an out-of-office is not counted, an unknown
sender is kept, and a message without a sender is refused with a 5xx."""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage

import httpx
import pytest

from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.security import secret_keys
from leadrelay.core.settings import Settings
from leadrelay.outreach.models import Message
from leadrelay.telemetry import inbound
from leadrelay.telemetry.smtp_inbound import InboundSmtpHandler, start_server
from tests.conftest import free_port
from tests.factories import TenantCtx, TenantFactory
from tests.support import owner_connection
from tests.telemetry.test_inbound import make_lead, sent_message, stored, suppressed, unique_email


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


@pytest.fixture
async def smtp_port(db: Database, settings: Settings) -> AsyncIterator[int]:
    port = free_port()
    handler = InboundSmtpHandler(db, settings, secret_keys(settings))
    server = await start_server(handler, host="127.0.0.1", port=port)
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


def compose(sender: str, subject: str, body: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Dana Scully <{sender}>"
    message["To"] = "sam@reply.relay.example"
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4()}@mail.northwind.example>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


async def deliver(port: int, message: EmailMessage, *, mail_from: str | None = None) -> None:
    def send() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(
                message,
                from_addr=mail_from if mail_from is not None else None,
                to_addrs=["sam@reply.relay.example"],
            )

    await asyncio.to_thread(send)


class TestSmtpListener:
    async def test_a_reply_naming_our_message_is_stored_and_counted(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, smtp_port: int
    ) -> None:
        address = unique_email()
        lead_id = await make_lead(client, tenant, email=address)
        message_id = await sent_message(db, tenant, lead_id, channel="email", recipient=address)
        reply = compose(
            address,
            "Re: A short call?",
            "Happy to talk on Thursday.\n\nOn Tue, Sam wrote:\n> Reply STOP to opt out\n",
            In_Reply_To=f"<{message_id}@relay.example>",
            References=f"<{message_id}@relay.example>",
        )
        await deliver(smtp_port, reply)
        (row,) = await stored(db, tenant)
        assert (row.lead_id, row.message_id, row.classification) == (lead_id, message_id, "reply")
        assert row.raw["provider"] == "smtp"
        assert row.raw["smtp"]["rcpt_to"] == ["sam@reply.relay.example"]
        assert row.provider_message_id == reply["Message-ID"]
        async with db.session(tenant.id) as session:
            message = await session.get(Message, message_id)
            assert message is not None
            assert message.replied_at is not None

        await deliver(smtp_port, reply)  # delivered twice: stored once
        assert len(await stored(db, tenant)) == 1

    async def test_unsubscribe_by_mail_suppresses_and_out_of_office_does_not(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        settings: Settings,
        smtp_port: int,
    ) -> None:
        address = unique_email()
        lead_id = await make_lead(client, tenant, email=address)
        await sent_message(db, tenant, lead_id, channel="email", recipient=address)
        away = compose(
            address,
            "Automatic reply: A short call?",
            "I am currently out of the office and will be back on Monday.",
            Auto_Submitted="auto-replied",
        )
        await deliver(smtp_port, away)
        assert await suppressed(db, settings, tenant, email=address) == []
        await deliver(smtp_port, compose(address, "unsubscribe", "Please take me off your list."))
        assert await suppressed(db, settings, tenant, email=address) == ["email_opted_out"]
        assert [row.classification for row in await stored(db, tenant)] == [
            "auto_reply",
            "opt_out",
        ]

    async def test_an_unknown_sender_is_kept_and_a_senderless_message_refused(
        self, urls: DatabaseUrls, smtp_port: int
    ) -> None:
        stranger = unique_email("stranger")
        await deliver(smtp_port, compose(stranger, "Hello", "Who are you?"))
        with owner_connection(urls) as connection:
            letter = connection.execute(
                "SELECT payload FROM dead_letters WHERE task_name = %s AND payload->>'sender' = %s",
                (inbound.REPLY_TASK, stranger),
            ).fetchone()
        assert letter is not None
        assert letter["payload"]["subject"] == "Hello"

        nobody = EmailMessage()
        nobody["Subject"] = "no sender"
        nobody.set_content("text")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await deliver(smtp_port, nobody, mail_from="")
        assert refused.value.smtp_code == 550
