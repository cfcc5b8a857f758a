"""How good is a tenant's ICP scoring, judged by what the CRM later said about the leads, and
what points would have done better.

Scores are promises ("this lead is worth a rep's time"); CRM outcomes (won, lost,
disqualified) are how those promises get checked. Managers need that check in numbers they
can act on — ranking quality (AUC), what the qualification threshold lets through
(precision, recall, confusion), whether the top deciles really win more (lift), and whether a
score of 70 means anything like a 70 % chance (calibration). `suggest_weights` then fits a
logistic regression on which rules each lead matched and turns it back into integer points on
the same 0–100 scale, with a backtest of current against suggested points on held-out leads.

Everything here is pure: plain sequences in, frozen dataclasses out, no database and no side
effects — in particular a suggestion is only ever a proposal; activating it stays a separate,
deliberate act on a rule-set version.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# scikit-learn (with scipy) takes seconds to import, so it is imported inside the functions
# that use it: modules that only need these dataclasses, and app start-up, stay fast.

MAX_SCORE = 100
DECILES = 10
CALIBRATION_WIDTH = 10
MAX_RULE_POINTS = 100


@dataclass(frozen=True, slots=True)
class DecileRow:
    decile: int  # 1 = highest scores
    leads: int
    positives: int
    rate: float
    lift: float  # rate / overall rate; 0 when the overall rate is 0
    min_score: float
    max_score: float


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    bin_low: int
    bin_high: int  # inclusive label: 0-9, 10-19, …, 90-100
    leads: int
    predicted: float  # mean score / 100 (the bin's centre when the bin is empty)
    observed: float | None  # positive rate; None when the bin is empty


@dataclass(frozen=True, slots=True)
class QualityReport:
    labelled: int
    positives: int
    threshold: float
    auc: float | None  # None when only one class is present (see notes)
    precision: float | None  # at score >= threshold; None when undefined
    recall: float | None
    f1: float | None
    confusion: dict[str, int]  # tp, fp, fn, tn
    deciles: list[DecileRow]
    calibration: list[CalibrationRow]
    brier: float | None
    notes: list[str]


@dataclass(frozen=True, slots=True)
class SuggestedRule:
    rule_id: str
    current_points: int
    suggested_points: int
    coefficient: float  # log-odds per match, from the fitted model
    matched: int  # labelled leads matching it
    positive_rate: float | None  # among those; None when it matched none


@dataclass(frozen=True, slots=True)
class Suggestion:
    rules: list[SuggestedRule]
    intercept: float  # log-odds of a lead matching no rule (class-balanced)
    backtest_current: QualityReport  # both on the held-out part
    backtest_suggested: QualityReport
    train_size: int
    test_size: int
    notes: list[str]


class NotEnoughOutcomes(ValueError):
    """Too few labelled leads, or not both outcomes, to fit anything worth suggesting."""


def score_with(points: Mapping[str, int], matched: Mapping[str, bool]) -> int:
    """The score a lead would get under `points`: the sum of the points of the rules it
    matched (a missing rule id means not matched), clipped to 0–100 like the real scorer."""
    total = sum(value for rule_id, value in points.items() if matched.get(rule_id, False))
    return max(0, min(MAX_SCORE, total))


# --- quality ------------------------------------------------------------------------------


def quality_report(
    scores: Sequence[float], labels: Sequence[bool], *, threshold: float
) -> QualityReport:
    """Measure scores (0–100) against outcomes (True = won).

    The report depends only on the multiset of (score, label) pairs, never on their order:
    the pairs are put in one canonical order first, so even floating-point sums come out
    bit-for-bit the same for any permutation of the input.

    Deciles rank leads by score, highest first; with fewer than ten leads there is one row
    per lead instead: with n leads in b = min(10, n) rows, the lead at 0-based position p
    (highest score first) belongs to row ⌊p·b / n⌋ + 1. Tied scores are never split: a tie
    group goes, whole, to the row of its mean position — splitting it would make the rows
    depend on which of the tied leads came first. So a large tie group can leave rows empty;
    empty rows are left out and the others keep their nominal numbers (a note says how many
    are missing).

    Calibration bins are 0–9, 10–19, …, 90–100 (a score s falls in bin floor(s / 10), the
    last bin also taking 100), all ten always present.
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score

    raw = np.asarray(scores, dtype=np.float64).reshape(-1)
    if np.isnan(raw).any() or (raw < 0).any() or (raw > MAX_SCORE).any():
        raise ValueError(f"scores must be numbers within 0..{MAX_SCORE}")
    # -0.0 ties with 0.0, so which of the two lands where would follow the input order;
    # + 0.0 turns -0.0 into 0.0 and keeps the canonical arrays bit-for-bit identical.
    raw = raw + 0.0
    raw_labels = np.asarray(labels, dtype=np.bool_).reshape(-1)
    order = np.lexsort((raw_labels, -raw))
    s = raw[order]
    y = raw_labels[order]

    n = len(s)
    positives = int(y.sum())
    notes: list[str] = []
    if n == 0:
        notes.append("No labelled leads yet: nothing to measure.")
        return QualityReport(
            labelled=0,
            positives=0,
            threshold=float(threshold),
            auc=None,
            precision=None,
            recall=None,
            f1=None,
            confusion={"tp": 0, "fp": 0, "fn": 0, "tn": 0},
            deciles=[],
            calibration=_calibration(s, y),
            brier=None,
            notes=notes,
        )

    auc: float | None = None
    if positives == 0:
        notes.append("AUC is undefined: no labelled lead is won yet.")
    elif positives == n:
        notes.append("AUC is undefined: every labelled lead is won, none lost.")
    else:
        auc = float(roc_auc_score(y, s))

    predicted = s >= threshold
    # labels= pins the 2×2 shape even when a class is absent from both arrays.
    (tn, fp), (fn, tp) = confusion_matrix(y, predicted, labels=[False, True]).tolist()
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    # 2tp / (2tp + fp + fn) is F1 and stays defined (as 0) when only one of precision and
    # recall is; it is undefined only when every lead is a true negative.
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    if precision is None:
        notes.append(f"Precision is undefined: no lead scores {threshold:g} or more.")
    if recall is None:
        notes.append("Recall is undefined: no labelled lead is won yet.")

    deciles = _deciles(s, y)
    bins = min(DECILES, n)
    if n < DECILES:
        notes.append(f"Only {n} labelled leads: one rank row per lead instead of deciles.")
    if len(deciles) < bins:
        notes.append(
            f"Tied scores stay together, so {bins - len(deciles)} of {bins} rank rows are empty."
        )

    return QualityReport(
        labelled=n,
        positives=positives,
        threshold=float(threshold),
        auc=auc,
        precision=precision,
        recall=recall,
        f1=f1,
        confusion={"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        deciles=deciles,
        calibration=_calibration(s, y),
        brier=float(brier_score_loss(y, s / MAX_SCORE, pos_label=True)),
        notes=notes,
    )


def _deciles(s: npt.NDArray[np.float64], y: npt.NDArray[np.bool_]) -> list[DecileRow]:
    """Rows for scores sorted descending; a tie group goes to the decile of its mean position."""
    n = len(s)
    bins = min(DECILES, n)
    overall = float(y.mean())
    rows: dict[int, list[int]] = {}  # decile → [leads, positives, first index, last index]
    start = 0
    while start < n:
        end = start
        while end < n and s[end] == s[start]:
            end += 1
        # The group's mean position is start + (size - 1) / 2; doubled to stay in integers.
        decile = (2 * start + (end - start) - 1) * bins // (2 * n) + 1
        row = rows.setdefault(decile, [0, 0, start, start])
        row[0] += end - start
        row[1] += int(y[start:end].sum())
        row[3] = end - 1
        start = end
    result: list[DecileRow] = []
    for decile, (leads, positives, first, last) in sorted(rows.items()):
        rate = positives / leads
        result.append(
            DecileRow(
                decile=decile,
                leads=leads,
                positives=positives,
                rate=rate,
                lift=rate / overall if overall else 0.0,
                min_score=float(s[last]),
                max_score=float(s[first]),
            )
        )
    return result


def _calibration(s: npt.NDArray[np.float64], y: npt.NDArray[np.bool_]) -> list[CalibrationRow]:
    top = MAX_SCORE // CALIBRATION_WIDTH - 1
    index = np.minimum((s // CALIBRATION_WIDTH).astype(np.int64), top)
    rows: list[CalibrationRow] = []
    for b in range(top + 1):
        low = b * CALIBRATION_WIDTH
        high = MAX_SCORE if b == top else low + CALIBRATION_WIDTH - 1
        inside = index == b
        leads = int(inside.sum())
        if leads:
            predicted = float(s[inside].mean()) / MAX_SCORE
            observed: float | None = float(y[inside].mean())
        else:
            predicted = (low + CALIBRATION_WIDTH / 2) / MAX_SCORE
            observed = None
        rows.append(CalibrationRow(low, high, leads, predicted, observed))
    return rows


# --- suggested weights --------------------------------------------------------------------


def suggest_weights(
    matches: Sequence[Mapping[str, bool]],
    labels: Sequence[bool],
    current_points: Mapping[str, int],
    *,
    threshold: float,
    seed: int = 0,
    test_fraction: float = 0.3,
    min_labelled: int = 30,
) -> Suggestion:
    """Suggest integer points per rule from outcomes, and backtest them against the current
    points on leads the model never saw. Nothing is activated: this only proposes.

    `matches[i]` maps rule id → matched for labelled lead i (missing ids mean not matched;
    ids outside `current_points` are ignored, with a note). The labelled leads are split,
    stratified by outcome (`test_fraction` held out, reproducible for a given `seed`), and an
    L2-regularised logistic regression with balanced class weights is fitted on the train part.

    Points mapping. The model says log-odds z = b + Σ wᵢ·xᵢ (xᵢ = 1 when rule i matched). A
    rule set has no intercept, only points, so scores are S = Σ pᵢ·xᵢ with pᵢ = round(k·wᵢ).
    Choosing k = threshold / (−b) folds the intercept into the scale: then
    S = k·(z − b) = threshold + k·z, so a lead at log-odds 0 scores exactly the threshold
    (up to rounding), leads the model favours score above it, and every log-odds unit is
    worth k points. With balanced class weights, log-odds 0 means "win odds equal to the
    base rate's", so the suggestion qualifies leads that look better than the average lead.
    Each rule's points are clipped to [-100, 100], and scores to 0–100 as always.
    When b ≥ 0 (a lead matching no rule already looks better than average) or the threshold
    is 0, no positive k can place the boundary at the threshold; the fallback k maps the sum
    of all |wᵢ| to 100, which keeps the model's ordering of rules, and a note says so.

    Raises `NotEnoughOutcomes` with fewer than `min_labelled` labelled leads, or when either
    outcome has fewer than two leads (a stratified split needs two of each); `ValueError` for
    mismatched lengths or parameters out of range.
    """
    if len(matches) != len(labels):
        raise ValueError(f"{len(matches)} match rows but {len(labels)} labels")
    if not 0 <= threshold <= MAX_SCORE:
        raise ValueError(f"threshold must be within 0..{MAX_SCORE}")
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be strictly between 0 and 1")
    if not current_points:
        raise ValueError("the rule set has no rules to weigh")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    n = len(labels)
    y = np.asarray(labels, dtype=np.bool_).reshape(-1)
    won = int(y.sum())
    if n < min_labelled:
        raise NotEnoughOutcomes(
            f"{n} labelled leads; at least {min_labelled} are needed to suggest weights"
        )
    if won < 2 or n - won < 2:
        raise NotEnoughOutcomes(
            f"{won} won and {n - won} lost leads; at least two of each are needed"
        )
    # The same arithmetic train_test_split uses for a fractional test_size.
    test_size = math.ceil(test_fraction * n)
    if test_size < 2 or n - test_size < 2:
        raise NotEnoughOutcomes(
            f"{n} labelled leads cannot be split {test_fraction:g} held out with both outcomes"
        )

    rule_ids = list(current_points)
    x = np.array(
        [[bool(row.get(rule_id, False)) for rule_id in rule_ids] for row in matches],
        dtype=np.float64,
    ).reshape(n, len(rule_ids))
    notes: list[str] = []
    unknown = sorted({key for row in matches for key in row} - set(rule_ids))
    if unknown:
        notes.append(f"Ignored rule ids not in the current rule set: {', '.join(unknown)}.")

    train, test = train_test_split(np.arange(n), test_size=test_size, random_state=seed, stratify=y)
    if len(np.unique(y[train])) < 2:
        raise NotEnoughOutcomes("the training part holds only one outcome; add outcomes")
    # l1_ratio=0 is pure L2 (sklearn ≥ 1.8 deprecates `penalty`); lbfgs is deterministic,
    # random_state is pinned anyway so a future solver change cannot make output vary.
    model = LogisticRegression(C=1.0, l1_ratio=0.0, class_weight="balanced", random_state=seed)
    model.fit(x[train], y[train])
    coefficients = [float(value) for value in model.coef_[0]]
    intercept = float(model.intercept_[0])

    scale = _points_scale(coefficients, intercept, threshold, notes)
    suggested = {
        rule_id: max(-MAX_RULE_POINTS, min(MAX_RULE_POINTS, round(coefficient * scale)))
        for rule_id, coefficient in zip(rule_ids, coefficients, strict=True)
    }
    clipped = [
        rule_id
        for rule_id, coefficient in zip(rule_ids, coefficients, strict=True)
        if abs(round(coefficient * scale)) > MAX_RULE_POINTS
    ]
    if clipped:
        notes.append(f"Points clipped to ±{MAX_RULE_POINTS} for: {', '.join(clipped)}.")

    rules: list[SuggestedRule] = []
    never: list[str] = []
    for column, rule_id in enumerate(rule_ids):
        hit = x[:, column] > 0
        matched = int(hit.sum())
        if not matched:
            never.append(rule_id)
        rules.append(
            SuggestedRule(
                rule_id=rule_id,
                current_points=int(current_points[rule_id]),
                suggested_points=suggested[rule_id],
                coefficient=coefficients[column],
                matched=matched,
                positive_rate=float(y[hit].mean()) if matched else None,
            )
        )
    if never:
        notes.append(f"No labelled lead matched {', '.join(never)}: their points have no evidence.")

    held_out = y[test].tolist()
    backtest_current = quality_report(
        [score_with(current_points, matches[i]) for i in test], held_out, threshold=threshold
    )
    backtest_suggested = quality_report(
        [score_with(suggested, matches[i]) for i in test], held_out, threshold=threshold
    )
    if backtest_current.auc is None:
        notes.append("The held-out part has one outcome only: the backtest has no AUC.")

    return Suggestion(
        rules=rules,
        intercept=intercept,
        backtest_current=backtest_current,
        backtest_suggested=backtest_suggested,
        train_size=len(train),
        test_size=len(test),
        notes=notes,
    )


def _points_scale(
    coefficients: Sequence[float], intercept: float, threshold: float, notes: list[str]
) -> float:
    """Points per log-odds unit (see `suggest_weights` for why)."""
    # A near-zero intercept would make the scale explode and clip every rule to ±100,
    # losing the ranking; treat it like a non-negative one.
    if threshold > 0 and intercept < -1e-6:
        return threshold / -intercept
    if threshold > 0:
        notes.append(
            "The model rates a lead matching no rule as better than average, which points "
            "cannot express (such a lead scores 0): the suggestion keeps the model's ranking, "
            "not its boundary. Rules that describe good leads would help."
        )
    else:
        notes.append("With threshold 0 every lead qualifies; points keep the ranking only.")
    # Scaling by the total (not only the positive) weight keeps a near-zero coefficient from
    # being blown up to ±100 when the other rules all lower the odds.
    spread = sum(abs(coefficient) for coefficient in coefficients)
    if spread <= 0:
        notes.append("No rule moves the odds of winning: every suggested point is 0.")
        return 0.0
    return MAX_SCORE / spread
