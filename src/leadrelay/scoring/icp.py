"""An ICP rule set and the scorer: points per matched rule, clipped to 0–100, with the
breakdown that explains every point.

A rule set is plain data (validated once, when saved); `score` is a pure function of the rules
and the lead's facts, so a stored score can always be reproduced from its version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from leadrelay.core.schemas import Input
from leadrelay.scoring.rules import (
    LEAD_FACTS,
    Condition,
    RuleProblem,
    check_conditions,
    evaluate,
    shown,
)

MAX_RULES = 200
DEFAULT_THRESHOLD = 60


class IcpRule(Input):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    label: str = Field(min_length=1, max_length=200)
    when: list[Condition] = Field(min_length=1, max_length=20)
    points: int = Field(ge=-100, le=100)


class RuleSetBody(Input):
    """What a draft holds: the rules and the qualification threshold."""

    rules: list[IcpRule] = Field(default_factory=list, max_length=MAX_RULES)
    threshold: int = Field(default=DEFAULT_THRESHOLD, ge=0, le=100)


def check_rule_set(body: RuleSetBody) -> list[RuleProblem]:
    """Every reason the rule set cannot be saved, each naming its rule."""
    problems: list[RuleProblem] = []
    seen: set[str] = set()
    for index, rule in enumerate(body.rules):
        if rule.id in seen:
            problems.append(RuleProblem(index, rule.id, "id", "duplicate rule id"))
        seen.add(rule.id)
        problems += check_conditions(rule.when, LEAD_FACTS, rule=index, rule_id=rule.id)
    return problems


@dataclass(frozen=True, slots=True)
class Score:
    score: int  # clipped to 0..100
    total: int  # before clipping, so the breakdown adds up
    qualified: bool
    breakdown: list[dict[str, Any]] = field(default_factory=list)  # matched rules only
    matched: tuple[str, ...] = ()


def score(body: RuleSetBody, facts: Mapping[str, Any]) -> Score:
    """Sum the points of every rule whose conditions all hold. The breakdown lists each
    matched rule with its points and the values it matched on."""
    total = 0
    breakdown: list[dict[str, Any]] = []
    matched: list[str] = []
    for rule in body.rules:
        if not all(evaluate(condition, facts) for condition in rule.when):
            continue
        total += rule.points
        matched.append(rule.id)
        breakdown.append(
            {
                "rule": rule.id,
                "label": rule.label,
                "points": rule.points,
                "matched": {c.fact: shown(facts.get(c.fact)) for c in rule.when},
            }
        )
    clipped = max(0, min(100, total))
    return Score(clipped, total, clipped >= body.threshold, breakdown, tuple(matched))


def matches(body: RuleSetBody, facts: Mapping[str, Any]) -> dict[str, bool]:
    """Rule id → matched, for every rule (what "suggest weights" learns from)."""
    return {rule.id: all(evaluate(c, facts) for c in rule.when) for rule in body.rules}


def rule_points(body: RuleSetBody) -> dict[str, int]:
    return {rule.id: rule.points for rule in body.rules}


def problems_as_errors(problems: Sequence[RuleProblem]) -> list[dict[str, Any]]:
    return [problem.as_error() for problem in problems]
