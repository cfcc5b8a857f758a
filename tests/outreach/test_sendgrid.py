"""The SendGrid channel over real HTTP, against a SendGrid served on loopback.

Where the shapes come from (details per file in fixtures/email_http/README.md):
- the request: the Mail Send reference (POST /v3/mail/send, Bearer API key, JSON with
  `personalizations[].to[].email`, `from {email, name}`, `reply_to`, `subject`,
  `content [{type, value}]`, `headers`, `custom_args`), as sendgrid-python's own tests build it;
- the 202 answer with `X-Message-Id`: SendGrid's glossary entry "X-Message-ID";
- 429 with `X-RateLimit-Reset` (epoch seconds) and its body: "How to use the v3 API › Rate
  limits";
- error bodies `{"errors": [{"message", "field", "help"}]}`: "Mail Send › Errors" and bodies
  quoted in public code (fixtures README).
"""

from __future__ import annotations

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
from leadrelay.outreach.channels.sendgrid import (
    DEFAULT_BASE_URL,
    EU_BASE_URL,
    MAIL_SEND_PATH,
    SendGridChannel,
    SendGridSettings,
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
API_KEY = "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"
SENDGRID_ID = "W-7nYDPTQ6i0rX2KRLqP9A"
UNSUBSCRIBE_URL = (
    "https://leadrelay.example.com/unsubscribe/"
    "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIz"
)
UNSUBSCRIBE_MAILTO = "mailto:unsubscribe@mail.navylabs.example?subject=unsubscribe"
SUBJECT = "Un café à Zürich la semaine prochaine ?"
ACCEPTED = Reply(202, b"", {"X-Message-Id": SENDGRID_ID})


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


def channel(base_url: str, **options: Any) -> SendGridChannel:
    settings: dict[str, Any] = {"api_key": SecretStr(API_KEY), "base_url": base_url, "timeout": 5}
    settings.update(options)
    return SendGridChannel(SendGridSettings(**settings), clock=lambda: NOW)


async def send(server: ProviderServer, *replies: Reply, **overrides: Any) -> Any:
    server.serve(MAIL_SEND_PATH, *replies)
    return await channel(server.base_url).send(outbound(**overrides))


class TestMailSend:
    async def test_posts_the_documented_request_and_takes_the_message_id(self) -> None:
        message = outbound()
        with provider_server() as server:
            server.serve(MAIL_SEND_PATH, ACCEPTED)
            result = await channel(server.base_url).send(message)
            [request] = server.received()

        assert result.status == "sent"
        assert result.provider_message_id == SENDGRID_ID
        assert result.detail == "HTTP 202 Accepted"
        assert result.retry_after is None
        assert request.method == "POST"
        assert request.path == "/v3/mail/send"
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["accept"] == "application/json"
        # Byte for byte what the result says went out.
        assert request.body == result.raw
        assert request.json() == {
            "personalizations": [{"to": [{"email": "grace@example.org"}]}],
            "from": {"email": "ada@mail.navylabs.example", "name": "Ada Lovelace"},
            "subject": SUBJECT,
            "content": [
                {
                    "type": "text/plain",
                    "value": f"Hi Grace,\n\nA short call?\n\nUnsubscribe: {UNSUBSCRIBE_URL}\n",
                }
            ],
            "headers": {
                "List-Unsubscribe": f"<{UNSUBSCRIBE_URL}>, <{UNSUBSCRIBE_MAILTO}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            "custom_args": {"leadrelay_message_id": str(message.message_id)},
        }

    async def test_reply_to_extra_headers_and_an_international_domain(self) -> None:
        with provider_server() as server:
            result = await send(
                server,
                ACCEPTED,
                to_address="grace@bücher.example",
                reply_to="replies@mail.navylabs.example",
                unsubscribe_mailto=None,
                extra_headers={"X-Campaign": "spring-2025", "X-Team": "Équipe Zürich"},
            )
            [request] = server.received()
        assert result.status == "sent"
        body = request.json()
        team = body["headers"].pop("X-Team")
        assert team.startswith("=?utf-8?")  # "properly encoded if they contain unicode"
        assert str(make_header(decode_header(team))) == "Équipe Zürich"
        assert body["personalizations"] == [{"to": [{"email": "grace@xn--bcher-kva.example"}]}]
        assert body["reply_to"] == {"email": "replies@mail.navylabs.example"}
        assert body["headers"] == {
            "List-Unsubscribe": f"<{UNSUBSCRIBE_URL}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Campaign": "spring-2025",
        }
        assert "tracking_settings" not in body  # the account's defaults apply

    async def test_accepted_without_a_message_id_is_still_sent(self) -> None:
        # Retrying an accepted message would send it twice; events still carry custom_args.
        with provider_server() as server:
            result = await send(server, Reply(202))
        assert result.status == "sent"
        assert result.provider_message_id is None
        assert result.detail == "HTTP 202 Accepted (no X-Message-Id)"

    async def test_base_url_keeps_its_path_and_loses_its_trailing_slash(self) -> None:
        with provider_server() as server:
            server.serve("/relay/v3/mail/send", ACCEPTED)
            result = await channel(server.base_url + "/relay/").send(outbound())
            [request] = server.received()
        assert result.status == "sent"
        assert request.path == "/relay/v3/mail/send"

    async def test_a_shared_client_is_used_and_left_open(self) -> None:
        with provider_server() as server:
            server.serve(MAIL_SEND_PATH, ACCEPTED)
            settings = SendGridSettings(api_key=SecretStr(API_KEY), base_url=server.base_url)
            async with httpx.AsyncClient() as client:
                shared = SendGridChannel(settings, client=client, clock=lambda: NOW)
                first = await shared.send(outbound())
                second = await shared.send(outbound())
                assert not client.is_closed
            assert len(server.received()) == 2
        assert first.status == second.status == "sent"


class TestRateLimits:
    async def test_429_waits_until_the_rate_limit_resets(self) -> None:
        reset = int((NOW + timedelta(seconds=42)).timestamp())
        reply = Reply(
            429,
            fixture("sendgrid_error_429.json"),
            {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{reset}",
            },
        )
        with provider_server() as server:
            result = await send(server, reply)
        assert result.status == "transient"
        assert result.retry_after == 42
        assert result.detail == "HTTP 429: too many requests"
        assert result.provider_message_id is None

    async def test_429_with_retry_after_seconds(self) -> None:
        with provider_server() as server:
            result = await send(server, Reply(429, b"", {"Retry-After": "7"}))
        assert result.status == "transient"
        assert result.retry_after == 7

    async def test_429_with_a_retry_after_date(self) -> None:
        later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
        with provider_server() as server:
            result = await send(server, Reply(429, b"", {"Retry-After": later}))
        assert result.retry_after == 90

    async def test_429_waits_for_the_later_of_both_hints(self) -> None:
        reset = str(int(NOW.timestamp()) + 30)
        headers = {"Retry-After": "5", "X-RateLimit-Reset": reset}
        with provider_server() as server:
            result = await send(server, Reply(429, fixture("sendgrid_error_429.json"), headers))
        assert result.retry_after == 30

    async def test_429_without_a_usable_hint_waits_the_default(self) -> None:
        headers = {"Retry-After": "soon", "X-RateLimit-Reset": "tomorrow"}
        with provider_server() as server:
            server.serve(MAIL_SEND_PATH, Reply(429, b"", headers))
            result = await channel(server.base_url, default_retry_after=15).send(outbound())
        assert result.status == "transient"
        assert result.retry_after == 15

    async def test_429_with_a_reset_in_the_past_retries_at_once(self) -> None:
        reset = str(int(NOW.timestamp()) - 5)
        with provider_server() as server:
            result = await send(server, Reply(429, b"", {"X-RateLimit-Reset": reset}))
        assert result.status == "transient"
        assert result.retry_after == 0


class TestFailures:
    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    async def test_server_errors_are_transient(self, status: int) -> None:
        with provider_server() as server:
            result = await send(server, Reply(status, b"upstream trouble"))
        assert result.status == "transient"
        assert result.detail == f"HTTP {status}: upstream trouble"
        assert result.retry_after is None

    async def test_400_keeps_sendgrids_messages_and_fields(self) -> None:
        with provider_server() as server:
            result = await send(server, Reply(400, fixture("sendgrid_error_400.json")))
        assert result.status == "permanent"
        assert result.detail == (
            "HTTP 400: The from email does not contain a valid address. (from.email); "
            "Does not contain a valid address. (personalizations.0.to.0.email)"
        )
        assert result.raw is not None

    @pytest.mark.parametrize(
        ("status", "body", "detail"),
        [
            (
                401,
                fixture("sendgrid_error_401.json"),
                "HTTP 401: The provided authorization grant is invalid, expired, or revoked",
            ),
            (
                403,
                fixture("sendgrid_error_403.json"),
                "HTTP 403: The from address does not match a verified Sender Identity.",
            ),
            (413, b"Payload Too Large", "HTTP 413: Payload Too Large"),
            (404, b"", "HTTP 404: Not Found"),
        ],
    )
    async def test_refusals_are_permanent(self, status: int, body: object, detail: str) -> None:
        with provider_server() as server:
            result = await send(server, Reply(status, body))
        assert result.status == "permanent"
        assert result.detail.startswith(detail)
        assert result.retry_after is None

    async def test_the_recipient_is_masked_in_details(self) -> None:
        body = {"errors": [{"message": "Bounced address GRACE@Example.org", "field": None}]}
        with provider_server() as server:
            result = await send(server, Reply(400, body))
        assert result.detail == "HTTP 400: Bounced address [recipient]"

    async def test_connection_refused_is_transient(self) -> None:
        result = await channel(f"http://127.0.0.1:{free_port()}").send(outbound())
        assert result.status == "transient"
        assert result.detail.startswith("connection failed: ConnectError")
        assert result.raw is not None

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
            server.serve(MAIL_SEND_PATH, ACCEPTED)
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
            ({"reply_to": "a@example.org\r\nBcc: victim@example.org"}, "reply_to"),
            ({"extra_headers": {"X-Campaign": "a\r\nBcc: victim@example.org"}}, "X-Campaign"),
            ({"extra_headers": {"List-Unsubscribe": "<https://evil.example>"}}, "List-Unsubscribe"),
            ({"unsubscribe_url": "https://x.example/u>\r\nBcc: v@example.org"}, "unsubscribe_url"),
        ],
    )
    async def test_header_injection_raises_and_nothing_is_sent(
        self, overrides: dict[str, Any], field: str
    ) -> None:
        with provider_server() as server:
            server.serve(MAIL_SEND_PATH, ACCEPTED)
            with pytest.raises(ValueError, match=field):
                await channel(server.base_url).send(outbound(**overrides))
            assert server.received() == []


class TestSettings:
    def test_defaults_and_the_eu_region(self) -> None:
        assert SendGridSettings(api_key=SecretStr(API_KEY)).base_url == DEFAULT_BASE_URL
        eu = SendGridSettings(api_key=SecretStr(API_KEY), base_url=EU_BASE_URL)
        assert SendGridChannel(eu).url == "https://api.eu.sendgrid.com/v3/mail/send"

    def test_the_key_stays_out_of_reprs(self) -> None:
        assert API_KEY not in repr(SendGridSettings(api_key=SecretStr(API_KEY)))

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"api_key": SecretStr("")}, "api_key is required"),
            ({"api_key": SecretStr("SG.x\r\nX-Evil: 1")}, "api_key"),
            ({"base_url": "http://api.sendgrid.com"}, "https"),
            ({"base_url": "https://api.sendgrid.com/?on-behalf-of=x"}, "query"),
            ({"base_url": "ftp://api.sendgrid.com"}, "http"),
            ({"timeout": 0}, "timeout"),
            ({"default_retry_after": -1}, "default_retry_after"),
        ],
    )
    def test_refuses_bad_settings(self, options: dict[str, Any], match: str) -> None:
        settings: dict[str, Any] = {"api_key": SecretStr(API_KEY)}
        settings.update(options)
        with pytest.raises(ValueError, match=match):
            SendGridSettings(**settings)
