"""The routing engine: pure, so every case is a plain call with a fixed clock."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadrelay.routing.engine import (
    ROUTING_FACTS,
    Decision,
    Outcome,
    RepSpec,
    RepState,
    RoutingRule,
    Strategy,
    TeamSpec,
    TimeOff,
    WorkingHours,
    check_fallback_chain,
    check_routing,
    check_timezone,
    check_working_hours,
    decide,
)
from leadrelay.scoring.rules import Condition, Operator

NOW = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)  # a Monday, 10:00 in New York
TEAM_A, TEAM_B, TEAM_C = UUID(int=0xA), UUID(int=0xB), UUID(int=0xC)


def uid(n: int) -> UUID:
    return UUID(int=n)


def team(
    team_id: UUID = TEAM_A,
    name: str = "Sales",
    strategy: Strategy = Strategy.ROUND_ROBIN,
    fallback: UUID | None = None,
    skills: tuple[str, ...] = (),
) -> TeamSpec:
    return TeamSpec(team_id, name, strategy, fallback, skills)


def rep(n: int, team_id: UUID = TEAM_A, **changes: Any) -> RepSpec:
    return replace(RepSpec(uid(n), team_id, f"rep{n}"), **changes)


def rule(
    n: int,
    team_id: UUID = TEAM_A,
    position: int = 0,
    when: Sequence[Condition] = (),
    active: bool = True,
) -> RoutingRule:
    return RoutingRule(uid(1000 + n), f"rule{n}", position, tuple(when), team_id, active)


def cond(fact: str, op: str, value: Any = None) -> Condition:
    return Condition(fact=fact, op=Operator(op), value=value)


def route(
    facts: Mapping[str, Any] | None = None,
    *,
    rules: Sequence[RoutingRule] | None = None,
    teams: Sequence[TeamSpec] | None = None,
    reps: Sequence[RepSpec] = (),
    states: Mapping[UUID, RepState] | None = None,
    now: datetime = NOW,
) -> Decision:
    decision = decide(
        facts or {},
        rules=[rule(0)] if rules is None else rules,
        teams={t.id: t for t in (teams or [team()])},
        reps=reps,
        states=states or {},
        now=now,
    )
    json.dumps(decision.as_json(), allow_nan=False)  # always storable as jsonb
    return decision


def steps(decision: Decision, kind: str) -> list[dict[str, Any]]:
    return [entry for entry in decision.trace if entry["step"] == kind]


def rep_entry(decision: Decision, n: int) -> dict[str, Any]:
    (entry,) = [e for e in steps(decision, "rep") if e["rep_id"] == str(uid(n))]
    return entry


def codes(decision: Decision, n: int) -> list[str]:
    return [r["code"] for r in rep_entry(decision, n)["reasons"]]


def hours(raw: Mapping[str, Any]) -> WorkingHours:
    parsed, problems = check_working_hours(raw)
    assert parsed is not None, problems
    return parsed


# --- rules --------------------------------------------------------------------------------


def test_rules_are_tried_by_position_and_the_first_match_wins() -> None:
    rules = [
        rule(1, TEAM_B, position=2),
        rule(2, TEAM_A, position=1, when=[cond("country", "equals", "FR")]),
        rule(3, TEAM_C, position=0, active=False),
    ]
    teams = [team(TEAM_A, "A"), team(TEAM_B, "B"), team(TEAM_C, "C")]
    reps = [rep(1, TEAM_A), rep(2, TEAM_B), rep(3, TEAM_C)]

    french = route({"country": "fr"}, rules=rules, teams=teams, reps=reps)
    assert (french.rep_id, french.rule_id, french.lead_team_id) == (uid(1), uid(1002), TEAM_A)
    assert [(s["rule"], s["result"]) for s in steps(french, "rule")] == [
        ("rule3", "inactive"),
        ("rule2", "matched"),
    ]  # rule1 was never considered: the trace says so by its absence

    german = route({"country": "DE"}, rules=rules, teams=teams, reps=reps)
    assert (german.rep_id, german.rule_id) == (uid(2), uid(1001))


def test_equal_positions_are_ordered_by_id() -> None:
    rules = [rule(2, TEAM_B, position=5), rule(1, TEAM_A, position=5)]
    teams = [team(TEAM_A, "A"), team(TEAM_B, "B")]
    decision = route(rules=rules, teams=teams, reps=[rep(1, TEAM_A), rep(2, TEAM_B)])
    assert decision.rule_id == uid(1001)


def test_a_failed_condition_is_shown_with_the_value_seen() -> None:
    when = [cond("score", "gte", 50), cond("country", "in", ["FR", "BE"])]
    decision = route({"score": 72, "country": "DE"}, rules=[rule(1, when=when)], reps=[rep(1)])
    assert decision.outcome is Outcome.QUEUED
    assert decision.reason == "no_rule_matched"
    assert decision.lead_team_id is None
    (entry,) = steps(decision, "rule")
    assert entry["result"] == "not_matched"
    assert entry["failed"] == [
        {"condition": 1, "fact": "country", "op": "in", "value": ["FR", "BE"], "actual": "DE"}
    ]


def test_a_missing_score_fails_a_score_condition() -> None:
    decision = route(
        {"score": None}, rules=[rule(1, when=[cond("score", "gt", 10)])], reps=[rep(1)]
    )
    assert decision.reason == "no_rule_matched"
    assert steps(decision, "rule")[0]["failed"][0]["actual"] is None


def test_a_rule_that_slipped_past_validation_is_skipped_not_fatal() -> None:
    broken = rule(1, position=0, when=[cond("no_such_fact", "equals", "x")])
    decision = route(rules=[broken, rule(2, position=1)], reps=[rep(1)])
    assert decision.rule_id == uid(1002)
    assert steps(decision, "rule")[0]["result"] == "invalid"
    assert "unknown fact" in steps(decision, "rule")[0]["problems"][0]


def test_facts_no_comparison_can_read_do_not_raise() -> None:
    when = [cond("score", "gt", 10)]
    decision = route({"score": 10**400}, rules=[rule(1, when=when), rule(2, position=1)])
    assert decision.rule_id == uid(1002)


# --- rep eligibility ----------------------------------------------------------------------


def test_each_drop_reason_is_given() -> None:
    teams = [team(skills=("German",))]
    reps = [
        rep(1, active=False, skills=frozenset({"german"})),
        rep(2, skills=frozenset({"german"}), capacity=3),
        rep(3, skills=frozenset()),
        rep(4, skills=frozenset({"german"}), territories=frozenset({"AT"})),
        rep(
            5,
            skills=frozenset({"german"}),
            time_off=(TimeOff(NOW - timedelta(days=1), NOW + timedelta(days=2)),),
        ),
        rep(
            6,
            skills=frozenset({"german"}),
            timezone="America/New_York",
            working_hours=hours({"mon": [["11:00", "17:00"]]}),
        ),
        rep(7, skills=frozenset({"german"}), timezone="Mars/Olympus", working_hours=hours({})),
    ]
    states = {uid(2): RepState(open_leads=3)}
    decision = route({"country": "DE"}, teams=teams, reps=reps, states=states)

    assert decision.outcome is Outcome.QUEUED
    assert decision.reason == "no_eligible_rep"
    assert decision.lead_team_id == TEAM_A
    details = {
        n: [(r["code"], r["detail"]) for r in rep_entry(decision, n)["reasons"]]
        for n in range(1, 8)
    }
    assert details[1] == [("inactive", "inactive")]
    assert details[2] == [("at_capacity", "at capacity: 3/3 open leads")]
    assert details[3] == [("missing_skills", "missing skills ['German']")]
    assert details[4] == [("territory_mismatch", "territory mismatch: 'DE' not in ['AT']")]
    assert details[5] == [("time_off", "on time off until 2026-03-11T14:00:00+00:00")]
    assert details[6] == [
        (
            "outside_hours",
            "outside working hours: it is Monday 10:00 in America/New_York "
            "(hours that day: 11:00-17:00)",
        )
    ]
    assert rep_entry(decision, 6)["local_time"] == "2026-03-09T10:00:00-04:00"
    assert details[7] == [("unknown_timezone", "unknown time zone 'Mars/Olympus'")]
    assert all(not e["kept"] for e in steps(decision, "rep"))


def test_every_reason_is_listed_not_only_the_first() -> None:
    decision = route(
        {"required_skills": ["vip"]},
        reps=[rep(1, active=False, capacity=0, territories=frozenset({"FR"}))],
    )
    assert codes(decision, 1) == ["inactive", "at_capacity", "missing_skills", "territory_mismatch"]


def test_outside_hours_names_a_day_without_hours() -> None:
    sunday = datetime(2026, 3, 8, 15, 0, tzinfo=UTC)
    reps = [rep(1, working_hours=hours({"mon": [["09:00", "17:00"]]}))]
    decision = route(reps=reps, now=sunday)
    assert rep_entry(decision, 1)["reasons"][0]["detail"] == (
        "outside working hours: it is Sunday 15:00 in UTC (hours that day: none)"
    )


def test_reps_without_hours_are_always_available_and_empty_hours_never() -> None:
    reps = [rep(1, working_hours=None), rep(2, working_hours=WorkingHours({}))]
    decision = route(reps=reps)
    assert decision.rep_id == uid(1)
    assert codes(decision, 2) == ["outside_hours"]


@pytest.mark.parametrize(
    ("instant", "available"),
    [
        # New York moves from UTC-5 to UTC-4 at 02:00 on Sunday 2026-03-08.
        (datetime(2026, 3, 8, 13, 30, tzinfo=UTC), True),  # 09:30 EDT
        (datetime(2026, 3, 8, 12, 59, tzinfo=UTC), False),  # 08:59 EDT
        (datetime(2026, 3, 1, 13, 30, tzinfo=UTC), False),  # a week before: 08:30 EST
        (datetime(2026, 3, 1, 14, 0, tzinfo=UTC), True),  # 09:00 EST
        (datetime(2026, 3, 8, 21, 0, tzinfo=UTC), False),  # 17:00 EDT: the end is excluded
    ],
)
def test_working_hours_follow_the_reps_zone_across_dst(instant: datetime, available: bool) -> None:
    sundays = hours({"sun": [["09:00", "17:00"]]})
    reps = [rep(1, timezone="America/New_York", working_hours=sundays)]
    decision = route(reps=reps, now=instant)
    assert (decision.rep_id == uid(1)) is available


def test_the_same_instant_is_a_different_day_in_another_zone() -> None:
    weekdays = hours({day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")})
    friday_night_utc = datetime(2026, 3, 13, 23, 30, tzinfo=UTC)
    reps = [
        rep(1, timezone="Asia/Tokyo", working_hours=weekdays),  # Saturday 08:30
        rep(2, timezone="America/Los_Angeles", working_hours=weekdays),  # Friday 16:30
    ]
    decision = route(reps=reps, now=friday_night_utc)
    assert decision.rep_id == uid(2)
    assert "Saturday 08:30 in Asia/Tokyo" in rep_entry(decision, 1)["reasons"][0]["detail"]


def test_an_interval_may_end_at_midnight() -> None:
    evening = hours({"mon": [["18:00", "24:00"]], "tue": [["00:00", "02:00"]]})
    reps = [rep(1, timezone="Europe/Paris", working_hours=evening)]
    paris = ZoneInfo("Europe/Paris")
    at = datetime(2026, 3, 9, 23, 59, 59, tzinfo=paris)
    assert route(reps=reps, now=at).rep_id == uid(1)
    assert route(reps=reps, now=at + timedelta(seconds=1)).rep_id == uid(1)  # Tuesday 00:00
    assert route(reps=reps, now=datetime(2026, 3, 10, 2, 0, tzinfo=paris)).rep_id is None
    assert route(reps=reps, now=datetime(2026, 3, 9, 17, 59, tzinfo=paris)).rep_id is None


def test_time_off_is_half_open() -> None:
    start, end = NOW, NOW + timedelta(hours=8)
    reps = [rep(1, time_off=(TimeOff(start, end),))]
    assert route(reps=reps, now=start - timedelta(seconds=1)).rep_id == uid(1)
    assert route(reps=reps, now=start).rep_id is None
    assert route(reps=reps, now=end - timedelta(microseconds=1)).rep_id is None
    assert route(reps=reps, now=end).rep_id == uid(1)


def test_back_to_back_time_off_reports_the_end_of_the_whole_absence() -> None:
    first = TimeOff(NOW - timedelta(days=1), NOW + timedelta(days=1))
    second = TimeOff(NOW + timedelta(days=1), NOW + timedelta(days=5))
    decision = route(reps=[rep(1, time_off=(second, first))])
    assert rep_entry(decision, 1)["reasons"][0]["detail"] == (
        f"on time off until {(NOW + timedelta(days=5)).isoformat()}"
    )


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TimeOff(datetime(2026, 1, 1), datetime(2026, 1, 2))  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        route(now=datetime(2026, 1, 1))  # noqa: DTZ001


@pytest.mark.parametrize(("open_leads", "kept"), [(0, True), (9, True), (10, False), (11, False)])
def test_capacity(open_leads: int, kept: bool) -> None:
    decision = route(reps=[rep(1, capacity=10)], states={uid(1): RepState(open_leads=open_leads)})
    assert rep_entry(decision, 1)["kept"] is kept


def test_skills_combine_team_and_lead_and_ignore_case() -> None:
    teams = [team(skills=("Spanish",))]
    reps = [
        rep(1, skills=frozenset({"spanish"})),
        rep(2, skills=frozenset({"SPANISH", "Enterprise"})),
    ]
    plain = route({}, teams=teams, reps=reps)
    assert plain.rep_id == uid(1)
    enterprise = route({"required_skills": ["enterprise"]}, teams=teams, reps=reps)
    assert enterprise.rep_id == uid(2)
    assert rep_entry(enterprise, 1)["reasons"][0]["detail"] == "missing skills ['enterprise']"
    # A single skill given as text, and junk, are read without failing.
    assert route({"required_skills": "enterprise"}, teams=teams, reps=reps).rep_id == uid(2)
    assert route({"required_skills": {"x": 1}}, teams=teams, reps=reps).rep_id == uid(1)


@pytest.mark.parametrize(
    ("facts", "territories", "kept"),
    [
        ({"country": "FR"}, set(), True),  # no territories: covers everything
        ({}, set(), True),
        ({"country": "FR"}, {"fr"}, True),  # case-insensitive
        ({"country": "FR"}, {"DE"}, False),
        ({"territory": "EMEA", "country": "FR"}, {"EMEA"}, True),  # territory first
        ({"territory": "EMEA", "country": "FR"}, {"FR"}, False),
        ({"territory": "", "country": "FR"}, {"FR"}, True),  # empty territory: the country
        ({"country": "BR"}, {"DE", "*"}, True),  # "*" covers all
        ({}, {"*"}, True),
        ({}, {"DE"}, False),  # the lead has no territory at all
    ],
)
def test_territories(facts: dict[str, Any], territories: set[str], kept: bool) -> None:
    decision = route(facts, reps=[rep(1, territories=frozenset(territories))])
    assert rep_entry(decision, 1)["kept"] is kept
    if not kept:
        assert codes(decision, 1) == ["territory_mismatch"]


# --- fallback chain -----------------------------------------------------------------------


def test_fallback_chain_is_followed_until_a_team_has_a_rep() -> None:
    teams = [team(TEAM_A, "EU", fallback=TEAM_B), team(TEAM_B, "Global", fallback=TEAM_C)]
    teams.append(team(TEAM_C, "Night"))
    reps = [rep(1, TEAM_A, active=False), rep(3, TEAM_C)]
    decision = route(teams=teams, reps=reps)
    assert decision.outcome is Outcome.ASSIGNED
    assert (decision.lead_team_id, decision.rep_id, decision.reason) == (TEAM_C, uid(3), None)
    assert [(s["team"], s["via"]) for s in steps(decision, "team")] == [
        ("EU", "rule"),
        ("Global", "fallback"),
        ("Night", "fallback"),
    ]
    assert [s["team"] for s in steps(decision, "no_eligible_rep")] == ["EU", "Global"]
    assert steps(decision, "no_eligible_rep")[1]["reps"] == 0


def test_an_exhausted_chain_queues_in_the_rules_team() -> None:
    teams = [team(TEAM_A, "EU", fallback=TEAM_B), team(TEAM_B, "Global")]
    decision = route(teams=teams, reps=[rep(1, TEAM_B, capacity=0)])
    assert (decision.outcome, decision.reason) == (Outcome.QUEUED, "no_eligible_rep")
    assert (decision.lead_team_id, decision.rule_id) == (TEAM_A, uid(1000))
    assert decision.trace[-1] == {
        "step": "decision",
        "outcome": "queued",
        "team_id": str(TEAM_A),
        "rep_id": None,
        "rule_id": str(uid(1000)),
        "reason": "no_eligible_rep",
    }


def test_a_fallback_cycle_is_reported_not_looped() -> None:
    teams = [
        team(TEAM_A, "EU", fallback=TEAM_B),
        team(TEAM_B, "US", fallback=TEAM_C),
        team(TEAM_C, "APAC", fallback=TEAM_B),
    ]
    decision = route(teams=teams, reps=[])
    assert (decision.outcome, decision.reason) == (Outcome.QUEUED, "fallback_cycle")
    (cycle,) = steps(decision, "fallback_cycle")
    assert cycle["cycle"] == ["US", "APAC", "US"]
    assert len(steps(decision, "team")) == 3


def test_a_self_fallback_is_a_cycle() -> None:
    decision = route(teams=[team(TEAM_A, "EU", fallback=TEAM_A)], reps=[])
    assert decision.reason == "fallback_cycle"


def test_an_unknown_team_queues() -> None:
    decision = route(teams=[team(TEAM_A, fallback=TEAM_B)], reps=[])
    assert decision.reason == "unknown_team"
    assert steps(decision, "unknown_team") == [{"step": "unknown_team", "team_id": str(TEAM_B)}]
    missing = route(rules=[rule(1, TEAM_C)], teams=[team()], reps=[])
    assert (missing.reason, missing.lead_team_id) == ("unknown_team", None)


# --- strategies ---------------------------------------------------------------------------


def simulate(
    teams: Sequence[TeamSpec], reps: Sequence[RepSpec], leads: int
) -> tuple[Counter[UUID], dict[UUID, RepState]]:
    """What the caller does: decide, then bump the chosen rep's counters (under its lock)."""
    states = {r.id: RepState() for r in reps}
    counts: Counter[UUID] = Counter()
    for seq in range(1, leads + 1):
        decision = route(teams=teams, reps=reps, states=states)
        assert decision.rep_id is not None
        old = states[decision.rep_id]
        states[decision.rep_id] = RepState(old.open_leads + 1, seq, old.assigned_total + 1)
        counts[decision.rep_id] += 1
    return counts, states


def test_round_robin_spreads_1000_leads_over_7_reps_evenly() -> None:
    reps = [rep(n, capacity=10_000) for n in range(1, 8)]
    counts, _ = simulate([team()], reps, 1000)
    assert sorted(counts.values()) == [142] + [143] * 6


def test_round_robin_takes_the_least_recently_assigned() -> None:
    states = {uid(1): RepState(last_assigned_seq=9), uid(2): RepState(last_assigned_seq=4)}
    states[uid(3)] = RepState(last_assigned_seq=7)
    decision = route(reps=[rep(1), rep(2), rep(3)], states=states)
    assert decision.rep_id == uid(2)
    (pick,) = steps(decision, "pick")
    assert pick["why"] == "least recently assigned (last_assigned_seq 4)"
    assert [c["last_assigned_seq"] for c in pick["candidates"]] == [4, 7, 9]


def test_round_robin_ties_are_broken_by_id() -> None:
    decision = route(reps=[rep(3), rep(2)])
    assert decision.rep_id == uid(2)
    assert steps(decision, "pick")[0]["why"].endswith("tie broken by rep id")


def test_weighted_shares_converge_to_the_weights() -> None:
    reps = [rep(n, weight=n, capacity=10_000) for n in (1, 2, 3)]
    counts, _ = simulate([team(strategy=Strategy.WEIGHTED)], reps, 600)
    for n, weight in ((1, 1), (2, 2), (3, 3)):
        assert abs(counts[uid(n)] - 600 * weight / 6) <= 1


def test_weighted_pick_shows_its_figures() -> None:
    states = {uid(1): RepState(assigned_total=1), uid(2): RepState(assigned_total=2)}
    reps = [rep(1, weight=1), rep(2, weight=4)]
    decision = route(teams=[team(strategy=Strategy.WEIGHTED)], reps=reps, states=states)
    assert decision.rep_id == uid(2)  # 3/4 < 2/1
    (pick,) = steps(decision, "pick")
    assert pick["candidates"][0] == {
        "rep_id": str(uid(2)),
        "rep": "rep2",
        "last_assigned_seq": 0,
        "assigned_total": 2,
        "weight": 4,
        "next_share": 0.75,
    }


def test_weight_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="weight"):
        rep(1, weight=0)


def test_least_loaded_takes_the_fewest_open_leads_then_the_least_recent() -> None:
    states = {
        uid(1): RepState(open_leads=5, last_assigned_seq=1),
        uid(2): RepState(open_leads=2, last_assigned_seq=8),
        uid(3): RepState(open_leads=2, last_assigned_seq=6),
    }
    teams = [team(strategy=Strategy.LEAST_LOADED)]
    decision = route(teams=teams, reps=[rep(1), rep(2), rep(3)], states=states)
    assert decision.rep_id == uid(3)
    (pick,) = steps(decision, "pick")
    assert pick["why"] == "fewest open leads (2)"
    assert [(c["open_leads"], c["last_assigned_seq"]) for c in pick["candidates"]] == [
        (2, 6),
        (2, 8),
        (5, 1),
    ]


def test_strategy_read_as_text_is_checked() -> None:
    assert TeamSpec(TEAM_A, "A", "weighted").strategy is Strategy.WEIGHTED  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="random"):
        TeamSpec(TEAM_A, "A", "random")  # type: ignore[arg-type]


# --- determinism --------------------------------------------------------------------------


def test_same_inputs_same_decision_whatever_the_order_of_reps() -> None:
    reps = [rep(n, capacity=n % 3) for n in range(1, 12)]
    states = {uid(n): RepState(n % 2, (n * 7) % 5, n) for n in range(1, 12)}
    first = route({"country": "FR"}, reps=reps, states=states)
    assert first == route({"country": "FR"}, reps=reps, states=states)
    shuffled = list(reps)
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert route({"country": "FR"}, reps=shuffled, states=states) == first


# --- save-time checks ---------------------------------------------------------------------


def test_check_routing_accepts_good_rules() -> None:
    teams = {TEAM_A: team(TEAM_A, fallback=TEAM_B), TEAM_B: team(TEAM_B)}
    rules = [rule(1, when=[cond("score", "gte", 40), cond("territory", "equals", "EMEA")])]
    assert check_routing(rules, teams) == []
    assert ROUTING_FACTS["score"] == "number"


def test_check_routing_reports_each_problem() -> None:
    teams = {
        TEAM_A: team(TEAM_A, "EU", fallback=TEAM_B),
        TEAM_B: team(TEAM_B, "US", fallback=TEAM_A),
        TEAM_C: team(TEAM_C, "APAC", fallback=uid(99)),
    }
    rules = [
        rule(1, TEAM_A, when=[cond("score", "contains", "x")]),
        rule(2, uid(77)),
        rule(3, TEAM_C),
    ]
    problems = [(p.rule, p.field, p.reason) for p in check_routing(rules, teams)]
    assert problems[0][:2] == (0, "when[0]")
    assert "operator contains does not apply" in problems[0][2]
    assert problems[1:] == [
        (0, "team_id", "fallback chain loops: EU → US → EU"),
        (1, "team_id", f"unknown team {uid(77)}"),
        (2, "team_id", f"team 'APAC' falls back to unknown team {uid(99)}"),
    ]
    first = check_routing(rules, teams)[0]
    assert first.rule_id == str(uid(1001))
    assert first.as_error()["field"] == f"rules[0] ({uid(1001)}).when[0]"


def test_check_fallback_chain() -> None:
    teams = {TEAM_A: team(TEAM_A, "Solo", fallback=TEAM_A)}
    assert check_fallback_chain(TEAM_A, teams) == "fallback chain loops: Solo → Solo"
    assert check_fallback_chain(TEAM_B, teams) == f"unknown team {TEAM_B}"


def test_check_working_hours_parses_and_round_trips() -> None:
    raw = {"mon": [["13:00", "17:00"], ["08:00", "12:00"]], "sat": [], "sun": [["22:00", "24:00"]]}
    parsed, problems = check_working_hours(raw)
    assert problems == []
    assert parsed is not None
    assert parsed.days == {0: (("08:00", "12:00"), ("13:00", "17:00")), 6: (("22:00", "24:00"),)}
    assert check_working_hours(parsed.as_json()) == (parsed, [])
    assert check_working_hours({"mon": [["09:00", "12:00"], ["12:00", "13:00"]]})[1] == []


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"monday": []}, "unknown day 'monday' (use mon, tue, wed, thu, fri, sat, sun)"),
        ({"mon": [["9:00", "17:00"]]}, "mon[0]: bad time '9:00' (use HH:MM, from 00:00 to 24:00)"),
        ({"mon": [["09:00", "17:60"]]}, "mon[0]: bad time '17:60'"),
        ({"mon": [["09:00", "25:00"]]}, "mon[0]: bad time '25:00'"),
        ({"mon": [["24:00", "24:00"]]}, "mon[0]: 24:00 can only end an interval"),
        ({"tue": [["17:00", "09:00"]]}, "tue[0]: start 17:00 is not before end 09:00"),
        ({"tue": [["09:00", "09:00"]]}, "tue[0]: start 09:00 is not before end 09:00"),
        (
            {"wed": [["09:00", "12:00"], ["11:30", "14:00"]]},
            "wed: intervals 09:00-12:00 and 11:30-14:00 overlap",
        ),
        ({"thu": "09:00-17:00"}, "thu: takes a list of"),
        ({"fri": [["09:00"]]}, 'fri[0]: an interval is ["HH:MM", "HH:MM"]'),
        ({"fri": [[9, 17]]}, "fri[0]: an interval is"),
        ({"sat": [["09:00", "17:00"]] * 25}, "sat: at most 24 intervals a day"),
    ],
)
def test_check_working_hours_problems(raw: dict[str, Any], reason: str) -> None:
    parsed, problems = check_working_hours(raw)
    assert parsed is None
    assert len(problems) == 1
    assert problems[0].startswith(reason)


def test_check_working_hours_reports_every_problem_and_refuses_non_objects() -> None:
    _, problems = check_working_hours({"xyz": [], "mon": [["aa:bb", "17:00"]]})
    assert len(problems) == 2
    assert check_working_hours([["09:00", "17:00"]])[0] is None  # type: ignore[arg-type]


def test_working_hours_built_directly_are_validated() -> None:
    with pytest.raises(ValueError, match="overlap"):
        WorkingHours({0: (("09:00", "12:00"), ("10:00", "11:00"))})
    with pytest.raises(ValueError, match="unknown weekday 7"):
        WorkingHours({7: ()})


@pytest.mark.parametrize("name", ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"])
def test_check_timezone_accepts_iana_names(name: str) -> None:
    assert check_timezone(name) is None


@pytest.mark.parametrize(
    "name", ["", "Mars/Olympus", "America", "../../etc/passwd", "/etc/localtime", "x" * 100]
)
def test_check_timezone_refuses_others(name: str) -> None:
    reason = check_timezone(name)
    assert reason is not None
    assert "IANA" in reason


# --- properties ---------------------------------------------------------------------------

ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Nowhere/City"]
HOURS = [
    None,
    None,
    WorkingHours({}),
    WorkingHours({d: (("09:00", "17:00"),) for d in range(5)}),
    WorkingHours({d: (("00:00", "03:30"), ("20:00", "24:00")) for d in range(7)}),
]
SKILLS = ["de", "FR", "vip"]
TERRITORIES = ["DE", "fr", "EMEA", "*"]
BASE = datetime(2026, 3, 1, tzinfo=UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
fact_names = st.sampled_from(
    [
        "country",
        "territory",
        "score",
        "required_skills",
        "flags",
        "email_confidence",
        "attributes.x",
    ]
)
facts_strategy = st.dictionaries(
    fact_names | st.text(max_size=8),
    json_values
    | st.sampled_from(["DE", "fr", "EMEA", "BR"])
    | st.lists(st.sampled_from(SKILLS), max_size=2),
    max_size=6,
)
CONDITIONS = [
    cond("country", "in", ["DE", "FR"]),
    cond("score", "gte", 50),
    cond("territory", "exists", True),
    cond("flags", "contains", "spam"),
    cond("attributes.x", "range", {"min": 1, "max": 10}),
    cond("email_confidence", "lt", 0.5),
    cond("country", "regex", "^(de|at)$"),
]


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    team_ids = [TEAM_A, TEAM_B, TEAM_C]
    teams = {
        t: TeamSpec(
            t,
            f"team{i}",
            draw(st.sampled_from(list(Strategy))),
            draw(st.sampled_from([None, None, None, *team_ids, uid(404)])),
            tuple(draw(st.lists(st.sampled_from(SKILLS), max_size=1))),
        )
        for i, t in enumerate(team_ids)
    }
    reps: list[RepSpec] = []
    states: dict[UUID, RepState] = {}
    for n in range(draw(st.integers(0, 12))):
        offsets = draw(st.lists(st.integers(-48, 48), max_size=2))
        time_off = tuple(
            TimeOff(BASE + timedelta(hours=o), BASE + timedelta(hours=o + 12)) for o in offsets
        )
        reps.append(
            RepSpec(
                uid(n + 1),
                draw(st.sampled_from(team_ids)),
                f"rep{n + 1}",
                draw(st.sampled_from(ZONES)),
                draw(st.sampled_from([True, True, True, False])),
                draw(st.sampled_from(HOURS)),
                time_off,
                draw(st.integers(0, 6)),
                frozenset(draw(st.lists(st.sampled_from(SKILLS), max_size=3))),
                frozenset(draw(st.lists(st.sampled_from(TERRITORIES), max_size=2))),
                draw(st.integers(1, 4)),
            )
        )
        states[uid(n + 1)] = RepState(
            draw(st.integers(0, 4)), draw(st.integers(0, 20)), draw(st.integers(0, 20))
        )
    rules = [
        RoutingRule(
            uid(1000 + i),
            f"rule{i}",
            draw(st.integers(0, 3)),
            tuple(draw(st.lists(st.sampled_from(CONDITIONS), max_size=2))),
            draw(st.sampled_from([*team_ids, *team_ids, uid(405)])),
            draw(st.booleans()),
        )
        for i in range(draw(st.integers(0, 4)))
    ]
    if draw(st.integers(0, 3)):  # most tenants end with a catch-all
        rules.append(RoutingRule(uid(1999), "catch-all", 9, (), draw(st.sampled_from(team_ids))))
    now = BASE + timedelta(minutes=draw(st.integers(-3 * 24 * 60, 3 * 24 * 60)))
    return {
        "facts": draw(facts_strategy),
        "rules": rules,
        "teams": teams,
        "reps": reps,
        "states": states,
        "now": now,
    }


def eligible_by_hand(
    r: RepSpec, team_spec: TeamSpec, state: RepState, facts: Mapping[str, Any], now: datetime
) -> bool:
    """An independent reading of the eligibility rules, to check the engine against."""
    if not r.active or state.open_leads >= r.capacity:
        return False
    if r.working_hours is not None:
        if check_timezone(r.timezone) is not None:
            return False
        local = now.astimezone(ZoneInfo(r.timezone))
        minute = local.hour * 60 + local.minute
        spans = r.working_hours.days.get(local.weekday(), ())
        if not any(
            int(s[:2]) * 60 + int(s[3:]) <= minute < int(e[:2]) * 60 + int(e[3:]) for s, e in spans
        ):
            return False
    if any(t.starts_at <= now < t.ends_at for t in r.time_off):
        return False
    wanted = facts.get("required_skills")
    lead_skills = [wanted] if isinstance(wanted, str) else wanted
    lead_skills = lead_skills if isinstance(lead_skills, list) else []
    needed = {s.strip().casefold() for s in [*team_spec.required_skills, *lead_skills]
              if isinstance(s, str) and s.strip()}  # fmt: skip
    if not needed <= {s.casefold() for s in r.skills}:
        return False
    covered = {t.casefold() for t in r.territories}
    if not covered or "*" in covered:
        return True
    place = next(
        (
            v.strip()
            for v in (facts.get("territory"), facts.get("country"))
            if isinstance(v, str) and v.strip()
        ),
        None,
    )
    return place is not None and place.casefold() in covered


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), seed=st.integers(0, 2**16))
def test_the_engine_explains_every_rep_and_picks_an_eligible_one(
    world: dict[str, Any], seed: int
) -> None:
    decision = decide(**world)
    json.dumps(decision.as_json(), allow_nan=False)
    assert decision.trace[0]["step"] == "start"
    assert decision.trace[-1]["step"] == "decision"

    reps = {r.id: r for r in world["reps"]}
    for entry in steps(decision, "rep"):
        r = reps[UUID(entry["rep_id"])]
        team_spec = world["teams"][UUID(entry["team_id"])]
        state = world["states"][r.id]
        expected = eligible_by_hand(r, team_spec, state, world["facts"], world["now"])
        assert entry["kept"] is expected, entry
        assert bool(entry["reasons"]) is not expected

    if decision.outcome is Outcome.ASSIGNED:
        assert decision.rep_id is not None
        assert decision.reason is None
        chosen = reps[decision.rep_id]
        assert chosen.team_id == decision.lead_team_id
        assert rep_entry_by_id(decision, decision.rep_id)["kept"]
        team_spec = world["teams"][chosen.team_id]
        rivals = [
            reps[UUID(e["rep_id"])]
            for e in steps(decision, "rep")
            if e["kept"] and e["team_id"] == str(chosen.team_id)
        ]
        assert chosen == min(
            rivals, key=lambda r: strategy_key(team_spec, r, world["states"][r.id])
        )
    else:
        assert decision.rep_id is None
        assert decision.reason in {
            "no_rule_matched",
            "no_eligible_rep",
            "fallback_cycle",
            "unknown_team",
        }

    shuffled = list(world["reps"])
    random.Random(seed).shuffle(shuffled)
    assert decide(**{**world, "reps": shuffled}) == decision


def strategy_key(team_spec: TeamSpec, r: RepSpec, state: RepState) -> tuple[Any, ...]:
    if team_spec.strategy is Strategy.WEIGHTED:
        # Floats suffice here: with these small counts equal shares are equal floats.
        return ((state.assigned_total + 1) / r.weight, state.last_assigned_seq, str(r.id))
    if team_spec.strategy is Strategy.LEAST_LOADED:
        return (state.open_leads, state.last_assigned_seq, str(r.id))
    return (state.last_assigned_seq, str(r.id))


def rep_entry_by_id(decision: Decision, rep_id: UUID) -> dict[str, Any]:
    (entry,) = [e for e in steps(decision, "rep") if e["rep_id"] == str(rep_id)]
    return entry


@settings(max_examples=200, deadline=None)
@given(facts=facts_strategy)
def test_arbitrary_facts_never_raise(facts: dict[str, Any]) -> None:
    rules = [rule(i, position=i, when=[c]) for i, c in enumerate(CONDITIONS)]
    decision = route(facts, rules=rules, reps=[rep(1, territories=frozenset({"DE"}))])
    assert decision.outcome in (Outcome.ASSIGNED, Outcome.QUEUED)
