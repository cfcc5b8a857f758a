"""Verification of e-mail addresses and phone numbers, behind one interface.

A verifier answers a `VerificationResult`: a status (`valid`, `invalid`, `risky`, `unknown`) and
a confidence in [0, 1], the estimated chance that the value reaches a person. A tenant accepts a
value when `is_verified(result, threshold)`; `DEFAULT_THRESHOLDS` are 0.7 (e-mail) and 0.6
(phone). An `unknown` result (DNS offline, provider down) is never a failure: it sits at 0.5,
below both defaults, and `verify_cached` does not keep it, so the next run asks again.

Confidence of the built-in verifiers (offline checks never prove a mailbox or a line exists,
so they stay at or below 0.8; paid adapters in `capture/verifiers/` go higher):

| e-mail (`OfflineEmailVerifier`)            | status  | confidence |
| ------------------------------------------ | ------- | ---------- |
| `mx_found`: the domain publishes MX hosts  | valid   | 0.80       |
| `implicit_mx`: no MX, but an A/AAAA record | valid   | 0.65       |
| `disposable_domain` (no DNS asked)         | risky   | 0.30       |
| `dns_timeout`, `dns_error`, `dns_unavailable`, `dns_unreliable` | unknown | 0.50 |
| `nxdomain`, `null_mx` (RFC 7505)           | invalid | 0.02       |
| `no_mail_host`: neither MX nor A/AAAA      | invalid | 0.05       |
| syntax errors (`invalid_syntax`, ...)      | invalid | 0.00       |

| phone (`OfflinePhoneVerifier`, by libphonenumber type)  | status  | confidence |
| ------------------------------------------------------- | ------- | ---------- |
| mobile                                                  | valid   | 0.80       |
| fixed_line_or_mobile                                    | valid   | 0.75       |
| fixed_line                                              | valid   | 0.70       |
| voip, toll_free, personal_number, uan                   | valid   | 0.60       |
| shared_cost                                             | valid   | 0.55       |
| a valid number of no known type                         | valid   | 0.50       |
| pager, voicemail / premium_rate                         | risky   | 0.35 / 0.30 |
| not a valid number (`too_short`, `invalid_for_region`…) | invalid | 0.00       |

An NXDOMAIN answer is believed only after the resolver proved it can see the real DNS (it
resolves `probe_name`, `com.` by default): a sandboxed resolver that denies every name would
otherwise mark every address invalid.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
from dns.rdtypes.ANY.MX import MX

from leadrelay.capture.normalize import normalize_email, normalize_phone
from leadrelay.core.errors import LeadRelayError


class VerificationKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"


class VerificationStatus(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    RISKY = "risky"
    UNKNOWN = "unknown"


UNKNOWN_CONFIDENCE: Final = 0.5
CACHE_TTL: Final = timedelta(days=30)
DEFAULT_THRESHOLDS: Final[Mapping[str, float]] = MappingProxyType(
    {VerificationKind.EMAIL.value: 0.7, VerificationKind.PHONE.value: 0.6}
)


class VerifierMisconfigured(LeadRelayError):
    """The verification provider refused our credentials: check its API key or account."""

    status = 503
    code = "verifier-misconfigured"
    title = "Verifier misconfigured"


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """`value` is the normalized value checked (normalized e-mail, E.164), or the raw input
    when it could not be normalized; `reason` is a short machine word."""

    kind: VerificationKind
    value: str
    status: VerificationStatus
    confidence: float
    reason: str
    provider: str
    checked_at: datetime

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must lie in [0, 1], not {self.confidence}")
        if self.checked_at.tzinfo is None:
            raise ValueError("checked_at must be timezone-aware")


def is_verified(result: VerificationResult, threshold: float) -> bool:
    return result.status is not VerificationStatus.INVALID and result.confidence >= threshold


class EmailVerifier(Protocol):
    @property
    def kind(self) -> VerificationKind: ...

    @property
    def provider(self) -> str: ...

    async def verify(self, value: str, *, now: datetime) -> VerificationResult:
        """Never raises for a bad value or an unreachable service (that is an `unknown`
        result); only a configuration error (`VerifierMisconfigured`) escapes."""
        ...


class PhoneVerifier(Protocol):
    @property
    def kind(self) -> VerificationKind: ...

    @property
    def provider(self) -> str: ...

    async def verify(self, value: str, *, now: datetime) -> VerificationResult:
        """As `EmailVerifier.verify`; `value` is best given in E.164."""
        ...


# --- cache ------------------------------------------------------------------------------------


class VerificationCache(Protocol):
    async def get(
        self, kind: VerificationKind, value: str, *, now: datetime
    ) -> VerificationResult | None: ...

    async def put(self, result: VerificationResult) -> None: ...


class InMemoryVerificationCache:
    """Per (kind, normalized value); an entry lives `ttl` from its `checked_at`. Bounded: past
    `max_entries` the least recently used entry goes. For one process; not shared."""

    def __init__(self, *, ttl: timedelta = CACHE_TTL, max_entries: int = 100_000) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], VerificationResult] = OrderedDict()

    async def get(
        self, kind: VerificationKind, value: str, *, now: datetime
    ) -> VerificationResult | None:
        key = (str(kind), value)
        result = self._entries.get(key)
        if result is None:
            return None
        if now - result.checked_at >= self._ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return result

    async def put(self, result: VerificationResult) -> None:
        key = (str(result.kind), result.value)
        self._entries[key] = result
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


async def verify_cached(
    verifier: EmailVerifier | PhoneVerifier,
    cache: VerificationCache,
    value: str,
    *,
    now: datetime,
) -> VerificationResult:
    """The cached result for `value` (already normalized: the cache key is the value as
    given), else a fresh one. `unknown` results are not cached: they say nothing about the
    value, only about the network at that moment."""
    cached = await cache.get(verifier.kind, value, now=now)
    if cached is not None:
        return cached
    result = await verifier.verify(value, now=now)
    if result.status is not VerificationStatus.UNKNOWN:
        await cache.put(result)
    return result


# --- offline e-mail: syntax and DNS -----------------------------------------------------------


class DnsResolver(Protocol):
    """What we use of `dns.asyncresolver.Resolver`; pass one pointed anywhere (tests point
    it at a DNS server on loopback with `make_resolver`)."""

    async def resolve(
        self, qname: dns.name.Name | str, rdtype: str, *, lifetime: float | None = None
    ) -> dns.resolver.Answer: ...


def make_resolver(
    nameservers: Sequence[str], *, port: int = 53, timeout: float = 1.5
) -> dns.asyncresolver.Resolver:
    """A resolver asking exactly `nameservers` (no /etc/resolv.conf)."""
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = list(nameservers)
    resolver.port = port
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


_DNS_OUTCOMES: Final[Mapping[str, tuple[VerificationStatus, float]]] = {
    "mx_found": (VerificationStatus.VALID, 0.8),
    "implicit_mx": (VerificationStatus.VALID, 0.65),
    "nxdomain": (VerificationStatus.INVALID, 0.02),
    "null_mx": (VerificationStatus.INVALID, 0.02),
    "no_mail_host": (VerificationStatus.INVALID, 0.05),
    "dns_timeout": (VerificationStatus.UNKNOWN, UNKNOWN_CONFIDENCE),
    "dns_error": (VerificationStatus.UNKNOWN, UNKNOWN_CONFIDENCE),
    "dns_unavailable": (VerificationStatus.UNKNOWN, UNKNOWN_CONFIDENCE),
    "dns_unreliable": (VerificationStatus.UNKNOWN, UNKNOWN_CONFIDENCE),
}
_UNSETTLED_OUTCOMES: Final = frozenset(
    outcome
    for outcome, (status, _) in _DNS_OUTCOMES.items()
    if status is VerificationStatus.UNKNOWN
)
_NO_ANSWER = "no_answer"


class OfflineEmailVerifier:
    """Syntax (email-validator) and the domain's mail hosts (MX, else A/AAAA) over DNS.

    DNS answers are kept per domain (settled ones for `answer_ttl`, timeouts and errors for
    `unknown_ttl`) and concurrent checks of one domain share one lookup, so a 100k-row import
    asks about each domain once. Each query is bounded by `timeout` seconds.
    """

    kind = VerificationKind.EMAIL
    provider = "offline"

    def __init__(
        self,
        resolver: DnsResolver | None = None,
        *,
        timeout: float = 1.5,
        probe_name: str | None = "com.",
        answer_ttl: timedelta = timedelta(hours=1),
        unknown_ttl: timedelta = timedelta(minutes=5),
        max_domains: int = 50_000,
        dns: bool = True,
    ) -> None:
        """`dns=False`: no DNS server to ask (none configured); every address that passes
        the syntax and list checks is `dns_unavailable`, without a question sent."""
        self._resolver = resolver
        self._resolver_unavailable = not dns
        self._timeout = timeout
        self._probe_name = probe_name
        self._probe: tuple[bool, datetime] | None = None
        self._answer_ttl = answer_ttl
        self._unknown_ttl = unknown_ttl
        self._max_domains = max_domains
        self._domains: OrderedDict[str, tuple[str, datetime]] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[str]] = {}

    async def verify(self, value: str, *, now: datetime) -> VerificationResult:
        email = normalize_email(value)
        if email.value is None or email.ascii_domain is None:
            return self._result(value, VerificationStatus.INVALID, 0.0, email.error, now)
        if email.is_disposable:
            return self._result(
                email.value, VerificationStatus.RISKY, 0.3, "disposable_domain", now
            )
        if self._resolver_unavailable:
            outcome = "dns_unavailable"
        else:
            outcome = await self._mail_hosts(email.ascii_domain, now)
        status, confidence = _DNS_OUTCOMES[outcome]
        return self._result(email.value, status, confidence, outcome, now)

    def _result(
        self,
        value: str,
        status: VerificationStatus,
        confidence: float,
        reason: str | None,
        now: datetime,
    ) -> VerificationResult:
        return VerificationResult(
            kind=VerificationKind.EMAIL,
            value=value,
            status=status,
            confidence=confidence,
            reason=reason or "invalid_syntax",
            provider=self.provider,
            checked_at=now,
        )

    async def _mail_hosts(self, domain: str, now: datetime) -> str:
        cached = self._domains.get(domain)
        if cached is not None and cached[1] > now:
            return cached[0]
        task = self._inflight.get(domain)
        if task is None:
            task = asyncio.ensure_future(self._look_up(domain, now))
            self._inflight[domain] = task
            task.add_done_callback(lambda _: self._inflight.pop(domain, None))
        # shield: one caller giving up must not cancel the lookup the others wait for
        return await asyncio.shield(task)

    async def _look_up(self, domain: str, now: datetime) -> str:
        outcome = await self._classify(domain, now)
        ttl = self._unknown_ttl if outcome in _UNSETTLED_OUTCOMES else self._answer_ttl
        self._domains[domain] = (outcome, now + ttl)
        self._domains.move_to_end(domain)
        while len(self._domains) > self._max_domains:
            self._domains.popitem(last=False)
        return outcome

    async def _classify(self, domain: str, now: datetime) -> str:
        resolver = self._get_resolver()
        if resolver is None:
            return "dns_unavailable"
        mx = await self._query(resolver, domain, "MX")
        if isinstance(mx, dns.resolver.Answer):
            exchanges = [record.exchange for record in mx if isinstance(record, MX)]
            if exchanges and all(exchange == dns.name.root for exchange in exchanges):
                return "null_mx"
            if exchanges:
                return "mx_found"
            mx = _NO_ANSWER
        if mx == "nxdomain":
            return "nxdomain" if await self._sees_real_dns(resolver, now) else "dns_unreliable"
        if mx != _NO_ANSWER:
            return mx
        for rdtype in ("A", "AAAA"):
            address = await self._query(resolver, domain, rdtype)
            if isinstance(address, dns.resolver.Answer):
                return "implicit_mx"
            if address not in (_NO_ANSWER, "nxdomain"):
                return address
        return "no_mail_host"

    async def _sees_real_dns(self, resolver: DnsResolver, now: datetime) -> bool:
        if self._probe_name is None:
            return True
        if self._probe is not None and self._probe[1] > now:
            return self._probe[0]
        answer = await self._query(resolver, self._probe_name, "NS")
        sees = isinstance(answer, dns.resolver.Answer)
        self._probe = (sees, now + self._unknown_ttl)
        return sees

    async def _query(
        self, resolver: DnsResolver, name: str, rdtype: str
    ) -> dns.resolver.Answer | str:
        try:
            qname = dns.name.from_text(name)
            # wait_for bounds a resolver that ignores its own lifetime
            return await asyncio.wait_for(
                resolver.resolve(qname, rdtype, lifetime=self._timeout),
                timeout=self._timeout + 0.5,
            )
        except dns.resolver.NXDOMAIN:
            return "nxdomain"
        except dns.resolver.NoAnswer:
            return _NO_ANSWER
        except (dns.exception.Timeout, TimeoutError):
            return "dns_timeout"
        except dns.exception.DNSException:
            return "dns_error"
        except OSError:
            return "dns_unavailable"

    def _get_resolver(self) -> DnsResolver | None:
        if self._resolver is None and not self._resolver_unavailable:
            try:
                resolver = dns.asyncresolver.Resolver()
            except (dns.exception.DNSException, OSError):
                self._resolver_unavailable = True
                return None
            resolver.lifetime = self._timeout
            self._resolver = resolver
        return self._resolver


# --- offline phone ----------------------------------------------------------------------------

_PHONE_TYPES: Final[Mapping[str, tuple[VerificationStatus, float]]] = {
    "mobile": (VerificationStatus.VALID, 0.8),
    "fixed_line_or_mobile": (VerificationStatus.VALID, 0.75),
    "fixed_line": (VerificationStatus.VALID, 0.7),
    "voip": (VerificationStatus.VALID, 0.6),
    "toll_free": (VerificationStatus.VALID, 0.6),
    "personal_number": (VerificationStatus.VALID, 0.6),
    "uan": (VerificationStatus.VALID, 0.6),
    "shared_cost": (VerificationStatus.VALID, 0.55),
    "pager": (VerificationStatus.RISKY, 0.35),
    "voicemail": (VerificationStatus.RISKY, 0.35),
    "premium_rate": (VerificationStatus.RISKY, 0.3),
}
_UNTYPED_PHONE: Final = (VerificationStatus.VALID, 0.5)


class OfflinePhoneVerifier:
    """libphonenumber's validity and number type; `default_region` reads national formats."""

    kind = VerificationKind.PHONE
    provider = "offline"

    def __init__(self, *, default_region: str | None = None) -> None:
        self._default_region = default_region

    async def verify(self, value: str, *, now: datetime) -> VerificationResult:
        phone = normalize_phone(value, default_region=self._default_region)
        if phone.e164 is None:
            return VerificationResult(
                kind=VerificationKind.PHONE,
                value=value,
                status=VerificationStatus.INVALID,
                confidence=0.0,
                reason=phone.error or "not_a_number",
                provider=self.provider,
                checked_at=now,
            )
        return self.typed(phone.e164, phone.number_type, now=now)

    def typed(self, e164: str, number_type: str | None, *, now: datetime) -> VerificationResult:
        """The answer `verify` gives for a valid number whose type intake already found
        (libphonenumber's parse is most of a verification's cost)."""
        status, confidence = _PHONE_TYPES.get(number_type or "", _UNTYPED_PHONE)
        return VerificationResult(
            kind=VerificationKind.PHONE,
            value=e164,
            status=status,
            confidence=confidence,
            reason=number_type or "unknown_type",
            provider=self.provider,
            checked_at=now,
        )
