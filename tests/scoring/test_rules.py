"""The rule language: what is refused when saved, how each operator evaluates, and that a
hostile regular expression cannot stall the scorer."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadrelay.scoring import icp
from leadrelay.scoring.rules import LEAD_FACTS, Condition, check_condition, evaluate


def cond(fact: str, op: str, value: Any = None) -> Condition:
    return Condition.model_validate({"fact": fact, "op": op, "value": value})


class TestSaveTimeChecks:
    @pytest.mark.parametrize(
        ("condition", "reason"),
        [
            (cond("shoe_size", "equals", "42"), "unknown fact 'shoe_size'"),
            (cond("country", "gt", 3), "operator gt does not apply to text fact 'country'"),
            (cond("flags", "regex", "x"), "operator regex does not apply to list fact 'flags'"),
            (cond("email_verified", "in", [True]), "operator in does not apply to boolean"),
            (cond("title", "regex", "(a"), "invalid regular expression"),
            (cond("title", "regex", r"(a)\1"), "invalid regular expression"),
            (cond("title", "regex", "x" * 501), "limited to 500 characters"),
            (cond("email_confidence", "range", {"min": 0.9, "max": 0.1}), "min is above max"),
            (cond("email_confidence", "range", {"low": 1}), "range takes"),
            (cond("email_confidence", "gte", "high"), "gte takes a number"),
            (cond("country", "in", []), "in takes a non-empty list"),
            (cond("country", "in", ["US", 3]), "value must be text"),
            (cond("country", "exists", "yes"), "exists takes true or false"),
            (cond("email_confidence", "equals", float("nan")), "value must be a number"),
        ],
    )
    def test_refuses_with_the_reason(self, condition: Condition, reason: str) -> None:
        reasons = check_condition(condition, LEAD_FACTS)
        assert reasons, condition
        assert reason in reasons[0]

    def test_enrichment_attributes_are_open(self) -> None:
        assert check_condition(cond("attributes.employees", "gte", 50), LEAD_FACTS) == []
        assert check_condition(cond("attributes.", "exists", True), LEAD_FACTS)

    def test_a_rule_set_names_the_rule_and_the_condition(self) -> None:
        body = icp.RuleSetBody.model_validate(
            {
                "rules": [
                    {
                        "id": "ok",
                        "label": "OK",
                        "when": [cond("country", "equals", "US")],
                        "points": 5,
                    },
                    {
                        "id": "bad",
                        "label": "Bad",
                        "when": [cond("nope", "exists", True)],
                        "points": 5,
                    },
                    {
                        "id": "ok",
                        "label": "Twice",
                        "when": [cond("city", "exists", True)],
                        "points": 1,
                    },
                ]
            }
        )
        errors = icp.problems_as_errors(icp.check_rule_set(body))
        assert {"field": "rules[1] (bad).when[0]", "reason": "unknown fact 'nope'"} in errors
        assert {"field": "rules[2] (ok).id", "reason": "duplicate rule id"} in errors


class TestEvaluation:
    FACTS: dict[str, Any] = {  # noqa: RUF012
        "country": "US",
        "title": "VP of Sales",
        "flags": ["email_verified", "role_email"],
        "email_confidence": 0.85,
        "email_verified": True,
        "attributes.employees": "250",
        "city": None,
    }

    @pytest.mark.parametrize(
        ("condition", "expected"),
        [
            (cond("country", "equals", "us"), True),
            (cond("country", "not_equals", "US"), False),
            (cond("country", "in", ["GB", "US"]), True),
            (cond("country", "not_in", ["GB"]), True),
            (cond("title", "contains", "sales"), True),
            (cond("title", "regex", r"^(vp|head)\b"), True),
            (cond("flags", "contains", "role_email"), True),
            (cond("flags", "contains", "disposable_email"), False),
            (cond("email_confidence", "range", {"min": 0.8}), True),
            (cond("email_confidence", "range", {"min": 0.1, "max": 0.5}), False),
            (cond("email_confidence", "gt", 0.85), False),
            (cond("email_confidence", "gte", 0.85), True),
            (cond("email_verified", "equals", True), True),
            (cond("attributes.employees", "gte", 200), True),  # numeric text compares as number
            (cond("attributes.employees", "lt", 200), False),
            (cond("city", "exists", False), True),
            (cond("city", "equals", "Paris"), False),  # missing never matches a positive test
            (cond("phone_e164", "exists", True), False),
        ],
    )
    def test_operators(self, condition: Condition, expected: bool) -> None:
        assert check_condition(condition, LEAD_FACTS) == []
        assert evaluate(condition, self.FACTS) is expected

    def test_a_catastrophic_pattern_runs_in_linear_time(self) -> None:
        # (a+)+$ takes exponential time on a backtracking engine for "aaaa…b".
        condition = cond("title", "regex", "(a+)+$")
        assert check_condition(condition, LEAD_FACTS) == []
        started = time.perf_counter()
        assert evaluate(condition, {"title": "a" * 100_000 + "b"}) is False
        assert time.perf_counter() - started < 0.5

    @given(
        st.dictionaries(
            st.sampled_from(sorted(LEAD_FACTS)),
            st.one_of(
                st.none(), st.text(), st.integers(), st.floats(), st.booleans(), st.lists(st.text())
            ),
        )
    )
    def test_never_raises_on_any_facts(self, facts: dict[str, Any]) -> None:
        for condition in [
            cond("country", "in", ["US"]),
            cond("title", "regex", "a.*b"),
            cond("email_confidence", "range", {"min": 0, "max": 1}),
            cond("flags", "contains", "x"),
            cond("email_verified", "equals", True),
        ]:
            assert evaluate(condition, facts) in (True, False)


class TestScore:
    def test_breakdown_adds_up_and_is_clipped(self) -> None:
        body = icp.RuleSetBody.model_validate(
            {
                "threshold": 60,
                "rules": [
                    {
                        "id": "us",
                        "label": "US",
                        "when": [cond("country", "equals", "US")],
                        "points": 70,
                    },
                    {
                        "id": "vp",
                        "label": "VP",
                        "when": [cond("title", "contains", "vp")],
                        "points": 50,
                    },
                    {
                        "id": "free",
                        "label": "Free mail",
                        "when": [cond("flags", "contains", "free_email")],
                        "points": -30,
                    },
                ],
            }
        )
        result = icp.score(body, {"country": "US", "title": "VP Sales", "flags": []})
        assert (result.score, result.total, result.qualified) == (100, 120, True)
        assert [b["rule"] for b in result.breakdown] == ["us", "vp"]
        assert result.breakdown[0]["matched"] == {"country": "US"}
        low = icp.score(body, {"flags": ["free_email"]})
        assert (low.score, low.total, low.qualified) == (0, -30, False)
        assert icp.matches(body, {"country": "US"}) == {"us": True, "vp": False, "free": False}
