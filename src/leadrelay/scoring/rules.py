"""Conditions on lead facts: the one rule language of scoring and routing.

A condition names a fact (`country`, `flags`, `email_confidence`, `attributes.employees`…), an
operator and a value. Rules are checked when they are saved — unknown fact, operator that does
not fit the fact's type, malformed value, bad regular expression — so that evaluation never
meets a surprise: it is a pure function of the facts and returns what it compared, for the trace.

Regular expressions run on RE2 (linear time, no backtracking): a pattern written to hang a
backtracking engine (`(a+)+$`) is answered in microseconds, so a tenant's rule cannot stall the
scorer. RE2 refuses back-references and look-arounds; the refusal is reported when saving.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import Any

import re2

from leadrelay.core.schemas import Input


class FactType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    BOOLEAN = "boolean"
    LIST = "list"  # a list of text values, e.g. flags
    ANY = "any"  # tenant-defined enrichment attributes: typed by their value at evaluation


class Operator(StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    IN = "in"
    NOT_IN = "not_in"
    RANGE = "range"  # {"min": a, "max": b}, both inclusive, either may be omitted
    CONTAINS = "contains"  # substring of text (case-insensitive) or member of a list
    REGEX = "regex"
    EXISTS = "exists"  # value true: present and not empty; false: absent or empty
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"


_COMPARISONS = {Operator.GT, Operator.GTE, Operator.LT, Operator.LTE}
ALLOWED: dict[FactType, frozenset[Operator]] = {
    FactType.TEXT: frozenset(
        {
            Operator.EQUALS,
            Operator.NOT_EQUALS,
            Operator.IN,
            Operator.NOT_IN,
            Operator.CONTAINS,
            Operator.REGEX,
            Operator.EXISTS,
        }
    ),
    FactType.NUMBER: frozenset(
        {
            Operator.EQUALS,
            Operator.NOT_EQUALS,
            Operator.IN,
            Operator.NOT_IN,
            Operator.RANGE,
            Operator.EXISTS,
            *_COMPARISONS,
        }
    ),
    FactType.BOOLEAN: frozenset({Operator.EQUALS, Operator.NOT_EQUALS, Operator.EXISTS}),
    FactType.LIST: frozenset({Operator.CONTAINS, Operator.EXISTS}),
    FactType.ANY: frozenset(Operator),
}

# The facts a rule may name. Lead facts come from `facts.lead_facts`; routing adds `score`.
LEAD_FACTS: dict[str, FactType] = {
    "full_name": FactType.TEXT,
    "email": FactType.TEXT,
    "email_domain": FactType.TEXT,
    "phone_e164": FactType.TEXT,
    "phone_type": FactType.TEXT,
    "phone_country": FactType.TEXT,
    "company": FactType.TEXT,
    "domain": FactType.TEXT,
    "city": FactType.TEXT,
    "country": FactType.TEXT,
    "title": FactType.TEXT,
    "source": FactType.TEXT,
    "source_kind": FactType.TEXT,
    "flags": FactType.LIST,
    "email_verified": FactType.BOOLEAN,
    "phone_verified": FactType.BOOLEAN,
    "email_confidence": FactType.NUMBER,
    "phone_confidence": FactType.NUMBER,
    "age_days": FactType.NUMBER,
    # Engagement, counted from messages and replies as outreach records them.
    "messages_sent": FactType.NUMBER,
    "replies": FactType.NUMBER,
}
ATTRIBUTE_PREFIX = "attributes."  # enrichment: any key of the lead's attributes
MAX_PATTERN_LENGTH = 500
MAX_LIST_VALUES = 1000


def fact_type(name: str, catalogue: Mapping[str, FactType]) -> FactType | None:
    if name in catalogue:
        return catalogue[name]
    if name.startswith(ATTRIBUTE_PREFIX) and len(name) > len(ATTRIBUTE_PREFIX):
        return FactType.ANY
    return None


class Condition(Input):
    fact: str
    op: Operator
    value: Any = None

    # A cached property, not a private attribute: pydantic serves private attributes through
    # `__getattr__`, which cost more than the look-up itself on every evaluation.
    @cached_property
    def texts(self) -> frozenset[str] | None:
        """For in / not_in over text only: the case-folded values, built once (a rule is
        evaluated against every lead), so membership is one set look-up."""
        value = self.value
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return frozenset(v.casefold() for v in value)
        return None


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """Why a rule cannot be saved: which rule (its index and id), which fact, and the reason."""

    rule: int
    rule_id: str | None
    field: str
    reason: str

    def as_error(self, prefix: str = "rules") -> dict[str, Any]:
        where = f"{prefix}[{self.rule}]" + (f" ({self.rule_id})" if self.rule_id else "")
        return {"field": f"{where}.{self.field}", "reason": self.reason}


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a bad pattern is our user's mistake, reported to them
    options.max_mem = 8 << 20  # bounded memory for the compiled automaton as well
    return options


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """Case-insensitive RE2; raises ValueError, with RE2's reason, for a pattern it refuses."""
    try:
        return re2.compile(f"(?i:{pattern})", options=_options())
    except re2.error as error:
        reason = error.args[0] if error.args else error
        text = reason.decode() if isinstance(reason, bytes) else str(reason)
        raise ValueError(text) from None


def _is_number(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond a float's range compares with nothing
        return False


def _check_value(kind: FactType, op: Operator, value: Any) -> str | None:
    """The reason `value` does not fit `op` on a fact of type `kind`, or None."""
    if op is Operator.EXISTS:
        return None if isinstance(value, bool) else "exists takes true or false"
    if op in (Operator.IN, Operator.NOT_IN):
        if not isinstance(value, list) or not value:
            return f"{op} takes a non-empty list"
        if len(value) > MAX_LIST_VALUES:
            return f"{op} takes at most {MAX_LIST_VALUES} values"
        return next((r for v in value if (r := _check_scalar(kind, v))), None)
    if op is Operator.RANGE:
        if not isinstance(value, dict) or not set(value) <= {"min", "max"} or not value:
            return 'range takes {"min": number, "max": number} (either may be omitted)'
        if not all(_is_number(v) for v in value.values()):
            return "range bounds must be numbers"
        if "min" in value and "max" in value and value["min"] > value["max"]:
            return "range min is above max"
        return None
    if op in _COMPARISONS:
        return None if _is_number(value) else f"{op} takes a number"
    if op is Operator.REGEX:
        if not isinstance(value, str) or not value:
            return "regex takes a non-empty pattern"
        if len(value) > MAX_PATTERN_LENGTH:
            return f"regex patterns are limited to {MAX_PATTERN_LENGTH} characters"
        try:
            compile_pattern(value)
        except ValueError as error:
            return f"invalid regular expression: {error}"
        return None
    if op is Operator.CONTAINS:
        return None if isinstance(value, str) and value else "contains takes non-empty text"
    return _check_scalar(kind, value)  # equals, not_equals


def _check_scalar(kind: FactType, value: Any) -> str | None:
    if kind is FactType.NUMBER:
        return None if _is_number(value) else "value must be a number"
    if kind is FactType.BOOLEAN:
        return None if isinstance(value, bool) else "value must be true or false"
    if kind is FactType.TEXT:
        return None if isinstance(value, str) else "value must be text"
    ok = isinstance(value, str | bool) or _is_number(value)
    return None if ok else "value must be text, a number or true/false"


def check_condition(condition: Condition, catalogue: Mapping[str, FactType]) -> list[str]:
    """Reasons this condition is invalid (field-relative paths are added by the caller)."""
    kind = fact_type(condition.fact, catalogue)
    if kind is None:
        return [f"unknown fact {condition.fact!r}"]
    if condition.op not in ALLOWED[kind]:
        allowed = ", ".join(sorted(ALLOWED[kind]))
        return [
            f"operator {condition.op} does not apply to {kind} fact {condition.fact!r} "
            f"(allowed: {allowed})"
        ]
    reason = _check_value(kind, condition.op, condition.value)
    return [reason] if reason else []


def check_conditions(
    conditions: Sequence[Condition],
    catalogue: Mapping[str, FactType],
    *,
    rule: int,
    rule_id: str | None,
    path: str = "when",
) -> list[RuleProblem]:
    return [
        RuleProblem(rule, rule_id, f"{path}[{i}]", reason)
        for i, condition in enumerate(conditions)
        for reason in check_condition(condition, catalogue)
    ]


# --- evaluation ---------------------------------------------------------------------------


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _as_number(value: Any) -> float | None:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except (ValueError, OverflowError):
            return None
        return number if math.isfinite(number) else None
    return None


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    if _is_number(expected):
        number = _as_number(actual)
        return number is not None and number == float(expected)
    if isinstance(actual, str) and isinstance(expected, str):
        return actual.casefold() == expected.casefold()
    return False


def evaluate(condition: Condition, facts: Mapping[str, Any]) -> bool:
    """Whether the facts satisfy a condition that passed `check_condition`. A missing fact
    satisfies only `exists: false` (and the negative operators): nothing is guessed."""
    actual = facts.get(condition.fact)
    op, expected = condition.op, condition.value
    if op is Operator.EXISTS:
        return (not _empty(actual)) is bool(expected)
    if op is Operator.NOT_EQUALS:
        return not _same(actual, expected)
    if op in (Operator.IN, Operator.NOT_IN) and isinstance(actual, str) and actual:
        texts = condition.texts
        if texts is not None:
            return (actual.casefold() in texts) is (op is Operator.IN)
    if op is Operator.NOT_IN:
        return not any(_same(actual, v) for v in expected)
    if _empty(actual):
        return False
    if op is Operator.EQUALS:
        return _same(actual, expected)
    if op is Operator.IN:
        return any(_same(actual, v) for v in expected)
    if op is Operator.CONTAINS:
        if isinstance(actual, list):
            return any(_same(item, expected) for item in actual)
        return isinstance(actual, str) and expected.casefold() in actual.casefold()
    if op is Operator.REGEX:
        return isinstance(actual, str) and compile_pattern(expected).search(actual) is not None
    number = _as_number(actual)
    if number is None:
        return False
    if op is Operator.RANGE:
        low, high = expected.get("min"), expected.get("max")
        return (low is None or number >= low) and (high is None or number <= high)
    limit = float(expected)
    if op is Operator.GT:
        return number > limit
    if op is Operator.GTE:
        return number >= limit
    if op is Operator.LT:
        return number < limit
    return number <= limit


def evaluate_all(conditions: Sequence[Condition], facts: Mapping[str, Any]) -> bool:
    """All conditions hold (an empty list always holds: a catch-all)."""
    return all(evaluate(condition, facts) for condition in conditions)


def shown(value: Any) -> Any:
    """A fact's value as a trace shows it: short, JSON-safe."""
    if isinstance(value, str) and len(value) > 120:
        return value[:117] + "…"
    if isinstance(value, list):
        return [shown(v) for v in value[:20]]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
