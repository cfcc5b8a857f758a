"""The policy guard: may this message go to this recipient now, and if not, which check says
no, why, and when to try again.

Pure, like the routing engine: no database, no clock, no network. The caller looks up what the
checks need (the source's legal basis and the consent for the channel, suppression and DNC
hits, the send guard's answer, the counters), passes them in as frozen values with the instant
to decide at, and stores the `Decision` with its trace (`trace_json`). Dry-run calls the same
function and records the decision instead of sending, so a dry run blocks exactly what a real
run would.

The checks run in this order and stop at the first block:

1. ``consent`` — the legal basis and the consent for the channel. A withdrawal blocks under
   every basis. The *consent* basis needs consent granted for the channel. *Legitimate
   interest* covers email but not SMS, WhatsApp or calls, which need consent granted: the
   conservative default of PECR / the ePrivacy directive, where unsolicited electronic
   marketing by text and automated calls needs prior consent (live calls are allowed in some
   countries; a tenant who relies on that records consent or uses another basis). *Contract*
   covers every channel unless consent was withdrawn. A grant recorded after `now` is not in
   force yet, so a replay at an earlier instant decides as it did then.
2. ``suppression`` — opt-outs, hard bounces, complaints.
3. ``dnc`` — hits on imported do-not-call registries.
4. ``approval`` — the send guard's answer for the exact content.
5. ``daily_cap`` — messages sent today on this channel by the tenant, "today" in the tenant's
   zone; clears at the tenant's next midnight.
6. ``domain_throttle`` — emails to the recipient's domain in the last hour; clears when the
   oldest send that holds the limit leaves the hour.
7. ``country_call_cap`` — calls today (the tenant's day) to the recipient's country.
8. ``cooldown`` — time since the last contact with the lead on any channel.
9. ``schedule`` — a message its sender holds until a set time (`OutboundMessage.not_before`:
   a campaign's calls spread across the call window) waits for it. It comes after every
   check that can refuse for good, so a scheduled message that never could go is refused when
   it is scheduled, and before the window, which is read at the scheduled time.
10. ``local_time`` — the channel's window on the recipient's wall clock (calls on weekdays
    11:00–17:00, SMS and WhatsApp outside the 21:00–08:00 quiet hours), with per-country
    overrides; see `leadrelay.outreach.local_time` for how zones are found. A recipient whose
    zone is unknown is blocked, never guessed.

A block that clears by itself carries `retry_at` (the first instant the check can pass, and
never before the message's `not_before`); a permanent one (consent, suppression, DNC,
approval, a cap of zero, an unknown zone) has none, so the caller fails the message visibly
instead of parking it. A provider's own rate limiting is not decided here: the delivery job
retries those, it never drops the recipient.

Trace details are written for people and hold no raw address: an email shows its domain, a
number its calling code and last two digits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import TypedDict

from leadrelay.capture.models import LegalBasis
from leadrelay.drafting.evidence import Channel
from leadrelay.outreach.local_time import (
    SEARCH_HORIZON,
    WEEKDAYS,
    RecipientZones,
    Window,
    Windows,
    closed_in,
    describe_windows,
    load_zone,
    local_reading,
    mask_number,
    next_open,
    normalize_country,
    quiet_hours,
    recipient_zones,
    region_for_number,
    start_of_next_day,
)

DOMAIN_WINDOW = timedelta(hours=1)

DEFAULT_DAILY_CAPS: Mapping[Channel, int] = MappingProxyType(
    {Channel.EMAIL: 200, Channel.SMS: 100, Channel.WHATSAPP: 100, Channel.VOICE: 50}
)
CALL_HOURS: Windows = (Window("11:00", "17:00", WEEKDAYS),)
MESSAGE_HOURS: Windows = quiet_hours("21:00", "08:00")  # sends 08:00–21:00 every day
# Email has no window by default: it waits in an inbox; a country override may add one.
DEFAULT_WINDOWS: Mapping[Channel, Windows | None] = MappingProxyType(
    {Channel.VOICE: CALL_HOURS, Channel.SMS: MESSAGE_HOURS, Channel.WHATSAPP: MESSAGE_HOURS}
)

_PHONE_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP, Channel.VOICE})
_NOUNS: Mapping[Channel, str] = MappingProxyType(
    {
        Channel.EMAIL: "emails",
        Channel.SMS: "SMS",
        Channel.WHATSAPP: "WhatsApp messages",
        Channel.VOICE: "calls",
    }
)


class Check(StrEnum):
    CONSENT = "consent"
    SUPPRESSION = "suppression"
    DNC = "dnc"
    APPROVAL = "approval"
    DAILY_CAP = "daily_cap"
    DOMAIN_THROTTLE = "domain_throttle"
    COUNTRY_CALL_CAP = "country_call_cap"
    COOLDOWN = "cooldown"
    SCHEDULE = "schedule"
    LOCAL_TIME = "local_time"


CHECK_ORDER: tuple[Check, ...] = tuple(Check)


class StepOutcome(StrEnum):
    PASSED = "pass"
    BLOCKED = "block"
    SKIPPED = "skip"  # the check does not apply to this message (a throttle for email only)


class ConsentState(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"
    UNKNOWN = "unknown"


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """The message about to leave. `recipient` is the email address or the number (E.164, or
    national with `country`); `recipient_domain` defaults to the part after the last "@".
    `not_before` is when its sender scheduled it: it waits until then."""

    channel: Channel
    recipient: str
    recipient_domain: str | None = None
    country: str | None = None  # ISO 3166 alpha-2, when the lead's country is known
    lead_zone: str | None = None  # IANA name, when the lead's zone is known
    not_before: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel", Channel(self.channel))
        _require_aware(self.not_before, "not_before")
        domain = self.recipient_domain
        if domain is None and self.channel is Channel.EMAIL and "@" in self.recipient:
            domain = self.recipient.rpartition("@")[2]
        domain = domain.strip().rstrip(".").casefold() if domain else None
        object.__setattr__(self, "recipient_domain", domain or None)


@dataclass(frozen=True, slots=True)
class Consent:
    """The consent on record for the message's channel, and when it was given or withdrawn."""

    state: ConsentState
    at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", ConsentState(self.state))
        _require_aware(self.at, "consent time")


@dataclass(frozen=True, slots=True)
class Counters:
    """What the tenant already sent, counted by the caller at `now`.

    `sent_today` and `calls_today_to_country` count since midnight in the policy's tenant
    zone. `domain_sends` are the instants of the emails sent to the recipient's domain in the
    last hour — instants rather than a count because the throttle's `retry_at` is when the
    oldest of them leaves the hour; older ones are ignored."""

    sent_today: int
    domain_sends: tuple[datetime, ...]
    calls_today_to_country: int
    last_contact_at: datetime | None  # the lead, any channel

    def __post_init__(self) -> None:
        if self.sent_today < 0 or self.calls_today_to_country < 0:
            raise ValueError("counters cannot be negative")
        object.__setattr__(self, "domain_sends", tuple(self.domain_sends))
        for sent in self.domain_sends:
            _require_aware(sent, "domain send time")
        _require_aware(self.last_contact_at, "last contact time")


@dataclass(frozen=True, slots=True)
class Facts:
    """What the caller looked up for this message. Nothing here has a permissive default:
    a caller that forgets the approval or the counters gets a TypeError, not a send."""

    legal_basis: LegalBasis
    consent: Consent
    suppressions: tuple[str, ...]  # reasons: opted_out, hard_bounce, complaint, …
    dnc_registries: tuple[str, ...]  # names of the registries the number is listed on
    approval_refusal: str | None  # None: the send guard let this content through
    counters: Counters

    def __post_init__(self) -> None:
        object.__setattr__(self, "legal_basis", LegalBasis(self.legal_basis))
        object.__setattr__(self, "suppressions", tuple(self.suppressions))
        object.__setattr__(self, "dnc_registries", tuple(self.dnc_registries))


def _default_caps() -> Mapping[Channel, int]:
    return DEFAULT_DAILY_CAPS


def _default_windows() -> Mapping[Channel, Windows | None]:
    return DEFAULT_WINDOWS


def _no_country_caps() -> Mapping[str, int]:
    return MappingProxyType({})


def _no_country_windows() -> Mapping[str, Mapping[Channel, Windows | None]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Policy:
    """A tenant's outreach limits. A channel missing from `daily_caps` has no daily cap; a
    channel whose window is None (or missing) has no window. `country_windows` replaces the
    window of the channels it names for recipients in that country (None lifts it, () closes
    the channel there); `country_call_caps` overrides `default_country_call_cap`."""

    tenant_zone: str = "UTC"
    daily_caps: Mapping[Channel, int] = field(default_factory=_default_caps)
    domain_hourly_cap: int | None = 5  # email only
    default_country_call_cap: int | None = None
    country_call_caps: Mapping[str, int] = field(default_factory=_no_country_caps)
    cooldown: timedelta = timedelta(days=30)
    windows: Mapping[Channel, Windows | None] = field(default_factory=_default_windows)
    country_windows: Mapping[str, Mapping[Channel, Windows | None]] = field(
        default_factory=_no_country_windows
    )

    def __post_init__(self) -> None:
        if load_zone(self.tenant_zone) is None:
            raise ValueError(f"unknown tenant time zone {self.tenant_zone!r}")
        caps = {Channel(k): v for k, v in self.daily_caps.items()}
        country_caps = {_country_key(k): v for k, v in self.country_call_caps.items()}
        limits: list[int | None] = [*caps.values(), *country_caps.values()]
        limits += [self.domain_hourly_cap, self.default_country_call_cap]
        if any(limit is not None and limit < 0 for limit in limits):
            raise ValueError("caps cannot be negative")
        if self.cooldown < timedelta(0):
            raise ValueError("cooldown cannot be negative")
        object.__setattr__(self, "daily_caps", MappingProxyType(caps))
        object.__setattr__(self, "country_call_caps", MappingProxyType(country_caps))
        object.__setattr__(
            self, "windows", MappingProxyType({Channel(k): v for k, v in self.windows.items()})
        )
        object.__setattr__(
            self,
            "country_windows",
            MappingProxyType(
                {
                    _country_key(country): MappingProxyType(
                        {Channel(k): v for k, v in rules.items()}
                    )
                    for country, rules in self.country_windows.items()
                }
            ),
        )

    def windows_for(self, channel: Channel, country: str | None) -> tuple[Windows | None, str]:
        """The channel's window for a recipient in `country`, and where it comes from."""
        if country is not None:
            rules = self.country_windows.get(country)
            if rules is not None and channel in rules:
                return rules[channel], f"the override for {country}"
        return self.windows.get(channel), "the default"

    def country_call_cap(self, country: str | None) -> int | None:
        if country is not None and country in self.country_call_caps:
            return self.country_call_caps[country]
        return self.default_country_call_cap


# --- the decision -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    check: Check
    outcome: StepOutcome
    detail: str


@dataclass(frozen=True, slots=True)
class Decision:
    """`blocked_by` is the `Check` that said no (a str); `reason` its detail. `retry_at` is
    set only for blocks that clear by themselves. `decided_at` is the `now` decided at; both
    instants are in UTC."""

    allowed: bool
    blocked_by: str | None
    reason: str | None
    retry_at: datetime | None
    trace: list[Step]
    decided_at: datetime


class StepJSON(TypedDict):
    check: str
    outcome: str
    detail: str


class DecisionJSON(TypedDict):
    allowed: bool
    blocked_by: str | None
    reason: str | None
    retry_at: str | None
    decided_at: str
    trace: list[StepJSON]


def decide(message: OutboundMessage, facts: Facts, policy: Policy, now: datetime) -> Decision:
    """Run every check in order at `now` (timezone-aware) and stop at the first block."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    context = _Context(message, facts, policy, now, recipient_country(message))
    trace: list[Step] = []
    for check, run in _CHECKS:
        verdict = run(context)
        trace.append(Step(check, verdict.outcome, verdict.detail))
        if verdict.outcome is StepOutcome.BLOCKED:
            retry_at = _retry_at(verdict.retry_at, message.not_before)
            return Decision(False, check, verdict.detail, retry_at, trace, now.astimezone(UTC))
    return Decision(True, None, None, None, trace, now.astimezone(UTC))


def _retry_at(clears: datetime | None, not_before: datetime | None) -> datetime | None:
    """When to decide again: when the block clears, but not before the scheduled time (a
    scheduled call held by a throttle keeps its place in the window)."""
    if clears is None:
        return None
    if not_before is not None:
        clears = max(clears, not_before)
    return clears.astimezone(UTC)


def trace_json(decision: Decision) -> DecisionJSON:
    """The decision as JSON to store with the message (strict JSON: text, numbers, lists)."""
    return {
        "allowed": decision.allowed,
        "blocked_by": None if decision.blocked_by is None else str(decision.blocked_by),
        "reason": decision.reason,
        "retry_at": None if decision.retry_at is None else decision.retry_at.isoformat(),
        "decided_at": decision.decided_at.isoformat(),
        "trace": [
            {"check": str(s.check), "outcome": str(s.outcome), "detail": s.detail}
            for s in decision.trace
        ],
    }


# --- the checks ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    message: OutboundMessage
    facts: Facts
    policy: Policy
    now: datetime
    country: str | None


@dataclass(frozen=True, slots=True)
class _Verdict:
    outcome: StepOutcome
    detail: str
    retry_at: datetime | None = None


def _passed(detail: str) -> _Verdict:
    return _Verdict(StepOutcome.PASSED, detail)


def _skipped(detail: str) -> _Verdict:
    return _Verdict(StepOutcome.SKIPPED, detail)


def _blocked(detail: str, retry_at: datetime | None = None) -> _Verdict:
    return _Verdict(StepOutcome.BLOCKED, detail, retry_at)


def _check_consent(c: _Context) -> _Verdict:
    basis = c.facts.legal_basis
    channel = c.message.channel
    consent = c.facts.consent
    basis_text = basis.value.replace("_", " ")
    if consent.state is ConsentState.WITHDRAWN:
        when = f" at {consent.at.isoformat()}" if consent.at else ""
        return _blocked(
            f"consent for {channel.value} was withdrawn{when}; a withdrawal blocks every "
            f"legal basis (this source: {basis_text})"
        )
    in_force = consent.state is ConsentState.GRANTED and (consent.at is None or consent.at <= c.now)
    if in_force:
        when = f" at {consent.at.isoformat()}" if consent.at else ""
        state = f"consent for {channel.value} granted{when}"
    elif consent.state is ConsentState.GRANTED and consent.at is not None:
        state = f"consent for {channel.value} recorded later ({consent.at.isoformat()})"
    else:
        state = f"no consent on record for {channel.value}"
    if basis is LegalBasis.CONTRACT:
        return _passed(f"basis contract covers every channel unless withdrawn; {state}")
    if basis is LegalBasis.LEGITIMATE_INTEREST and channel is Channel.EMAIL:
        return _passed(f"basis legitimate interest covers email; {state}")
    if in_force:
        return _passed(f"basis {basis_text}; {state}")
    if basis is LegalBasis.LEGITIMATE_INTEREST:
        return _blocked(
            f"legitimate interest does not cover {_NOUNS[channel]} without consent "
            f"(conservative PECR/ePrivacy default); {state}"
        )
    return _blocked(f"the source's legal basis is consent and there is {state}")


def _check_suppression(c: _Context) -> _Verdict:
    reasons = sorted({r.strip() or "unspecified" for r in c.facts.suppressions})
    if reasons:
        return _blocked(f"recipient is suppressed: {', '.join(reasons)}")
    return _passed("not suppressed")


def _check_dnc(c: _Context) -> _Verdict:
    registries = sorted({r.strip() or "unnamed registry" for r in c.facts.dnc_registries})
    if registries:
        return _blocked(f"listed on do-not-call registry: {', '.join(registries)}")
    return _passed("on no do-not-call registry")


def _check_approval(c: _Context) -> _Verdict:
    refusal = c.facts.approval_refusal
    if refusal is None:
        return _passed("the send guard approved this content")
    return _blocked(f"the send guard refused: {refusal.strip() or 'no reason given'}")


def _check_daily_cap(c: _Context) -> _Verdict:
    channel = c.message.channel
    cap = c.policy.daily_caps.get(channel)
    if cap is None:
        return _skipped(f"no daily cap for {channel.value}")
    sent = c.facts.counters.sent_today
    counted = f"{sent} of {cap} {_NOUNS[channel]} sent today ({c.policy.tenant_zone} day)"
    if cap == 0:
        return _blocked(f"{channel.value} is switched off: its daily cap is 0")
    if sent < cap:
        return _passed(counted)
    resets = start_of_next_day(c.policy.tenant_zone, c.now)
    return _blocked(f"daily cap reached: {counted}; resets {resets.isoformat()}", resets)


def _check_domain_throttle(c: _Context) -> _Verdict:
    if c.message.channel is not Channel.EMAIL:
        return _skipped("applies to email only")
    cap = c.policy.domain_hourly_cap
    if cap is None:
        return _skipped("no per-domain throttle")
    domain = c.message.recipient_domain
    if domain is None:
        return _blocked("the recipient's domain is unknown, so its throttle cannot be checked")
    recent = sorted(s for s in c.facts.counters.domain_sends if s > c.now - DOMAIN_WINDOW)
    counted = f"{len(recent)} emails to {domain} in the last hour (limit {cap} an hour)"
    if cap == 0:
        return _blocked(f"email to {domain} is switched off: its hourly limit is 0")
    if len(recent) < cap:
        return _passed(counted)
    # The slot frees when enough of the oldest sends leave the hour to bring the count
    # below the limit: the (len - cap + 1)-th oldest, an hour after it was sent.
    frees = recent[len(recent) - cap] + DOMAIN_WINDOW
    return _blocked(f"domain throttle: {counted}; next slot {frees.isoformat()}", frees)


def _check_country_call_cap(c: _Context) -> _Verdict:
    if c.message.channel is not Channel.VOICE:
        return _skipped("applies to calls only")
    cap = c.policy.country_call_cap(c.country)
    where = c.country or "an unknown country"
    if cap is None:
        return _skipped(f"no call cap for {where}")
    calls = c.facts.counters.calls_today_to_country
    counted = f"{calls} of {cap} calls to {where} today ({c.policy.tenant_zone} day)"
    if cap == 0:
        return _blocked(f"calls to {where} are switched off: the cap is 0")
    if calls < cap:
        return _passed(counted)
    resets = start_of_next_day(c.policy.tenant_zone, c.now)
    return _blocked(f"country call cap reached: {counted}; resets {resets.isoformat()}", resets)


def _check_cooldown(c: _Context) -> _Verdict:
    cooldown = c.policy.cooldown
    if cooldown <= timedelta(0):
        return _skipped("no cooldown between contacts")
    last = c.facts.counters.last_contact_at
    if last is None:
        return _passed("no earlier contact with this lead")
    until = last + cooldown
    if c.now < until:
        return _blocked(
            f"last contact {last.isoformat()} is within the {_span(cooldown)} cooldown; "
            f"next contact from {until.isoformat()}",
            until,
        )
    return _passed(f"last contact {last.isoformat()}, more than {_span(cooldown)} ago")


def _check_schedule(c: _Context) -> _Verdict:
    scheduled = c.message.not_before
    if scheduled is None:
        return _skipped("not scheduled: it may go as soon as it passes")
    when = scheduled.astimezone(UTC).isoformat()
    if c.now < scheduled:
        return _blocked(f"scheduled for {when}: it waits until then", scheduled)
    return _passed(f"scheduled for {when}: its time has come")


def _check_local_time(c: _Context) -> _Verdict:
    channel = c.message.channel
    windows, origin = c.policy.windows_for(channel, c.country)
    if windows is None:
        return _skipped(f"no sending window for {channel.value} ({origin})")
    allowed = f"{_NOUNS[channel]} allowed {describe_windows(windows)} ({origin})"
    is_phone = channel in _PHONE_CHANNELS
    found = zones_of(c.message, c.country)
    if not found.known:
        why = "; ".join(found.notes) or "no lead zone, number or country"
        return _blocked(f"time zone unknown: {why}")
    source = found.describe(number=mask_number(c.message.recipient) if is_phone else None)
    closed = closed_in(windows, found.zones, c.now)
    readings = ", ".join(f"{local_reading(c.now, z)} in {z}" for z in (closed or found.zones)[:3])
    if not closed:
        return _passed(f"it is {readings}; {allowed}; zone: {source}")
    opens = next_open(windows, found.zones, c.now, within=SEARCH_HORIZON)
    several = ", and the window must be open in all of them" if len(found.zones) > 1 else ""
    detail = f"outside the window: it is {readings}; {allowed}; zone: {source}{several}"
    if opens is None:
        horizon = f"{SEARCH_HORIZON.days} days"
        return _blocked(f"{detail}; it does not open in every zone within {horizon}")
    there = f"{local_reading(opens, closed[0])} in {closed[0]}"
    return _blocked(f"{detail}; opens {opens.isoformat()} ({there})", opens)


_CHECKS: tuple[tuple[Check, Callable[[_Context], _Verdict]], ...] = (
    (Check.CONSENT, _check_consent),
    (Check.SUPPRESSION, _check_suppression),
    (Check.DNC, _check_dnc),
    (Check.APPROVAL, _check_approval),
    (Check.DAILY_CAP, _check_daily_cap),
    (Check.DOMAIN_THROTTLE, _check_domain_throttle),
    (Check.COUNTRY_CALL_CAP, _check_country_call_cap),
    (Check.COOLDOWN, _check_cooldown),
    (Check.SCHEDULE, _check_schedule),
    (Check.LOCAL_TIME, _check_local_time),
)


# --- helpers ------------------------------------------------------------------------------


def recipient_country(message: OutboundMessage) -> str | None:
    """The country whose rules apply: the lead's, else the number's."""
    country = normalize_country(message.country)
    if country is None and message.channel in _PHONE_CHANNELS:
        country = region_for_number(message.recipient)
    return country


def zones_of(message: OutboundMessage, country: str | None) -> RecipientZones:
    """The zones the recipient's clock may be in (see `local_time.recipient_zones`); the number
    is read for phone channels only."""
    return recipient_zones(
        lead_zone=message.lead_zone,
        number=message.recipient if message.channel in _PHONE_CHANNELS else None,
        country=country,
    )


def _country_key(country: str) -> str:
    key = normalize_country(country)
    if key is None:
        raise ValueError(f"{country!r} is not an ISO 3166 alpha-2 country code")
    return key


def _require_aware(instant: datetime | None, what: str) -> None:
    if instant is not None and instant.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")


def _span(duration: timedelta) -> str:
    if duration % timedelta(days=1) == timedelta(0):
        return f"{duration.days}-day"
    return str(duration)
