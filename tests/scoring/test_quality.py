"""Scoring quality from CRM outcomes, and suggested weights: numbers checked against hand
arithmetic, the undefined cases reported as None with a reason, order never mattering, and a
suggestion that finds the rule that actually predicts wins."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrelay.scoring.quality import (
    CalibrationRow,
    DecileRow,
    NotEnoughOutcomes,
    quality_report,
    score_with,
    suggest_weights,
)

T, F = True, False

# Ten leads, four won, one tie (65/65) across the outcomes.
SCORES = [95, 85, 72, 65, 65, 50, 41, 30, 12, 5]
LABELS = [T, T, F, T, F, F, T, F, F, F]


def test_hand_computed_case() -> None:
    report = quality_report(SCORES, LABELS, threshold=60)

    assert report.labelled == 10
    assert report.positives == 4
    assert report.threshold == 60.0
    # AUC = P(won scores above lost), ties half: 24 won×lost pairs.
    # 95 and 85 beat all 6 lost; 65 beats 50, 30, 12, 5 and ties 65 → 4.5; 41 beats 3.
    assert report.auc == pytest.approx((6 + 6 + 4.5 + 3) / 24)  # 0.8125
    # >= 60 qualifies 95, 85, 72, 65(won), 65(lost).
    assert report.confusion == {"tp": 3, "fp": 2, "fn": 1, "tn": 4}
    assert report.precision == pytest.approx(3 / 5)
    assert report.recall == pytest.approx(3 / 4)
    assert report.f1 == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))  # 2/3

    # Ten leads → ten rank rows of one (0-based position p → decile p·10/10 + 1); the 65/65
    # tie at positions 3 and 4 stays together at its mean position 3.5 → decile 4, so
    # decile 5 is empty and has no row.
    overall = 0.4
    assert report.deciles == [
        DecileRow(1, 1, 1, 1.0, 1.0 / overall, 95.0, 95.0),
        DecileRow(2, 1, 1, 1.0, 1.0 / overall, 85.0, 85.0),
        DecileRow(3, 1, 0, 0.0, 0.0, 72.0, 72.0),
        DecileRow(4, 2, 1, 0.5, 0.5 / overall, 65.0, 65.0),
        DecileRow(6, 1, 0, 0.0, 0.0, 50.0, 50.0),
        DecileRow(7, 1, 1, 1.0, 1.0 / overall, 41.0, 41.0),
        DecileRow(8, 1, 0, 0.0, 0.0, 30.0, 30.0),
        DecileRow(9, 1, 0, 0.0, 0.0, 12.0, 12.0),
        DecileRow(10, 1, 0, 0.0, 0.0, 5.0, 5.0),
    ]

    calibration = [(r.bin_low, r.bin_high, r.leads, r.observed) for r in report.calibration]
    assert calibration == [
        (0, 9, 1, 0.0),
        (10, 19, 1, 0.0),
        (20, 29, 0, None),
        (30, 39, 1, 0.0),
        (40, 49, 1, 1.0),
        (50, 59, 1, 0.0),
        (60, 69, 2, 0.5),
        (70, 79, 1, 0.0),
        (80, 89, 1, 1.0),
        (90, 100, 1, 1.0),
    ]
    predicted = [r.predicted for r in report.calibration]
    assert predicted == pytest.approx([0.05, 0.12, 0.25, 0.30, 0.41, 0.5, 0.65, 0.72, 0.85, 0.95])
    # Squared errors: .0025 .0225 .5184 .1225 .4225 .25 .3481 .09 .0144 .0025 → 1.7934 / 10.
    assert report.brier == pytest.approx(0.17934)
    assert report.notes == ["Tied scores stay together, so 1 of 10 rank rows are empty."]


def test_deciles_group_leads_and_keep_tie_groups_whole() -> None:
    # 20 leads, 2 per decile (position p → decile ⌊p / 2⌋ + 1), except a tie of four at 50:
    # positions 8–11, mean 9.5 → decile 5, which leaves decile 6 empty.
    scores = [100, 95, 90, 85, 80, 75, 70, 65, 50, 50, 50, 50, 40, 35, 30, 25, 20, 15, 10, 5]
    labels = [T] * 8 + [T, F, F, F] + [F] * 8
    report = quality_report(scores, labels, threshold=60)
    assert [(r.decile, r.leads, r.positives) for r in report.deciles] == [
        (1, 2, 2),
        (2, 2, 2),
        (3, 2, 2),
        (4, 2, 2),
        (5, 4, 1),
        (7, 2, 0),
        (8, 2, 0),
        (9, 2, 0),
        (10, 2, 0),
    ]
    assert report.deciles[0].lift == pytest.approx(1 / (9 / 20))
    assert report.deciles[4].min_score == report.deciles[4].max_score == 50.0
    # 9 won × 11 lost pairs, all won above lost except 50(won) tying three 50(lost) → ½ each.
    assert report.auc == pytest.approx((9 * 11 - 1.5) / 99)


def test_perfect_and_inverted_rankings() -> None:
    scores = [90, 80, 70, 30, 20, 10]
    perfect = quality_report(scores, [T, T, T, F, F, F], threshold=60)
    inverted = quality_report(scores, [F, F, F, T, T, T], threshold=60)
    assert perfect.auc == 1.0
    assert inverted.auc == 0.0
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)
    assert (inverted.precision, inverted.recall, inverted.f1) == (0.0, 0.0, 0.0)
    assert inverted.confusion == {"tp": 0, "fp": 3, "fn": 3, "tn": 0}


def test_fewer_than_ten_leads_give_one_row_per_lead() -> None:
    report = quality_report([80, 20, 50], [T, F, T], threshold=60)
    assert [(r.decile, r.max_score) for r in report.deciles] == [(1, 80), (2, 50), (3, 20)]
    assert any("3 labelled leads" in note for note in report.notes)


def test_single_class_has_no_auc_and_says_why() -> None:
    lost = quality_report([70, 40, 10], [F, F, F], threshold=60)
    assert lost.auc is None
    assert lost.recall is None  # no won lead to recall
    assert lost.precision == 0.0
    assert lost.f1 == 0.0
    assert lost.brier == pytest.approx((0.49 + 0.16 + 0.01) / 3)
    assert any("AUC is undefined" in note for note in lost.notes)
    assert all(row.lift == 0.0 for row in lost.deciles)

    won = quality_report([70, 40], [T, T], threshold=80)
    assert won.auc is None
    assert won.precision is None  # nothing qualifies at 80
    assert won.recall == 0.0
    assert any("every labelled lead is won" in note for note in won.notes)
    assert any("Precision is undefined" in note for note in won.notes)


def test_all_true_negatives_leave_f1_undefined() -> None:
    report = quality_report([10, 20], [F, F], threshold=60)
    assert (report.precision, report.recall, report.f1) == (None, None, None)
    assert report.confusion == {"tp": 0, "fp": 0, "fn": 0, "tn": 2}


def test_empty_input() -> None:
    report = quality_report([], [], threshold=60)
    assert report.labelled == report.positives == 0
    assert (report.auc, report.precision, report.recall, report.f1, report.brier) == (None,) * 5
    assert report.confusion == {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    assert report.deciles == []
    assert len(report.calibration) == 10
    assert all(row.leads == 0 and row.observed is None for row in report.calibration)
    assert report.calibration[0] == CalibrationRow(0, 9, 0, 0.05, None)
    assert report.notes == ["No labelled leads yet: nothing to measure."]


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="2 scores but 1 labels"):
        quality_report([1, 2], [T], threshold=60)
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        quality_report([101], [T], threshold=60)
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        quality_report([float("nan")], [T], threshold=60)


# Few distinct scores, so ties (within and across outcomes) are the common case.
leads_strategy = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 10).map(lambda v: v * 10.0), st.floats(0, 100)),
        st.booleans(),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), leads=leads_strategy)
def test_any_permutation_gives_the_same_report(
    data: st.DataObject, leads: list[tuple[float, bool]]
) -> None:
    shuffled = data.draw(st.permutations(leads))
    original = quality_report([s for s, _ in leads], [y for _, y in leads], threshold=60)
    permuted = quality_report([s for s, _ in shuffled], [y for _, y in shuffled], threshold=60)
    assert permuted == original


@settings(max_examples=60, deadline=None)
@given(leads=leads_strategy)
def test_deciles_partition_the_leads_in_score_order(leads: list[tuple[float, bool]]) -> None:
    report = quality_report([s for s, _ in leads], [y for _, y in leads], threshold=60)
    assert sum(row.leads for row in report.deciles) == len(leads)
    assert sum(row.positives for row in report.deciles) == report.positives
    assert sum(row.leads for row in report.calibration) == len(leads)
    numbers = [row.decile for row in report.deciles]
    assert numbers == sorted(set(numbers))
    assert all(1 <= number <= 10 for number in numbers)
    for upper, lower in zip(report.deciles, report.deciles[1:], strict=False):
        assert upper.min_score > lower.max_score  # a tie never straddles two rows


# --- suggest_weights ----------------------------------------------------------------------


def population(size: int, seed: int = 7) -> tuple[list[dict[str, bool]], list[bool]]:
    """`fit` leads win 70 % of the time, others 10 %; `noise` is a coin flip, unrelated."""
    rng = np.random.default_rng(seed)
    fit = rng.random(size) < 0.5
    noise = rng.random(size) < 0.5
    won = rng.random(size) < np.where(fit, 0.7, 0.1)
    matches = [{"fit": bool(f), "noise": bool(n)} for f, n in zip(fit, noise, strict=True)]
    return matches, [bool(w) for w in won]


BAD_POINTS = {"fit": 0, "noise": 70}  # rewards the coin flip, ignores the real signal


def test_suggestion_finds_the_predictive_rule() -> None:
    matches, labels = population(400)
    suggestion = suggest_weights(matches, labels, BAD_POINTS, threshold=60, seed=1)
    by_id = {rule.rule_id: rule for rule in suggestion.rules}

    assert [rule.rule_id for rule in suggestion.rules] == ["fit", "noise"]
    assert by_id["fit"].current_points == 0
    assert by_id["noise"].current_points == 70
    assert by_id["fit"].suggested_points >= 40
    assert abs(by_id["noise"].suggested_points) <= 15
    assert by_id["fit"].suggested_points - by_id["noise"].suggested_points >= 30
    assert by_id["fit"].coefficient > 1.5
    assert by_id["fit"].matched == sum(m["fit"] for m in matches)
    fit_rate = by_id["fit"].positive_rate
    assert fit_rate is not None
    assert 0.6 < fit_rate < 0.8

    assert suggestion.train_size + suggestion.test_size == 400
    assert suggestion.test_size == 120
    current, suggested = suggestion.backtest_current, suggestion.backtest_suggested
    assert current.labelled == suggested.labelled == 120
    assert current.auc is not None
    assert suggested.auc is not None
    assert suggested.auc >= current.auc
    assert suggested.auc > 0.7


def test_points_put_log_odds_zero_at_the_threshold() -> None:
    matches, labels = population(300)
    suggestion = suggest_weights(matches, labels, BAD_POINTS, threshold=60)
    assert suggestion.intercept < 0
    scale = 60 / -suggestion.intercept
    for rule in suggestion.rules:
        expected = max(-100, min(100, round(rule.coefficient * scale)))
        assert rule.suggested_points == expected
    # A lead matching no rule scores 0; the model says it is below even odds, as it should.
    points = {rule.rule_id: rule.suggested_points for rule in suggestion.rules}
    assert score_with(points, {}) == 0


def test_when_no_rule_describes_good_leads_the_ranking_is_kept_and_explained() -> None:
    # `bad` leads win 10 %, all others 70 %: a lead matching nothing beats the average, which
    # points without an intercept cannot say; the fallback scale keeps the ordering.
    rng = np.random.default_rng(11)
    bad = rng.random(300) < 0.5
    noise = rng.random(300) < 0.5
    labels = [bool(w) for w in rng.random(300) < np.where(bad, 0.1, 0.7)]
    matches = [{"bad": bool(b), "noise": bool(n)} for b, n in zip(bad, noise, strict=True)]
    suggestion = suggest_weights(matches, labels, {"bad": 0, "noise": 0}, threshold=60)
    by_id = {rule.rule_id: rule for rule in suggestion.rules}
    assert suggestion.intercept > 0
    assert by_id["bad"].suggested_points <= -50
    assert abs(by_id["noise"].suggested_points) <= 15
    spread = sum(abs(rule.coefficient) for rule in suggestion.rules)
    assert by_id["bad"].suggested_points == round(by_id["bad"].coefficient * 100 / spread)
    assert any("better than average" in note for note in suggestion.notes)


def test_suggestion_is_deterministic_for_a_seed() -> None:
    matches, labels = population(200)
    first = suggest_weights(matches, labels, BAD_POINTS, threshold=60, seed=3)
    second = suggest_weights(matches, labels, BAD_POINTS, threshold=60, seed=3)
    assert first == second


def test_refuses_without_enough_outcomes() -> None:
    matches, labels = population(200)
    with pytest.raises(NotEnoughOutcomes, match="at least 30"):
        suggest_weights(matches[:29], labels[:29], BAD_POINTS, threshold=60)
    with pytest.raises(NotEnoughOutcomes, match="two of each"):
        suggest_weights(matches, [False] * 200, BAD_POINTS, threshold=60)
    with pytest.raises(NotEnoughOutcomes, match="two of each"):
        suggest_weights(matches, [True] + [False] * 199, BAD_POINTS, threshold=60)
    with pytest.raises(ValueError, match="200 match rows but 199 labels"):
        suggest_weights(matches, labels[:199], BAD_POINTS, threshold=60)
    assert issubclass(NotEnoughOutcomes, ValueError)


def test_missing_and_unknown_rule_ids() -> None:
    matches, labels = population(100)
    # "dormant" is never a key (so never matched); "retired" is not in the rule set.
    rows = [{**row, "retired": True} for row in matches]
    suggestion = suggest_weights(rows, labels, {**BAD_POINTS, "dormant": 25}, threshold=60)
    dormant = next(rule for rule in suggestion.rules if rule.rule_id == "dormant")
    assert (dormant.matched, dormant.positive_rate, dormant.suggested_points) == (0, None, 0)
    assert any("retired" in note for note in suggestion.notes)
    assert any("dormant" in note for note in suggestion.notes)


def test_score_with_sums_matched_points_and_clips() -> None:
    points = {"a": 40, "b": 35, "c": 50, "neg": -30}
    assert score_with(points, {"a": True, "b": True}) == 75
    assert score_with(points, {"a": True, "b": True, "c": True}) == 100
    assert score_with(points, {"neg": True}) == 0
    assert score_with(points, {"a": True, "neg": True, "unknown": True}) == 10
    assert score_with(points, {}) == 0
