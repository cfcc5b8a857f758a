"""The Mailgun channel over real HTTP, against a Mailgun served on loopback.

Where the shapes come from (details per file in fixtures/email_http/README.md):
- the request: Mailgun's API reference, "Sending" (POST /v3/<domain>/messages, multipart
  fields `from`, `to`, `subject`, `text`, `h:<header>`, `v:<variable>`) and the introduction
  (HTTP Basic auth with user `api`, US and EU base URLs, error codes 400/401/402/404/5xx);
- the 200 answer `{"id", "message": "Queued. Thank you."}`: the sample response in "Sending";
- error bodies `{"message": ...}` and the plain "Forbidden" of a 401: bodies quoted in public
  code (fixtures README).
"""

from __future__ import annotations

import base64
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from leadrelay.outreach.channels.base import OutboundEmail
from leadrelay.outreach.channels.mailgun import (
    DEFAULT_BASE_URL,
    EU_BASE_URL,
    MailgunChannel,
    MailgunSettings,
)
from tests.conftest import free_port
from tests.outreach.fixtures.email_http.provider_server import (
    ProviderServer,
    Reply,
    fixture,
    provider_server,
    silent_port,
    untrusted_tls,
)

NOW = datetime(2025, 3, 4, 9, 30, 15, tzinfo=UTC)
API_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"  # the form of the documentation's sample key
DOMAIN = "mg.navylabs.example"
MESSAGES_PATH = f"/v3/{DOMAIN}/messages"
UNSUBSCRIBE_URL = (
    "https://leadrelay.example.com/unsubscribe/"
    "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIz"
)
UNSUBSCRIBE_MAILTO = "mailto:unsubscribe@mail.navylabs.example?subject=unsubscribe"
SUBJECT = "Un café à Zürich la semaine prochaine ?"
QUEUED = Reply(200, fixture("mailgun_queued.json"))
QUEUED_ID = "<20111114174239.25659.5817@samples.mailgun.org>"


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


def channel(base_url: str, **options: Any) -> MailgunChannel:
    settings: dict[str, Any] = {
        "api_key": SecretStr(API_KEY),
        "domain": DOMAIN,
        "base_url": base_url,
        "timeout": 5,
    }
    settings.update(options)
    return MailgunChannel(MailgunSettings(**settings), clock=lambda: NOW)


async def send(server: ProviderServer, *replies: Reply, **overrides: Any) -> Any:
    server.serve(MESSAGES_PATH, *replies)
    return await channel(server.base_url).send(outbound(**overrides))


class TestMessages:
    async def test_posts_the_documented_form_and_takes_the_id(self) -> None:
        message = outbound()
        with provider_server() as server:
            server.serve(MESSAGES_PATH, QUEUED)
            result = await channel(server.base_url).send(message)
            [request] = server.received()

        assert result.status == "sent"
        assert result.provider_message_id == QUEUED_ID
        assert result.detail == "HTTP 200: Queued. Thank you."
        assert result.retry_after is None
        assert request.method == "POST"
        assert request.path == "/v3/mg.navylabs.example/messages"
        credentials = base64.b64encode(f"api:{API_KEY}".encode()).decode()
        assert request.headers["authorization"] == f"Basic {credentials}"
        assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert request.headers["accept"] == "application/json"
        assert request.body == result.raw  # byte for byte what went out
        assert request.form() == [
            ("from", '"Ada Lovelace" <ada@mail.navylabs.example>'),
            ("to", "grace@example.org"),
            ("subject", SUBJECT),
            ("text", f"Hi Grace,\n\nA short call?\n\nUnsubscribe: {UNSUBSCRIBE_URL}\n"),
            ("h:Message-Id", f"<{message.message_id}@mail.navylabs.example>"),
            ("h:List-Unsubscribe", f"<{UNSUBSCRIBE_URL}>, <{UNSUBSCRIBE_MAILTO}>"),
            ("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("v:leadrelay_message_id", str(message.message_id)),
        ]

    async def test_reply_to_extra_headers_names_and_message_id_domain(self) -> None:
        message = outbound(
            from_name='Zoë "ZL" Lovelace',
            to_address="grace@bücher.example",
            reply_to="replies@mail.navylabs.example",
            unsubscribe_mailto=None,
            extra_headers={"X-Campaign": "spring-2025", "X-Team": "Équipe Zürich"},
        )
        with provider_server() as server:
            server.serve(MESSAGES_PATH, QUEUED)
            options = {"message_id_domain": "ids.navylabs.example"}
            result = await channel(server.base_url, **options).send(message)
            [request] = server.received()
        assert result.status == "sent"
        form = dict(request.form())
        display_name, address = form["from"].rsplit(" ", 1)
        assert address == "<ada@mail.navylabs.example>"
        assert display_name.startswith("=?utf-8?")  # RFC 2047: not ASCII
        assert str(make_header(decode_header(display_name))) == 'Zoë "ZL" Lovelace'
        assert form["to"] == "grace@xn--bcher-kva.example"
        assert form["h:Reply-To"] == "replies@mail.navylabs.example"
        assert form["h:Message-Id"] == f"<{message.message_id}@ids.navylabs.example>"
        assert form["h:List-Unsubscribe"] == f"<{UNSUBSCRIBE_URL}>"
        assert form["h:X-Campaign"] == "spring-2025"
        assert form["h:X-Team"].startswith("=?utf-8?")
        assert str(make_header(decode_header(form["h:X-Team"]))) == "Équipe Zürich"
        assert not any(name.startswith("o:") for name in form)  # the domain's tracking applies

    async def test_an_ascii_name_with_specials_is_a_quoted_string(self) -> None:
        with provider_server() as server:
            await send(server, QUEUED, from_name='Lovelace, Ada "A.L."')
            [request] = server.received()
        assert dict(request.form())["from"] == (
            r'"Lovelace, Ada \"A.L.\"" <ada@mail.navylabs.example>'
        )

    async def test_the_eu_region_and_a_base_url_with_a_path(self) -> None:
        eu = MailgunSettings(api_key=SecretStr(API_KEY), domain=DOMAIN, base_url=EU_BASE_URL)
        assert (
            MailgunChannel(eu).url == "https://api.eu.mailgun.net/v3/mg.navylabs.example/messages"
        )
        with provider_server() as server:
            server.serve("/relay" + MESSAGES_PATH, QUEUED)
            result = await channel(server.base_url + "/relay/").send(outbound())
        assert result.status == "sent"

    async def test_a_shared_client_is_used_and_left_open(self) -> None:
        with provider_server() as server:
            server.serve(MESSAGES_PATH, QUEUED)
            settings = MailgunSettings(
                api_key=SecretStr(API_KEY), domain=DOMAIN, base_url=server.base_url
            )
            async with httpx.AsyncClient() as client:
                shared = MailgunChannel(settings, client=client, clock=lambda: NOW)
                first = await shared.send(outbound())
                second = await shared.send(outbound())
                assert not client.is_closed
            assert len(server.received()) == 2
        assert first.status == second.status == "sent"

    async def test_a_200_without_an_id_queued_nothing_and_fails_visibly(self) -> None:
        # What a wrong base URL or domain can get: Mailgun's API root answers 200.
        with provider_server() as server:
            result = await send(server, Reply(200, b"Mailgun Magnificent API"))
        assert result.status == "permanent"
        assert result.provider_message_id is None
        assert result.detail == (
            "HTTP 200 without a message id, nothing queued (check the base URL and domain): "
            "Mailgun Magnificent API"
        )


class TestRateLimits:
    async def test_429_with_retry_after_seconds(self) -> None:
        body = {"message": "Too many requests"}
        with provider_server() as server:
            result = await send(server, Reply(429, body, {"Retry-After": "12"}))
        assert result.status == "transient"
        assert result.retry_after == 12
        assert result.detail == "HTTP 429: Too many requests"

    async def test_429_with_a_retry_after_date(self) -> None:
        later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
        with provider_server() as server:
            result = await send(server, Reply(429, b"", {"Retry-After": later}))
        assert result.status == "transient"
        assert result.retry_after == 90

    async def test_429_without_retry_after_waits_the_default(self) -> None:
        with provider_server() as server:
            server.serve(MESSAGES_PATH, Reply(429, b"Too Many Requests"))
            result = await channel(server.base_url, default_retry_after=20).send(outbound())
        assert result.status == "transient"
        assert result.retry_after == 20


class TestFailures:
    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    async def test_server_errors_are_transient(self, status: int) -> None:
        with provider_server() as server:
            result = await send(server, Reply(status, {"message": "Internal error"}))
        assert result.status == "transient"
        assert result.detail == f"HTTP {status}: Internal error"
        assert result.retry_after is None

    @pytest.mark.parametrize(
        ("status", "body", "detail"),
        [
            (
                400,
                fixture("mailgun_error_400.json"),
                "HTTP 400: 'to' parameter is not a valid address. please check documentation",
            ),
            (401, b"Forbidden", "HTTP 401: Forbidden"),
            (
                402,
                {"message": "Domain mg.navylabs.example is disabled."},
                "HTTP 402: Domain mg.navylabs.example is disabled.",
            ),
            (
                404,
                fixture("mailgun_error_404.json"),
                "HTTP 404: Domain not found: mg.navylabs.example",
            ),
        ],
    )
    async def test_refusals_are_permanent(self, status: int, body: object, detail: str) -> None:
        with provider_server() as server:
            result = await send(server, Reply(status, body))
        assert result.status == "permanent"
        assert result.detail == detail
        assert result.retry_after is None
        assert result.raw is not None

    async def test_the_recipient_is_masked_in_details(self) -> None:
        body = {"message": "to: Grace@Example.org is on the bounce list"}
        with provider_server() as server:
            result = await send(server, Reply(400, body))
        assert result.detail == "HTTP 400: to: [recipient] is on the bounce list"

    async def test_connection_refused_is_transient(self) -> None:
        result = await channel(f"http://127.0.0.1:{free_port()}").send(outbound())
        assert result.status == "transient"
        assert result.detail.startswith("connection failed: ConnectError")

    async def test_a_silent_server_times_out_transiently(self) -> None:
        with silent_port() as port:
            started = time.monotonic()
            result = await channel(f"http://127.0.0.1:{port}", timeout=0.2).send(outbound())
            elapsed = time.monotonic() - started
        assert result.status == "transient"
        assert result.detail == "timed out after 0.2s (ReadTimeout)"
        assert elapsed < 3

    async def test_an_untrusted_certificate_is_permanent(self) -> None:
        with provider_server(untrusted_tls()) as server:
            server.serve(MESSAGES_PATH, QUEUED)
            result = await channel(server.base_url).send(outbound())
            assert server.received() == []
        assert result.status == "permanent"
        assert result.detail.startswith("TLS certificate not trusted: self")


class TestRefusedBeforeSending:
    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"subject": "Hi\r\nBcc: victim@example.org"}, "subject"),
            ({"from_name": "Ada\nBcc: victim@example.org"}, "from_name"),
            ({"to_address": "grace@example.org\r\nBcc: victim@example.org"}, "to_address"),
            ({"reply_to": "a@example.org\nBcc: victim@example.org"}, "reply_to"),
            ({"extra_headers": {"X-Campaign": "a\r\nBcc: victim@example.org"}}, "X-Campaign"),
            ({"extra_headers": {"Message-Id": "<forged@example.org>"}}, "Message-Id"),
            ({"unsubscribe_mailto": "mailto:u@x.example\r\nBcc: v@x.example"}, "mailto"),
        ],
    )
    async def test_header_injection_raises_and_nothing_is_sent(
        self, overrides: dict[str, Any], field: str
    ) -> None:
        with provider_server() as server:
            server.serve(MESSAGES_PATH, QUEUED)
            with pytest.raises(ValueError, match=field):
                await channel(server.base_url).send(outbound(**overrides))
            assert server.received() == []


class TestSettings:
    def test_defaults(self) -> None:
        settings = MailgunSettings(api_key=SecretStr(API_KEY), domain=" MG.NavyLabs.example ")
        assert settings.base_url == DEFAULT_BASE_URL
        assert settings.domain == "mg.navylabs.example"
        assert API_KEY not in repr(settings)

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"api_key": SecretStr("")}, "api_key is required"),
            ({"api_key": SecretStr("key-1\nX-Evil: 1")}, "api_key"),
            ({"domain": "mg.navylabs.example/../v4"}, "domain"),
            ({"domain": "localhost"}, "domain"),
            ({"base_url": "http://api.mailgun.net"}, "https"),
            ({"base_url": "https://api.mailgun.net/#eu"}, "fragment"),
            ({"timeout": -1}, "timeout"),
        ],
    )
    def test_refuses_bad_settings(self, options: dict[str, Any], match: str) -> None:
        settings: dict[str, Any] = {"api_key": SecretStr(API_KEY), "domain": DOMAIN}
        settings.update(options)
        with pytest.raises(ValueError, match=match):
            MailgunSettings(**settings)
