"""Verification against the outside world played honestly on loopback: a real DNS server on
127.0.0.1 (dnspython builds its answers) for the offline e-mail verifier, and a real HTTP
server answering with the providers' own documented response bodies for the paid adapters.
Nothing here reaches the internet."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast
from urllib.parse import parse_qs, urlsplit

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import httpx
import pytest
from typing_extensions import override

from leadrelay.capture.normalize import normalize_phone
from leadrelay.capture.verifiers.kickbox import KickboxEmailVerifier
from leadrelay.capture.verifiers.twilio_lookup import TwilioLookupVerifier
from leadrelay.capture.verify import (
    DEFAULT_THRESHOLDS,
    InMemoryVerificationCache,
    OfflineEmailVerifier,
    OfflinePhoneVerifier,
    VerificationKind,
    VerificationResult,
    VerificationStatus,
    VerifierMisconfigured,
    is_verified,
    make_resolver,
    verify_cached,
)

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
VALID = VerificationStatus.VALID
INVALID = VerificationStatus.INVALID
RISKY = VerificationStatus.RISKY
UNKNOWN = VerificationStatus.UNKNOWN


# --- a DNS server on loopback -----------------------------------------------------------------

ZONE: Mapping[str, Mapping[str, list[str]]] = {
    "com.": {"NS": ["a.gtld-servers.net."]},  # what the verifier probes before trusting NXDOMAIN
    "acme.com.": {"MX": ["10 mx1.acme.com.", "20 mx2.acme.com."], "A": ["192.0.2.10"]},
    "webonly.com.": {"A": ["192.0.2.20"]},
    "v6only.com.": {"AAAA": ["2001:db8::1"]},
    "nomail.com.": {"MX": ["0 ."]},  # RFC 7505 null MX: "this domain accepts no mail"
    "parked.com.": {"TXT": ['"v=spf1 -all"']},
    "xn--exmple-qta.com.": {"MX": ["10 mx.xn--exmple-qta.com."]},
}


class ZoneServer(asyncio.DatagramProtocol):
    """Answers from ZONE: NXDOMAIN for names it lacks, an empty NOERROR for missing types;
    never answers `silent` names, SERVFAILs `broken` ones; `deny_all` plays a sandboxed
    resolver that denies every name. Records every question."""

    def __init__(
        self,
        *,
        deny_all: bool = False,
        silent: frozenset[str] = frozenset({"slow.com."}),
        broken: frozenset[str] = frozenset({"broken.com."}),
    ) -> None:
        self.deny_all = deny_all
        self.silent = silent
        self.broken = broken
        self.questions: list[tuple[str, str]] = []
        self.transport: asyncio.DatagramTransport | None = None

    @override
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def asked(self, name: str, rdtype: str | None = None) -> int:
        return sum(1 for q in self.questions if q[0] == name and rdtype in (None, q[1]))

    @override
    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.questions.append((name, rdtype))
        if name in self.silent:
            return
        response = dns.message.make_response(query)
        records = None if self.deny_all else ZONE.get(name)
        if name in self.broken:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif rdtype in records:
            response.answer.append(
                dns.rrset.from_text_list(name, 300, "IN", rdtype, records[rdtype])
            )
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


StartDns = Callable[..., Awaitable[ZoneServer]]


@pytest.fixture
async def start_dns() -> AsyncIterator[StartDns]:
    transports: list[asyncio.BaseTransport] = []

    async def start(*, deny_all: bool = False) -> ZoneServer:
        server = ZoneServer(deny_all=deny_all)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: server, local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        return server

    yield start
    for transport in transports:
        transport.close()


def verifier_on(
    server: ZoneServer, *, unknown_ttl: timedelta = timedelta(minutes=5)
) -> OfflineEmailVerifier:
    resolver = make_resolver(["127.0.0.1"], port=server.port, timeout=0.3)
    return OfflineEmailVerifier(resolver, timeout=0.3, unknown_ttl=unknown_ttl)


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- an HTTP server on loopback playing a provider --------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names


@dataclass
class ProviderServer:
    """Answers queued (status, body, delay) replies in order, 500 when none is left."""

    requests: list[Seen] = field(default_factory=list)
    replies: deque[tuple[int, str, float]] = field(default_factory=deque)

    def reply(self, status: int, body: str | Mapping[str, object], *, delay: float = 0.0) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.replies.append((status, text, delay))


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    @override
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and left is the point of some tests


@pytest.fixture
def provider() -> Iterator[tuple[ProviderServer, str]]:
    state = ProviderServer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            state.requests.append(
                Seen(
                    method="GET",
                    path=url.path,
                    query=parse_qs(url.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                )
            )
            status, body, delay = state.replies.popleft() if state.replies else (500, "", 0.0)
            time.sleep(delay)
            payload = body.encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        @override
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


# --- results, thresholds, cache ---------------------------------------------------------------


def result(
    value: str = "jane@acme.com",
    *,
    status: VerificationStatus = VALID,
    confidence: float = 0.8,
    kind: VerificationKind = VerificationKind.EMAIL,
    checked_at: datetime = NOW,
) -> VerificationResult:
    return VerificationResult(
        kind=kind,
        value=value,
        status=status,
        confidence=confidence,
        reason="mx_found",
        provider="offline",
        checked_at=checked_at,
    )


class TestVerificationResult:
    @pytest.mark.parametrize("confidence", [-0.1, 1.01, float("nan")])
    def test_rejects_confidence_outside_zero_to_one(self, confidence: float) -> None:
        with pytest.raises(ValueError, match="confidence"):
            result(confidence=confidence)

    def test_rejects_a_naive_check_time(self) -> None:
        with pytest.raises(ValueError, match="timezone"):
            result(checked_at=datetime(2026, 3, 2, 9, 30))  # noqa: DTZ001

    def test_statuses_and_kinds_are_plain_strings(self) -> None:
        checked = result()
        assert (checked.kind, checked.status) == ("email", "valid")


class TestIsVerified:
    def test_defaults_are_seventy_percent_for_email_and_sixty_for_phone(self) -> None:
        assert DEFAULT_THRESHOLDS == {"email": 0.7, "phone": 0.6}
        assert DEFAULT_THRESHOLDS[VerificationKind.EMAIL] == 0.7

    def test_accepts_at_or_above_the_threshold(self) -> None:
        assert is_verified(result(confidence=0.7), DEFAULT_THRESHOLDS["email"])
        assert not is_verified(result(confidence=0.69), DEFAULT_THRESHOLDS["email"])

    def test_unknown_stays_below_both_defaults(self) -> None:
        unknown = result(status=UNKNOWN, confidence=0.5)
        assert not is_verified(unknown, DEFAULT_THRESHOLDS["email"])
        assert not is_verified(unknown, DEFAULT_THRESHOLDS["phone"])

    def test_invalid_is_never_verified_whatever_the_threshold(self) -> None:
        assert not is_verified(result(status=INVALID, confidence=0.0), 0.0)


class TestInMemoryVerificationCache:
    async def test_answers_within_thirty_days(self) -> None:
        cache = InMemoryVerificationCache()
        await cache.put(result())
        later = NOW + timedelta(days=29, hours=23)
        assert await cache.get(VerificationKind.EMAIL, "jane@acme.com", now=later) == result()

    async def test_forgets_after_thirty_days(self) -> None:
        cache = InMemoryVerificationCache()
        await cache.put(result())
        later = NOW + timedelta(days=30)
        assert await cache.get(VerificationKind.EMAIL, "jane@acme.com", now=later) is None

    async def test_keys_on_kind_and_value(self) -> None:
        cache = InMemoryVerificationCache()
        await cache.put(result("+442079460958", kind=VerificationKind.PHONE))
        assert await cache.get(VerificationKind.EMAIL, "+442079460958", now=NOW) is None
        assert await cache.get(VerificationKind.PHONE, "+442079460958", now=NOW) is not None

    async def test_drops_the_least_recently_used_entry_past_its_bound(self) -> None:
        cache = InMemoryVerificationCache(max_entries=2)
        for value in ("a@acme.com", "b@acme.com"):
            await cache.put(result(value))
        assert await cache.get(VerificationKind.EMAIL, "a@acme.com", now=NOW) is not None
        await cache.put(result("c@acme.com"))
        assert await cache.get(VerificationKind.EMAIL, "b@acme.com", now=NOW) is None
        assert await cache.get(VerificationKind.EMAIL, "a@acme.com", now=NOW) is not None


@dataclass
class Counting:
    """Counts the calls that reach a real verifier."""

    inner: OfflineEmailVerifier | OfflinePhoneVerifier
    calls: int = 0

    @property
    def kind(self) -> VerificationKind:
        return self.inner.kind

    @property
    def provider(self) -> str:
        return self.inner.provider

    async def verify(self, value: str, *, now: datetime) -> VerificationResult:
        self.calls += 1
        return await self.inner.verify(value, now=now)


class TestVerifyCached:
    async def test_second_check_within_ttl_comes_from_the_cache(self) -> None:
        verifier, cache = Counting(OfflinePhoneVerifier()), InMemoryVerificationCache()
        first = await verify_cached(verifier, cache, "+447400123456", now=NOW)
        again = await verify_cached(verifier, cache, "+447400123456", now=NOW + timedelta(days=3))
        assert again == first
        assert verifier.calls == 1

    async def test_checks_again_after_thirty_days(self) -> None:
        verifier, cache = Counting(OfflinePhoneVerifier()), InMemoryVerificationCache()
        await verify_cached(verifier, cache, "+447400123456", now=NOW)
        fresh = await verify_cached(verifier, cache, "+447400123456", now=NOW + timedelta(days=31))
        assert verifier.calls == 2
        assert fresh.checked_at == NOW + timedelta(days=31)

    async def test_does_not_cache_unknown_results(self, start_dns: StartDns) -> None:
        server = await start_dns()
        verifier, cache = Counting(verifier_on(server)), InMemoryVerificationCache()
        first = await verify_cached(verifier, cache, "jane@slow.com", now=NOW)
        await verify_cached(verifier, cache, "jane@slow.com", now=NOW)
        assert first.status is UNKNOWN
        assert verifier.calls == 2


# --- offline e-mail ---------------------------------------------------------------------------


class TestOfflineEmailVerifier:
    @pytest.mark.parametrize(
        ("email", "status", "confidence", "reason"),
        [
            ("jane@acme.com", VALID, 0.8, "mx_found"),
            ("jane@webonly.com", VALID, 0.65, "implicit_mx"),
            ("jane@v6only.com", VALID, 0.65, "implicit_mx"),
            ("jane@nomail.com", INVALID, 0.02, "null_mx"),
            ("jane@parked.com", INVALID, 0.05, "no_mail_host"),
            ("jane@gone.com", INVALID, 0.02, "nxdomain"),
            ("jane@broken.com", UNKNOWN, 0.5, "dns_error"),
        ],
    )
    async def test_classifies_domains_by_their_mail_hosts(
        self,
        start_dns: StartDns,
        email: str,
        status: VerificationStatus,
        confidence: float,
        reason: str,
    ) -> None:
        checked = await verifier_on(await start_dns()).verify(email, now=NOW)
        assert (checked.status, checked.confidence, checked.reason) == (status, confidence, reason)
        assert (checked.kind, checked.value, checked.provider, checked.checked_at) == (
            "email",
            email,
            "offline",
            NOW,
        )

    async def test_mx_found_clears_the_default_threshold_and_implicit_mx_does_not(
        self, start_dns: StartDns
    ) -> None:
        verifier = verifier_on(await start_dns())
        assert is_verified(await verifier.verify("jane@acme.com", now=NOW), 0.7)
        assert not is_verified(await verifier.verify("jane@webonly.com", now=NOW), 0.7)

    async def test_timeout_is_unknown_not_a_failure_and_does_not_hang(
        self, start_dns: StartDns
    ) -> None:
        verifier = verifier_on(await start_dns())
        started = time.monotonic()
        checked = await verifier.verify("jane@slow.com", now=NOW)
        assert (checked.status, checked.confidence, checked.reason) == (UNKNOWN, 0.5, "dns_timeout")
        assert time.monotonic() - started < 2

    async def test_no_dns_server_listening_is_unknown(self) -> None:
        resolver = make_resolver(["127.0.0.1"], port=unused_port(), timeout=0.3)
        checked = await OfflineEmailVerifier(resolver, timeout=0.3).verify("jane@acme.com", now=NOW)
        assert (checked.status, checked.confidence) == (UNKNOWN, 0.5)

    async def test_does_not_believe_nxdomain_from_a_resolver_that_denies_everything(
        self, start_dns: StartDns
    ) -> None:
        server = await start_dns(deny_all=True)
        checked = await verifier_on(server).verify("jane@acme.com", now=NOW)
        assert (checked.status, checked.reason) == (UNKNOWN, "dns_unreliable")
        assert server.asked("com.", "NS") == 1

    async def test_disposable_domains_are_risky_without_asking_dns(
        self, start_dns: StartDns
    ) -> None:
        server = await start_dns()
        checked = await verifier_on(server).verify("x@sub.mailinator.com", now=NOW)
        assert (checked.status, checked.confidence, checked.reason) == (
            RISKY,
            0.3,
            "disposable_domain",
        )
        assert server.questions == []

    async def test_bad_syntax_is_invalid_without_asking_dns(self, start_dns: StartDns) -> None:
        server = await start_dns()
        checked = await verifier_on(server).verify("jane@@acme", now=NOW)
        assert (checked.status, checked.confidence, checked.value) == (INVALID, 0.0, "jane@@acme")
        assert server.questions == []

    async def test_asks_for_idn_domains_in_punycode(self, start_dns: StartDns) -> None:
        server = await start_dns()
        checked = await verifier_on(server).verify("josé@Exámple.com", now=NOW)
        assert (checked.status, checked.value) == (VALID, "josé@exámple.com")
        assert server.asked("xn--exmple-qta.com.", "MX") == 1

    async def test_asks_about_each_domain_once_even_concurrently(self, start_dns: StartDns) -> None:
        server = await start_dns()
        verifier = verifier_on(server)
        results = await asyncio.gather(
            *(verifier.verify(f"person{n}@acme.com", now=NOW) for n in range(20))
        )
        await verifier.verify("late@acme.com", now=NOW + timedelta(minutes=30))
        assert {checked.status for checked in results} == {VALID}
        assert server.asked("acme.com.", "MX") == 1

    async def test_asks_again_once_an_unknown_answer_has_aged(self, start_dns: StartDns) -> None:
        server = await start_dns()
        verifier = verifier_on(server, unknown_ttl=timedelta(minutes=5))
        await verifier.verify("jane@slow.com", now=NOW)
        await verifier.verify("jane@slow.com", now=NOW + timedelta(minutes=4))
        assert server.asked("slow.com.", "MX") == 1
        await verifier.verify("jane@slow.com", now=NOW + timedelta(minutes=6))
        assert server.asked("slow.com.", "MX") == 2


# --- offline phone ----------------------------------------------------------------------------


class TestOfflinePhoneVerifier:
    @pytest.mark.parametrize(
        ("value", "status", "confidence", "reason"),
        [
            ("+447400123456", VALID, 0.8, "mobile"),
            ("+12125550123", VALID, 0.75, "fixed_line_or_mobile"),
            ("+442079460958", VALID, 0.7, "fixed_line"),
            ("+33970123456", VALID, 0.6, "voip"),
            ("+448001234567", VALID, 0.6, "toll_free"),
            ("+447700900123", INVALID, 0.0, "invalid_for_region"),
            ("+4412", INVALID, 0.0, "too_short"),
        ],
    )
    async def test_confidence_follows_validity_and_number_type(
        self, value: str, status: VerificationStatus, confidence: float, reason: str
    ) -> None:
        checked = await OfflinePhoneVerifier().verify(value, now=NOW)
        assert (checked.status, checked.confidence, checked.reason) == (status, confidence, reason)
        assert (checked.kind, checked.value) == ("phone", value)

    async def test_mobile_numbers_are_trusted_more_than_other_types(self) -> None:
        verifier = OfflinePhoneVerifier()
        mobile = await verifier.verify("+447400123456", now=NOW)
        landline = await verifier.verify("+442079460958", now=NOW)
        assert mobile.confidence > landline.confidence >= DEFAULT_THRESHOLDS["phone"]

    @pytest.mark.parametrize(
        "raw", ["+447400123456", "+12125550123", "+442079460958", "+33970123456", "030 1234567"]
    )
    async def test_a_type_intake_found_gives_the_same_answer_without_parsing(
        self, raw: str
    ) -> None:
        """The verification job reads the type intake stored instead of parsing again."""
        intake = normalize_phone(raw, default_region="DE")
        assert intake.e164 is not None
        verifier = OfflinePhoneVerifier()
        parsed = await verifier.verify(intake.e164, now=NOW)
        assert verifier.typed(intake.e164, intake.number_type, now=NOW) == parsed

    async def test_reads_national_numbers_with_its_default_region(self) -> None:
        checked = await OfflinePhoneVerifier(default_region="DE").verify("0176 12345678", now=NOW)
        assert (checked.value, checked.status, checked.reason) == (
            "+4917612345678",
            VALID,
            "mobile",
        )


# --- Twilio Lookup v2 -------------------------------------------------------------------------

# Response bodies from Twilio's Python SDK tests (twilio/twilio-python,
# tests/integration/lookups/v2/test_phone_number.py: test_fetch_line_type_intelligence_response,
# test_fetch_invalid_response, test_fetch_response).
TWILIO_LINE_TYPE_NON_FIXED_VOIP = """{
    "calling_country_code": "1",
    "country_code": "US",
    "phone_number": "+14159929960",
    "national_format": "(415) 992-9960",
    "valid": true,
    "validation_errors": null,
    "caller_name": null,
    "sim_swap": null,
    "call_forwarding": null,
    "live_activity": null,
    "line_type_intelligence": {
        "error_code": null,
        "mobile_country_code": "240",
        "mobile_network_code": "38",
        "carrier_name": "Twilio - SMS/MMS-SVR",
        "type": "nonFixedVoip"
    },
    "url": "https://lookups.twilio.com/v2/PhoneNumbers/+14159929960"
}"""
TWILIO_INVALID_TOO_LONG = """{
    "calling_country_code": null,
    "country_code": null,
    "phone_number": "+141599299600",
    "national_format": null,
    "valid": false,
    "validation_errors": ["TOO_LONG"],
    "caller_name": null,
    "sim_swap": null,
    "call_forwarding": null,
    "live_activity": null,
    "line_type_intelligence": null,
    "url": "https://lookups.twilio.com/v2/PhoneNumbers/+141599299600"
}"""
TWILIO_BASIC = """{
    "calling_country_code": "1",
    "country_code": "US",
    "phone_number": "+14159929960",
    "national_format": "(415) 992-9960",
    "valid": true,
    "validation_errors": null,
    "caller_name": null,
    "sim_swap": null,
    "call_forwarding": null,
    "live_activity": null,
    "line_type_intelligence": null,
    "url": "https://lookups.twilio.com/v2/PhoneNumbers/+14159929960"
}"""
# Twilio's error body for bad credentials (error 20003), as in the twilio-dart SDK's test fixture
# (mplacona/twilio-dart, test/fixtures/status_messages.dart).
TWILIO_AUTHENTICATE = {
    "code": 20003,
    "detail": "Your AccountSid or AuthToken was incorrect.",
    "message": "Authenticate",
    "more_info": "https://www.twilio.com/docs/errors/20003",
    "status": 401,
}
SID, TOKEN = "AC00000000000000000000000000000000", "test-auth-token"


def with_line_type(body: str, line_type: str) -> str:
    """The SDK's Line Type Intelligence body with another documented `type` value."""
    data = json.loads(body)
    data["line_type_intelligence"]["type"] = line_type
    return json.dumps(data)


class TestTwilioLookupVerifier:
    async def test_sends_the_documented_request(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        server.reply(200, TWILIO_LINE_TYPE_NON_FIXED_VOIP)
        verifier = TwilioLookupVerifier(SID, TOKEN, base_url=base_url, client=http_client)
        await verifier.verify("+14159929960", now=NOW)
        [seen] = server.requests
        assert (seen.method, seen.path) == ("GET", "/v2/PhoneNumbers/+14159929960")
        assert seen.query == {"Fields": ["line_type_intelligence"]}
        expected = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        assert seen.headers["authorization"] == f"Basic {expected}"

    async def test_non_fixed_voip_is_risky(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        server.reply(200, TWILIO_LINE_TYPE_NON_FIXED_VOIP)
        verifier = TwilioLookupVerifier(SID, TOKEN, base_url=base_url, client=http_client)
        checked = await verifier.verify("+14159929960", now=NOW)
        assert (checked.status, checked.confidence, checked.reason) == (
            RISKY,
            0.45,
            "non_fixed_voip",
        )
        assert (checked.kind, checked.value, checked.provider) == (
            "phone",
            "+14159929960",
            "twilio_lookup",
        )

    @pytest.mark.parametrize(
        ("line_type", "status", "confidence", "reason"),
        [
            ("mobile", VALID, 0.95, "mobile"),
            ("landline", VALID, 0.85, "fixed_line"),
            ("fixedVoip", VALID, 0.8, "fixed_voip"),
            ("tollFree", VALID, 0.75, "toll_free"),
            ("premium", RISKY, 0.3, "premium_rate"),
            ("unknown", VALID, 0.6, "unknown_line_type"),
        ],
    )
    async def test_maps_line_types(
        self,
        provider: tuple[ProviderServer, str],
        http_client: httpx.AsyncClient,
        line_type: str,
        status: VerificationStatus,
        confidence: float,
        reason: str,
    ) -> None:
        server, base_url = provider
        server.reply(200, with_line_type(TWILIO_LINE_TYPE_NON_FIXED_VOIP, line_type))
        verifier = TwilioLookupVerifier(SID, TOKEN, base_url=base_url, client=http_client)
        checked = await verifier.verify("+14159929960", now=NOW)
        assert (checked.status, checked.confidence, checked.reason) == (status, confidence, reason)

    async def test_invalid_number_carries_twilios_validation_error(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        server.reply(200, TWILIO_INVALID_TOO_LONG)
        verifier = TwilioLookupVerifier(SID, TOKEN, base_url=base_url, client=http_client)
        checked = await verifier.verify("+14159929960", now=NOW)
        assert (checked.status, checked.reason) == (INVALID, "too_long")

    async def test_valid_without_line_type_is_valid_at_lower_confidence(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        server.reply(200, TWILIO_BASIC)
        verifier = TwilioLookupVerifier(SID, TOKEN, base_url=base_url, client=http_client)
        checked = await verifier.verify("+14159929960", now=NOW)
        assert (checked.status, checked.confidence, checked.reason) == (
            VALID,
            0.7,
            "valid_no_line_type",
        )

    async def test_bad_credentials_raise_a_configuration_error(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        server.reply(401, TWILIO_AUTHENTICATE)
        verifier = TwilioLookupVerifier(SID, "wrong", base_url=base_url, client=http_client)
        with pytest.raises(VerifierMisconfigured, match="twilio_lookup") as raised:
            await verifier.verify("+14159929960", now=NOW)
        assert "wrong" not in str(raised.value)

    @pytest.mark.parametrize(
        ("status_code", "reason"),
        [(500, "provider_error"), (503, "provider_error"), (429, "rate_limited")],
    )
    async def test_server_errors_are_unknown(
        self,
        provider: tuple[ProviderServer, str],
        http_client: httpx.AsyncClient,
        status_code: int,
        reason: str,
    ) -> None:
        server, base_url = provider
        server.reply(status_code, {"code": 20500, "message": "Internal Server Error"})
        verifier = TwilioLookupVerifier(SID, TOKEN, base_url=base_url, client=http_client)
        checked = await verifier.verify("+14159929960", now=NOW)
        assert (checked.status, checked.confidence, checked.reason) == (UNKNOWN, 0.5, reason)

    async def test_a_slow_provider_is_unknown(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        server.reply(200, TWILIO_BASIC, delay=1.0)
        verifier = TwilioLookupVerifier(
            SID, TOKEN, base_url=base_url, client=http_client, timeout=0.2
        )
        checked = await verifier.verify("+14159929960", now=NOW)
        assert (checked.status, checked.reason) == (UNKNOWN, "provider_timeout")

    async def test_an_unreachable_provider_is_unknown(self) -> None:
        base_url = f"http://127.0.0.1:{unused_port()}"
        verifier = TwilioLookupVerifier(SID, TOKEN, base_url=base_url, timeout=0.5)
        try:
            checked = await verifier.verify("+14159929960", now=NOW)
        finally:
            await verifier.aclose()
        assert (checked.status, checked.reason) == (UNKNOWN, "provider_unreachable")

    async def test_numbers_we_cannot_read_cost_no_request(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        verifier = TwilioLookupVerifier(
            SID, TOKEN, base_url=base_url, client=http_client, default_region="GB"
        )
        checked = await verifier.verify("020 7946 095", now=NOW)
        assert (checked.status, checked.reason, checked.value) == (
            INVALID,
            "invalid_for_region",
            "020 7946 095",
        )
        assert server.requests == []

    async def test_national_numbers_are_sent_in_e164(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        server.reply(200, with_line_type(TWILIO_LINE_TYPE_NON_FIXED_VOIP, "landline"))
        verifier = TwilioLookupVerifier(
            SID, TOKEN, base_url=base_url, client=http_client, default_region="GB"
        )
        checked = await verifier.verify("020 7946 0958", now=NOW)
        assert server.requests[0].path == "/v2/PhoneNumbers/+442079460958"
        assert checked.value == "+442079460958"


# --- Kickbox ----------------------------------------------------------------------------------

# Response bodies from Kickbox's documentation, "Sandbox Mode" page (docs.kickbox.com/docs/
# sandbox-api): "Simulate Accepted Email" and "Simulate Rejected Email".
KICKBOX_DELIVERABLE = """{
    "result": "deliverable",
    "reason": "accepted_email",
    "role": false,
    "free": false,
    "disposable": false,
    "accept_all": false,
    "sendex": 1,
    "email": "john@example.com",
    "user": "john",
    "domain": "example.com",
    "success": true,
    "message": null
}"""
KICKBOX_REJECTED = """{
    "result": "undeliverable",
    "reason": "rejected_email",
    "role": false,
    "free": false,
    "disposable": false,
    "accept_all": false,
    "sendex": 0,
    "email": "rejected-email@example.com",
    "user": "rejected-email",
    "domain": "example.com",
    "success": true,
    "message": null
}"""


def kickbox_body(**changes: object) -> str:
    """The documented deliverable body with fields changed to other documented values (the
    field list and the values of `result` and `reason` are those of Kickbox's API reference,
    docs.kickbox.com/reference/verify-an-email-address)."""
    data = json.loads(KICKBOX_DELIVERABLE)
    data.update(changes)
    return json.dumps(data)


class TestKickboxEmailVerifier:
    async def test_sends_the_documented_request(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        server.reply(200, KICKBOX_DELIVERABLE)
        verifier = KickboxEmailVerifier("live_secret", base_url=base_url, client=http_client)
        await verifier.verify(" John@Example.com ", now=NOW)
        [seen] = server.requests
        assert (seen.method, seen.path) == ("GET", "/v2/verify")
        assert seen.query == {"email": ["John@example.com"], "timeout": ["6000"]}
        assert seen.headers["authorization"] == "Bearer live_secret"

    async def test_deliverable_is_valid_with_the_sendex_score(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        server.reply(200, KICKBOX_DELIVERABLE)
        verifier = KickboxEmailVerifier("live_secret", base_url=base_url, client=http_client)
        checked = await verifier.verify("john@example.com", now=NOW)
        assert (checked.status, checked.confidence, checked.reason) == (
            VALID,
            1.0,
            "accepted_email",
        )
        assert (checked.kind, checked.value, checked.provider) == (
            "email",
            "john@example.com",
            "kickbox",
        )

    async def test_rejected_email_is_invalid(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        server.reply(200, KICKBOX_REJECTED)
        verifier = KickboxEmailVerifier("live_secret", base_url=base_url, client=http_client)
        checked = await verifier.verify("rejected-email@example.com", now=NOW)
        assert (checked.status, checked.confidence, checked.reason) == (
            INVALID,
            0.0,
            "rejected_email",
        )

    @pytest.mark.parametrize(
        ("changes", "status", "confidence", "reason"),
        [
            (
                {"result": "risky", "reason": "low_quality", "accept_all": True, "sendex": 0.9},
                RISKY,
                0.6,
                "low_quality",
            ),
            (
                {"result": "unknown", "reason": "no_connect", "sendex": 0.8},
                UNKNOWN,
                0.5,
                "no_connect",
            ),
            ({"result": "deliverable", "sendex": 0.35}, VALID, 0.35, "accepted_email"),
            ({"result": "deliverable", "sendex": None}, VALID, 0.9, "accepted_email"),
        ],
    )
    async def test_caps_the_score_by_status(
        self,
        provider: tuple[ProviderServer, str],
        http_client: httpx.AsyncClient,
        changes: dict[str, object],
        status: VerificationStatus,
        confidence: float,
        reason: str,
    ) -> None:
        server, base_url = provider
        server.reply(200, kickbox_body(**changes))
        verifier = KickboxEmailVerifier("live_secret", base_url=base_url, client=http_client)
        checked = await verifier.verify("john@example.com", now=NOW)
        assert (checked.status, checked.confidence, checked.reason) == (status, confidence, reason)

    @pytest.mark.parametrize("status_code", [401, 403])
    async def test_a_refused_key_raises_a_configuration_error(
        self,
        provider: tuple[ProviderServer, str],
        http_client: httpx.AsyncClient,
        status_code: int,
    ) -> None:
        server, base_url = provider
        server.reply(status_code, {"success": False, "message": "Invalid API Key"})
        verifier = KickboxEmailVerifier("live_wrong", base_url=base_url, client=http_client)
        with pytest.raises(VerifierMisconfigured, match="kickbox"):
            await verifier.verify("john@example.com", now=NOW)

    async def test_an_unsuccessful_answer_is_unknown(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        server.reply(200, kickbox_body(success=False, message="Unexpected error"))
        verifier = KickboxEmailVerifier("live_secret", base_url=base_url, client=http_client)
        checked = await verifier.verify("john@example.com", now=NOW)
        assert (checked.status, checked.reason) == (UNKNOWN, "provider_error")

    async def test_server_errors_and_timeouts_are_unknown(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        server.reply(502, "<html>Bad gateway</html>")
        server.reply(200, KICKBOX_DELIVERABLE, delay=1.0)
        server.reply(200, "not json")
        verifier = KickboxEmailVerifier(
            "live_secret", base_url=base_url, client=http_client, timeout=0.2
        )
        reasons = [(await verifier.verify("john@example.com", now=NOW)).reason for _ in range(3)]
        assert reasons == ["provider_error", "provider_timeout", "bad_response"]

    async def test_bad_syntax_costs_no_request(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        verifier = KickboxEmailVerifier("live_secret", base_url=base_url, client=http_client)
        checked = await verifier.verify("john@", now=NOW)
        assert (checked.status, checked.confidence, checked.reason) == (
            INVALID,
            0.0,
            "invalid_domain",
        )
        assert server.requests == []

    async def test_works_through_verify_cached(
        self, provider: tuple[ProviderServer, str], http_client: httpx.AsyncClient
    ) -> None:
        server, base_url = provider
        server.reply(200, KICKBOX_DELIVERABLE)
        verifier = KickboxEmailVerifier("live_secret", base_url=base_url, client=http_client)
        cache = InMemoryVerificationCache()
        first = await verify_cached(verifier, cache, "john@example.com", now=NOW)
        again = await verify_cached(verifier, cache, "john@example.com", now=NOW)
        assert first == again
        assert len(server.requests) == 1
