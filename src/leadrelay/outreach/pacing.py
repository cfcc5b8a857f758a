"""A campaign's calls spread across the call window instead of all leaving at the run's moment.

Pure, like the guard: no database, no clock. Each call's span is the part of its recipient's
call window still ahead: the rest of today's window when it is open or yet to open, else the
whole window of the next day it opens (a weekend skipped). The window, the zones and the
country are read exactly as the guard reads them (`policy.windows_for`, `policy.zones_of`), so
a span is open for the guard in every zone the recipient may be in.

Calls that share a span (recipients on the same clock) are spaced evenly across it in queue
order: the first at its start, the next ones each `span / n` later, none at its end. Calls
on one clock are at least `MIN_GAP` apart: when what is left of today's window is too short
for them (a run at 16:59), the spread goes on into the next openings, so the calls do not
crowd into the window's last minute. The same calls, order and instant always give the same
times. Each call then waits for its time as a deferred message (`Check.SCHEDULE`) and meets
the whole guard again when it comes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from leadrelay.drafting.evidence import Channel
from leadrelay.outreach import policy as guard
from leadrelay.outreach.local_time import Windows, next_close, next_open

# A window open around the clock has no end to spread up to: its calls are spread over a day.
LONGEST_SPAN = timedelta(days=1)
# The least open time a call on one clock gets before the next: a person places a call, talks,
# notes it down. The openings a spread may take run at most this far ahead.
MIN_GAP = timedelta(minutes=2)
HORIZON = timedelta(days=14)


@dataclass(frozen=True, slots=True)
class Span:
    """An interval [start, end) when the recipient's call window is open in every zone."""

    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Spread:
    """The openings a clock's calls share, in order: what is left of the first, then as many
    of the next as give each call `MIN_GAP` of open time."""

    spans: tuple[Span, ...]

    def at(self, position: int, count: int) -> datetime:
        """The `position`-th of `count` instants evenly spaced over the openings' open time
        (the time between them skipped), to the second."""
        offset = sum((s.end - s.start).total_seconds() for s in self.spans) * position // count
        for span in self.spans:
            length = (span.end - span.start).total_seconds()
            if offset < length:
                return span.start + timedelta(seconds=offset)
            offset -= length
        return self.spans[-1].end  # not reached: position < count


def call_span(call: guard.OutboundMessage, policy: guard.Policy, now: datetime) -> Span | None:
    """The part of the call window ahead of the recipient at `now`; None when there is nothing
    to spread across (no window, an unknown zone, a window that never opens): the guard
    decides those calls as it would any other."""
    clock = _clock(call, policy)
    return _span(*clock, now) if clock else None


def spread_calls(
    calls: Sequence[guard.OutboundMessage], policy: guard.Policy, now: datetime
) -> list[datetime | None]:
    """When each call (in queue order) is to be handed over: evenly spaced across the openings
    it shares with the others on the same clock; None for a call with no span."""
    # Recipients share a handful of clocks: each clock's openings are worked out once.
    clocks = [_clock(call, policy) for call in calls]
    sharing = Counter(clock for clock in clocks if clock is not None)
    spreads = {clock: _spread(*clock, now, calls=n) for clock, n in sharing.items()}
    placed: Counter[tuple[Windows, tuple[str, ...]]] = Counter()
    slots: list[datetime | None] = []
    for clock in clocks:
        spread = spreads[clock] if clock is not None else None
        if clock is None or spread is None:
            slots.append(None)
            continue
        slots.append(spread.at(placed[clock], sharing[clock]))
        placed[clock] += 1
    return slots


def _spread(
    windows: Windows, zones: tuple[str, ...], now: datetime, *, calls: int
) -> Spread | None:
    first = _span(windows, zones, now)
    if first is None:
        return None
    spans = [first]
    open_time = first.end - first.start
    while open_time < MIN_GAP * calls and spans[-1].end - now < HORIZON:
        following = _span(windows, zones, spans[-1].end)
        if following is None or following.start < spans[-1].end:
            break
        spans.append(following)
        open_time += following.end - following.start
    return Spread(tuple(spans))


def _clock(
    call: guard.OutboundMessage, policy: guard.Policy
) -> tuple[Windows, tuple[str, ...]] | None:
    """The call window that applies to the recipient and the zones their clock may be in, as
    the guard reads them; None when either is missing."""
    country = guard.recipient_country(call)
    windows, _ = policy.windows_for(Channel.VOICE, country)
    zones = guard.zones_of(call, country)
    if not windows or not zones.known:
        return None
    return windows, zones.zones


def _span(windows: Windows, zones: tuple[str, ...], now: datetime) -> Span | None:
    start = next_open(windows, zones, now)
    if start is None:
        return None
    end = next_close(windows, zones, start, within=LONGEST_SPAN)
    return Span(start, end or start + LONGEST_SPAN)
