"""Sending-domain authentication: SPF, DKIM and DMARC of the domains our e-mail leaves from.

Receivers junk or reject mail from a domain whose records are missing or wrong, so the checks
are shown before a tenant leaves dry-run, and a `fail` stops it unless the risk is accepted.
The parsers are pure; the lookups use dnspython's async resolver pointed only at the configured
servers (`LEADRELAY_DNS_RESOLVERS`, never /etc/resolv.conf). A server that does not answer, or
none configured, gives `unknown`: it warns and never blocks. Results are cached per domain for
a few minutes (a shorter while when unknown), so a page view costs no lookup.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Final

import dns.exception
import dns.name
import dns.resolver
from publicsuffixlist import PublicSuffixList
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture.verify import DnsResolver, make_resolver
from leadrelay.compliance.audit import append_events
from leadrelay.core.errors import ValidationFailed
from leadrelay.core.settings import Settings
from leadrelay.drafting.service import sender_settings
from leadrelay.identity.models import Tenant
from leadrelay.identity.service import Principal

# RFC 7208 §4.6.4: more DNS-querying terms than this is a permanent error at every receiver.
SPF_LOOKUP_LIMIT: Final = 10
CACHE_SECONDS: Final = 300.0
UNKNOWN_CACHE_SECONDS: Final = 60.0
_SPF_MECHANISMS: Final = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
_SPF_LOOKUP_TERMS: Final = frozenset({"include", "a", "mx", "ptr", "exists"})
_psl = PublicSuffixList()


class AuthStatus(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"


# From harmless to worst: an unknown outranks a pass, a definite problem outranks an unknown.
_RANK: Final = {AuthStatus.PASS: 0, AuthStatus.UNKNOWN: 1, AuthStatus.WARN: 2, AuthStatus.FAIL: 3}


def worst(statuses: Iterable[AuthStatus]) -> AuthStatus:
    return max(statuses, key=_RANK.__getitem__, default=AuthStatus.PASS)


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: AuthStatus
    detail: str
    record: str | None = None  # the record the verdict is about, as published


@dataclass(frozen=True, slots=True)
class DomainReport:
    domain: str
    spf: CheckResult
    dkim: CheckResult
    dmarc: CheckResult
    checked_at: datetime

    @property
    def status(self) -> AuthStatus:
        return worst((self.spf.status, self.dkim.status, self.dmarc.status))

    def problems(self) -> list[str]:
        """The failing checks, as a person reads them."""
        return [
            f"{name} fails: {check.detail}"
            for name, check in (("SPF", self.spf), ("DKIM", self.dkim), ("DMARC", self.dmarc))
            if check.status is AuthStatus.FAIL
        ]


@dataclass(frozen=True, slots=True)
class SendingDomain:
    domain: str  # of the From address: what DMARC judges
    selectors: tuple[str, ...]  # DKIM selectors whose keys should be published
    dkim_domain: str  # where the selectors live (the signature's d=)


# --- SPF ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpfRecord:
    all_qualifier: str | None  # "+", "-", "~", "?" or None when the record has no `all`
    lookups: int  # terms of this record that cost a DNS lookup (includes and redirect too)
    targets: tuple[str, ...]  # domains whose own SPF records are part of this one
    redirect: str | None
    uses_ptr: bool
    errors: tuple[str, ...]


def spf_records(txts: Sequence[str]) -> list[str]:
    """The TXT strings that are SPF records (RFC 7208 §4.5: `v=spf1` then a space or nothing)."""
    return [t for t in txts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def parse_spf(record: str) -> SpfRecord:
    """The terms of one SPF record; `errors` lists what makes it a permanent error."""
    errors: list[str] = []
    targets: list[str] = []
    all_qualifier: str | None = None
    redirect: str | None = None
    lookups = 0
    uses_ptr = False
    for term in record.split()[1:]:
        name, _, value = term.partition("=")
        if value and ":" not in name and "/" not in name:  # a modifier: name=value
            if name.lower() == "redirect":
                redirect = value.lower().rstrip(".")
            continue
        qualifier = term[0] if term[0] in "+-~?" else "+"
        body = term[1:] if term[0] in "+-~?" else term
        mechanism, _, argument = body.partition(":")
        mechanism, _, _cidr = mechanism.partition("/")
        mechanism = mechanism.lower()
        if mechanism not in _SPF_MECHANISMS:
            errors.append(f"unknown term {term!r}")
            continue
        if mechanism in _SPF_LOOKUP_TERMS:
            lookups += 1
        if mechanism == "all":
            all_qualifier = qualifier
        elif mechanism == "ptr":
            uses_ptr = True
        elif mechanism in ("include", "exists") and not argument:
            errors.append(f"{mechanism} needs a domain")
        elif mechanism == "include" and "%" not in argument:  # a macro cannot be followed
            targets.append(argument.lower().rstrip("."))
        elif mechanism in ("ip4", "ip6"):
            try:
                network = ipaddress.ip_network(argument, strict=False)
            except ValueError:
                errors.append(f"{term!r} is not an address")
            else:
                if network.version != int(mechanism[-1]):
                    errors.append(f"{term!r} is not an IPv{mechanism[-1]} address")
    # RFC 7208 §6.1: a redirect is ignored when the record has an `all`.
    if redirect is not None and all_qualifier is None:
        lookups += 1
        targets.append(redirect)
    else:
        redirect = None
    return SpfRecord(all_qualifier, lookups, tuple(targets), redirect, uses_ptr, tuple(errors))


class _Unreachable(Exception):
    """No DNS answer (timeout, SERVFAIL, no server): the check's outcome is unknown."""


async def _txt(resolver: DnsResolver, name: str, lifetime: float) -> list[str]:
    """The TXT strings at `name` (each record's strings joined, RFC 7208 §3.3); [] when the
    name or the type does not exist."""
    try:
        answer = await resolver.resolve(name, "TXT", lifetime=lifetime)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.YXDOMAIN) as exc:
        raise _Unreachable(f"no answer for {name}: {type(exc).__name__}") from None
    except dns.exception.DNSException as exc:
        raise _Unreachable(f"no answer for {name}: {exc}") from None
    texts: list[str] = []
    for rdata in answer:
        strings: Sequence[bytes] = getattr(rdata, "strings", ())
        texts.append(b"".join(strings).decode("utf-8", "replace"))
    return texts


@dataclass(slots=True)
class _SpfWalk:
    lookups: int = 0
    problems: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


async def _walk_spf(
    resolver: DnsResolver, record: SpfRecord, walk: _SpfWalk, lifetime: float
) -> str | None:
    """Count the lookups of `record` and of everything it includes; returns the `all`
    qualifier a redirect brings (None when there is none)."""
    walk.lookups += record.lookups
    walk.problems.extend(record.errors)
    redirected_all: str | None = None
    for target in record.targets:
        if walk.lookups > SPF_LOOKUP_LIMIT:
            return redirected_all
        if target in walk.seen:
            walk.problems.append(f"{target} includes itself (a loop)")
            continue
        walk.seen.add(target)
        found = spf_records(await _txt(resolver, target, lifetime))
        if len(found) != 1:
            how = "no SPF record" if not found else f"{len(found)} SPF records"
            walk.problems.append(f"{target}, which the record names, has {how}")
            continue
        nested = parse_spf(found[0])
        nested_all = await _walk_spf(resolver, nested, walk, lifetime)
        if target == record.redirect:
            redirected_all = nested.all_qualifier or nested_all
    return redirected_all


async def check_spf(resolver: DnsResolver, domain: str, *, lifetime: float) -> CheckResult:
    try:
        found = spf_records(await _txt(resolver, domain, lifetime))
        if not found:
            return CheckResult(AuthStatus.FAIL, f"{domain} publishes no SPF record")
        if len(found) > 1:
            return CheckResult(
                AuthStatus.FAIL,
                f"{domain} publishes {len(found)} SPF records; receivers treat that as an error "
                "(RFC 7208 §4.5): merge them into one",
                " | ".join(found),
            )
        record = parse_spf(found[0])
        walk = _SpfWalk(seen={domain})
        redirected_all = await _walk_spf(resolver, record, walk, lifetime)
    except _Unreachable as exc:
        return CheckResult(AuthStatus.UNKNOWN, f"DNS did not answer ({exc})")
    return spf_verdict(record, found[0], walk.lookups, walk.problems, redirected_all)


def spf_verdict(
    record: SpfRecord,
    text: str,
    lookups: int,
    problems: Sequence[str],
    redirected_all: str | None = None,
) -> CheckResult:
    if problems:
        return CheckResult(AuthStatus.FAIL, "; ".join(problems), text)
    if lookups > SPF_LOOKUP_LIMIT:
        return CheckResult(
            AuthStatus.FAIL,
            f"{lookups} DNS lookups: more than {SPF_LOOKUP_LIMIT} is an error at every receiver "
            "(flatten some includes)",
            text,
        )
    qualifier = record.all_qualifier or redirected_all
    counted = f"{lookups} of {SPF_LOOKUP_LIMIT} DNS lookups"
    if qualifier == "+":
        return CheckResult(AuthStatus.FAIL, f"+all lets any server send as the domain; {counted}")
    if qualifier is None:
        return CheckResult(
            AuthStatus.WARN, f"no all mechanism: unlisted servers get neutral; {counted}", text
        )
    if qualifier == "?":
        return CheckResult(AuthStatus.WARN, f"?all: unlisted servers get neutral; {counted}", text)
    if record.uses_ptr:
        return CheckResult(AuthStatus.WARN, f"uses ptr, which RFC 7208 deprecates; {counted}", text)
    ending = "-all (hard fail)" if qualifier == "-" else "~all (soft fail)"
    return CheckResult(AuthStatus.PASS, f"{ending}; {counted}", text)


# --- DMARC -------------------------------------------------------------------------------------


def dmarc_records(txts: Sequence[str]) -> list[str]:
    """The TXT strings that are DMARC records (RFC 7489 §6.6.3: they start `v=DMARC1`)."""
    return [t for t in txts if t.replace(" ", "").startswith("v=DMARC1")]


def parse_tags(record: str) -> dict[str, str]:
    """`k=v; k=v` tag lists (DMARC and DKIM); names lower-cased, the first of a name wins."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), value.strip())
    return tags


def dmarc_verdict(records: Sequence[str], *, subdomain: bool = False) -> CheckResult:
    """The verdict on the DMARC records found for a domain (at its organizational domain when
    `subdomain`, where `sp=` rules)."""
    if not records:
        return CheckResult(AuthStatus.FAIL, "no DMARC record (_dmarc TXT v=DMARC1; p=…)")
    if len(records) > 1:
        return CheckResult(
            AuthStatus.FAIL,
            f"{len(records)} DMARC records: receivers ignore them all",
            " | ".join(records),
        )
    record = records[0]
    tags = parse_tags(record)
    policy = tags.get("p", "").lower()
    if subdomain and tags.get("sp"):
        policy = tags["sp"].lower()
    if policy not in ("none", "quarantine", "reject"):
        return CheckResult(
            AuthStatus.FAIL, "the record has no valid policy (p=none|quarantine|reject)", record
        )
    if policy == "none":
        return CheckResult(
            AuthStatus.WARN,
            "p=none: receivers only report, spoofed mail is still delivered",
            record,
        )
    percent = tags.get("pct", "100")
    if percent != "100":
        return CheckResult(
            AuthStatus.WARN, f"p={policy}, but applied to {percent}% of failing mail", record
        )
    return CheckResult(AuthStatus.PASS, f"p={policy}", record)


def organizational_domain(domain: str) -> str:
    """The registrable domain (public suffix list): where DMARC looks when a subdomain has none."""
    return _psl.privatesuffix(domain) or domain


async def check_dmarc(resolver: DnsResolver, domain: str, *, lifetime: float) -> CheckResult:
    try:
        found = dmarc_records(await _txt(resolver, f"_dmarc.{domain}", lifetime))
        organization = organizational_domain(domain)
        if found or organization == domain:
            return dmarc_verdict(found)
        result = dmarc_verdict(
            dmarc_records(await _txt(resolver, f"_dmarc.{organization}", lifetime)),
            subdomain=True,
        )
    except _Unreachable as exc:
        return CheckResult(AuthStatus.UNKNOWN, f"DNS did not answer ({exc})")
    return replace(result, detail=f"{result.detail} (from {organization})")


# --- DKIM --------------------------------------------------------------------------------------


def dkim_verdict(selector: str, domain: str, txts: Sequence[str]) -> CheckResult:
    """The verdict on the TXT records at `<selector>._domainkey.<domain>` (RFC 6376 §3.6.1)."""
    where = f"{selector}._domainkey.{domain}"
    keys = [t for t in txts if "p" in parse_tags(t)]
    if not keys:
        return CheckResult(AuthStatus.FAIL, f"no DKIM key at {where}")
    if len(keys) > 1:
        return CheckResult(AuthStatus.FAIL, f"{len(keys)} DKIM keys at {where}", " | ".join(keys))
    tags = parse_tags(keys[0])
    if tags.get("v", "DKIM1") != "DKIM1":
        return CheckResult(AuthStatus.FAIL, f"v={tags['v']} is not DKIM1", keys[0])
    kind = tags.get("k", "rsa").lower()
    if kind not in ("rsa", "ed25519"):
        return CheckResult(AuthStatus.FAIL, f"unknown key type k={kind}", keys[0])
    key = "".join(tags["p"].split())
    if not key:
        return CheckResult(AuthStatus.FAIL, f"the key at {where} is revoked (empty p=)", keys[0])
    try:
        base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return CheckResult(AuthStatus.FAIL, f"the key at {where} is not base64", keys[0])
    return CheckResult(AuthStatus.PASS, f"{kind} key published at {where}", keys[0])


async def check_dkim(
    resolver: DnsResolver, sending: SendingDomain, *, lifetime: float
) -> CheckResult:
    if not sending.selectors:
        return CheckResult(
            AuthStatus.WARN,
            "no DKIM selector configured (LEADRELAY_DKIM_SELECTOR): mail over SMTP leaves "
            "unsigned and cannot be checked",
        )
    results: list[CheckResult] = []
    try:
        for selector in sending.selectors:
            where = f"{selector}._domainkey.{sending.dkim_domain}"
            results.append(
                dkim_verdict(selector, sending.dkim_domain, await _txt(resolver, where, lifetime))
            )
    except _Unreachable as exc:
        return CheckResult(AuthStatus.UNKNOWN, f"DNS did not answer ({exc})")
    result = max(results, key=lambda r: _RANK[r.status])
    if result.status is AuthStatus.PASS and organizational_domain(
        sending.dkim_domain
    ) != organizational_domain(sending.domain):
        return CheckResult(
            AuthStatus.WARN,
            f"signed by {sending.dkim_domain}, which does not align with {sending.domain} "
            "for DMARC",
            result.record,
        )
    return result


# --- the sending domains of a tenant -----------------------------------------------------------


def _domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    domain = address.rsplit("@", 1)[1].strip().rstrip(".").lower()
    if not domain:
        return None
    try:
        return dns.name.from_unicode(domain).to_text(omit_final_dot=True)
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return None


def sending_domains(tenant: Tenant, settings: Settings) -> list[SendingDomain]:
    """The domain of the From address e-mail leaves with: the tenant's sender e-mail, else the
    server's `mail_from` (as `begin_delivery` picks it); none when neither is set."""
    domain = _domain_of(sender_settings(tenant).get("email")) or _domain_of(settings.mail_from)
    if domain is None:
        return []
    selectors = tuple(s.strip() for s in settings.dkim_selector.split(",") if s.strip())
    dkim_domain = settings.dkim_domain.strip().rstrip(".").lower() or domain
    return [SendingDomain(domain, selectors, dkim_domain)]


def resolver_for(settings: Settings) -> DnsResolver | None:
    """A resolver asking only the configured servers; None when none is configured."""
    servers = [s.strip() for s in settings.dns_resolvers.split(",") if s.strip()]
    if not servers:
        return None
    return make_resolver(servers, port=settings.dns_port, timeout=settings.dns_timeout_seconds)


_CacheKey = tuple[tuple[str, ...], int, str, tuple[str, ...], str]
_cache: dict[_CacheKey, tuple[float, DomainReport]] = {}


def clear_cache() -> None:
    _cache.clear()


def _unknown(domain: str, detail: str, now: datetime) -> DomainReport:
    result = CheckResult(AuthStatus.UNKNOWN, detail)
    return DomainReport(domain, result, result, result, now)


async def check_domain(
    sending: SendingDomain, settings: Settings, *, now: datetime
) -> DomainReport:
    """SPF, DKIM and DMARC of one sending domain, from the cache when fresh. Each check is
    bounded by a few resolver timeouts, so an offline machine answers `unknown` quickly."""
    resolver = resolver_for(settings)
    if resolver is None:
        return _unknown(
            sending.domain, "no DNS servers configured (LEADRELAY_DNS_RESOLVERS): not checked", now
        )
    key: _CacheKey = (
        tuple(settings.dns_resolvers.replace(" ", "").split(",")),
        settings.dns_port,
        sending.domain,
        sending.selectors,
        sending.dkim_domain,
    )
    cached = _cache.get(key)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    timeout = settings.dns_timeout_seconds
    bound = timeout * 4

    async def bounded(check: Coroutine[object, object, CheckResult]) -> CheckResult:
        try:
            return await asyncio.wait_for(check, bound)
        except TimeoutError:
            return CheckResult(AuthStatus.UNKNOWN, f"DNS did not answer within {bound:g} s")

    spf, dkim, dmarc = await asyncio.gather(
        bounded(check_spf(resolver, sending.domain, lifetime=timeout)),
        bounded(check_dkim(resolver, sending, lifetime=timeout)),
        bounded(check_dmarc(resolver, sending.domain, lifetime=timeout)),
    )
    report = DomainReport(sending.domain, spf, dkim, dmarc, now)
    unknown = AuthStatus.UNKNOWN in (spf.status, dkim.status, dmarc.status)
    ttl = UNKNOWN_CACHE_SECONDS if unknown else CACHE_SECONDS
    _cache[key] = (time.monotonic() + ttl, report)
    return report


async def check_sending_domains(
    tenant: Tenant, settings: Settings, *, now: datetime
) -> list[DomainReport]:
    return [
        await check_domain(sending, settings, now=now)
        for sending in sending_domains(tenant, settings)
    ]


async def check_leaving_dry_run(
    session: AsyncSession,
    actor: Principal,
    tenant: Tenant,
    settings: Settings,
    *,
    accept_risk: bool,
    now: datetime,
) -> list[DomainReport]:
    """Refuse to leave dry-run while a sending domain fails its checks, unless the risk is
    accepted explicitly (then audited). `unknown` never blocks."""
    reports = await check_sending_domains(tenant, settings, now=now)
    failing = [r for r in reports if r.status is AuthStatus.FAIL]
    if failing and not accept_risk:
        raise ValidationFailed(
            "A sending domain fails its authentication checks: receivers will junk or reject "
            "its mail. Fix its DNS records, or accept the risk explicitly.",
            errors=[
                {"field": "accept_domain_risk", "reason": f"{r.domain}: {'; '.join(r.problems())}"}
                for r in failing
            ],
        )
    if failing:
        await append_events(
            session,
            actor.tenant_id,
            [
                actor.audit(
                    "compliance.domain_risk_accepted",
                    target_type="tenant",
                    target_id=actor.tenant_id,
                    domains={
                        r.domain: {
                            "spf": r.spf.status.value,
                            "dkim": r.dkim.status.value,
                            "dmarc": r.dmarc.status.value,
                        }
                        for r in failing
                    },
                )
            ],
            now=now,
        )
    return reports
