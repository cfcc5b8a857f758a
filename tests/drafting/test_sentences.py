"""Sentences of segmented text: the planned path (wording plans, layouts cached per shape) must
give exactly what the rule gives on the joined text, however values and wording meet."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrelay.drafting import sentences
from leadrelay.drafting.evidence import Confidence, Evidence, lowest
from leadrelay.drafting.sentences import (
    Sentence,
    sentences_of,
    split_segments,
    split_sentences,
    wording_plan,
)
from leadrelay.drafting.templates import Segment, SegmentKind

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
HIGH, LOW = Confidence.HIGH, Confidence.LOW

# Characters and pieces that exercise every exception of the rule: runs, closers and openers,
# abbreviations, initials, lower-case continuations, line breaks, tabs.
ALPHABET = [*"ab AeEgiDrxX.!?…\"'”’)]([“‘ \t\n", "e.g", "Dr", "Inc.", "\n\n", "..", ". ", "ﬁg"]
VALUE_ALPHABET = [*"abAeEgiDrxX.!?\"') ([", "e.g", "Dr", "Inc.", " ", "..", ". ", "\n", "S.A."]
FIELDS = ["company", "title", "first_name", None]


def pieces(alphabet: list[str], max_size: int) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(alphabet), max_size=max_size).map("".join)


def evidence(field: str, value: str, confidence: Confidence) -> Evidence:
    return Evidence(field, value, "web_form", NOW, confidence, 1)


def by_the_rule(segments: list[Segment]) -> list[Sentence]:
    """The sentences without any plan: `split_sentences` on the joined text, then the segments
    each sentence overlaps."""
    text = "".join(segment.text for segment in segments)
    placed: list[tuple[int, int, Segment]] = []
    position = 0
    for segment in segments:
        placed.append((position, position + len(segment.text), segment))
        position += len(segment.text)
    protected = [
        (start, end) for start, end, s in placed if s.kind in (SegmentKind.VALUE, SegmentKind.GAP)
    ]
    result = []
    for start, end in split_sentences(text, protected):
        inside = [s for s_start, s_end, s in placed if s_start < end and s_end > start]
        values: dict[str, Evidence] = {}
        gaps: dict[str, None] = {}
        for s in inside:
            if s.kind is SegmentKind.VALUE and s.evidence and s.field:
                values.setdefault(s.field, s.evidence)
            elif s.kind is SegmentKind.GAP and s.field:
                gaps[s.field] = None
        result.append(
            Sentence(
                text[start:end],
                start,
                end,
                list(values.values()),
                lowest(e.confidence for e in values.values()),
                list(gaps),
                bool(inside) and all(s.kind is SegmentKind.COMPLIANCE for s in inside),
            )
        )
    return result


@pytest.fixture(autouse=True)
def _no_plans_from_other_tests() -> Iterator[None]:
    sentences._SHAPES.clear()
    yield
    sentences._SHAPES.clear()


class TestWordingPlan:
    @settings(max_examples=300, deadline=None)
    @given(pieces(ALPHABET, 12))
    def test_cached_plan_is_the_plan(self, text: str) -> None:
        assert wording_plan(text) == wording_plan.__wrapped__(text)

    def test_template_wording_decides_its_own_sentences(self) -> None:
        plan = wording_plan(", you probably know. I'd love to hear.\n\nCheers,\n")
        assert plan.head == 0
        assert plan.tail == len(", you probably know. I'd love to hear.\n\nCheers,\n")
        assert all(decided for _, decided in plan.steps)


class TestSplitSegments:
    @settings(max_examples=500, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(list(SegmentKind)),
                pieces(ALPHABET, 8),
            ),
            max_size=7,
        )
    )
    def test_gives_the_rules_spans(self, parts: list[tuple[SegmentKind, str]]) -> None:
        segments = [Segment(text, kind) for kind, text in parts]
        text = "".join(text for _, text in parts)
        protected = []
        position = 0
        for kind, part in parts:
            if kind in (SegmentKind.VALUE, SegmentKind.GAP):
                protected.append((position, position + len(part)))
            position += len(part)
        assert split_segments(segments) == split_sentences(text, protected)


# A shape (kinds, wording, fields) and, for it, several drafts' values: the later drafts reuse
# the layout the first one left, which must still be right for their own values.
shapes = st.lists(
    st.tuples(
        st.sampled_from(
            [SegmentKind.TEXT, SegmentKind.VALUE, SegmentKind.GAP, SegmentKind.COMPLIANCE]
        ),
        pieces(ALPHABET, 8),
        st.sampled_from(FIELDS),
    ),
    max_size=6,
)
values = st.lists(
    st.tuples(pieces(VALUE_ALPHABET, 4), st.sampled_from(list(Confidence))),
    min_size=6,
    max_size=6,
)


class TestSentencesOf:
    @settings(max_examples=300, deadline=None)
    @given(shapes, st.lists(values, min_size=1, max_size=6))
    def test_planned_sentences_are_the_rules(
        self,
        shape: list[tuple[SegmentKind, str, str | None]],
        drafts: list[list[tuple[str, Confidence]]],
    ) -> None:
        for draft_values in drafts:
            segments = []
            for (kind, wording, field), (value, confidence) in zip(
                shape, draft_values, strict=False
            ):
                if kind is SegmentKind.VALUE:
                    found = None if field is None else evidence(field, value, confidence)
                    segments.append(Segment(value, kind, field, found))
                elif kind is SegmentKind.GAP:
                    segments.append(Segment(f"[missing: {field}]", kind, field))
                else:
                    segments.append(Segment(wording, kind))
            assert sentences_of(segments) == by_the_rule(segments)

    def test_drafts_of_one_shape_share_a_layout(self) -> None:
        def draft(company: str, title: str) -> list[Segment]:
            return [
                Segment("Hi, the team at "),
                Segment(company, SegmentKind.VALUE, "company", evidence("company", company, HIGH)),
                Segment(".\n\nAs "),
                Segment(title, SegmentKind.VALUE, "title", evidence("title", title, LOW)),
                Segment(", you know. Thanks."),
            ]

        first = draft("Globex Systems", "CTO")
        second = draft("Acme Robotics", "Head of Sales")
        assert sentences_of(first) == by_the_rule(first)
        assert sentences_of(second) == by_the_rule(second)
        (plan,) = sentences._SHAPES.values()
        assert len(plan.layouts) == 1
        assert [s.text for s in sentences_of(second)] == [
            "Hi, the team at Acme Robotics.",
            "As Head of Sales, you know.",
            "Thanks.",
        ]

    def test_a_value_ending_a_sentence_inside_itself_is_split_by_the_rule(self) -> None:
        company = "Acme\nRobotics"  # not from `clean_value`, but sentences_of takes any segments
        segments = [
            Segment("About "),
            Segment(company, SegmentKind.VALUE, "company", evidence("company", company, LOW)),
            Segment(". Bye."),
        ]
        assert sentences_of(segments) == by_the_rule(segments)
        assert sentences_of(segments) == by_the_rule(segments)  # and again, not from a layout

    def test_the_joined_text_may_be_passed_in(self) -> None:
        segments = [Segment("Hello there. "), Segment("Bye.", SegmentKind.COMPLIANCE)]
        assert sentences_of(segments, text="Hello there. Bye.") == by_the_rule(segments)
