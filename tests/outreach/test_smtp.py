"""The SMTP channel against a real aiosmtpd relay on loopback: plain, STARTTLS and implicit TLS
with a certificate made here, AUTH, and every way a relay says no, slow down or nothing at all."""

from __future__ import annotations

import asyncio
import base64
import email
import ipaddress
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from leadrelay.outreach.channels.base import OutboundEmail
from leadrelay.outreach.channels.email_message import DkimKey
from leadrelay.outreach.channels.http_api import mask_recipients
from leadrelay.outreach.channels.smtp import SmtpChannel, SmtpSettings
from tests.conftest import free_port

NOW = datetime(2025, 3, 4, 9, 30, 15, tzinfo=UTC)
UNSUBSCRIBE_URL = (
    "https://leadrelay.example.com/unsubscribe/"
    "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIz"
)
UNSUBSCRIBE_MAILTO = "mailto:unsubscribe@mail.navylabs.example?subject=unsubscribe"
SUBJECT = "Un café à Zürich la semaine prochaine ?"
QUEUED = "250 2.0.0 Ok: queued as 4XyZ1"
USERNAME = "relay-user"
PASSWORD = "relay-password-0123"


def outbound(**overrides: Any) -> OutboundEmail:
    fields: dict[str, Any] = {
        "message_id": uuid.uuid4(),
        "from_address": "ada@mail.navylabs.example",
        "from_name": "Ada Lovelace",
        "to_address": "grace@example.org",
        "subject": SUBJECT,
        "text_body": "Hi Grace,\n\nA short call?\n\nUnsubscribe: {{unsubscribe_url}}\n",
        "unsubscribe_url": UNSUBSCRIBE_URL,
        "unsubscribe_mailto": UNSUBSCRIBE_MAILTO,
    }
    fields.update(overrides)
    return OutboundEmail(**fields)


@dataclass
class Delivery:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    smtp_utf8: bool
    login: bytes | None


@dataclass
class Relay:
    """An aiosmtpd handler that records what it accepts and gives the replies a test scripts."""

    deliveries: list[Delivery] = field(default_factory=list)
    mail_reply: str | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None

    # aiosmtpd calls its hooks by these exact names.
    async def handle_MAIL(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.data_reply:
            return self.data_reply
        assert isinstance(envelope.original_content, bytes)
        assert envelope.mail_from is not None
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        self.deliveries.append(
            Delivery(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.original_content,
                tls=server.transport.get_extra_info("ssl_object") is not None,
                smtp_utf8=envelope.smtp_utf8,
                login=login,
            )
        )
        return QUEUED


@contextmanager
def serve(handler: Relay, **smtp_options: Any) -> Iterator[int]:
    """An aiosmtpd relay on 127.0.0.1, in its own thread; yields the port."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def channel(port: int, **options: Any) -> SmtpChannel:
    settings: dict[str, Any] = {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 5}
    settings.update(options)
    return SmtpChannel(SmtpSettings(**settings), clock=lambda: NOW)


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert_file))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, trusted by no one but the tests."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leadrelay test relay")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file = folder / "relay.pem"
    key_file = folder / "relay.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_file, key_file)


class TestDelivery:
    async def test_plain_send_delivers_the_exact_message(self) -> None:
        relay = Relay()
        message = outbound()
        with serve(relay) as port:
            result = await channel(port).send(message)

        assert result.status == "sent"
        assert result.provider_message_id == f"<{message.message_id}@mail.navylabs.example>"
        assert result.detail == QUEUED
        assert result.retry_after is None
        [delivery] = relay.deliveries
        assert delivery.mail_from == "ada@mail.navylabs.example"
        assert delivery.rcpt_tos == ["grace@example.org"]
        assert delivery.tls is False
        # Byte for byte what the result says went out (the send guard compares these).
        assert delivery.content == result.raw

        head = delivery.content.split(b"\r\n\r\n", 1)[0].decode("ascii")
        assert f"\r\nMessage-ID: <{message.message_id}@mail.navylabs.example>\r\n" in head
        assert f"\r\nList-Unsubscribe: <{UNSUBSCRIBE_URL}>,\r\n <{UNSUBSCRIBE_MAILTO}>\r\n" in head
        assert "\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in head
        assert "\r\nSubject: Un =?utf-8?q?caf=C3=A9_=C3=A0_Z=C3=BCrich?= la semaine" in head
        assert head.startswith("From: Ada Lovelace <ada@mail.navylabs.example>\r\n")
        assert "\r\nTo: grace@example.org\r\n" in head
        assert "\r\nDate: Tue, 04 Mar 2025 09:30:15 +0000\r\n" in head

        parsed = parse(delivery.content)
        assert parsed["Subject"] == SUBJECT
        assert parsed.get_content().replace("\r\n", "\n") == (
            f"Hi Grace,\n\nA short call?\n\nUnsubscribe: {UNSUBSCRIBE_URL}\n"
        )

    async def test_dkim_signature_survives_the_relay(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
        dkim_key = DkimKey(domain="navylabs.example", selector="s1", private_key=pem)
        relay = Relay()
        with serve(relay) as port:
            result = await channel(port, dkim_key=dkim_key).send(outbound())
        assert result.status == "sent"
        [delivery] = relay.deliveries

        def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
            return record if name == b"s1._domainkey.navylabs.example." else None

        assert dkim.verify(delivery.content, dnsfunc=dnsfunc)

    async def test_utf8_mailbox_uses_smtputf8(self) -> None:
        relay = Relay()
        with serve(relay, enable_SMTPUTF8=True) as port:
            result = await channel(port).send(outbound(to_address="grâce@example.org"))
        assert result.status == "sent"
        [delivery] = relay.deliveries
        assert delivery.smtp_utf8 is True
        assert delivery.rcpt_tos == ["grâce@example.org"]

    async def test_utf8_mailbox_without_smtputf8_is_permanent(self) -> None:
        relay = Relay()
        with serve(relay, enable_SMTPUTF8=False) as port:
            result = await channel(port).send(outbound(to_address="grâce@example.org"))
        assert result.status == "permanent"
        assert "SMTPUTF8" in result.detail
        assert relay.deliveries == []

    async def test_header_injection_raises_before_connecting(self) -> None:
        with pytest.raises(ValueError, match="subject"):
            await channel(free_port()).send(outbound(subject="Hi\r\nBcc: v@example.org"))


class TestTls:
    async def test_starttls_with_a_trusted_bundle(self, certificate: Certificate) -> None:
        relay = Relay()
        server = {"tls_context": certificate.server_context(), "require_starttls": True}
        with serve(relay, **server) as port:
            result = await channel(
                port, security="starttls", ca_file=str(certificate.cert_file)
            ).send(outbound())
        assert result.status == "sent", result.detail
        [delivery] = relay.deliveries
        assert delivery.tls is True
        assert delivery.content == result.raw

    async def test_starttls_with_an_untrusted_certificate_is_permanent(
        self, certificate: Certificate
    ) -> None:
        relay = Relay()
        server = {"tls_context": certificate.server_context(), "require_starttls": True}
        with serve(relay, **server) as port:
            result = await channel(port, security="starttls").send(outbound())
        assert result.status == "permanent"
        assert result.detail.startswith("TLS certificate not trusted")
        assert relay.deliveries == []

    async def test_starttls_required_but_not_offered_is_permanent(self) -> None:
        relay = Relay()
        with serve(relay) as port:
            result = await channel(port, security="starttls").send(outbound())
        assert result.status == "permanent"
        assert "STARTTLS" in result.detail
        assert relay.deliveries == []

    async def test_implicit_tls_with_a_context(self, certificate: Certificate) -> None:
        relay = Relay()
        with serve(relay, ssl_context=certificate.server_context()) as port:
            result = await channel(
                port, security="tls", tls_context=certificate.client_context()
            ).send(outbound())
        assert result.status == "sent", result.detail
        [delivery] = relay.deliveries
        assert delivery.tls is True

    async def test_implicit_tls_with_an_untrusted_certificate_is_permanent(
        self, certificate: Certificate
    ) -> None:
        relay = Relay()
        with serve(relay, ssl_context=certificate.server_context()) as port:
            result = await channel(port, security="tls").send(outbound())
        assert result.status == "permanent"
        assert result.detail.startswith("TLS certificate not trusted")


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    good = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    mechanisms_used.append(mechanism)
    # handled=False: aiosmtpd answers the failure itself (535).
    return AuthResult(success=good, handled=False, auth_data=auth_data)


mechanisms_used: list[str] = []


class TestAuth:
    @pytest.mark.parametrize(("offered", "excluded"), [("LOGIN", "PLAIN"), ("PLAIN", "LOGIN")])
    async def test_right_password(
        self, certificate: Certificate, offered: str, excluded: str
    ) -> None:
        relay = Relay()
        mechanisms_used.clear()
        server = {
            "tls_context": certificate.server_context(),
            "require_starttls": True,
            "authenticator": authenticator,
            "auth_required": True,
            "auth_exclude_mechanism": [excluded],
        }
        with serve(relay, **server) as port:
            result = await channel(
                port,
                security="starttls",
                ca_file=str(certificate.cert_file),
                username=USERNAME,
                password=PASSWORD,
            ).send(outbound())
        assert result.status == "sent", result.detail
        assert mechanisms_used == [offered]
        [delivery] = relay.deliveries
        assert delivery.login == USERNAME.encode()

    @pytest.mark.parametrize("offered", ["LOGIN", "PLAIN"])
    async def test_wrong_password_is_permanent_535(
        self, certificate: Certificate, offered: str
    ) -> None:
        relay = Relay()
        server = {
            "tls_context": certificate.server_context(),
            "require_starttls": True,
            "authenticator": authenticator,
            "auth_required": True,
            "auth_exclude_mechanism": ["LOGIN" if offered == "PLAIN" else "PLAIN"],
        }
        with serve(relay, **server) as port:
            result = await channel(
                port,
                security="starttls",
                ca_file=str(certificate.cert_file),
                username=USERNAME,
                password="wrong-password",
            ).send(outbound())
        assert result.status == "permanent", result.detail
        assert result.detail.startswith("535")
        assert result.retry_after is None
        assert relay.deliveries == []

    async def test_without_credentials_the_relay_refuses_permanently(
        self, certificate: Certificate
    ) -> None:
        relay = Relay()
        server = {
            "tls_context": certificate.server_context(),
            "require_starttls": True,
            "authenticator": authenticator,
            "auth_required": True,
        }
        with serve(relay, **server) as port:
            result = await channel(
                port, security="starttls", ca_file=str(certificate.cert_file)
            ).send(outbound())
        assert result.status == "permanent"
        assert result.detail.startswith("530")


class TestRefusals:
    async def test_unknown_mailbox_is_permanent_and_other_recipients_still_work(self) -> None:
        relay = Relay(
            rcpt_replies={
                "nobody@example.org": (
                    "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown"
                )
            }
        )
        with serve(relay) as port:
            refused = await channel(port).send(outbound(to_address="nobody@example.org"))
            accepted = await channel(port).send(outbound())
        assert refused.status == "permanent"
        assert refused.detail == (
            "550 5.1.1 <[recipient]>: Recipient address rejected: User unknown"
        )
        assert refused.provider_message_id is None
        assert refused.retry_after is None
        assert accepted.status == "sent"
        assert [d.rcpt_tos for d in relay.deliveries] == [["grace@example.org"]]

    async def test_rejected_content_is_permanent(self) -> None:
        relay = Relay(data_reply="554 5.7.1 Message rejected as spam")
        with serve(relay) as port:
            result = await channel(port).send(outbound())
        assert result.status == "permanent"
        assert result.detail == "554 5.7.1 Message rejected as spam"

    async def test_greylisting_451_is_transient_with_retry_after(self) -> None:
        relay = Relay(rcpt_replies={"grace@example.org": "451 4.7.1 Greylisted, try again later"})
        with serve(relay) as port:
            result = await channel(port, throttle_retry_after=120).send(outbound())
        assert result.status == "transient"
        assert result.detail == "451 4.7.1 Greylisted, try again later"
        assert result.retry_after == 120
        assert result.provider_message_id is None

    async def test_421_is_transient_with_retry_after(self) -> None:
        relay = Relay(mail_reply="421 4.7.0 Too many messages, slow down")
        with serve(relay) as port:
            result = await channel(port).send(outbound())
        assert result.status == "transient"
        assert result.detail == "421 4.7.0 Too many messages, slow down"
        assert result.retry_after == 60

    async def test_452_is_transient_with_retry_after(self) -> None:
        relay = Relay(data_reply="452 4.3.1 Insufficient system storage")
        with serve(relay) as port:
            result = await channel(port).send(outbound())
        assert result.status == "transient"
        assert result.retry_after == 60

    async def test_other_4xx_is_transient_without_retry_after(self) -> None:
        relay = Relay(rcpt_replies={"grace@example.org": "450 4.2.1 Mailbox busy"})
        with serve(relay) as port:
            result = await channel(port).send(outbound())
        assert result.status == "transient"
        assert result.detail == "450 4.2.1 Mailbox busy"
        assert result.retry_after is None


class TestConnectionTrouble:
    async def test_nobody_listening_is_transient(self) -> None:
        result = await channel(free_port()).send(outbound())
        assert result.status == "transient"
        assert result.detail.startswith("connection failed")
        assert result.raw is not None  # what would have gone out, for the record

    async def test_silent_server_times_out_as_transient(self) -> None:
        # The kernel completes the handshake for a listening socket nobody accepts from:
        # a relay that takes the connection and never says hello.
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            port = listener.getsockname()[1]
            started = time.monotonic()
            result = await channel(port, timeout=1).send(outbound())
            elapsed = time.monotonic() - started
        assert result.status == "transient"
        assert result.detail.startswith("timed out after 1s")
        assert 0.9 <= elapsed < 3

    async def test_dropped_connection_is_transient(self) -> None:
        async def greet_then_hang_up(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            writer.write(b"220 relay.example ESMTP\r\n")
            await writer.drain()
            await reader.readline()  # EHLO
            writer.close()

        server = await asyncio.start_server(greet_then_hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            result = await channel(port).send(outbound())
        finally:
            server.close()
            await server.wait_closed()
        assert result.status == "transient"
        assert result.detail.startswith("connection failed")

    async def test_busy_greeting_421_is_transient_with_retry_after(self) -> None:
        async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"421 4.3.2 Too many connections, try later\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(busy, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            result = await channel(port).send(outbound())
        finally:
            server.close()
            await server.wait_closed()
        assert result.status == "transient"
        assert result.detail == "421 4.3.2 Too many connections, try later"
        assert result.retry_after == 60


@dataclass
class CountingRelay(Relay):
    """A relay that also notes which connection (client port) carried each message."""

    peers: list[object] = field(default_factory=list)

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        self.peers.append(session.peer)
        return await super().handle_DATA(server, session, envelope)


def to(*names: str) -> list[OutboundEmail]:
    return [outbound(to_address=f"{name}@example.org") for name in names]


class TestSession:
    """Many messages over one connection (`SmtpChannel.session`), each classified alone."""

    async def test_one_connection_carries_many_messages(self) -> None:
        relay = CountingRelay()
        with serve(relay) as port:
            async with channel(port).session() as session:
                results = [await session.send(m) for m in to("a", "b", "c", "d")]
        assert [r.status for r in results] == ["sent"] * 4
        assert [d.rcpt_tos for d in relay.deliveries] == [[f"{n}@example.org"] for n in "abcd"]
        assert len(set(relay.peers)) == 1

    async def test_a_refusal_does_not_end_the_connection(self) -> None:
        relay = CountingRelay(rcpt_replies={"gone@example.org": "550 5.1.1 User unknown"})
        with serve(relay) as port:
            async with channel(port).session() as session:
                results = [await session.send(m) for m in to("a", "gone", "b")]
        assert [r.status for r in results] == ["sent", "permanent", "sent"]
        assert results[1].detail == "550 5.1.1 User unknown"
        assert len(set(relay.peers)) == 1

    async def test_a_421_ends_the_connection_and_the_next_message_gets_a_new_one(self) -> None:
        relay = CountingRelay(rcpt_replies={"busy@example.org": "421 4.7.0 Closing, try later"})
        with serve(relay) as port:
            async with channel(port).session() as session:
                results = [await session.send(m) for m in to("a", "busy", "b")]
        assert [r.status for r in results] == ["sent", "transient", "sent"]
        assert results[1].retry_after == 60
        assert len(set(relay.peers)) == 2

    async def test_a_connection_carries_at_most_its_share(self) -> None:
        relay = CountingRelay()
        with serve(relay) as port:
            async with channel(port, messages_per_connection=2).session() as session:
                results = [await session.send(m) for m in to("a", "b", "c", "d", "e")]
        assert [r.status for r in results] == ["sent"] * 5
        assert len(set(relay.peers)) == 3

    async def test_a_dropped_connection_fails_one_message_and_the_next_reconnects(self) -> None:
        connections = 0

        async def hang_up_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            writer.write(b"220 relay.example ESMTP\r\n")
            await writer.drain()
            await reader.readline()  # EHLO
            writer.close()

        server = await asyncio.start_server(hang_up_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with channel(port).session() as session:
                results = [await session.send(m) for m in to("a", "b")]
        finally:
            server.close()
            await server.wait_closed()
        assert [r.status for r in results] == ["transient", "transient"]
        assert connections == 2  # each message tried once, on a fresh connection


class TestSettings:
    def test_default_ports_follow_security(self) -> None:
        assert SmtpSettings(host="relay").effective_port == 587
        assert SmtpSettings(host="relay", security="tls").effective_port == 465
        assert SmtpSettings(host="relay", security="none").effective_port == 25
        assert SmtpSettings(host="relay", port=2525).effective_port == 2525

    def test_credentials_over_plain_text_are_refused(self) -> None:
        with pytest.raises(ValueError, match="plain text"):
            SmtpSettings(host="relay", security="none", username="u", password="p")
        allowed = SmtpSettings(
            host="relay", security="none", username="u", password="p", allow_plaintext_auth=True
        )
        assert allowed.username == "u"

    def test_password_stays_out_of_repr(self) -> None:
        assert "secret-pw" not in repr(SmtpSettings(host="r", username="u", password="secret-pw"))

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"security": "ssl"}, "security"),
            ({"host": ""}, "host"),
            ({"port": 0}, "port"),
            ({"timeout": 0}, "timeout"),
            ({"username": "u"}, "together"),
            ({"password": "p"}, "together"),
            ({"tls_context": ssl.create_default_context(), "ca_file": "ca.pem"}, "either"),
            ({"messages_per_connection": 0}, "messages_per_connection"),
        ],
    )
    def test_bad_settings_are_refused(self, options: dict[str, Any], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            SmtpSettings(**{"host": "relay", **options})


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("550 <Grace@Example.ORG> unknown", "550 <[recipient]> unknown"),
        ("250 2.0.0 Ok: queued as 4XyZ1", "250 2.0.0 Ok: queued as 4XyZ1"),
        ("550 \u212a <grace@example.org>", "550 \u212a <[recipient]>"),  # Kelvin sign: not ASCII
        ("550   two\r\n lines", "550 two lines"),
    ],
)
def test_details_never_name_the_recipient(detail: str, expected: str) -> None:
    assert mask_recipients(detail, ["grace@example.org"]) == expected
