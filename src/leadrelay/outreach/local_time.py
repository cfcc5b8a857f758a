"""The recipient's wall clock: which time zones a recipient may be in, and when a window opens.

Pure: no database, no clock, no network. The zone data is the IANA database (`zoneinfo`) and
the prefix → zone table shipped inside `phonenumbers`, both pinned by the lock file, so the
same inputs give the same answer on every machine.

Windows are read on the recipient's wall clock: "calls 11:00–17:00" means 11:00 as the clock on
the recipient's wall shows it, whatever the UTC offset that day. On a spring-forward day a
wall time inside the gap never shows, so a window starting there opens at the jump; on a
fall-back day the repeated hour is read twice, so a window can close and open again.

When a recipient may be in several zones (a number whose prefix spans two zones), the most
restrictive reading applies: a window is open only when it is open in every one of them. We
would rather call a little later than wake someone up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone
from phonenumbers.tzdata import TIMEZONE_DATA

EVERY_DAY: frozenset[int] = frozenset(range(7))
WEEKDAYS: frozenset[int] = frozenset(range(5))  # Monday (0) to Friday (4)
DAY_NAMES: tuple[str, ...] = (
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
)
# How far ahead `next_open` looks. A weekly window with at least one day opens within a week
# in one zone; two weeks leave room for an intersection of zones that a DST change opens.
SEARCH_HORIZON = timedelta(days=14)

_DAY_SHORT: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_SECONDS = 24 * 3600
_TIME = re.compile(r"[0-9]{2}:[0-9]{2}")
_COUNTRY = re.compile(r"[A-Z]{2}")
# A zone's offset changes at most once between two samples this far apart (real transitions
# are months apart), so sampling at this step and bisecting finds every transition.
_TRANSITION_STEP = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class Window:
    """Hours when a channel may reach a recipient, on the recipient's wall clock.

    Open from `start` (included) to `end` (excluded), both "HH:MM", on each weekday in `days`
    (Monday = 0); `end` may be "24:00". When `end` is not after `start` the window crosses
    midnight: it opens on a listed day and closes on the next one ("22:00"–"06:00" on Friday
    runs into Saturday morning)."""

    start: str
    end: str
    days: frozenset[int] = EVERY_DAY
    start_second: int = field(init=False, repr=False, compare=False)
    end_second: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        start = _parse_time(self.start, end=False)
        end = _parse_time(self.end, end=True)
        if start == end:
            # Ambiguous (empty, or the whole day?): "00:00"–"24:00" says the whole day.
            raise ValueError(f"window {self.start}–{self.end} is ambiguous; write 00:00–24:00")
        days = frozenset(self.days)
        if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in days):
            raise ValueError("window days are weekdays 0 (Monday) to 6 (Sunday)")
        object.__setattr__(self, "days", days)
        object.__setattr__(self, "start_second", start)
        object.__setattr__(self, "end_second", end)

    @property
    def crosses_midnight(self) -> bool:
        return self.end_second <= self.start_second

    def covers(self, local: datetime) -> bool:
        """Whether a wall-clock reading (already in the recipient's zone) falls inside."""
        second = local.hour * 3600 + local.minute * 60 + local.second
        weekday = local.weekday()
        if not self.crosses_midnight:
            return weekday in self.days and self.start_second <= second < self.end_second
        if weekday in self.days and second >= self.start_second:
            return True
        return (weekday - 1) % 7 in self.days and second < self.end_second

    def describe(self) -> str:
        hours = f"{self.start}–{self.end}"
        if self.crosses_midnight:
            hours += " (next day)"
        return f"{describe_days(self.days)} {hours}"


Windows = tuple[Window, ...]


def quiet_hours(start: str, end: str) -> Windows:
    """The window outside quiet hours, every day: quiet 21:00–08:00 sends 08:00–21:00."""
    open_start = "00:00" if end == "24:00" else end
    open_end = "24:00" if start == "00:00" else start
    return (Window(open_start, open_end, EVERY_DAY),)


def describe_days(days: Iterable[int]) -> str:
    chosen = sorted(set(days))
    if len(chosen) == 7:
        return "every day"
    if not chosen:
        return "no day"
    runs: list[list[int]] = []
    for day in chosen:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts: list[str] = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{_DAY_SHORT[run[0]]}–{_DAY_SHORT[run[-1]]}")
        else:
            parts.extend(_DAY_SHORT[d] for d in run)
    return ", ".join(parts)


def describe_windows(windows: Windows) -> str:
    if not windows:
        return "never"
    return "; ".join(w.describe() for w in windows)


# --- which zones ---------------------------------------------------------------------------


class ZoneSource(StrEnum):
    LEAD = "lead"
    NUMBER = "number"
    COUNTRY = "country"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class RecipientZones:
    """The zones a recipient may be in (all of them must allow a send), and where they came
    from; `notes` say why a likelier source was passed over. No note holds the number."""

    zones: tuple[str, ...]
    source: ZoneSource
    notes: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        return bool(self.zones)

    def describe(self, *, number: str | None = None) -> str:
        """For a trace; `number` is how to show the number (masked), if it was used."""
        if not self.zones:
            return "time zone unknown"
        origin = f"from the {self.source.value}"
        if self.source is ZoneSource.NUMBER and number:
            origin += f" {number}"
        if len(self.zones) == 1:
            return f"{self.zones[0]} ({origin})"
        listed = ", ".join(self.zones[:5])
        if len(self.zones) > 5:
            listed += f", … {len(self.zones) - 5} more"
        return f"any of {len(self.zones)} zones ({listed}; {origin})"


def recipient_zones(
    *, lead_zone: str | None, number: str | None, country: str | None
) -> RecipientZones:
    """Where the recipient's clock is: the lead's own zone when it is a known IANA name; else
    the zones `phonenumbers` gives for the number (several zones are all kept, and a window
    must be open in every one of them); else the country's zone when the country has exactly
    one. Nothing is guessed: when all three fail the result has no zone."""
    notes: list[str] = []
    if lead_zone is not None and lead_zone.strip():
        name = lead_zone.strip()
        if load_zone(name) is not None:
            return RecipientZones((name,), ZoneSource.LEAD)
        notes.append(f"the lead's time zone {name[:64]!r} is not an IANA zone")
    region = normalize_country(country)
    if number is not None and number.strip():
        zones = zones_for_number(number, region)
        if zones:
            return RecipientZones(zones, ZoneSource.NUMBER, tuple(notes))
        notes.append("the number maps to no time zone")
    if region is not None:
        zones = zones_for_country(region)
        if len(zones) == 1:
            return RecipientZones(zones, ZoneSource.COUNTRY, tuple(notes))
        if zones:
            notes.append(f"country {region} spans {len(zones)} time zones")
        else:
            notes.append(f"no single time zone is known for country {region}")
    elif country is not None and country.strip():
        notes.append(f"{country.strip()[:8]!r} is not an ISO 3166 alpha-2 country code")
    return RecipientZones((), ZoneSource.UNKNOWN, tuple(notes))


def zones_for_number(number: str, region: str | None = None) -> tuple[str, ...]:
    """The IANA zones `phonenumbers` lists for a number (its prefix, or its whole country for
    a mobile or toll-free number), sorted; () when it cannot tell."""
    parsed = _parse_number(number, region)
    if parsed is None:
        return ()
    found = phone_timezone.time_zones_for_number(parsed)
    return tuple(
        sorted(
            z for z in found if z != phone_timezone.UNKNOWN_TIMEZONE and load_zone(z) is not None
        )
    )


def zones_for_country(country: str) -> tuple[str, ...]:
    """The zones `phonenumbers` lists for the country's calling code, when that code serves
    this country alone (+33 is France); () when the code is shared (+1, +7, +44: the table
    cannot say which of its zones belong to which country) or the country is unknown."""
    region = normalize_country(country)
    if region is None:
        return ()
    code = phonenumbers.country_code_for_region(region)
    if not code or tuple(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())) != (region,):
        return ()
    zones = TIMEZONE_DATA.get(str(code), ())
    return tuple(sorted(z for z in zones if load_zone(z) is not None))


def region_for_number(number: str, region: str | None = None) -> str | None:
    """The ISO 3166 alpha-2 country of a valid number, or None (invalid, non-geographic)."""
    parsed = _parse_number(number, region)
    if parsed is None or not phonenumbers.is_valid_number(parsed):
        return None
    found = phonenumbers.region_code_for_number(parsed)
    return found if found is not None and _COUNTRY.fullmatch(found) else None


def mask_number(number: str) -> str:
    """A number as a trace may show it: calling code and the last two digits ("+1…00")."""
    digits = "".join(c for c in number if c.isdigit())
    parsed = _parse_number(number, None)
    prefix = f"+{parsed.country_code}" if parsed is not None else ""
    if len(digits) < 6:
        return f"{prefix}…" if prefix else "a number"
    return f"{prefix}…{digits[-2:]}"


def normalize_country(country: str | None) -> str | None:
    if country is None:
        return None
    code = country.strip().upper()
    return code if _COUNTRY.fullmatch(code) else None


@lru_cache(maxsize=1024)
def load_zone(name: str) -> ZoneInfo | None:
    if not name or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: a path-like or malformed key; OSError: a directory such as "America".
        return None


# --- when ----------------------------------------------------------------------------------


def is_open(windows: Windows, zones: Sequence[str], instant: datetime) -> bool:
    """Whether some window covers `instant` on the wall clock of every zone."""
    return not closed_in(windows, zones, instant)


def closed_in(windows: Windows, zones: Sequence[str], instant: datetime) -> list[str]:
    """The zones (in the order given) where no window covers `instant`."""
    _require_aware(instant)
    loaded = _load_all(zones)
    return [
        name
        for name, zone in zip(zones, loaded, strict=True)
        if not _covered(windows, instant.astimezone(zone))
    ]


def next_open(
    windows: Windows,
    zones: Sequence[str],
    now: datetime,
    *,
    within: timedelta = SEARCH_HORIZON,
) -> datetime | None:
    """The first instant at or after `now` when the windows are open in every zone: `now`
    itself when they already are, else an instant in UTC; None when they do not open within
    `within` (no window, no zone, or zones whose windows never overlap)."""
    _require_aware(now)
    loaded = _load_all(zones)
    if not windows or not loaded:
        return None
    if _open_everywhere(windows, loaded, now):
        return now
    until = now + within
    # The conjunction can only turn open when one zone turns open, and a zone turns open
    # either when its clock reaches a window's start or when its clock jumps (DST). Those
    # instants are the only candidates; the first one open everywhere is the answer.
    candidates: set[datetime] = set()
    for zone in loaded:
        candidates.update(_window_starts(windows, zone, now, until))
        candidates.update(_transitions(zone, now, until))
    for candidate in sorted(c for c in candidates if now < c <= until):
        if _open_everywhere(windows, loaded, candidate):
            return candidate
    return None


def next_close(
    windows: Windows,
    zones: Sequence[str],
    opened: datetime,
    *,
    within: timedelta = timedelta(days=1),
) -> datetime | None:
    """The first instant after `opened` (an instant the windows are open in every zone) when
    they are no longer open in one of them, in UTC; None when they stay open for `within`
    (a window open all day, every day)."""
    _require_aware(opened)
    loaded = _load_all(zones)
    until = opened + within
    # Mirror of `next_open`: the conjunction can only turn closed when one zone's clock reaches
    # a window's end or jumps.
    candidates: set[datetime] = set()
    for zone in loaded:
        candidates.update(_window_ends(windows, zone, opened, until))
        candidates.update(_transitions(zone, opened, until))
    for candidate in sorted(c for c in candidates if opened < c <= until):
        if not _open_everywhere(windows, loaded, candidate):
            return candidate
    return None


def start_of_next_day(zone_name: str, now: datetime) -> datetime:
    """The first instant (UTC) of the day after `now`'s day in the zone: usually midnight,
    the end of the jump where a zone moves its clocks at midnight."""
    _require_aware(now)
    zone = load_zone(zone_name)
    if zone is None:
        raise ValueError(f"unknown time zone {zone_name!r}")
    tomorrow = now.astimezone(zone).date() + timedelta(days=1)
    return first_instant_at_or_after(zone, datetime.combine(tomorrow, time(0)))


def first_instant_at_or_after(zone: ZoneInfo, wall: datetime) -> datetime:
    """The first instant (UTC) whose wall-clock reading in `zone` is `wall` or later: the
    first occurrence of a repeated time, the end of the jump for a time that never shows."""
    if wall.tzinfo is not None:
        raise ValueError("wall is a naive wall-clock reading")
    wall = wall.replace(fold=0)
    first = wall.replace(tzinfo=zone).astimezone(UTC)
    if _wall(first, zone) == wall:
        return first
    # A time in a gap: with fold=0 it is read with the offset before the jump (an instant
    # after it), with fold=1 with the offset after (an instant before it). Transitions fall
    # on whole seconds, so bisecting seconds finds the jump exactly.
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), zone) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def local_reading(instant: datetime, zone_name: str) -> str:
    """The reading of the zone's wall clock at an instant ("Monday 10:59"), for a trace."""
    zone = load_zone(zone_name)
    if zone is None:
        raise ValueError(f"unknown time zone {zone_name!r}")
    local = instant.astimezone(zone)
    return f"{DAY_NAMES[local.weekday()]} {local:%H:%M}"


# --- helpers -------------------------------------------------------------------------------


def _parse_time(value: str, *, end: bool) -> int:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise ValueError(f"bad time {value!r} (use HH:MM, from 00:00 to 24:00)")
    if value == "24:00":
        if not end:
            raise ValueError("24:00 can only end a window")
        return _DAY_SECONDS
    hours, minutes = int(value[:2]), int(value[3:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"bad time {value!r} (use HH:MM, from 00:00 to 24:00)")
    return hours * 3600 + minutes * 60


def _parse_number(number: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None


def _require_aware(instant: datetime) -> None:
    if instant.utcoffset() is None:
        raise ValueError("instants must be timezone-aware")


def _load_all(zones: Sequence[str]) -> list[ZoneInfo]:
    loaded: list[ZoneInfo] = []
    for name in zones:
        zone = load_zone(name)
        if zone is None:
            raise ValueError(f"unknown time zone {name!r}")
        loaded.append(zone)
    return loaded


def _covered(windows: Windows, local: datetime) -> bool:
    return any(w.covers(local) for w in windows)


def _open_everywhere(windows: Windows, zones: Sequence[ZoneInfo], instant: datetime) -> bool:
    return all(_covered(windows, instant.astimezone(zone)) for zone in zones)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _window_starts(
    windows: Windows, zone: ZoneInfo, now: datetime, until: datetime
) -> Iterable[datetime]:
    """Every instant in the span when the zone's clock shows a window's start on one of its
    days: the first occurrence (or the jump over it) and, on a fall-back day, the second."""
    for day in _local_days(zone, now, until):
        for window in windows:
            if day.weekday() in window.days:
                midnight = datetime.combine(day, time())
                yield from _instants_of(zone, midnight + timedelta(seconds=window.start_second))


def _window_ends(
    windows: Windows, zone: ZoneInfo, now: datetime, until: datetime
) -> Iterable[datetime]:
    """Every instant in the span when the zone's clock shows a window's end: on its day, or on
    the next one for a window that crosses midnight."""
    for day in _local_days(zone, now, until):
        for window in windows:
            if day.weekday() in window.days:
                midnight = datetime.combine(day, time())
                if window.crosses_midnight:
                    midnight += timedelta(days=1)
                yield from _instants_of(zone, midnight + timedelta(seconds=window.end_second))


def _local_days(zone: ZoneInfo, now: datetime, until: datetime) -> Iterable[date]:
    """The zone's dates from the day before `now` (a window opened then may still run) to
    `until`."""
    day: date = now.astimezone(zone).date() - timedelta(days=1)
    last_day: date = until.astimezone(zone).date()
    while day <= last_day:
        yield day
        day += timedelta(days=1)


def _instants_of(zone: ZoneInfo, wall: datetime) -> Iterable[datetime]:
    """When the zone's clock shows `wall`: the first occurrence (or the jump over it) and, on a
    fall-back day, the second."""
    yield first_instant_at_or_after(zone, wall)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if _wall(second, zone) == wall:
        yield second


def _transitions(zone: ZoneInfo, now: datetime, until: datetime) -> Iterable[datetime]:
    """The instants in the span when the zone's UTC offset (and so its clock) jumps."""
    start = datetime.fromtimestamp(int(now.timestamp()), UTC)
    previous = start.astimezone(zone).utcoffset()
    probe = start
    while probe < until:
        following = min(probe + _TRANSITION_STEP, until)
        offset = following.astimezone(zone).utcoffset()
        if offset != previous:
            low, high = int(probe.timestamp()), int(following.timestamp()) + 1
            while high - low > 1:
                middle = (low + high) // 2
                if datetime.fromtimestamp(middle, zone).utcoffset() == previous:
                    low = middle
                else:
                    high = middle
            yield datetime.fromtimestamp(high, UTC)
            previous = offset
        probe = following
