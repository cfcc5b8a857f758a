"""Sentences of a draft: where each ends, and the evidence of the values it holds.

`split_sentences` is the rule. A template draft is mostly the template's wording, the same from
lead to lead, with a few values in between, so `sentences_of` applies the rule in parts: each
piece of wording is split once (its `WordingPlan`, cached by its text) and only the stretches
around values are scanned for each draft. The layout that follows (where each sentence starts
and ends relative to the segments, which values and gaps it holds) depends only on the wording
and on what the scans decided, so it is also worked out once per such shape; a draft then only
fills in its own values.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from leadrelay.drafting.evidence import Confidence, Evidence, lowest
from leadrelay.drafting.records import twin_of
from leadrelay.drafting.templates import Segment, SegmentKind

Span = tuple[int, int]

# Enum members named on their class cost about ten global lookups each on Python 3.11 (`EnumType`
# has a `__getattr__`, which sends every class attribute through a slow hook); hot code uses these.
_TEXT, _VALUE, _GAP = SegmentKind.TEXT, SegmentKind.VALUE, SegmentKind.GAP


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence of a draft: `text == body[start:end]`.

    `evidence`: the evidence of each lead value inserted in it (one per field, in order).
    `confidence`: the lowest among them; None when it inserts nothing (template wording).
    `gaps`: the missing fields shown in it. `compliance`: appended by the platform.
    """

    text: str
    start: int
    end: int
    evidence: list[Evidence]
    confidence: Confidence | None
    gaps: list[str]
    compliance: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "evidence": [evidence.as_dict() for evidence in self.evidence],
            "confidence": self.confidence.value if self.confidence else None,
            "gaps": list(self.gaps),
            "compliance": self.compliance,
        }


_SentenceFields = twin_of(Sentence)


def _new_sentence(
    text: str,
    start: int,
    end: int,
    evidence: list[Evidence],
    confidence: Confidence | None,
    gaps: list[str],
    compliance: bool,
) -> Sentence:
    """`Sentence(...)`, made a few times cheaper (see `records`)."""
    made = _SentenceFields()
    made.text = text
    made.start = start
    made.end = end
    made.evidence = evidence
    made.confidence = confidence
    made.gaps = gaps
    made.compliance = compliance
    made.__class__ = Sentence
    sentence: Sentence = made  # what it now is; no `cast`, a call per record
    return sentence


# --- The rule ----------------------------------------------------------------------------------

# Abbreviations that come BEFORE a word, often a capitalised one ("e.g. Acme", "Dr. Doe"), so
# their dot never ends a sentence. Lower-case, without the final dot. Abbreviations that end a
# name or a list ("Acme Inc.", "etc.") need no entry: their dot ends a sentence only when a
# capitalised word follows, which is the rule for every dot ("Acme Inc. is" stays together,
# "about Acme Inc. Next week" splits).
ABBREVIATIONS: frozenset[str] = frozenset(
    {
        "e.g", "i.e", "vs", "cf", "approx", "ca", "no", "nos", "fig", "ref",
        "mr", "mrs", "ms", "mx", "dr", "prof", "st", "mt", "rev", "hon", "gen", "capt",
    }
)  # fmt: skip
_CLOSERS = "\"'”’)]"
_OPENERS = "([\"'“‘"
# What a terminal run (`_TERMINAL` without the line break) is made of.
_RUN_CHARS = frozenset(".!?…" + _CLOSERS)
_TERMINAL = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)|\n")
_RUN_START = re.compile(r"[.!?…\n]")  # where a `_TERMINAL` match can start
_NEXT_ON_LINE = re.compile(r"[ \t]*(\S)")


def _word_before(text: str, end: int) -> str:
    """The run of non-space characters ending at `end` (a backward scan: a regex searched from
    the start of the text would rescan it for every full stop)."""
    start = end
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:end]


def _ends_sentence(text: str, run: re.Match[str], protected: Sequence[Span]) -> bool:
    """Whether a terminal run (not a line break) of `text` ends a sentence: the exceptions
    listed in `split_sentences`."""
    end = run.end()
    if any(start < end < stop for start, stop in protected):
        return False
    return not _lone_dot_kept(text, run)


def _lone_dot_kept(text: str, run: re.Match[str]) -> bool:
    """Whether a run is a lone dot that does not end its sentence: after an abbreviation or an
    initial, or before a lower-case letter on its line."""
    if run.group().rstrip(_CLOSERS) != ".":
        return False
    word = _word_before(text, run.start()).lstrip(_OPENERS).casefold()
    if word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
        return True
    following = _NEXT_ON_LINE.match(text, run.end())
    return following is not None and following.group(1).islower()


def _spans(text: str, ends: list[int]) -> list[Span]:
    """Sentences between consecutive `ends` (ascending; the end of the text is added), trimmed;
    blank ones dropped."""
    ends.append(len(text))
    spans: list[Span] = []
    start = 0
    for end in ends:
        if end <= start:
            continue
        chunk = text[start:end]
        stripped = chunk.strip()
        if stripped:
            offset = start + len(chunk) - len(chunk.lstrip())
            spans.append((offset, offset + len(stripped)))
        start = end
    return spans


def split_sentences(text: str, protected: Sequence[Span] = ()) -> list[Span]:
    """(start, end) of each sentence in `text`, whitespace trimmed, in order.

    A sentence ends at a line break, or after `.`, `!`, `?` or `…` (with closing quotes or
    brackets) followed by whitespace or the end, except:
    - inside a `protected` span (an inserted value such as "Globex Inc. Europe");
    - a lone `.` after an abbreviation that precedes a word ("e.g.", "Dr.", see
      `ABBREVIATIONS`) or after a single letter (the initial in "J. Doe");
    - a lone `.` followed on the same line by a lower-case letter ("Acme Inc. is", "etc. and").
    """
    ends: list[int] = []
    for match in _TERMINAL.finditer(text):
        if match.group() == "\n":
            ends.append(match.start())
        elif _ends_sentence(text, match, protected):
            ends.append(match.end())
    return _spans(text, ends)


# --- Plans for template wording ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WordingPlan:
    """What `split_sentences` decides inside one piece of wording, whatever surrounds it.

    Terminal-run characters (`.!?…` and closing quotes) at the piece's start, `[0, head)`, and
    at its end, `[tail, len)`, can join a run of the neighbouring segment: there the rule is
    applied to the whole text each time (`head == tail == len` for a piece made only of them).
    Between them, `steps` in text order: `(offset, True)`, a sentence end the piece decides
    alone; `(offset, False)`, the start of a run whose exceptions read a neighbour (the word
    before it reaches back to the piece's start, or only spaces follow it on the piece's last
    line), decided on the whole text.
    """

    head: int
    tail: int
    steps: tuple[tuple[int, bool], ...]


@functools.lru_cache(maxsize=4096)
def wording_plan(text: str) -> WordingPlan:
    size = len(text)
    head = next((i for i, ch in enumerate(text) if ch not in _RUN_CHARS), size)
    if head == size:
        return WordingPlan(size, size, ())
    tail = next(i for i in range(size, 0, -1) if text[i - 1] not in _RUN_CHARS)
    steps: list[tuple[int, bool]] = []
    # From `head` the scan is the one over the whole text: no run crosses a character that
    # cannot be in one. Runs from `tail` on reach the piece's end and are left to that scan.
    for match in _TERMINAL.finditer(text, head):
        if match.start() >= tail:
            break
        if match.group() == "\n":
            steps.append((match.start(), True))
        elif _reads_neighbours(text, match):
            steps.append((match.start(), False))
        elif _ends_sentence(text, match, ()):
            steps.append((match.end(), True))
    return WordingPlan(head, tail, tuple(steps))


def _reads_neighbours(text: str, run: re.Match[str]) -> bool:
    # Only a lone dot's exceptions look around it: at the word before and the next character.
    if run.group().rstrip(_CLOSERS) != ".":
        return False
    reaches_start = not any(ch.isspace() for ch in text[: run.start()])
    reaches_end = not text[run.end() :].strip(" \t")
    return reaches_start or reaches_end


def _runs(text: str, start: int, stop: int) -> list[re.Match[str]]:
    """The `_TERMINAL` matches starting in `text[start:stop]`, as a scan of the whole text
    finds them when none crosses either bound (see `_walk`)."""
    # `_TERMINAL.search` would try every position up to the next match, however far past
    # `stop`; a match can only start at one of `_RUN_START`, which a plain scan finds at once.
    runs: list[re.Match[str]] = []
    position = start
    while (first := _RUN_START.search(text, position, stop)) is not None:
        run = _TERMINAL.match(text, first.start())
        if run is None:
            position = first.start() + 1
        else:
            runs.append(run)
            position = run.end()
    return runs


# --- Walking segments --------------------------------------------------------------------------

# What the rule has to do over a draft's segments, in text order (`_walk`): take an end the
# wording's plan decided, decide one run on the whole text, or scan a stretch.
END, ASK, SCAN = 0, 1, 2
Step = tuple[int, int, int]  # (END, end, 0), (ASK, run start, 0), (SCAN, start, stop)

_NO_STEPS: tuple[tuple[int, bool], ...] = ()


def _is_protected(segment: Segment) -> bool:
    return segment.kind is _VALUE or segment.kind is _GAP


def _starts(segments: Sequence[Segment]) -> list[int]:
    """Where each segment starts in the joined text, then the text's length."""
    starts = [0]
    for segment in segments:
        starts.append(starts[-1] + len(segment.text))
    return starts


def _walk(segments: Sequence[Segment], starts: list[int]) -> list[Step]:
    """The steps that find the sentence ends of `split_sentences` over the segments' text.

    Wording (text and compliance segments) is decided by its plan. What is left to the rule is
    scanned in stretches: values and gaps, with the run characters at the edges of the wording
    around them. A stretch ends where wording starts its own part, at a character no run can
    hold, so the scans see the runs the whole-text scan sees.
    """
    steps: list[Step] = []
    stretch_start = stretch_end = 0  # the stretch still to scan
    for index, segment in enumerate(segments):
        position, size = starts[index], len(segment.text)
        if _is_protected(segment):
            head, tail, decided = size, size, _NO_STEPS  # all of it is left to the scans
        else:
            plan = wording_plan(segment.text)
            head, tail, decided = plan.head, plan.tail, plan.steps
        if head:
            if stretch_end != position:  # not adjacent: the stretch so far is complete
                if stretch_start < stretch_end:
                    steps.append((SCAN, stretch_start, stretch_end))
                stretch_start = position
            stretch_end = position + head
        if head < size:
            if stretch_start < stretch_end:
                steps.append((SCAN, stretch_start, stretch_end))
            for offset, is_end in decided:
                steps.append((END if is_end else ASK, position + offset, 0))
            stretch_start, stretch_end = position + tail, position + size
    if stretch_start < stretch_end:
        steps.append((SCAN, stretch_start, stretch_end))
    return steps


def _protected(segments: Sequence[Segment], starts: list[int]) -> list[Span]:
    return [
        (starts[index], starts[index + 1])
        for index, segment in enumerate(segments)
        if _is_protected(segment)
    ]


def _follow(text: str, steps: list[Step], protected: Sequence[Span]) -> list[int]:
    ends: list[int] = []
    for step, start, stop in steps:
        if step == END:
            ends.append(start)
        elif step == ASK:
            run = _TERMINAL.match(text, start)
            if run is not None and _ends_sentence(text, run, protected):
                ends.append(run.end())
        else:
            for run in _runs(text, start, stop):
                if run.group() == "\n":
                    ends.append(run.start())
                elif _ends_sentence(text, run, protected):
                    ends.append(run.end())
    return ends


def split_segments(segments: Sequence[Segment]) -> list[Span]:
    """`split_sentences` of the segments' joined text with values and gaps protected: the
    same spans, with template wording (text and compliance segments) decided by its plan."""
    text = "".join(segment.text for segment in segments)
    starts = _starts(segments)
    return _spans(text, _follow(text, _walk(segments, starts), _protected(segments, starts)))


# --- Shapes --------------------------------------------------------------------------------------

# One sentence relative to the segments: start (segment index, offset), end (segment index,
# offset), the indices of the value segments whose evidence it carries, its gaps, whether it is
# all compliance text.
Placed = tuple[int, int, int, int, tuple[int, ...], tuple[str, ...], bool]
Layout = tuple[Placed, ...]
Decisions = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class ShapePlan:
    """For drafts of one shape (`_shape`): the steps that depend on values, as (step, segment
    index, offset, segment index, offset) with positions relative to the segments, and the
    layout of the sentences for each outcome of those steps (`_decisions`), as drafts meet it.
    """

    steps: tuple[tuple[int, int, int, int, int], ...]
    layouts: dict[Decisions, Layout]


# Templates have a few shapes each (optional phrases, gaps), and a shape a few outcomes, so
# plain dicts emptied when full are bound enough: a flood only costs working plans out again.
_SHAPES: dict[tuple[object, ...], ShapePlan] = {}
MAX_SHAPES = 1024
MAX_LAYOUTS_PER_SHAPE = 256


def sentences_of(segments: Sequence[Segment], *, text: str | None = None) -> list[Sentence]:
    """Split text given as segments into sentences carrying their values' evidence: the
    sentences of `split_sentences` (values and gaps protected), each with the evidence of the
    values in it (one per field, first first), the weakest of their confidences, its gaps, and
    whether it is all compliance text. `text`: the segments' joined text, if the caller has it.
    """
    if text is None:
        text = "".join([segment.text for segment in segments])
    starts, shape = _measure(segments)
    plan = _SHAPES.get(shape) if shape is not None else None
    if shape is not None and plan is None:
        plan = _shape_plan(segments, starts)
        if len(_SHAPES) >= MAX_SHAPES:
            _SHAPES.clear()
        _SHAPES[shape] = plan
    decisions = _decisions(text, segments, starts, plan) if plan else None
    layout = plan.layouts.get(decisions) if plan and decisions is not None else None
    if layout is None:
        ends = _follow(text, _walk(segments, starts), _protected(segments, starts))
        layout = _layout(segments, starts, _spans(text, ends))
        if plan and decisions is not None:
            if len(plan.layouts) >= MAX_LAYOUTS_PER_SHAPE:
                plan.layouts.clear()
            plan.layouts[decisions] = layout
    return _fill(layout, text, segments, starts)


def _measure(segments: Sequence[Segment]) -> tuple[list[int], tuple[object, ...] | None]:
    """Where each segment starts (then the text's length), and the segments' shape: the
    wording and gaps (with their fields), the field of each value. No shape when a layout would
    depend on a value's text: blank at an edge, where a sentence is trimmed, or empty."""
    starts = [0]
    shape: list[object] | None = []
    position = 0
    for segment in segments:
        text = segment.text
        position += len(text)
        starts.append(position)
        if shape is None:
            continue
        kind = segment.kind
        if kind is _VALUE:
            if not text or text[0].isspace() or text[-1].isspace():
                shape = None
                continue
            shape.append((segment.field, segment.evidence is not None))
        elif kind is _TEXT:
            shape.append(text)
        else:
            shape.append((kind is _GAP, segment.field, text))
    return starts, tuple(shape) if shape is not None else None


def _shape_plan(segments: Sequence[Segment], starts: list[int]) -> ShapePlan:
    steps: list[tuple[int, int, int, int, int]] = []
    for step, start, stop in _walk(segments, starts):
        if step == END:
            continue  # decided by the wording: the same for every draft of the shape
        start_index, start_offset = _relative(starts, start)
        stop_index, stop_offset = _relative(starts, stop) if step == SCAN else (0, 0)
        steps.append((step, start_index, start_offset, stop_index, stop_offset))
    return ShapePlan(tuple(steps), {})


def _relative(starts: list[int], position: int) -> tuple[int, int]:
    # The last segment starting at or before `position`: one answer even with empty segments.
    index = bisect.bisect_right(starts, position) - 1
    return index, position - starts[index]


def _decisions(
    text: str, segments: Sequence[Segment], starts: list[int], plan: ShapePlan
) -> Decisions | None:
    """What this draft's values decided: each run asked about, ended a sentence or not; each
    stretch, the ends found, relative to the segments. With the shape, they fix every end.
    None when an end falls inside a value: its text would be part of the layout."""
    decisions: list[object] = []
    for step, start_index, start_offset, stop_index, stop_offset in plan.steps:
        start = starts[start_index] + start_offset
        if step == ASK:
            # A run inside wording: no value or gap can hold its end.
            run = _TERMINAL.match(text, start)
            decisions.append(run is not None and not _lone_dot_kept(text, run))
            continue
        stop = starts[stop_index] + stop_offset
        if _RUN_START.search(text, start, stop) is None:
            continue  # the common case: no run in the stretch
        for run in _runs(text, start, stop):
            if run.group() == "\n":
                index, offset = _relative(starts, run.start())
                if offset and segments[index].kind is _VALUE:
                    return None  # a line break inside a value
            else:
                index, offset = _relative(starts, run.end())
                if offset and _is_protected(segments[index]):
                    continue  # ending inside a value or gap, it ends no sentence
                if _lone_dot_kept(text, run):
                    continue
            decisions.append((index, offset))
    return tuple(decisions)


def _layout(segments: Sequence[Segment], starts: list[int], spans: list[Span]) -> Layout:
    layout: list[Placed] = []
    first = 0  # both are in text order: skip the segments that end before this sentence
    for start, end in spans:
        while starts[first + 1] <= start:
            first += 1
        values: dict[str, int] = {}
        gaps: dict[str, None] = {}
        compliance = True
        index = first
        while index < len(segments) and starts[index] < end:
            segment = segments[index]
            if segment.kind is SegmentKind.VALUE and segment.evidence and segment.field:
                values.setdefault(segment.field, index)
            elif segment.kind is SegmentKind.GAP and segment.field:
                gaps[segment.field] = None
            compliance = compliance and segment.kind is SegmentKind.COMPLIANCE
            index += 1
        start_index, start_offset = _relative(starts, start)
        end_index, end_offset = _relative(starts, end)
        layout.append(
            (
                start_index,
                start_offset,
                end_index,
                end_offset,
                tuple(values.values()),
                tuple(gaps),
                compliance,
            )
        )
    return tuple(layout)


def _fill(
    layout: Layout, text: str, segments: Sequence[Segment], starts: list[int]
) -> list[Sentence]:
    sentences: list[Sentence] = []
    append = sentences.append
    for start_index, start_offset, end_index, end_offset, values, gaps, compliance in layout:
        start = starts[start_index] + start_offset
        end = starts[end_index] + end_offset
        if not values:
            append(_new_sentence(text[start:end], start, end, [], None, [*gaps], compliance))
            continue
        # The layout lists value segments with evidence only.
        confidence: Confidence | None
        if len(values) == 1:  # most sentences with a value have just the one
            only: Evidence = segments[values[0]].evidence  # type: ignore[assignment]
            evidence, confidence = [only], only.confidence
        else:
            evidence = [segments[i].evidence for i in values]  # type: ignore[misc]
            confidence = lowest(e.confidence for e in evidence)
        append(
            _new_sentence(text[start:end], start, end, evidence, confidence, [*gaps], compliance)
        )
    return sentences
