"""The recipient's wall clock: zones from a lead, a number or a country; windows and openings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrelay.outreach.local_time import (
    EVERY_DAY,
    WEEKDAYS,
    Window,
    Windows,
    ZoneSource,
    closed_in,
    describe_days,
    describe_windows,
    first_instant_at_or_after,
    is_open,
    local_reading,
    mask_number,
    next_close,
    next_open,
    quiet_hours,
    recipient_zones,
    region_for_number,
    start_of_next_day,
    zones_for_country,
    zones_for_number,
)

NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
CALLS: Windows = (Window("11:00", "17:00", WEEKDAYS),)
NY_NUMBER = "+12125550100"
IDAHO_NUMBER = "+12085550100"  # area code 208: Mountain and Pacific time
TOLL_FREE = "+18005550100"  # every zone of the North American plan


def at(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)  # type: ignore[misc]


def wall(*args: int) -> datetime:
    """A wall-clock reading: no zone, by design."""
    return datetime(*args)  # type: ignore[misc]  # noqa: DTZ001


# --- windows -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"),
    [("24:00", "05:00"), ("9:00", "17:00"), ("11:00", "11:00"), ("10:60", "11:00"), ("", "x")],
)
def test_rejects_malformed_windows(start: str, end: str) -> None:
    with pytest.raises(ValueError, match=r"time|window|24:00"):
        Window(start, end)


def test_rejects_unknown_weekdays() -> None:
    with pytest.raises(ValueError, match="weekdays"):
        Window("09:00", "17:00", frozenset({7}))


def test_window_is_half_open() -> None:
    window = Window("11:00", "17:00", WEEKDAYS)
    monday = wall(2025, 6, 2, 0, 0)
    assert not window.covers(monday.replace(hour=10, minute=59, second=59))
    assert window.covers(monday.replace(hour=11))
    assert window.covers(monday.replace(hour=16, minute=59, second=59))
    assert not window.covers(monday.replace(hour=17))
    assert not window.covers(wall(2025, 6, 7, 12))  # Saturday


def test_window_crossing_midnight_belongs_to_the_day_it_opens() -> None:
    friday_night = Window("22:00", "02:00", frozenset({4}))
    assert friday_night.crosses_midnight
    assert friday_night.covers(wall(2025, 6, 6, 22, 0))  # Friday
    assert friday_night.covers(wall(2025, 6, 7, 1, 59))  # Saturday morning
    assert not friday_night.covers(wall(2025, 6, 7, 2, 0))
    assert not friday_night.covers(wall(2025, 6, 7, 22, 0))  # Saturday night
    assert not friday_night.covers(wall(2025, 6, 6, 1, 0))  # Friday morning: Thursday's


def test_quiet_hours_are_the_complement() -> None:
    assert quiet_hours("21:00", "08:00") == (Window("08:00", "21:00", EVERY_DAY),)
    assert quiet_hours("00:00", "08:00") == (Window("08:00", "24:00", EVERY_DAY),)
    assert quiet_hours("22:00", "24:00") == (Window("00:00", "22:00", EVERY_DAY),)


def test_quiet_hours_inside_a_day_leave_a_window_across_midnight() -> None:
    (window,) = quiet_hours("01:00", "03:00")
    assert window.crosses_midnight
    assert window.covers(wall(2025, 6, 2, 0, 30))
    assert window.covers(wall(2025, 6, 2, 23, 59))
    assert not window.covers(wall(2025, 6, 2, 2, 0))
    assert window.covers(wall(2025, 6, 2, 3, 0))


def test_descriptions_read_like_a_sign_on_a_door() -> None:
    assert describe_days(WEEKDAYS) == "Mon–Fri"
    assert describe_days(EVERY_DAY) == "every day"
    assert describe_days({0, 2, 5, 6}) == "Mon, Wed, Sat, Sun"
    assert describe_windows(CALLS) == "Mon–Fri 11:00–17:00"
    assert describe_windows(quiet_hours("01:00", "03:00")) == "every day 03:00–01:00 (next day)"
    assert describe_windows(()) == "never"


# --- zones ---------------------------------------------------------------------------------


def test_lead_zone_wins() -> None:
    found = recipient_zones(lead_zone="Europe/Berlin", number=NY_NUMBER, country="US")
    assert found.zones == ("Europe/Berlin",)
    assert found.source is ZoneSource.LEAD


def test_unknown_lead_zone_falls_back_to_the_number_and_says_so() -> None:
    found = recipient_zones(lead_zone="Mars/Olympus", number=NY_NUMBER, country=None)
    assert found.zones == ("America/New_York",)
    assert found.source is ZoneSource.NUMBER
    assert found.notes == ("the lead's time zone 'Mars/Olympus' is not an IANA zone",)


def test_number_spanning_several_zones_keeps_them_all() -> None:
    found = recipient_zones(lead_zone=None, number=IDAHO_NUMBER, country=None)
    assert found.zones == ("America/Boise", "America/Los_Angeles")
    assert found.source is ZoneSource.NUMBER
    assert "any of 2 zones" in found.describe()


def test_national_number_is_read_with_the_country() -> None:
    found = recipient_zones(lead_zone=None, number="03-1234-5678", country="jp")
    assert found.zones == ("Asia/Tokyo",)


def test_country_with_one_zone_is_the_last_resort() -> None:
    found = recipient_zones(lead_zone=None, number="+999", country="FR")
    assert found.zones == ("Europe/Paris",)
    assert found.source is ZoneSource.COUNTRY
    assert found.notes == ("the number maps to no time zone",)


@pytest.mark.parametrize(
    ("country", "note"),
    [
        ("ES", "country ES spans 2 time zones"),
        ("GB", "no single time zone is known for country GB"),  # +44 is shared with GG, IM, JE
        ("USA", "'USA' is not an ISO 3166 alpha-2 country code"),
    ],
)
def test_nothing_is_guessed(country: str, note: str) -> None:
    found = recipient_zones(lead_zone=None, number=None, country=country)
    assert not found.known
    assert found.source is ZoneSource.UNKNOWN
    assert found.notes == (note,)
    assert found.describe() == "time zone unknown"


def test_zones_for_country_and_number() -> None:
    assert zones_for_country("JP") == ("Asia/Tokyo",)
    assert zones_for_country("US") == ()  # +1 is shared by two dozen countries
    assert zones_for_country("ZZ") == ()
    assert zones_for_number("not a number") == ()
    assert len(zones_for_number(TOLL_FREE)) > 30


def test_region_and_mask_of_a_number() -> None:
    assert region_for_number("+81312345678") == "JP"
    assert region_for_number("+999") is None
    assert mask_number(NY_NUMBER) == "+1…00"
    assert mask_number("12") == "a number"
    assert "5550100" not in mask_number(NY_NUMBER)


# --- open or not ---------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "name"), [(NEW_YORK, "America/New_York"), (TOKYO, "Asia/Tokyo")])
@pytest.mark.parametrize(
    ("day", "hour", "minute", "expected"),
    [
        (2, 10, 59, False),  # Monday
        (2, 11, 0, True),
        (2, 16, 59, True),
        (2, 17, 0, False),
        (7, 10, 59, False),  # Saturday
        (7, 11, 0, False),
        (7, 16, 59, False),
        (7, 17, 0, False),
    ],
)
def test_call_window_edges(
    zone: ZoneInfo, name: str, day: int, hour: int, minute: int, expected: bool
) -> None:
    instant = at(zone, 2025, 6, day, hour, minute)
    assert is_open(CALLS, [name], instant) is expected
    assert is_open(CALLS, [name], instant.astimezone(UTC)) is expected


@pytest.mark.parametrize(("zone", "name"), [(NEW_YORK, "America/New_York"), (TOKYO, "Asia/Tokyo")])
@pytest.mark.parametrize(
    ("local", "opens"),
    [
        ((2025, 6, 2, 10, 59), (2025, 6, 2, 11, 0)),  # Monday morning: in a minute
        ((2025, 6, 2, 17, 0), (2025, 6, 3, 11, 0)),  # Monday evening: Tuesday
        ((2025, 6, 6, 17, 0), (2025, 6, 9, 11, 0)),  # Friday evening: Monday
        ((2025, 6, 7, 11, 0), (2025, 6, 9, 11, 0)),  # Saturday: Monday
    ],
)
def test_next_call_opening(
    zone: ZoneInfo, name: str, local: tuple[int, ...], opens: tuple[int, ...]
) -> None:
    found = next_open(CALLS, [name], at(zone, *local))
    assert found == at(zone, *opens)
    assert found is not None
    assert found.utcoffset() == timedelta(0)


def test_open_now_returns_now() -> None:
    now = at(NEW_YORK, 2025, 6, 2, 12, 0)
    assert next_open(CALLS, ["America/New_York"], now) is now


def test_spring_forward_weekend_opens_at_the_new_offset() -> None:
    # Clocks go forward on Sunday 9 March 2025 in New York: Monday 11:00 is EDT (UTC-4).
    saturday = at(NEW_YORK, 2025, 3, 8, 16, 0)
    assert next_open(CALLS, ["America/New_York"], saturday) == datetime(
        2025, 3, 10, 15, 0, tzinfo=UTC
    )


def test_fall_back_weekend_opens_at_the_new_offset() -> None:
    # Clocks go back on Sunday 2 November 2025: Monday 11:00 is EST (UTC-5).
    friday = at(NEW_YORK, 2025, 10, 31, 17, 0)
    assert next_open(CALLS, ["America/New_York"], friday) == datetime(
        2025, 11, 3, 16, 0, tzinfo=UTC
    )


def test_messages_on_the_spring_forward_morning() -> None:
    sms = quiet_hours("21:00", "08:00")
    before_jump = datetime(2025, 3, 9, 6, 30, tzinfo=UTC)  # 01:30 EST
    assert next_open(sms, ["America/New_York"], before_jump) == datetime(
        2025, 3, 9, 12, 0, tzinfo=UTC
    )  # 08:00 EDT


def test_window_starting_inside_the_gap_opens_at_the_jump() -> None:
    night = (Window("02:30", "05:00"),)
    found = next_open(night, ["America/New_York"], datetime(2025, 3, 9, 6, 0, tzinfo=UTC))
    assert found == datetime(2025, 3, 9, 7, 0, tzinfo=UTC)  # 02:00 EST becomes 03:00 EDT


def test_repeated_hour_reopens_a_window() -> None:
    early = (Window("00:00", "01:30"),)
    first_0130 = datetime(2025, 11, 2, 5, 30, tzinfo=UTC)  # 01:30 EDT: closed
    assert not is_open(early, ["America/New_York"], first_0130)
    # At 06:00 UTC the clock falls back to 01:00 EST: inside the window again.
    assert next_open(early, ["America/New_York"], first_0130) == datetime(
        2025, 11, 2, 6, 0, tzinfo=UTC
    )


def test_several_zones_must_all_be_open() -> None:
    zones = ["America/Boise", "America/Los_Angeles"]
    monday = datetime(2025, 6, 2, 17, 30, tzinfo=UTC)  # 11:30 in Boise, 10:30 in Los Angeles
    assert closed_in(CALLS, zones, monday) == ["America/Los_Angeles"]
    assert next_open(CALLS, zones, monday) == datetime(2025, 6, 2, 18, 0, tzinfo=UTC)
    late = datetime(2025, 6, 2, 23, 0, tzinfo=UTC)  # 17:00 in Boise, 16:00 in Los Angeles
    assert closed_in(CALLS, zones, late) == ["America/Boise"]


def test_zones_whose_windows_never_overlap_never_open() -> None:
    zones = zones_for_number(TOLL_FREE)  # from Guam to Newfoundland
    assert next_open(CALLS, zones, datetime(2025, 6, 2, 12, 0, tzinfo=UTC)) is None


def test_no_window_or_no_zone_never_opens() -> None:
    now = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
    assert next_open((), ["UTC"], now) is None
    assert next_open(CALLS, [], now) is None


# --- when the window closes ---------------------------------------------------------------


def test_calls_close_at_five_on_the_recipients_clock() -> None:
    opened = at(NEW_YORK, 2025, 6, 2, 11, 0)
    assert next_close(CALLS, ["America/New_York"], opened) == datetime(
        2025, 6, 2, 21, 0, tzinfo=UTC
    )


def test_a_window_across_midnight_closes_the_next_morning() -> None:
    night = (Window("22:00", "06:00", frozenset({4})),)  # Friday night
    opened = at(TOKYO, 2025, 6, 6, 23, 0)
    assert next_close(night, ["Asia/Tokyo"], opened) == at(TOKYO, 2025, 6, 7, 6, 0)


def test_back_to_back_windows_are_one_span() -> None:
    split = (Window("11:00", "13:00", WEEKDAYS), Window("13:00", "17:00", WEEKDAYS))
    opened = at(NEW_YORK, 2025, 6, 2, 12, 0)
    assert next_close(split, ["America/New_York"], opened) == at(NEW_YORK, 2025, 6, 2, 17, 0)


def test_several_zones_close_with_the_first_to_close() -> None:
    zones = ["America/Boise", "America/Los_Angeles"]
    opened = datetime(2025, 6, 2, 18, 0, tzinfo=UTC)  # 11:00 in Los Angeles, 12:00 in Boise
    assert next_close(CALLS, zones, opened) == datetime(2025, 6, 2, 23, 0, tzinfo=UTC)


def test_a_window_open_around_the_clock_never_closes_within_the_span() -> None:
    always = (Window("00:00", "24:00"),)
    now = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
    assert next_close(always, ["Europe/Paris"], now) is None


def test_refuses_naive_instants_and_unknown_zones() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_open(CALLS, ["UTC"], datetime(2025, 6, 2, 12, 0))  # noqa: DTZ001
    with pytest.raises(ValueError, match="unknown time zone"):
        is_open(CALLS, ["Mars/Olympus"], datetime(2025, 6, 2, 12, 0, tzinfo=UTC))
    with pytest.raises(ValueError, match="unknown time zone"):
        start_of_next_day("Mars/Olympus", datetime(2025, 6, 2, 12, 0, tzinfo=UTC))


def test_local_reading() -> None:
    assert local_reading(datetime(2025, 6, 7, 3, 0, tzinfo=UTC), "Asia/Tokyo") == "Saturday 12:00"


# --- days ----------------------------------------------------------------------------------


def test_start_of_next_day() -> None:
    now = datetime(2025, 6, 2, 23, 30, tzinfo=UTC)
    assert start_of_next_day("UTC", now) == datetime(2025, 6, 3, tzinfo=UTC)
    assert start_of_next_day("Europe/Paris", now) == datetime(2025, 6, 3, 22, 0, tzinfo=UTC)
    # On the day the clocks go forward the next midnight is still at the old offset.
    assert start_of_next_day("America/New_York", at(NEW_YORK, 2025, 3, 9, 12, 0)) == datetime(
        2025, 3, 10, 4, 0, tzinfo=UTC
    )


def test_start_of_next_day_when_midnight_never_shows() -> None:
    # Santiago moves from 24:00 straight to 01:00 on Sunday 7 September 2025.
    saturday = datetime(2025, 9, 6, 12, 0, tzinfo=UTC)
    start = start_of_next_day("America/Santiago", saturday)
    assert start == datetime(2025, 9, 7, 4, 0, tzinfo=UTC)
    assert start.astimezone(ZoneInfo("America/Santiago")).hour == 1


def test_first_instant_of_a_repeated_time_is_its_first_occurrence() -> None:
    repeated = wall(2025, 11, 2, 1, 30)  # happens at 05:30 and 06:30 UTC
    assert first_instant_at_or_after(NEW_YORK, repeated) == datetime(2025, 11, 2, 5, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        first_instant_at_or_after(NEW_YORK, repeated.replace(tzinfo=UTC))


# --- properties ----------------------------------------------------------------------------

ZONES = [
    "America/New_York",
    "America/Los_Angeles",
    "America/Boise",
    "America/Santiago",
    "Europe/London",
    "Europe/Paris",
    "Asia/Tokyo",
    "Australia/Lord_Howe",  # a half-hour DST shift
    "Asia/Kolkata",
]
times = st.sampled_from(["00:00", "02:30", "07:45", "08:00", "11:00", "17:00", "21:00", "23:30"])
windows_strategy = st.lists(
    st.tuples(
        times,
        st.sampled_from(["01:00", "03:00", "12:00", "17:00", "21:00", "24:00"]),
        st.frozensets(st.integers(0, 6), min_size=1),
    )
    .filter(lambda t: t[0] != t[1])
    .map(lambda t: Window(*t)),
    min_size=1,
    max_size=3,
).map(tuple)
instants = st.datetimes(
    min_value=datetime(2024, 1, 1),  # noqa: DTZ001
    max_value=datetime(2027, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


def _first_open_minute(
    windows: Windows, zones: list[str], now: datetime, until: datetime
) -> datetime | None:
    """Brute force: every switch-on in these zones and windows falls on a whole minute."""
    if is_open(windows, zones, now):
        return now
    probe = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while probe <= until:
        if is_open(windows, zones, probe):
            return probe
        probe += timedelta(minutes=1)
    return None


@settings(max_examples=40, deadline=None)
@given(
    windows=windows_strategy,
    zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=2, unique=True),
    now=instants,
)
def test_next_open_is_the_first_open_instant(
    windows: Windows, zones: list[str], now: datetime
) -> None:
    found = next_open(windows, zones, now, within=timedelta(days=3))
    expected = _first_open_minute(windows, zones, now, now + timedelta(days=3))
    assert found == expected
    if found is not None:
        assert found >= now
        assert is_open(windows, zones, found)


@given(zone=st.sampled_from(ZONES), now=instants)
def test_next_day_starts_after_now_on_a_new_date(zone: str, now: datetime) -> None:
    start = start_of_next_day(zone, now)
    assert start > now
    local = ZoneInfo(zone)
    assert start.astimezone(local).date() > now.astimezone(local).date()
    assert (start - timedelta(seconds=1)).astimezone(local).date() == now.astimezone(local).date()


@settings(max_examples=40, deadline=None)
@given(
    windows=windows_strategy,
    zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=2, unique=True),
    now=instants,
)
def test_next_close_ends_the_span_next_open_starts(
    windows: Windows, zones: list[str], now: datetime
) -> None:
    start = next_open(windows, zones, now, within=timedelta(days=3))
    if start is None:
        return
    end = next_close(windows, zones, start, within=timedelta(days=2))
    until = end or start + timedelta(days=2)
    assert until > start
    # Open all along (probed every 10 minutes and just before the end), closed at the end.
    probe = start
    while probe < until:
        assert is_open(windows, zones, probe)
        probe += timedelta(minutes=10)
    assert is_open(windows, zones, until - timedelta(seconds=1))
    if end is not None:
        assert not is_open(windows, zones, end)
