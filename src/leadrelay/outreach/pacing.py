"""A campaign's calls spread across the call window instead of all leaving at the run's moment.

Pure, like the guard: no database, no clock. Each call's span is the part of its recipient's
call window still ahead: the rest of today's window when it is open or yet to open, else the
whole window of the next day it opens (a weekend skipped). The window, the zones and the
country are read exactly as the guard reads them (`policy.windows_for`, `policy.zones_of`), so
a span is open for the guard in every zone the recipient may be in.

Calls that share a span (recipients on the same clock) are spaced evenly across it in queue
order: the first at its start, the next ones each `span / n` later, none at its end. The same
calls, order and instant always give the same times. Each call then waits for its time as a
deferred message (`Check.SCHEDULE`) and meets the whole guard again when it comes.
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


@dataclass(frozen=True, slots=True)
class Span:
    """An interval [start, end) when the recipient's call window is open in every zone."""

    start: datetime
    end: datetime

    def at(self, position: int, count: int) -> datetime:
        """The `position`-th of `count` evenly spaced instants, to the second."""
        offset = (self.end - self.start).total_seconds() * position // count
        return self.start + timedelta(seconds=offset)


def call_span(call: guard.OutboundMessage, policy: guard.Policy, now: datetime) -> Span | None:
    """The part of the call window ahead of the recipient at `now`; None when there is nothing
    to spread across (no window, an unknown zone, a window that never opens): the guard
    decides those calls as it would any other."""
    clock = _clock(call, policy)
    return _span(*clock, now) if clock else None


def spread_calls(
    calls: Sequence[guard.OutboundMessage], policy: guard.Policy, now: datetime
) -> list[datetime | None]:
    """When each call (in queue order) is to be handed over: evenly spaced across the span it
    shares with the others on the same clock; None for a call with no span."""
    # Recipients share a handful of clocks: each clock's span is worked out once.
    spans_by_clock: dict[tuple[Windows, tuple[str, ...]], Span | None] = {}
    spans: list[Span | None] = []
    for call in calls:
        clock = _clock(call, policy)
        if clock is not None and clock not in spans_by_clock:
            spans_by_clock[clock] = _span(*clock, now)
        spans.append(spans_by_clock[clock] if clock else None)
    sharing = Counter(span for span in spans if span is not None)
    placed: Counter[Span] = Counter()
    slots: list[datetime | None] = []
    for span in spans:
        if span is None:
            slots.append(None)
            continue
        slots.append(span.at(placed[span], sharing[span]))
        placed[span] += 1
    return slots


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
