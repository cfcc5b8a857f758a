"""A campaign's calls spread across the call window: pure, so every case is a plain call with a
fixed clock. Each time must be one the guard lets through on the recipient's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrelay.capture.models import LegalBasis
from leadrelay.drafting.evidence import Channel
from leadrelay.outreach.local_time import WEEKDAYS, Window, is_open
from leadrelay.outreach.pacing import MIN_GAP, Span, call_span, spread_calls
from leadrelay.outreach.policy import (
    Consent,
    ConsentState,
    Counters,
    Facts,
    OutboundMessage,
    Policy,
    decide,
    recipient_country,
    zones_of,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
PARIS_NUMBER = "+33142685300"
LYON_NUMBER = "+33478000000"
NY_NUMBER = "+12125550100"
TOKYO_NUMBER = "+81312345678"
BERLIN_NUMBER = "+493012345678"
IDAHO_NUMBER = "+12085550100"  # Mountain and Pacific time
MONDAY_NINE = datetime(2026, 12, 7, 9, 0, tzinfo=PARIS)


def call(number: str = PARIS_NUMBER, **changes: str) -> OutboundMessage:
    return OutboundMessage(Channel.VOICE, number, **changes)


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


def local_times(slots: list[datetime | None], zone: ZoneInfo) -> list[str]:
    return [f"{slot.astimezone(zone):%a %H:%M}" if slot else "none" for slot in slots]


class TestSpread:
    def test_calls_on_one_clock_are_spaced_evenly_in_queue_order(self) -> None:
        slots = spread_calls([call() for _ in range(4)], Policy(), MONDAY_NINE)
        assert local_times(slots, PARIS) == ["Mon 11:00", "Mon 12:30", "Mon 14:00", "Mon 15:30"]

    def test_the_same_calls_at_the_same_instant_get_the_same_times(self) -> None:
        calls = [call(), call(NY_NUMBER), call(LYON_NUMBER), call(TOKYO_NUMBER), call()]
        first = spread_calls(calls, Policy(), MONDAY_NINE)
        assert spread_calls(calls, Policy(), MONDAY_NINE) == first
        assert all(slot is not None and slot.second == 0 for slot in first)

    def test_only_what_is_left_of_an_open_window_is_used(self) -> None:
        two_pm = paris(2026, 12, 7, 14, 0)
        slots = spread_calls([call() for _ in range(3)], Policy(), two_pm)
        assert slots[0] == two_pm  # the first goes now
        assert local_times(slots, PARIS) == ["Mon 14:00", "Mon 15:00", "Mon 16:00"]

    def test_a_window_closed_for_today_sends_the_calls_to_the_next_day(self) -> None:
        slots = spread_calls([call(), call()], Policy(), paris(2026, 12, 8, 17, 0))
        assert local_times(slots, PARIS) == ["Wed 11:00", "Wed 14:00"]

    @pytest.mark.parametrize(
        "now",
        [
            paris(2026, 12, 11, 17, 0),  # Friday at five
            paris(2026, 12, 12, 12, 0),  # Saturday noon
            paris(2026, 12, 13, 23, 0),  # Sunday night
        ],
    )
    def test_weekends_are_skipped(self, now: datetime) -> None:
        slots = spread_calls([call(), call()], Policy(), now)
        assert slots == [paris(2026, 12, 14, 11, 0), paris(2026, 12, 14, 14, 0)]  # Monday

    def test_each_call_is_spread_on_its_recipients_clock(self) -> None:
        calls = [call(), call(NY_NUMBER), call(), call(NY_NUMBER), call(TOKYO_NUMBER)]
        slots = spread_calls(calls, Policy(), MONDAY_NINE)
        assert local_times([slots[0], slots[2]], PARIS) == ["Mon 11:00", "Mon 14:00"]
        assert local_times([slots[1], slots[3]], NEW_YORK) == ["Mon 11:00", "Mon 14:00"]
        # 09:00 in Paris is 17:00 in Tokyo: its window has closed, Tuesday's is used.
        assert local_times([slots[4]], ZoneInfo("Asia/Tokyo")) == ["Tue 11:00"]

    def test_a_lead_zone_beats_the_numbers(self) -> None:
        [slot] = spread_calls([call(NY_NUMBER, lead_zone="Europe/Paris")], Policy(), MONDAY_NINE)
        assert slot == paris(2026, 12, 7, 11, 0)

    def test_a_number_in_two_zones_is_called_when_both_allow_it(self) -> None:
        monday = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
        span = call_span(call(IDAHO_NUMBER), Policy(), monday)
        # 11:00 in Los Angeles (12:00 in Boise) to 17:00 in Boise (16:00 in Los Angeles).
        assert span == Span(
            datetime(2025, 6, 2, 18, 0, tzinfo=UTC), datetime(2025, 6, 2, 23, 0, tzinfo=UTC)
        )

    def test_a_country_override_sets_the_window_spread_across(self) -> None:
        mornings = Policy(country_windows={"DE": {Channel.VOICE: (Window("09:00", "12:00"),)}})
        slots = spread_calls(
            [call(BERLIN_NUMBER) for _ in range(3)], mornings, paris(2026, 12, 7, 8, 0)
        )
        assert local_times(slots, PARIS) == ["Mon 09:00", "Mon 10:00", "Mon 11:00"]

    def test_nothing_to_spread_across_leaves_the_call_to_the_guard(self) -> None:
        lifted = Policy(country_windows={"FR": {Channel.VOICE: None}})
        closed = Policy(country_windows={"FR": {Channel.VOICE: ()}})
        unknown = call("+999123")  # no zone, no country: the guard blocks it
        assert spread_calls([call()], lifted, MONDAY_NINE) == [None]
        assert spread_calls([call()], closed, MONDAY_NINE) == [None]
        assert spread_calls([unknown, call()], Policy(), MONDAY_NINE) == [
            None,
            paris(2026, 12, 7, 11, 0),
        ]

    def test_a_window_open_around_the_clock_is_spread_over_a_day(self) -> None:
        always = Policy(windows={Channel.VOICE: (Window("00:00", "24:00"),)})
        slots = spread_calls([call(), call()], always, MONDAY_NINE)
        assert slots == [MONDAY_NINE, MONDAY_NINE + timedelta(hours=12)]

    def test_a_run_near_the_close_goes_on_into_the_next_opening_rather_than_crowd(self) -> None:
        """At 16:59 a minute is left of Monday's window: ten calls need twenty. They are
        spread over that minute and Tuesday's window together, at least MIN_GAP apart."""
        last_minute = paris(2026, 12, 7, 16, 59)
        slots = spread_calls([call() for _ in range(10)], Policy(), last_minute)
        assert slots[0] == last_minute
        times = [slot for slot in slots if slot is not None]
        assert len(times) == 10
        assert [f"{t.astimezone(PARIS):%a}" for t in times] == ["Mon"] + ["Tue"] * 9
        assert all(later - earlier >= MIN_GAP for earlier, later in pairwise(times[1:]))
        assert f"{times[-1].astimezone(PARIS):%H:%M}" < "17:00"

    def test_a_few_calls_that_fit_stay_in_what_is_left_of_today(self) -> None:
        half_past_four = paris(2026, 12, 7, 16, 30)
        slots = spread_calls([call() for _ in range(3)], Policy(), half_past_four)
        assert local_times(slots, PARIS) == ["Mon 16:30", "Mon 16:40", "Mon 16:50"]


# --- what the guard says at each time -----------------------------------------------------

NUMBERS = [PARIS_NUMBER, LYON_NUMBER, NY_NUMBER, TOKYO_NUMBER, BERLIN_NUMBER, IDAHO_NUMBER]
ALLOWED = Facts(
    legal_basis=LegalBasis.CONTRACT,
    consent=Consent(ConsentState.UNKNOWN),
    suppressions=(),
    dnc_registries=(),
    approval_refusal=None,
    counters=Counters(
        sent_today=0, domain_sends=(), calls_today_to_country=0, last_contact_at=None
    ),
)


GERMAN_MORNINGS = Policy(
    country_windows={"DE": {Channel.VOICE: (Window("08:00", "12:00", WEEKDAYS),)}}
)


@settings(max_examples=60, deadline=None)
@given(
    numbers=st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=8),
    now=st.datetimes(
        min_value=datetime(2024, 1, 1),  # noqa: DTZ001
        max_value=datetime(2027, 12, 31),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    policy=st.sampled_from([Policy(), GERMAN_MORNINGS]),
)
def test_every_time_is_in_the_window_and_the_guard_lets_it_through(
    numbers: list[str], now: datetime, policy: Policy
) -> None:
    calls = [call(number) for number in numbers]
    for outbound, slot in zip(calls, spread_calls(calls, policy, now), strict=True):
        assert slot is not None
        assert now <= slot < now + timedelta(days=4)  # a weekend at most in between
        country = recipient_country(outbound)
        windows, _ = policy.windows_for(Channel.VOICE, country)
        assert windows is not None
        assert is_open(windows, zones_of(outbound, country).zones, slot)
        scheduled = OutboundMessage(Channel.VOICE, outbound.recipient, not_before=slot)
        assert decide(scheduled, ALLOWED, policy, slot).allowed
        assert not decide(scheduled, ALLOWED, policy, slot - timedelta(seconds=1)).allowed
