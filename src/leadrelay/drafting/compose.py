"""Composing a draft: template + evidence + controls → text a reviewer can trust line by line.

The writer (a template here, a model elsewhere) only writes the message. The platform then
appends what the law asks for, so no template can forget it or word it away: the sender's
identity and postal address and an unsubscribe placeholder on email, the STOP instruction on a
first SMS or WhatsApp message, and an introduction naming the caller at the start of a voice
script.

Every sentence of the result lists the evidence of the values it inserts and carries the lowest
of their confidences, so the console can show which words rest on what, and a missing fact is a
visible "[missing: field]" gap in the text and in `Draft.gaps`, never a made-up value.

Nothing is cut to fit: a draft over its channel's limit raises `DraftTooLong`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

from jinja2.exceptions import TemplateError

from leadrelay.drafting.evidence import (
    Channel,
    Confidence,
    Evidence,
    Length,
    Sender,
    Tone,
    lowest,
)
from leadrelay.drafting.templates import (
    MessageTemplate,
    Segment,
    SegmentKind,
    check_template,
    clean_value,
    cta_text,
    render,
    usable_evidence,
)
from leadrelay.drafting.validate import Problem, validate

# Kept verbatim in the footer; the send step swaps in each recipient's own link.
UNSUBSCRIBE_PLACEHOLDER = "{{unsubscribe_url}}"
STOP_INSTRUCTION = "Reply STOP to opt out."

# Limits on the final content, compliance text included, in characters (code points):
# - SMS 480: three 160-character segments. Concatenated GSM-7 segments really hold 153 each and
#   UCS-2 ones 70, so the SMS step counts exact segments; this bound only keeps drafts short.
# - WhatsApp 1,024: the body limit of a WhatsApp template message.
# - Email subject 150: longer subjects are cut off by most clients and read as bulk mail.
# - Email body 10,000: a first-touch email this long is a newsletter, not a conversation.
# - Voice 1,200: about a minute and a half read aloud.
SUBJECT_LIMIT = 150
BODY_LIMITS: Mapping[Channel, int] = MappingProxyType(
    {
        Channel.SMS: 480,
        Channel.WHATSAPP: 1024,
        Channel.EMAIL: 10_000,
        Channel.VOICE: 1_200,
    }
)


class DraftTooLong(ValueError):
    """The composed text is over its channel's limit; the writer must say less."""

    def __init__(self, channel: Channel, limit: int, length: int, part: str = "body") -> None:
        super().__init__(f"{channel} {part} is {length} characters, over the limit of {limit}")
        self.channel = channel
        self.limit = limit
        self.length = length
        self.part = part


class TemplateRejected(ValueError):
    """The template failed `check_template` or could not be rendered safely."""

    def __init__(self, template_id: str, problems: Sequence[str]) -> None:
        super().__init__(f"template {template_id!r} rejected: " + "; ".join(problems))
        self.template_id = template_id
        self.problems = list(problems)


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


@dataclass(frozen=True, slots=True)
class Draft:
    """A composed message. `segments` concatenate to exactly `body`, `subject_segments` to
    `subject`; `content_sha256` is `content_hash(channel, subject, body)`."""

    channel: Channel
    subject: str | None
    body: str
    sentences: list[Sentence]
    gaps: list[str]
    compliance: list[str]
    content_sha256: str
    subject_sentences: list[Sentence]
    segments: list[Segment]
    subject_segments: list[Segment]
    template_id: str
    tone: Tone
    length: Length
    cta: str
    composed_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel.value,
            "subject": self.subject,
            "body": self.body,
            "sentences": [sentence.as_dict() for sentence in self.sentences],
            "subject_sentences": [sentence.as_dict() for sentence in self.subject_sentences],
            "gaps": list(self.gaps),
            "compliance": list(self.compliance),
            "content_sha256": self.content_sha256,
            "template_id": self.template_id,
            "tone": self.tone.value,
            "length": self.length.value,
            "cta": self.cta,
            "composed_at": self.composed_at.isoformat(),
            "highlight": highlight(self),
            "subject_highlight": highlight(self, part="subject"),
        }


def content_hash(channel: Channel, subject: str | None, body: str) -> str:
    """SHA-256 hex of exactly what is sent: for email `subject + "\\n\\n" + body`, else `body`.

    The send guard recomputes it on the approved text, so any edit after approval is caught.
    """
    if channel is Channel.EMAIL:
        if subject is None:
            raise ValueError("an email has a subject")
        content = subject + "\n\n" + body
    else:
        content = body
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


# --- Sentences -------------------------------------------------------------------------------

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
_TERMINAL = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)|\n")
_NEXT_ON_LINE = re.compile(r"[ \t]*(\S)")


def _word_before(text: str, end: int) -> str:
    """The run of non-space characters ending at `end` (a backward scan: a regex searched from
    the start of the text would rescan it for every full stop)."""
    start = end
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:end]


def split_sentences(text: str, protected: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
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
            continue
        end = match.end()
        if any(start < end < stop for start, stop in protected):
            continue
        if match.group().rstrip("\"'”’)]") == ".":
            word = _word_before(text, match.start()).lstrip("([\"'“‘").casefold()
            if word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
            following = _NEXT_ON_LINE.match(text, end)
            if following and following.group(1).islower():
                continue
        ends.append(end)
    ends.append(len(text))

    spans: list[tuple[int, int]] = []
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


def _with_offsets(segments: Sequence[Segment]) -> list[tuple[int, int, Segment]]:
    placed: list[tuple[int, int, Segment]] = []
    position = 0
    for segment in segments:
        placed.append((position, position + len(segment.text), segment))
        position += len(segment.text)
    return placed


def sentences_of(segments: Sequence[Segment]) -> list[Sentence]:
    """Split text given as segments into sentences carrying their values' evidence."""
    text = "".join(segment.text for segment in segments)
    placed = _with_offsets(segments)
    protected = [
        (start, end) for start, end, s in placed if s.kind in (SegmentKind.VALUE, SegmentKind.GAP)
    ]
    sentences: list[Sentence] = []
    first = 0  # both are in text order: skip the segments that end before this sentence
    for start, end in split_sentences(text, protected):
        while first < len(placed) and placed[first][1] <= start:
            first += 1
        inside = []
        for index in range(first, len(placed)):
            s_start, s_end, segment = placed[index]
            if s_start >= end:
                break
            if s_end > start:
                inside.append(segment)
        evidence: dict[str, Evidence] = {}
        gaps: dict[str, None] = {}
        for segment in inside:
            if segment.kind is SegmentKind.VALUE and segment.evidence and segment.field:
                evidence.setdefault(segment.field, segment.evidence)
            elif segment.kind is SegmentKind.GAP and segment.field:
                gaps[segment.field] = None
        sentences.append(
            Sentence(
                text=text[start:end],
                start=start,
                end=end,
                evidence=list(evidence.values()),
                confidence=lowest(e.confidence for e in evidence.values()),
                gaps=list(gaps),
                compliance=bool(inside) and all(s.kind is SegmentKind.COMPLIANCE for s in inside),
            )
        )
    return sentences


# --- Compliance ------------------------------------------------------------------------------


def _full_stop(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def _address(postal_address: str) -> str:
    lines = (clean_value(line) for line in postal_address.splitlines())
    return ", ".join(line for line in lines if line)


def compliance_lines(channel: Channel, sender: Sender, *, first_message: bool) -> list[str]:
    """The lines the platform adds to a message on `channel`, in order.

    Email: "name, company", the postal address, "Unsubscribe: {{unsubscribe_url}}" (a footer).
    SMS and WhatsApp, first message only: the company, then "Reply STOP to opt out.".
    Voice: "Hello, this is <name> calling from <company>." (placed before the script).
    """
    name, company = clean_value(sender.name), clean_value(sender.company)
    if channel is Channel.EMAIL:
        return [
            f"{name}, {company}",
            _address(sender.postal_address),
            f"Unsubscribe: {UNSUBSCRIBE_PLACEHOLDER}",
        ]
    if channel in (Channel.SMS, Channel.WHATSAPP):
        return [company, STOP_INSTRUCTION] if first_message else []
    return [_full_stop(f"Hello, this is {name} calling from {company}")]


def _assemble(channel: Channel, writer: list[Segment], lines: list[str]) -> list[Segment]:
    if not lines:
        return writer
    if channel is Channel.VOICE:
        return [Segment("\n".join(lines) + "\n\n", SegmentKind.COMPLIANCE), *writer]
    # Every SMS character counts; the other channels get a blank line before the platform's part.
    joiner = "\n" if channel is Channel.SMS else "\n\n"
    return [*writer, Segment(joiner + "\n".join(lines), SegmentKind.COMPLIANCE)]


# --- Compose ---------------------------------------------------------------------------------


def compose(
    template: MessageTemplate,
    evidence: Mapping[str, Evidence],
    *,
    sender: Sender,
    channel: Channel,
    tone: Tone,
    length: Length,
    cta: str,
    first_message: bool,
    now: datetime,
) -> Draft:
    """Render `template` with the lead's `evidence` and append the compliance text.

    `cta` is a key of `templates.CTA_TEXTS` ("book_call", "reply", "send_info"), rendered in
    `tone`. Deterministic: the same arguments give an equal draft. `now` (timezone-aware) is
    recorded as `composed_at` and nothing else, so the clock cannot change the text.

    Raises `TemplateRejected` (template problems, or the sandbox refusing it at render time),
    `DraftTooLong` (over the channel's limit), `ValueError` (channel mismatch, unknown CTA,
    the reserved unsubscribe placeholder inside the writer's text).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if template.channel is not channel:
        raise ValueError(f"template {template.id!r} is for {template.channel}, not {channel}")
    problems = check_template(template)
    if problems:
        raise TemplateRejected(template.id, problems)
    cta_sentence = cta_text(cta, tone)
    usable_evidence(evidence)  # a mis-filed evidence map is the caller's bug, not the template's

    def run(source: str, *, single_line: bool) -> list[Segment]:
        try:
            rendered = render(
                source,
                lead=evidence,
                sender=sender,
                cta=cta_sentence,
                tone=tone,
                length=length,
                single_line=single_line,
            )
        except (TemplateError, ArithmeticError, TypeError, ValueError, RecursionError) as exc:
            # What a tenant's template does at render time is the template's problem, reported
            # as such, not a server error.
            raise TemplateRejected(template.id, [f"{type(exc).__name__}: {exc}"]) from exc
        return rendered.segments

    subject_segments: list[Segment] = []
    subject: str | None = None
    if channel is Channel.EMAIL and template.subject is not None:
        subject_segments = run(template.subject, single_line=True)
        subject = "".join(s.text for s in subject_segments)
        if not subject:
            raise TemplateRejected(template.id, ["subject: renders to empty text"])
    writer = run(template.body, single_line=False)
    if not writer:
        raise TemplateRejected(template.id, ["body: renders to empty text"])
    writer_text = "".join(s.text for s in writer)
    if UNSUBSCRIBE_PLACEHOLDER in writer_text or UNSUBSCRIBE_PLACEHOLDER in (subject or ""):
        # The send step replaces every occurrence; only the platform's footer may hold it.
        raise ValueError(f"{UNSUBSCRIBE_PLACEHOLDER} is reserved for the platform's footer")

    lines = compliance_lines(channel, sender, first_message=first_message)
    segments = _assemble(channel, writer, lines)
    body = "".join(s.text for s in segments)

    if subject is not None and len(subject) > SUBJECT_LIMIT:
        raise DraftTooLong(channel, SUBJECT_LIMIT, len(subject), "subject")
    if len(body) > BODY_LIMITS[channel]:
        raise DraftTooLong(channel, BODY_LIMITS[channel], len(body))

    gap_fields = (
        s.field for s in [*subject_segments, *segments] if s.kind is SegmentKind.GAP and s.field
    )
    return Draft(
        channel=channel,
        subject=subject,
        body=body,
        sentences=sentences_of(segments),
        gaps=list(dict.fromkeys(gap_fields)),
        compliance=lines,
        content_sha256=content_hash(channel, subject, body),
        subject_sentences=sentences_of(subject_segments),
        segments=segments,
        subject_segments=subject_segments,
        template_id=template.id,
        tone=tone,
        length=length,
        cta=cta,
        composed_at=now,
    )


def highlight(draft: Draft, *, part: Literal["body", "subject"] = "body") -> list[dict[str, Any]]:
    """The draft's text as segments for the console to colour by evidence.

    Each: text, start, end, kind ("text", "value", "gap", "compliance"), field (the lead field
    of a value or gap, else None), confidence (of a value, else None).
    """
    segments = draft.segments if part == "body" else draft.subject_segments
    return [
        {
            "text": segment.text,
            "start": start,
            "end": end,
            "kind": segment.kind.value,
            "field": segment.field,
            "confidence": segment.evidence.confidence.value if segment.evidence else None,
        }
        for start, end, segment in _with_offsets(segments)
    ]


# --- Free text (an LLM's draft) ------------------------------------------------------------------


def _value_spans(text: str, evidence: Mapping[str, Evidence]) -> list[tuple[int, int, Evidence]]:
    """Where evidenced values occur in free text: case-insensitive whole words, longest value
    first so "Acme Robotics" wins over "Acme", never overlapping."""
    found: list[tuple[int, int, Evidence]] = []
    ranked = sorted(evidence.values(), key=lambda e: (-len(e.value), e.field))
    for item in ranked:
        pattern = re.compile(r"(?<!\w)" + re.escape(item.value) + r"(?!\w)", re.IGNORECASE)
        for match in pattern.finditer(text):
            start, end = match.span()
            if all(end <= a or start >= b for a, b, _ in found):
                found.append((start, end, item))
    return sorted(found, key=lambda span: span[0])


def _written_segments(text: str, evidence: Mapping[str, Evidence]) -> list[Segment]:
    segments: list[Segment] = []
    cursor = 0
    for start, end, item in _value_spans(text, evidence):
        if start > cursor:
            segments.append(Segment(text[cursor:start]))
        segments.append(Segment(text[start:end], SegmentKind.VALUE, item.field, item))
        cursor = end
    if cursor < len(text):
        segments.append(Segment(text[cursor:]))
    return segments


def compose_written(
    subject: str | None,
    text: str,
    evidence: Mapping[str, Evidence],
    *,
    sender: Sender,
    channel: Channel,
    tone: Tone,
    length: Length,
    cta: str,
    first_message: bool,
    now: datetime,
    writer: str,
) -> Draft:
    """A draft from text someone else wrote (a model), already validated against `evidence`.

    Each evidenced value found in the text becomes a value segment, so its sentence carries the
    evidence exactly as a template's would; the platform's compliance text is appended the same
    way. `writer` is recorded as the draft's template id (e.g. "llm:gpt-4o-mini").
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if (subject is not None) != (channel is Channel.EMAIL):
        raise ValueError("an email has a subject and no other channel does")
    usable = usable_evidence(evidence)
    text = text.strip()
    if UNSUBSCRIBE_PLACEHOLDER in text or UNSUBSCRIBE_PLACEHOLDER in (subject or ""):
        raise ValueError(f"{UNSUBSCRIBE_PLACEHOLDER} is reserved for the platform's footer")
    subject_segments = _written_segments(subject, usable) if subject is not None else []
    lines = compliance_lines(channel, sender, first_message=first_message)
    segments = _assemble(channel, _written_segments(text, usable), lines)
    body = "".join(s.text for s in segments)
    if subject is not None and len(subject) > SUBJECT_LIMIT:
        raise DraftTooLong(channel, SUBJECT_LIMIT, len(subject), "subject")
    if len(body) > BODY_LIMITS[channel]:
        raise DraftTooLong(channel, BODY_LIMITS[channel], len(body))
    return Draft(
        channel=channel,
        subject=subject,
        body=body,
        sentences=sentences_of(segments),
        gaps=[],
        compliance=lines,
        content_sha256=content_hash(channel, subject, body),
        subject_sentences=sentences_of(subject_segments),
        segments=segments,
        subject_segments=subject_segments,
        template_id=writer,
        tone=tone,
        length=length,
        cta=cta,
        composed_at=now,
    )


def compliance_length(channel: Channel, sender: Sender, *, first_message: bool) -> int:
    """Characters the platform adds to a message: what a writer's text must leave room for."""
    lines = compliance_lines(channel, sender, first_message=first_message)
    return len("".join(s.text for s in _assemble(channel, [], lines)))


def check_draft(draft: Draft) -> list[Problem]:
    """What a template draft is validated for: its channel's length and the call to action the
    request asked for. Its values are evidence by construction (only evidenced fields can be
    inserted) and its wording is the tenant's own, checked by the sandbox when saved; the fact
    check (`validate` with facts) is for writers the platform does not vouch for, like an LLM."""
    return validate(
        draft.body,
        channel=draft.channel.value,
        evidence_values={},
        required=[cta_text(draft.cta, draft.tone)],
        max_length=BODY_LIMITS[draft.channel],
        facts=False,
    )
