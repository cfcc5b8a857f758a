"""Which rep gets a lead, and why: the routing decision as a pure function.

Routing has to be explainable ("why did Anna get this lead and not Ben?") and replayable: the
same function answers live routing and the read-only simulator, so it reads no database, no
clock and no environment. The caller loads rules, teams, reps and their counters under a row
lock, passes them in as frozen values with the instant to decide at, and persists the
`Decision` — including the round-robin cursor, which lives in the database as each rep's
`last_assigned_seq` because a cursor kept in process memory would not survive a restart nor be
shared between workers.

Every step lands in the trace: each rule considered (and the condition that failed, with the
value it saw), each team of the fallback chain, each rep kept or dropped with the reason a
manager can act on, and the figures the strategy compared. Rules reuse the condition language
of scoring (`leadrelay.scoring.rules`), so a tenant learns one language and one validator.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from functools import lru_cache
from itertools import pairwise
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from leadrelay.scoring.rules import (
    LEAD_FACTS,
    Condition,
    FactType,
    RuleProblem,
    check_conditions,
    evaluate,
    shown,
)

# Routing rules may also name the lead's score and its sales territory.
ROUTING_FACTS: dict[str, FactType] = {
    **LEAD_FACTS,
    "score": FactType.NUMBER,
    "territory": FactType.TEXT,
}

DAY_KEYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES: tuple[str, ...] = (
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
)
MAX_INTERVALS_PER_DAY = 24
ANY_TERRITORY = "*"
_DAY_MINUTES = 24 * 60
_TIME = re.compile(r"[0-9]{2}:[0-9]{2}")


class Strategy(StrEnum):
    ROUND_ROBIN = "round_robin"
    WEIGHTED = "weighted"
    LEAST_LOADED = "least_loaded"


class Outcome(StrEnum):
    ASSIGNED = "assigned"
    QUEUED = "queued"


class QueueReason(StrEnum):
    NO_RULE_MATCHED = "no_rule_matched"
    NO_ELIGIBLE_REP = "no_eligible_rep"
    FALLBACK_CYCLE = "fallback_cycle"
    # Only reachable when data bypassed `check_routing` (a team deleted after the rule saved).
    UNKNOWN_TEAM = "unknown_team"


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoutingRule:
    id: UUID
    name: str
    position: int
    when: tuple[Condition, ...]
    team_id: UUID
    active: bool = True
    # Worked out once per rule rather than once per decision: the engine decides thousands
    # of leads against the same loaded rules.
    problems: tuple[str, ...] = field(init=False, repr=False, compare=False)
    key: tuple[int, str] = field(init=False, repr=False, compare=False)
    team_sid: str = field(init=False, repr=False, compare=False)
    # Each condition's value as a trace shows it (a list of 17 countries is copied into the
    # trace of every lead it fails for): made once, and only ever read.
    shown_values: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        found = check_conditions(self.when, ROUTING_FACTS, rule=0, rule_id=None)
        object.__setattr__(self, "problems", tuple(f"{p.field}: {p.reason}" for p in found))
        object.__setattr__(self, "key", (self.position, str(self.id)))
        object.__setattr__(self, "team_sid", str(self.team_id))
        object.__setattr__(self, "shown_values", tuple(_plain(c.value) for c in self.when))


@dataclass(frozen=True, slots=True)
class TeamSpec:
    id: UUID
    name: str
    strategy: Strategy
    fallback_team_id: UUID | None = None
    required_skills: tuple[str, ...] = ()
    sid: str = field(init=False, repr=False, compare=False)  # str(id), written in every trace

    def __post_init__(self) -> None:
        # The caller reads the strategy as text from the database: refuse a typo at load
        # time rather than route by a strategy nobody chose.
        object.__setattr__(self, "strategy", Strategy(self.strategy))
        object.__setattr__(self, "sid", str(self.id))


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """Weekly hours in the rep's own time zone: weekday (Monday=0) → (start, end) intervals
    as "HH:MM", half-open, end may be "24:00". A day absent from `days` has no hours; an
    interval never crosses midnight (a night shift is written as two)."""

    days: Mapping[int, tuple[tuple[str, str], ...]]
    # The same intervals in seconds of the day, parsed once: `covers` runs for every rep of
    # every decision.
    seconds: Mapping[int, tuple[tuple[int, int], ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Validated here too, so that `decide` can trust every interval it reads.
        problems: list[str] = []
        for day, intervals in self.days.items():
            if not isinstance(day, int) or isinstance(day, bool) or not 0 <= day <= 6:
                problems.append(f"unknown weekday {day!r} (0 = Monday … 6 = Sunday)")
                continue
            problems.extend(_check_intervals(DAY_KEYS[day], list(intervals))[1])
        if problems:
            raise ValueError("; ".join(problems))
        object.__setattr__(
            self,
            "seconds",
            {
                day: tuple((_minutes(a) * 60, _minutes(b) * 60) for a, b in intervals)
                for day, intervals in self.days.items()
            },
        )

    def intervals(self, weekday: int) -> tuple[tuple[str, str], ...]:
        return tuple(self.days.get(weekday, ()))

    def covers(self, local: datetime) -> bool:
        """Whether a wall-clock time (already in the rep's zone) falls inside the hours."""
        second = local.hour * 3600 + local.minute * 60 + local.second
        return any(start <= second < end for start, end in self.seconds.get(local.weekday(), ()))

    def as_json(self) -> dict[str, list[list[str]]]:
        """The shape `check_working_hours` reads back."""
        return {
            DAY_KEYS[day]: [[start, end] for start, end in self.days[day]]
            for day in sorted(self.days)
        }


@dataclass(frozen=True, slots=True)
class TimeOff:
    """Absence from `starts_at` (included) to `ends_at` (excluded)."""

    starts_at: datetime
    ends_at: datetime

    def __post_init__(self) -> None:
        # A naive datetime would make comparison with `now` raise in the middle of routing.
        if self.starts_at.utcoffset() is None or self.ends_at.utcoffset() is None:
            raise ValueError("time off needs timezone-aware datetimes")

    def covers(self, instant: datetime) -> bool:
        return self.starts_at <= instant < self.ends_at


@dataclass(frozen=True, slots=True)
class RepSpec:
    id: UUID
    team_id: UUID
    name: str
    timezone: str = "UTC"
    active: bool = True
    working_hours: WorkingHours | None = None  # None: always available
    time_off: tuple[TimeOff, ...] = ()
    capacity: int = 50
    skills: frozenset[str] = frozenset()
    territories: frozenset[str] = frozenset()  # empty: covers every territory
    weight: int = 1
    # Derived once per rep, not per decision: the id as text (sorted on), folded sets.
    sid: str = field(init=False, repr=False, compare=False)
    folded_skills: frozenset[str] = field(init=False, repr=False, compare=False)
    folded_territories: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise ValueError("weight must be at least 1")
        object.__setattr__(self, "sid", str(self.id))
        object.__setattr__(self, "folded_skills", frozenset(s.casefold() for s in self.skills))
        object.__setattr__(
            self, "folded_territories", frozenset(t.casefold() for t in self.territories)
        )


@dataclass(frozen=True, slots=True)
class RepState:
    open_leads: int = 0
    last_assigned_seq: int = 0  # 0: never assigned
    assigned_total: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    lead_team_id: UUID | None  # assigned: the rep's team; queued: the matched rule's team
    rep_id: UUID | None
    rule_id: UUID | None
    reason: str | None  # why queued, a `QueueReason` value
    trace: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "lead_team_id": _id(self.lead_team_id),
            "rep_id": _id(self.rep_id),
            "rule_id": _id(self.rule_id),
            "reason": self.reason,
            "trace": self.trace,
        }


# --- save-time checks ---------------------------------------------------------------------


def check_timezone(name: str) -> str | None:
    """Why `name` is not an IANA time zone, or None."""
    if not isinstance(name, str) or not name or len(name) > 64:
        return "time zone must be an IANA name such as Europe/Paris"
    if _zone(name) is None:
        return f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)"
    return None


def check_working_hours(raw: Mapping[str, Any]) -> tuple[WorkingHours | None, list[str]]:
    """Parse `{"mon": [["09:00", "17:00"]], …}`; the hours, or None and every reason."""
    untrusted: Any = raw  # parsed JSON: the annotation is what we hope for, not a promise
    if not isinstance(untrusted, Mapping):
        return None, ['working hours must be an object such as {"mon": [["09:00", "17:00"]]}']
    problems: list[str] = []
    days: dict[int, tuple[tuple[str, str], ...]] = {}
    for key, value in raw.items():
        if key not in DAY_KEYS:
            problems.append(f"unknown day {key!r} (use {', '.join(DAY_KEYS)})")
            continue
        if not isinstance(value, list | tuple):
            problems.append(f'{key}: takes a list of ["HH:MM", "HH:MM"] intervals')
            continue
        intervals, reasons = _check_intervals(key, list(value))
        problems.extend(reasons)
        if intervals:
            days[DAY_KEYS.index(key)] = intervals
    if problems:
        return None, problems
    return WorkingHours(days), []


def check_fallback_chain(team_id: UUID, teams: Mapping[UUID, TeamSpec]) -> str | None:
    """Why the fallback chain starting at `team_id` is broken (a loop, an unknown team)."""
    seen: list[UUID] = []
    current: UUID | None = team_id
    while current is not None:
        if current in seen:
            loop = [teams[t].name for t in seen[seen.index(current) :]] + [teams[current].name]
            return f"fallback chain loops: {' → '.join(loop)}"
        team = teams.get(current)
        if team is None:
            if not seen:
                return f"unknown team {current}"
            return f"team {teams[seen[-1]].name!r} falls back to unknown team {current}"
        seen.append(current)
        current = team.fallback_team_id
    return None


def check_routing(
    rules: Sequence[RoutingRule], teams: Mapping[UUID, TeamSpec]
) -> list[RuleProblem]:
    """Everything that would make these rules route wrongly, reported when they are saved."""
    problems: list[RuleProblem] = []
    for i, rule in enumerate(rules):
        rule_id = str(rule.id)
        problems.extend(check_conditions(rule.when, ROUTING_FACTS, rule=i, rule_id=rule_id))
        if rule.team_id not in teams:
            problems.append(RuleProblem(i, rule_id, "team_id", f"unknown team {rule.team_id}"))
            continue
        reason = check_fallback_chain(rule.team_id, teams)
        if reason:
            problems.append(RuleProblem(i, rule_id, "team_id", reason))
    return problems


# --- the decision -------------------------------------------------------------------------


def decide(
    facts: Mapping[str, Any],
    *,
    rules: Sequence[RoutingRule],
    teams: Mapping[UUID, TeamSpec],
    reps: Sequence[RepSpec],
    states: Mapping[UUID, RepState],
    now: datetime,
    availability: Availability | None = None,
) -> Decision:
    """The rep for a lead with these facts at `now`, or why it waits in a queue.

    `facts` are the lead facts plus `score` (and optionally `territory`, `required_skills`).
    Only `now` must be timezone-aware; arbitrary facts never make this raise. A caller
    deciding many leads at the same `now` passes one `Availability` for all of them."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if availability is None or availability.now != now:
        availability = Availability(now)
    territory = _lead_territory(facts)
    lead_skills = _lead_skills(facts)
    trace: list[dict[str, Any]] = [
        {
            "step": "start",
            "at": now.isoformat(),
            "facts": {
                "score": _plain(shown(facts.get("score"))),
                "country": _plain(shown(facts.get("country"))),
                "territory": territory,
                "required_skills": lead_skills,
            },
        }
    ]

    rule = _first_matching_rule(facts, rules, trace)
    if rule is None:
        return _finish(trace, Outcome.QUEUED, None, None, None, QueueReason.NO_RULE_MATCHED)

    # Within a team, order by id so that the trace and ties never depend on how the caller
    # happened to list the reps.
    by_team: dict[UUID, list[RepSpec]] = {}
    for rep in sorted(reps, key=lambda r: r.sid):
        by_team.setdefault(rep.team_id, []).append(rep)

    lead_team = rule.team_id if rule.team_id in teams else None
    chain: list[UUID] = []
    team_id = rule.team_id
    while True:
        if team_id in chain:
            loop = [teams[t].name for t in chain[chain.index(team_id) :]] + [teams[team_id].name]
            trace.append(
                {
                    "step": "fallback_cycle",
                    "team_id": str(team_id),
                    "team": teams[team_id].name,
                    "cycle": loop,
                }
            )
            return _finish(
                trace, Outcome.QUEUED, lead_team, None, rule.id, QueueReason.FALLBACK_CYCLE
            )
        team = teams.get(team_id)
        if team is None:
            trace.append({"step": "unknown_team", "team_id": str(team_id)})
            return _finish(
                trace, Outcome.QUEUED, lead_team, None, rule.id, QueueReason.UNKNOWN_TEAM
            )
        chain.append(team_id)
        trace.append(
            {
                "step": "team",
                "team_id": team.sid,
                "team": team.name,
                "strategy": team.strategy.value,
                "via": "rule" if len(chain) == 1 else "fallback",
                "required_skills": sorted(team.required_skills),
            }
        )
        eligible: list[tuple[RepSpec, RepState]] = []
        members = by_team.get(team.id, [])
        for rep in members:
            state = states.get(rep.id, RepState())
            entry, kept = _consider(rep, team, state, lead_skills, territory, availability)
            trace.append(entry)
            if kept:
                eligible.append((rep, state))
        if eligible:
            chosen, pick = _pick(team, eligible)
            trace.append(pick)
            return _finish(trace, Outcome.ASSIGNED, team.id, chosen.id, rule.id, None)
        trace.append(
            {
                "step": "no_eligible_rep",
                "team_id": team.sid,
                "team": team.name,
                "reps": len(members),
                "fallback_team_id": _id(team.fallback_team_id),
            }
        )
        if team.fallback_team_id is None:
            return _finish(
                trace, Outcome.QUEUED, lead_team, None, rule.id, QueueReason.NO_ELIGIBLE_REP
            )
        team_id = team.fallback_team_id


def _first_matching_rule(
    facts: Mapping[str, Any], rules: Sequence[RoutingRule], trace: list[dict[str, Any]]
) -> RoutingRule | None:
    for rule in sorted(rules, key=lambda r: r.key):
        entry: dict[str, Any] = {
            "step": "rule",
            "rule_id": rule.key[1],
            "rule": rule.name,
            "position": rule.position,
            "team_id": rule.team_sid,
        }
        trace.append(entry)
        if not rule.active:
            entry["result"] = "inactive"
            continue
        # Rules are checked when saved; one that slipped past (older data, a renamed fact)
        # is skipped and shown rather than allowed to fail the whole routing.
        if rule.problems:
            entry["result"] = "invalid"
            entry["problems"] = list(rule.problems)
            continue
        failed = [
            {
                "condition": i,
                "fact": condition.fact,
                "op": condition.op.value,
                "value": rule.shown_values[i],
                "actual": _plain(shown(facts.get(condition.fact))),
            }
            for i, condition in enumerate(rule.when)
            if not _holds(condition, facts)
        ]
        if failed:
            entry["result"] = "not_matched"
            entry["failed"] = failed
            continue
        entry["result"] = "matched"
        return rule
    return None


def _holds(condition: Condition, facts: Mapping[str, Any]) -> bool:
    try:
        return evaluate(condition, facts)
    except (OverflowError, ValueError, TypeError):
        # A fact no comparison can read (an integer beyond float range) satisfies nothing,
        # as a missing fact would: the lead is still routed by the rules that can read it.
        return False


class Availability:
    """Whether each rep is at work at one instant — active, inside its hours, not on time
    off — worked out once per rep: a chunk decides every lead at the same instant, and these
    reasons do not depend on the lead."""

    __slots__ = ("_reps", "now")

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._reps: dict[UUID, tuple[str | None, tuple[dict[str, str], ...]]] = {}

    def of(self, rep: RepSpec) -> tuple[str | None, tuple[dict[str, str], ...]]:
        """The rep's local time as text (None without working hours) and why it is away."""
        found = self._reps.get(rep.id)
        if found is None:
            found = self._reps[rep.id] = _away(rep, self.now)
        return found


def _away(rep: RepSpec, now: datetime) -> tuple[str | None, tuple[dict[str, str], ...]]:
    reasons: list[dict[str, str]] = []
    local_text: str | None = None
    if not rep.active:
        reasons.append(_why("inactive", "inactive"))
    if rep.working_hours is not None:
        found = _local_time(now, rep.timezone)
        if found is None:
            reasons.append(_why("unknown_timezone", f"unknown time zone {rep.timezone!r}"))
        else:
            local, local_text = found
            if not rep.working_hours.covers(local):
                hours = rep.working_hours.intervals(local.weekday())
                day = DAY_NAMES[local.weekday()]
                listed = ", ".join(f"{s}-{e}" for s, e in hours) if hours else "none"
                reasons.append(
                    _why(
                        "outside_hours",
                        f"outside working hours: it is {day} {local:%H:%M} in {rep.timezone} "
                        f"(hours that day: {listed})",
                    )
                )
    until = _time_off_until(rep.time_off, now)
    if until is not None:
        reasons.append(_why("time_off", f"on time off until {until.isoformat()}"))
    return local_text, tuple(reasons)


def _consider(
    rep: RepSpec,
    team: TeamSpec,
    state: RepState,
    lead_skills: list[str],
    territory: str | None,
    availability: Availability,
) -> tuple[dict[str, Any], bool]:
    """The rep's trace entry and whether it may take the lead. Every reason is listed, not
    just the first: a manager fixing one should not discover the next on the next lead."""
    entry: dict[str, Any] = {
        "step": "rep",
        "team_id": team.sid,
        "rep_id": rep.sid,
        "rep": rep.name,
    }
    local_text, away = availability.of(rep)
    if local_text is not None:
        entry["local_time"] = local_text
    # Copies: a trace is JSON of its own, never sharing a dict another trace might change.
    reasons = [dict(reason) for reason in away]
    if state.open_leads >= rep.capacity:
        reasons.append(
            _why("at_capacity", f"at capacity: {state.open_leads}/{rep.capacity} open leads")
        )
    has = rep.folded_skills
    missing = _unique(s for s in (*team.required_skills, *lead_skills) if s.casefold() not in has)
    if missing:
        reasons.append(_why("missing_skills", f"missing skills {missing}"))
    covered = rep.folded_territories
    if covered and ANY_TERRITORY not in covered:
        if territory is None:
            reasons.append(
                _why("territory_mismatch", "territory mismatch: the lead has no territory")
            )
        elif territory.casefold() not in covered:
            reasons.append(
                _why(
                    "territory_mismatch",
                    f"territory mismatch: {territory!r} not in {sorted(rep.territories)}",
                )
            )
    entry["kept"] = not reasons
    entry["reasons"] = reasons
    entry["open_leads"] = state.open_leads
    entry["capacity"] = rep.capacity
    return entry, not reasons


def _pick(
    team: TeamSpec, eligible: list[tuple[RepSpec, RepState]]
) -> tuple[RepSpec, dict[str, Any]]:
    def key(item: tuple[RepSpec, RepState]) -> tuple[Any, ...]:
        rep, state = item
        if team.strategy is Strategy.WEIGHTED:
            # Smooth weighted (D'Hondt): the rep furthest below its share takes the next
            # lead, so shares converge to the weights without any random draw. Fractions
            # keep ties exact where floats would break them arbitrarily.
            share = Fraction(state.assigned_total + 1, rep.weight)
            return (share, state.last_assigned_seq, rep.sid)
        if team.strategy is Strategy.LEAST_LOADED:
            return (state.open_leads, state.last_assigned_seq, rep.sid)
        return (state.last_assigned_seq, rep.sid)

    ranked = sorted(eligible, key=key)
    chosen, state = ranked[0]
    candidates: list[dict[str, Any]] = []
    for rep, rep_state in ranked:
        figures: dict[str, Any] = {
            "rep_id": str(rep.id),
            "rep": rep.name,
            "last_assigned_seq": rep_state.last_assigned_seq,
        }
        if team.strategy is Strategy.WEIGHTED:
            figures["assigned_total"] = rep_state.assigned_total
            figures["weight"] = rep.weight
            figures["next_share"] = round((rep_state.assigned_total + 1) / rep.weight, 6)
        elif team.strategy is Strategy.LEAST_LOADED:
            figures["open_leads"] = rep_state.open_leads
            figures["capacity"] = rep.capacity
        candidates.append(figures)

    tie = len(ranked) > 1 and key(ranked[1])[:-1] == key(ranked[0])[:-1]
    if team.strategy is Strategy.WEIGHTED:
        why = (
            f"furthest below its share: (assigned {state.assigned_total} + 1) / weight "
            f"{chosen.weight} is the lowest"
        )
    elif team.strategy is Strategy.LEAST_LOADED:
        why = f"fewest open leads ({state.open_leads})"
    elif state.last_assigned_seq == 0:
        why = "least recently assigned (never assigned yet)"
    else:
        why = f"least recently assigned (last_assigned_seq {state.last_assigned_seq})"
    if tie:
        why += "; tie broken by rep id"
    return chosen, {
        "step": "pick",
        "team_id": team.sid,
        "strategy": team.strategy.value,
        "rep_id": chosen.sid,
        "rep": chosen.name,
        "why": why,
        "candidates": candidates,
    }


def _finish(
    trace: list[dict[str, Any]],
    outcome: Outcome,
    team_id: UUID | None,
    rep_id: UUID | None,
    rule_id: UUID | None,
    reason: QueueReason | None,
) -> Decision:
    trace.append(
        {
            "step": "decision",
            "outcome": outcome.value,
            "team_id": _id(team_id),
            "rep_id": _id(rep_id),
            "rule_id": _id(rule_id),
            "reason": reason.value if reason else None,
        }
    )
    return Decision(outcome, team_id, rep_id, rule_id, reason.value if reason else None, trace)


# --- helpers ------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _local_time(now: datetime, timezone: str) -> tuple[datetime, str] | None:
    """The instant in a zone, and as text: a chunk decides every lead at the same instant,
    so each rep's zone is converted once, not once per lead."""
    zone = _zone(timezone)
    if zone is None:
        return None
    local = now.astimezone(zone)
    return local, local.isoformat()


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: a path-like or malformed key; OSError: a directory such as "America".
        return None


def _minutes(text: str) -> int:
    return int(text[:2]) * 60 + int(text[3:])


def _parse_time(value: Any, *, end: bool) -> tuple[int | None, str | None]:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        return None, f"bad time {value!r} (use HH:MM, from 00:00 to 24:00)"
    if value == "24:00":
        return (_DAY_MINUTES, None) if end else (None, "24:00 can only end an interval")
    hours, minutes = int(value[:2]), int(value[3:])
    if hours > 23 or minutes > 59:
        return None, f"bad time {value!r} (use HH:MM, from 00:00 to 24:00)"
    return hours * 60 + minutes, None


def _check_intervals(day: str, raw: list[Any]) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    if len(raw) > MAX_INTERVALS_PER_DAY:
        return (), [f"{day}: at most {MAX_INTERVALS_PER_DAY} intervals a day"]
    problems: list[str] = []
    parsed: list[tuple[int, int, str, str]] = []
    for i, interval in enumerate(raw):
        where = f"{day}[{i}]"
        if (
            not isinstance(interval, list | tuple)
            or len(interval) != 2
            or not all(isinstance(v, str) for v in interval)
        ):
            problems.append(f'{where}: an interval is ["HH:MM", "HH:MM"]')
            continue
        start_text, end_text = interval
        start, start_problem = _parse_time(start_text, end=False)
        end, end_problem = _parse_time(end_text, end=True)
        problems.extend(f"{where}: {p}" for p in (start_problem, end_problem) if p)
        if start is None or end is None:
            continue
        if start >= end:
            problems.append(
                f"{where}: start {start_text} is not before end {end_text} "
                "(an interval cannot cross midnight: write two)"
            )
            continue
        parsed.append((start, end, start_text, end_text))
    parsed.sort()
    for before, after in pairwise(parsed):
        if after[0] < before[1]:
            problems.append(
                f"{day}: intervals {before[2]}-{before[3]} and {after[2]}-{after[3]} overlap"
            )
    return tuple((s, e) for _, _, s, e in parsed), problems


def _time_off_until(time_off: Sequence[TimeOff], now: datetime) -> datetime | None:
    """When the absence covering `now` ends, following back-to-back absences (a week off
    booked as two entries ends when the second does)."""
    until: datetime | None = None
    probe = now
    for _ in range(len(time_off)):
        covering = [t.ends_at for t in time_off if t.covers(probe)]
        if not covering:
            break
        until = max(covering)
        probe = until
    return until


def _lead_territory(facts: Mapping[str, Any]) -> str | None:
    for name in ("territory", "country"):
        value = facts.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _lead_skills(facts: Mapping[str, Any]) -> list[str]:
    raw = facts.get("required_skills")
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list | tuple):
        return []
    return _unique(s.strip() for s in raw if isinstance(s, str) and s.strip())


def _unique(values: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(value.casefold(), value)
    return sorted(seen.values(), key=str.casefold)


def _why(code: str, detail: str) -> dict[str, str]:
    return {"code": code, "detail": detail}


def _id(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _plain(value: Any) -> Any:
    """Strict JSON (what PostgreSQL's jsonb accepts): no NaN, no infinities, text keys."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
