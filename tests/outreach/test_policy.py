"""The policy guard: pure, so every case is a plain call with a fixed clock."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrelay.capture.models import LegalBasis
from leadrelay.drafting.evidence import Channel
from leadrelay.outreach.local_time import WEEKDAYS, Window
from leadrelay.outreach.policy import (
    CHECK_ORDER,
    Check,
    Consent,
    ConsentState,
    Counters,
    Decision,
    Facts,
    OutboundMessage,
    Policy,
    StepOutcome,
    decide,
    trace_json,
)

NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2025, 6, 2, 16, 0, tzinfo=UTC)  # Monday, 12:00 in New York
NY_NUMBER = "+12125550100"
TOKYO_NUMBER = "+81312345678"
IDAHO_NUMBER = "+12085550100"  # Mountain and Pacific time
EMAIL = "jane.doe@example.com"

GRANTED = Consent(ConsentState.GRANTED, datetime(2025, 1, 1, tzinfo=UTC))
UNKNOWN = Consent(ConsentState.UNKNOWN)
WITHDRAWN = Consent(ConsentState.WITHDRAWN, datetime(2025, 5, 1, tzinfo=UTC))


def message(
    channel: Channel = Channel.VOICE, recipient: str = NY_NUMBER, **changes: Any
) -> OutboundMessage:
    return OutboundMessage(channel, recipient, **changes)


def counters(**changes: Any) -> Counters:
    base = Counters(sent_today=0, domain_sends=(), calls_today_to_country=0, last_contact_at=None)
    return replace(base, **changes)


def facts(**changes: Any) -> Facts:
    counter_changes = changes.pop("counters", {})
    base = Facts(
        legal_basis=LegalBasis.CONSENT,
        consent=GRANTED,
        suppressions=(),
        dnc_registries=(),
        approval_refusal=None,
        counters=counters(**counter_changes),
    )
    return replace(base, **changes)


def step(decision: Decision, check: Check) -> tuple[StepOutcome, str]:
    (found,) = [s for s in decision.trace if s.check is check]
    return found.outcome, found.detail


# --- the whole run -------------------------------------------------------------------------


def test_allows_a_clean_call_and_traces_every_check_in_order() -> None:
    decision = decide(message(), facts(), Policy(), NOW)
    assert decision.allowed
    assert decision.blocked_by is None
    assert decision.reason is None
    assert decision.retry_at is None
    assert [s.check for s in decision.trace] == list(CHECK_ORDER)
    assert [s.outcome for s in decision.trace] == [
        StepOutcome.PASSED,  # consent
        StepOutcome.PASSED,  # suppression
        StepOutcome.PASSED,  # dnc
        StepOutcome.PASSED,  # approval
        StepOutcome.PASSED,  # daily cap
        StepOutcome.SKIPPED,  # domain throttle: email only
        StepOutcome.SKIPPED,  # no call cap for the US
        StepOutcome.PASSED,  # cooldown
        StepOutcome.SKIPPED,  # schedule: not scheduled
        StepOutcome.PASSED,  # local time
    ]
    assert step(decision, Check.LOCAL_TIME)[1].startswith("it is Monday 12:00 in America/New_York")


def test_stops_at_the_first_block() -> None:
    over_cap = facts(suppressions=("opted_out",), counters={"sent_today": 500})
    decision = decide(message(), over_cap, Policy(), NOW)
    assert decision.blocked_by == Check.SUPPRESSION
    assert [s.check for s in decision.trace] == [Check.CONSENT, Check.SUPPRESSION]
    assert decision.trace[-1].outcome is StepOutcome.BLOCKED


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"consent": WITHDRAWN, "suppressions": ("complaint",)}, Check.CONSENT),
        (
            {"suppressions": ("opted_out",), "dnc_registries": ("US National DNC",)},
            Check.SUPPRESSION,
        ),
        ({"dnc_registries": ("US National DNC",), "approval_refusal": "expired"}, Check.DNC),
        ({"approval_refusal": "expired", "counters": {"sent_today": 50}}, Check.APPROVAL),
        ({"counters": {"sent_today": 50, "calls_today_to_country": 9}}, Check.DAILY_CAP),
        (
            {"counters": {"calls_today_to_country": 9, "last_contact_at": NOW}},
            Check.COUNTRY_CALL_CAP,
        ),
    ],
)
def test_order_is_respected(changes: dict[str, Any], expected: Check) -> None:
    policy = Policy(default_country_call_cap=9)
    decision = decide(message(), facts(**changes), policy, NOW)
    assert decision.blocked_by == expected


def test_cooldown_comes_before_the_window() -> None:
    saturday = datetime(2025, 6, 7, 16, 0, tzinfo=UTC)
    recent = facts(counters={"last_contact_at": saturday - timedelta(days=1)})
    assert decide(message(), recent, Policy(), saturday).blocked_by == Check.COOLDOWN
    assert decide(message(), facts(), Policy(), saturday).blocked_by == Check.LOCAL_TIME


# --- consent and legal basis ---------------------------------------------------------------

CONSENT_TABLE = [
    # basis, channel, consent, allowed
    (LegalBasis.CONSENT, Channel.EMAIL, GRANTED, True),
    (LegalBasis.CONSENT, Channel.EMAIL, UNKNOWN, False),
    (LegalBasis.CONSENT, Channel.SMS, UNKNOWN, False),
    (LegalBasis.CONSENT, Channel.VOICE, WITHDRAWN, False),
    (LegalBasis.LEGITIMATE_INTEREST, Channel.EMAIL, UNKNOWN, True),
    (LegalBasis.LEGITIMATE_INTEREST, Channel.EMAIL, WITHDRAWN, False),
    (LegalBasis.LEGITIMATE_INTEREST, Channel.SMS, UNKNOWN, False),
    (LegalBasis.LEGITIMATE_INTEREST, Channel.WHATSAPP, UNKNOWN, False),
    (LegalBasis.LEGITIMATE_INTEREST, Channel.VOICE, UNKNOWN, False),
    (LegalBasis.LEGITIMATE_INTEREST, Channel.SMS, GRANTED, True),
    (LegalBasis.CONTRACT, Channel.EMAIL, UNKNOWN, True),
    (LegalBasis.CONTRACT, Channel.SMS, UNKNOWN, True),
    (LegalBasis.CONTRACT, Channel.WHATSAPP, UNKNOWN, True),
    (LegalBasis.CONTRACT, Channel.VOICE, UNKNOWN, True),
    (LegalBasis.CONTRACT, Channel.VOICE, WITHDRAWN, False),
]


@pytest.mark.parametrize(("basis", "channel", "consent", "allowed"), CONSENT_TABLE)
def test_legal_basis_and_consent(
    basis: LegalBasis, channel: Channel, consent: Consent, allowed: bool
) -> None:
    recipient = EMAIL if channel is Channel.EMAIL else NY_NUMBER
    decision = decide(
        message(channel, recipient), facts(legal_basis=basis, consent=consent), Policy(), NOW
    )
    outcome, detail = step(decision, Check.CONSENT)
    assert (outcome is StepOutcome.PASSED) is allowed
    if not allowed:
        assert decision.blocked_by == Check.CONSENT
        assert decision.reason == detail
        assert decision.retry_at is None


def test_withdrawal_says_when_and_that_it_beats_every_basis() -> None:
    decision = decide(message(), facts(legal_basis="contract", consent=WITHDRAWN), Policy(), NOW)
    assert decision.reason == (
        "consent for voice was withdrawn at 2025-05-01T00:00:00+00:00; a withdrawal blocks "
        "every legal basis (this source: contract)"
    )


def test_legitimate_interest_refusal_names_the_rule() -> None:
    decision = decide(
        message(Channel.SMS),
        facts(legal_basis="legitimate_interest", consent=UNKNOWN),
        Policy(),
        NOW,
    )
    assert decision.reason is not None
    assert "legitimate interest does not cover SMS without consent" in decision.reason
    assert "PECR/ePrivacy" in decision.reason


def test_consent_granted_after_now_is_not_in_force() -> None:
    later = Consent(ConsentState.GRANTED, NOW + timedelta(hours=1))
    decision = decide(message(), facts(consent=later), Policy(), NOW)
    assert decision.blocked_by == Check.CONSENT
    assert decide(message(), facts(consent=later), Policy(), NOW + timedelta(hours=2)).allowed


# --- suppression, DNC, approval ------------------------------------------------------------


def test_suppression_blocks_for_good_and_lists_the_reasons() -> None:
    hits = ("hard_bounce", "opted_out", "opted_out")
    decision = decide(message(), facts(suppressions=hits), Policy(), NOW)
    assert decision.blocked_by == Check.SUPPRESSION
    assert decision.reason == "recipient is suppressed: hard_bounce, opted_out"
    assert decision.retry_at is None
    assert (
        step(decide(message(), facts(), Policy(), NOW), Check.SUPPRESSION)[0] is StepOutcome.PASSED
    )


def test_dnc_blocks_for_good() -> None:
    decision = decide(message(), facts(dnc_registries=("US National DNC",)), Policy(), NOW)
    assert decision.blocked_by == Check.DNC
    assert decision.reason == "listed on do-not-call registry: US National DNC"
    assert decision.retry_at is None
    assert step(decide(message(), facts(), Policy(), NOW), Check.DNC)[0] is StepOutcome.PASSED


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        ("approval: expired at 2025-06-01T00:00:00+00:00", "approval: expired at 2025-06-01"),
        ("", "no reason given"),
    ],
)
def test_send_guard_refusal_blocks_for_good(refusal: str, reason: str) -> None:
    decision = decide(message(), facts(approval_refusal=refusal), Policy(), NOW)
    assert decision.blocked_by == Check.APPROVAL
    assert decision.reason is not None
    assert decision.reason.startswith("the send guard refused: ")
    assert reason in decision.reason
    assert decision.retry_at is None


# --- caps and throttles --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "recipient", "cap"),
    [
        (Channel.EMAIL, EMAIL, 200),
        (Channel.SMS, NY_NUMBER, 100),
        (Channel.WHATSAPP, NY_NUMBER, 100),
        (Channel.VOICE, NY_NUMBER, 50),
    ],
)
def test_daily_cap_per_channel_resets_at_the_tenants_midnight(
    channel: Channel, recipient: str, cap: int
) -> None:
    policy = Policy(tenant_zone="Europe/Paris")
    under = decide(
        message(channel, recipient), facts(counters={"sent_today": cap - 1}), policy, NOW
    )
    assert step(under, Check.DAILY_CAP)[0] is StepOutcome.PASSED
    at_cap = decide(message(channel, recipient), facts(counters={"sent_today": cap}), policy, NOW)
    assert at_cap.blocked_by == Check.DAILY_CAP
    assert at_cap.retry_at == datetime(2025, 6, 2, 22, 0, tzinfo=UTC)  # midnight in Paris
    assert f"{cap} of {cap}" in (at_cap.reason or "")


def test_channel_without_a_cap_skips_and_a_zero_cap_blocks_for_good() -> None:
    uncapped = Policy(daily_caps={Channel.EMAIL: 200})
    decision = decide(message(), facts(counters={"sent_today": 10_000}), uncapped, NOW)
    assert step(decision, Check.DAILY_CAP) == (StepOutcome.SKIPPED, "no daily cap for voice")
    off = decide(message(), facts(), Policy(daily_caps={"voice": 0}), NOW)
    assert off.blocked_by == Check.DAILY_CAP
    assert off.retry_at is None


def test_domain_throttle_frees_when_the_oldest_send_leaves_the_hour() -> None:
    sends = tuple(NOW - timedelta(minutes=m) for m in (50, 40, 30, 20, 10))
    email = message(Channel.EMAIL, "Jane.Doe@Example.COM")
    decision = decide(email, facts(counters={"domain_sends": sends}), Policy(), NOW)
    assert decision.blocked_by == Check.DOMAIN_THROTTLE
    assert decision.retry_at == NOW + timedelta(minutes=10)  # the 50-minute-old send leaves
    assert "5 emails to example.com in the last hour (limit 5 an hour)" in (decision.reason or "")
    # One more send in the hour: two must leave, so the second oldest decides.
    more = (*sends, NOW - timedelta(minutes=5))
    assert decide(
        email, facts(counters={"domain_sends": more}), Policy(), NOW
    ).retry_at == NOW + timedelta(minutes=20)


def test_domain_throttle_ignores_sends_older_than_an_hour_and_other_channels() -> None:
    old = tuple(NOW - timedelta(minutes=m) for m in (60, 61, 90, 120, 300))
    decision = decide(
        message(Channel.EMAIL, EMAIL), facts(counters={"domain_sends": old}), Policy(), NOW
    )
    assert step(decision, Check.DOMAIN_THROTTLE) == (
        StepOutcome.PASSED,
        "0 emails to example.com in the last hour (limit 5 an hour)",
    )
    recent = tuple(NOW - timedelta(minutes=m) for m in range(5))
    sms = decide(message(Channel.SMS), facts(counters={"domain_sends": recent}), Policy(), NOW)
    assert step(sms, Check.DOMAIN_THROTTLE)[0] is StepOutcome.SKIPPED


def test_domain_throttle_can_be_set_and_lifted() -> None:
    sends = (NOW - timedelta(minutes=1),)
    email = message(Channel.EMAIL, EMAIL)
    assert (
        decide(
            email, facts(counters={"domain_sends": sends}), Policy(domain_hourly_cap=1), NOW
        ).blocked_by
        == Check.DOMAIN_THROTTLE
    )
    lifted = decide(
        email, facts(counters={"domain_sends": sends * 9}), Policy(domain_hourly_cap=None), NOW
    )
    assert lifted.allowed


def test_email_without_a_domain_is_not_throttled_blindly() -> None:
    decision = decide(message(Channel.EMAIL, "no-at-sign"), facts(), Policy(), NOW)
    assert decision.blocked_by == Check.DOMAIN_THROTTLE
    assert decision.retry_at is None


def test_country_call_cap_uses_the_override_then_the_default() -> None:
    policy = Policy(country_call_caps={"jp": 3}, tenant_zone="Asia/Tokyo")
    tokyo_monday = datetime(2025, 6, 2, 3, 0, tzinfo=UTC)  # 12:00 in Tokyo
    call = message(Channel.VOICE, TOKYO_NUMBER)
    under = decide(call, facts(counters={"calls_today_to_country": 2}), policy, tokyo_monday)
    assert step(under, Check.COUNTRY_CALL_CAP) == (
        StepOutcome.PASSED,
        "2 of 3 calls to JP today (Asia/Tokyo day)",
    )
    over = decide(call, facts(counters={"calls_today_to_country": 3}), policy, tokyo_monday)
    assert over.blocked_by == Check.COUNTRY_CALL_CAP
    assert over.retry_at == datetime(2025, 6, 2, 15, 0, tzinfo=UTC)  # midnight in Tokyo
    # The US has no override and there is no default: the check does not apply.
    us = decide(message(), facts(counters={"calls_today_to_country": 99}), policy, NOW)
    assert step(us, Check.COUNTRY_CALL_CAP) == (StepOutcome.SKIPPED, "no call cap for US")
    capped = Policy(default_country_call_cap=1)
    assert (
        decide(message(), facts(counters={"calls_today_to_country": 1}), capped, NOW).blocked_by
        == Check.COUNTRY_CALL_CAP
    )
    sms = decide(message(Channel.SMS), facts(counters={"calls_today_to_country": 1}), capped, NOW)
    assert step(sms, Check.COUNTRY_CALL_CAP)[0] is StepOutcome.SKIPPED


# --- cooldown ------------------------------------------------------------------------------


def test_cooldown_blocks_until_thirty_days_after_the_last_contact() -> None:
    last = NOW - timedelta(days=10)
    decision = decide(message(), facts(counters={"last_contact_at": last}), Policy(), NOW)
    assert decision.blocked_by == Check.COOLDOWN
    assert decision.retry_at == last + timedelta(days=30)
    assert "within the 30-day cooldown" in (decision.reason or "")
    exactly = decide(
        message(), facts(counters={"last_contact_at": NOW - timedelta(days=30)}), Policy(), NOW
    )
    assert step(exactly, Check.COOLDOWN)[0] is StepOutcome.PASSED
    never = decide(message(), facts(), Policy(), NOW)
    assert step(never, Check.COOLDOWN) == (StepOutcome.PASSED, "no earlier contact with this lead")
    none = decide(
        message(), facts(counters={"last_contact_at": NOW}), Policy(cooldown=timedelta(0)), NOW
    )
    assert step(none, Check.COOLDOWN)[0] is StepOutcome.SKIPPED


# --- schedule ------------------------------------------------------------------------------


def test_a_scheduled_message_waits_for_its_time_then_meets_the_window() -> None:
    # Monday 09:00 in New York: scheduled for 13:30, before the call window even opens.
    nine = datetime(2025, 6, 2, 13, 0, tzinfo=UTC)
    half_past_one = datetime(2025, 6, 2, 17, 30, tzinfo=UTC)
    call = message(not_before=half_past_one)
    waiting = decide(call, facts(), Policy(), nine)
    assert waiting.blocked_by == Check.SCHEDULE
    assert waiting.retry_at == half_past_one
    assert "waits until then" in (waiting.reason or "")
    assert Check.LOCAL_TIME not in [s.check for s in waiting.trace]  # read at its time
    due = decide(call, facts(), Policy(), half_past_one)
    assert due.allowed
    assert step(due, Check.SCHEDULE) == (
        StepOutcome.PASSED,
        "scheduled for 2025-06-02T17:30:00+00:00: its time has come",
    )


def test_a_scheduled_message_that_could_never_go_is_refused_at_once() -> None:
    call = message(not_before=NOW + timedelta(hours=3))
    decision = decide(call, facts(suppressions=("opted_out",)), Policy(), NOW)
    assert decision.blocked_by == Check.SUPPRESSION
    assert decision.retry_at is None


def test_an_earlier_block_does_not_pull_a_scheduled_message_forward() -> None:
    later = NOW + timedelta(hours=3)
    cooling = facts(counters={"last_contact_at": NOW - timedelta(days=30) + timedelta(hours=1)})
    decision = decide(message(not_before=later), cooling, Policy(), NOW)
    assert decision.blocked_by == Check.COOLDOWN
    assert decision.retry_at == later  # the cooldown ends in an hour; its time is in three
    capped = decide(message(not_before=later), facts(counters={"sent_today": 50}), Policy(), NOW)
    assert capped.blocked_by == Check.DAILY_CAP
    assert capped.retry_at == datetime(2025, 6, 3, tzinfo=UTC)  # it clears after its time


def test_a_scheduled_time_must_be_an_instant() -> None:
    with pytest.raises(ValueError, match="not_before must be timezone-aware"):
        message(not_before=datetime(2025, 6, 2, 12))  # noqa: DTZ001


# --- local time ----------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "number"), [(NEW_YORK, NY_NUMBER), (TOKYO, TOKYO_NUMBER)])
@pytest.mark.parametrize(
    ("local", "allowed", "opens"),
    [
        ((2025, 6, 2, 10, 59), False, (2025, 6, 2, 11, 0)),  # Monday
        ((2025, 6, 2, 11, 0), True, None),
        ((2025, 6, 2, 16, 59), True, None),
        ((2025, 6, 2, 17, 0), False, (2025, 6, 3, 11, 0)),
        ((2025, 6, 7, 10, 59), False, (2025, 6, 9, 11, 0)),  # Saturday
        ((2025, 6, 7, 11, 0), False, (2025, 6, 9, 11, 0)),
        ((2025, 6, 7, 16, 59), False, (2025, 6, 9, 11, 0)),
        ((2025, 6, 7, 17, 0), False, (2025, 6, 9, 11, 0)),
    ],
)
def test_call_window(
    zone: ZoneInfo,
    number: str,
    local: tuple[int, ...],
    allowed: bool,
    opens: tuple[int, ...] | None,
) -> None:
    now = datetime(*local, tzinfo=zone)  # type: ignore[misc]
    decision = decide(message(Channel.VOICE, number), facts(), Policy(), now.astimezone(UTC))
    assert decision.allowed is allowed
    if opens is None:
        assert decision.retry_at is None
    else:
        assert decision.blocked_by == Check.LOCAL_TIME
        assert decision.retry_at == datetime(*opens, tzinfo=zone)  # type: ignore[misc]
        assert "calls allowed Mon–Fri 11:00–17:00 (the default)" in (decision.reason or "")


def test_call_window_across_the_spring_forward_weekend() -> None:
    saturday = datetime(2025, 3, 8, 17, 0, tzinfo=UTC)  # 12:00 EST
    decision = decide(message(), facts(), Policy(), saturday)
    assert decision.blocked_by == Check.LOCAL_TIME
    assert decision.retry_at == datetime(2025, 3, 10, 15, 0, tzinfo=UTC)  # 11:00 EDT
    assert "it is Saturday 12:00 in America/New_York" in (decision.reason or "")


@pytest.mark.parametrize(
    ("local", "allowed", "opens"),
    [
        ((2025, 6, 2, 20, 59), True, None),
        ((2025, 6, 2, 21, 0), False, (2025, 6, 3, 8, 0)),
        ((2025, 6, 2, 23, 59), False, (2025, 6, 3, 8, 0)),
        ((2025, 6, 3, 0, 0), False, (2025, 6, 3, 8, 0)),
        ((2025, 6, 3, 7, 59), False, (2025, 6, 3, 8, 0)),
        ((2025, 6, 3, 8, 0), True, None),
        ((2025, 6, 7, 10, 0), True, None),  # weekends too
    ],
)
@pytest.mark.parametrize("channel", [Channel.SMS, Channel.WHATSAPP])
def test_message_quiet_hours_across_midnight(
    channel: Channel, local: tuple[int, ...], allowed: bool, opens: tuple[int, ...] | None
) -> None:
    now = datetime(*local, tzinfo=NEW_YORK)  # type: ignore[misc]
    decision = decide(message(channel), facts(), Policy(), now)
    assert decision.allowed is allowed
    if opens is not None:
        assert decision.blocked_by == Check.LOCAL_TIME
        assert decision.retry_at == datetime(*opens, tzinfo=NEW_YORK)  # type: ignore[misc]


def test_number_spanning_two_zones_waits_for_both() -> None:
    monday = datetime(2025, 6, 2, 17, 30, tzinfo=UTC)  # 11:30 in Boise, 10:30 in Los Angeles
    decision = decide(message(Channel.VOICE, IDAHO_NUMBER), facts(), Policy(), monday)
    assert decision.blocked_by == Check.LOCAL_TIME
    assert decision.retry_at == datetime(2025, 6, 2, 18, 0, tzinfo=UTC)
    assert "Monday 10:30 in America/Los_Angeles" in (decision.reason or "")
    assert "the window must be open in all of them" in (decision.reason or "")
    assert "(Monday 11:00 in America/Los_Angeles)" in (decision.reason or "")
    # The lead's own zone settles it.
    known = message(Channel.VOICE, IDAHO_NUMBER, lead_zone="America/Boise")
    assert decide(known, facts(), Policy(), monday).allowed


def test_unknown_zone_blocks_without_guessing() -> None:
    decision = decide(message(Channel.SMS, "+999123"), facts(), Policy(), NOW)
    assert decision.blocked_by == Check.LOCAL_TIME
    assert decision.retry_at is None
    assert decision.reason == "time zone unknown: the number maps to no time zone"
    by_country = decide(message(Channel.SMS, "+999123", country="FR"), facts(), Policy(), NOW)
    assert step(by_country, Check.LOCAL_TIME)[0] is StepOutcome.PASSED  # 18:00 in Paris


def test_email_has_no_window_unless_a_country_adds_one() -> None:
    email = message(Channel.EMAIL, EMAIL, country="DE")
    plain = decide(email, facts(), Policy(), NOW)
    assert step(plain, Check.LOCAL_TIME) == (
        StepOutcome.SKIPPED,
        "no sending window for email (the default)",
    )
    office_hours = {"DE": {Channel.EMAIL: (Window("09:00", "17:00", WEEKDAYS),)}}
    evening = datetime(2025, 6, 2, 18, 0, tzinfo=UTC)  # 20:00 in Berlin
    decision = decide(email, facts(), Policy(country_windows=office_hours), evening)
    assert decision.blocked_by == Check.LOCAL_TIME
    # Germany has one zone, so the country is enough.
    assert decision.retry_at == datetime(2025, 6, 3, 7, 0, tzinfo=UTC)
    assert "(the override for DE)" in (decision.reason or "")


def test_country_override_replaces_lifts_or_closes_a_window() -> None:
    paris_number = "+33612345678"
    evening = datetime(2025, 6, 2, 17, 30, tzinfo=UTC)  # Monday 19:30 in Paris
    call = message(Channel.VOICE, paris_number)
    assert decide(call, facts(), Policy(), evening).blocked_by == Check.LOCAL_TIME
    longer = Policy(country_windows={"FR": {"voice": (Window("10:00", "20:00", WEEKDAYS),)}})
    assert decide(call, facts(), longer, evening).allowed
    lifted = Policy(country_windows={"FR": {Channel.VOICE: None}})
    assert step(decide(call, facts(), lifted, evening), Check.LOCAL_TIME)[0] is StepOutcome.SKIPPED
    closed = Policy(country_windows={"FR": {Channel.VOICE: ()}})
    never = decide(call, facts(), closed, evening)
    assert never.blocked_by == Check.LOCAL_TIME
    assert never.retry_at is None
    # An override for another country changes nothing here.
    other = Policy(country_windows={"DE": {Channel.VOICE: None}})
    assert decide(call, facts(), other, evening).blocked_by == Check.LOCAL_TIME


def test_message_country_beats_the_numbers_region() -> None:
    # A UK mobile number's region reads as GG; the lead's country says GB.
    policy = Policy(country_windows={"GB": {Channel.SMS: None}})
    late = datetime(2025, 6, 2, 22, 30, tzinfo=UTC)  # 23:30 in London
    uk = message(Channel.SMS, "+447911123456", country="GB")
    assert decide(uk, facts(), policy, late).allowed
    assert (
        decide(message(Channel.SMS, "+447911123456"), facts(), policy, late).blocked_by
        == Check.LOCAL_TIME
    )


# --- the stored trace ----------------------------------------------------------------------


def test_trace_json_is_plain_json() -> None:
    decision = decide(message(), facts(counters={"sent_today": 50}), Policy(), NOW)
    stored = trace_json(decision)
    assert json.loads(json.dumps(stored)) == stored
    assert stored["allowed"] is False
    assert stored["blocked_by"] == "daily_cap"
    assert stored["retry_at"] == "2025-06-03T00:00:00+00:00"
    assert stored["decided_at"] == NOW.isoformat()
    assert stored["trace"][0] == {
        "check": "consent",
        "outcome": "pass",
        "detail": "basis consent; consent for voice granted at 2025-01-01T00:00:00+00:00",
    }
    assert stored["trace"][-1]["outcome"] == "block"


@pytest.mark.parametrize(
    ("channel", "recipient", "secrets"),
    [
        (Channel.EMAIL, EMAIL, ["jane.doe", EMAIL]),
        (Channel.VOICE, NY_NUMBER, [NY_NUMBER, "2125550100", "5550100"]),
        (Channel.SMS, IDAHO_NUMBER, [IDAHO_NUMBER, "2085550100", "5550100"]),
    ],
)
def test_trace_never_holds_the_address(
    channel: Channel, recipient: str, secrets: list[str]
) -> None:
    scenarios = [
        facts(),
        facts(suppressions=("opted_out",)),
        facts(counters={"domain_sends": (NOW,) * 5}),
        facts(counters={"last_contact_at": NOW}),
    ]
    instants = [
        NOW,
        datetime(2025, 6, 7, 16, 0, tzinfo=UTC),
        datetime(2025, 6, 2, 3, 0, tzinfo=UTC),
    ]
    for scenario in scenarios:
        for now in instants:
            dumped = json.dumps(
                trace_json(decide(message(channel, recipient), scenario, Policy(), now))
            )
            for secret in secrets:
                assert secret not in dumped


# --- validation ----------------------------------------------------------------------------


def test_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        decide(message(), facts(), Policy(), datetime(2025, 6, 2, 12))  # noqa: DTZ001
    with pytest.raises(ValueError, match="last contact time"):
        counters(last_contact_at=datetime(2025, 6, 2, 12))  # noqa: DTZ001
    with pytest.raises(ValueError, match="domain send time"):
        counters(domain_sends=(datetime(2025, 6, 2, 12),))  # noqa: DTZ001
    with pytest.raises(ValueError, match="consent time"):
        Consent(ConsentState.GRANTED, datetime(2025, 6, 2, 12))  # noqa: DTZ001


@pytest.mark.parametrize(
    "changes",
    [
        {"tenant_zone": "Mars/Olympus"},
        {"daily_caps": {Channel.SMS: -1}},
        {"domain_hourly_cap": -1},
        {"country_call_caps": {"USA": 3}},
        {"default_country_call_cap": -2},
        {"cooldown": timedelta(days=-1)},
        {"daily_caps": {"fax": 3}},
    ],
)
def test_refuses_a_broken_policy(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        Policy(**changes)


def test_refuses_negative_counters_and_unknown_enums() -> None:
    with pytest.raises(ValueError, match="negative"):
        counters(sent_today=-1)
    with pytest.raises(ValueError):  # noqa: PT011
        facts(legal_basis="vibes")
    with pytest.raises(ValueError):  # noqa: PT011
        message("pigeon")


# --- properties ----------------------------------------------------------------------------

RECIPIENTS: dict[Channel, list[str]] = {
    Channel.EMAIL: [EMAIL, "ops@Example.org", "x@y.co", "broken"],
    Channel.SMS: [NY_NUMBER, IDAHO_NUMBER, TOKYO_NUMBER, "+33612345678", "+999123"],
    Channel.WHATSAPP: [NY_NUMBER, "+447911123456", "+61412345678"],
    Channel.VOICE: [NY_NUMBER, IDAHO_NUMBER, TOKYO_NUMBER, "+18005550100", "+33612345678"],
}
TENANT_ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "America/Santiago"]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[OutboundMessage, Facts, Policy, datetime]:
    now = draw(
        st.datetimes(
            min_value=datetime(2024, 1, 1),  # noqa: DTZ001
            max_value=datetime(2027, 12, 31),  # noqa: DTZ001
            timezones=st.just(UTC),
        )
    )
    channel = draw(st.sampled_from(list(Channel)))
    outbound = OutboundMessage(
        channel,
        draw(st.sampled_from(RECIPIENTS[channel])),
        country=draw(st.sampled_from([None, "US", "JP", "FR", "GB", "DE", "ES", "usa"])),
        lead_zone=draw(st.sampled_from([None, None, "Europe/Berlin", "Asia/Tokyo", "Nowhere/X"])),
        not_before=draw(
            st.sampled_from([None, None, now - timedelta(hours=1), now + timedelta(hours=2)])
        ),
    )
    ago = st.timedeltas(min_value=timedelta(0), max_value=timedelta(minutes=90))
    consent_at = draw(st.sampled_from([None, now - timedelta(days=3), now + timedelta(hours=1)]))
    found = Facts(
        legal_basis=draw(st.sampled_from(list(LegalBasis))),
        consent=Consent(draw(st.sampled_from(list(ConsentState))), consent_at),
        suppressions=tuple(draw(st.lists(st.sampled_from(["opted_out", "complaint"]), max_size=1))),
        dnc_registries=tuple(draw(st.lists(st.just("TPS"), max_size=1))),
        approval_refusal=draw(st.sampled_from([None, None, None, "expired"])),
        counters=Counters(
            sent_today=draw(st.integers(0, 220)),
            domain_sends=tuple(now - d for d in draw(st.lists(ago, max_size=8))),
            calls_today_to_country=draw(st.integers(0, 5)),
            last_contact_at=draw(
                st.one_of(
                    st.none(),
                    st.timedeltas(timedelta(0), timedelta(days=45)).map(lambda d: now - d),
                )
            ),
        ),
    )
    policy = Policy(
        tenant_zone=draw(st.sampled_from(TENANT_ZONES)),
        default_country_call_cap=draw(st.sampled_from([None, 0, 2, 4])),
        domain_hourly_cap=draw(st.sampled_from([None, 1, 5])),
        cooldown=draw(st.sampled_from([timedelta(0), timedelta(days=30), timedelta(hours=36)])),
        country_windows=draw(
            st.sampled_from(
                [{}, {"FR": {Channel.VOICE: (Window("22:00", "02:00", frozenset({4})),)}}]
            )
        ),
    )
    return outbound, found, policy, now


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_decide_is_deterministic_and_well_formed(
    scenario: tuple[OutboundMessage, Facts, Policy, datetime],
) -> None:
    outbound, found, policy, now = scenario
    first = decide(outbound, found, policy, now)
    assert decide(outbound, found, policy, now) == first
    assert trace_json(decide(outbound, found, policy, now)) == trace_json(first)
    checks = [s.check for s in first.trace]
    assert checks == list(CHECK_ORDER[: len(checks)])
    blocks = [s for s in first.trace if s.outcome is StepOutcome.BLOCKED]
    if first.allowed:
        assert not blocks
        assert len(checks) == len(CHECK_ORDER)
        assert first.retry_at is None
    else:
        assert blocks == [first.trace[-1]]
        assert first.blocked_by == first.trace[-1].check
        assert first.reason == first.trace[-1].detail
    dumped = json.dumps(trace_json(first))
    if outbound.channel is not Channel.EMAIL or "@" in outbound.recipient:
        assert outbound.recipient not in dumped


PERMANENT = {Check.CONSENT, Check.SUPPRESSION, Check.DNC, Check.APPROVAL}


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_retry_at_is_when_the_block_clears(
    scenario: tuple[OutboundMessage, Facts, Policy, datetime],
) -> None:
    outbound, found, policy, now = scenario
    decision = decide(outbound, found, policy, now)
    if decision.allowed:
        return
    check = Check(decision.blocked_by)
    if check in PERMANENT:
        assert decision.retry_at is None
    if decision.retry_at is None:
        return
    assert decision.retry_at > now
    # At retry_at, with the counters a new day brings, the same check passes.
    later = found
    if check in {Check.DAILY_CAP, Check.COUNTRY_CALL_CAP}:
        later = replace(
            found,
            counters=replace(found.counters, sent_today=0, calls_today_to_country=0),
        )
    again = decide(outbound, later, policy, decision.retry_at)
    assert step(again, check)[0] is StepOutcome.PASSED
