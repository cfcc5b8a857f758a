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

import functools
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
    Evidence,
    Length,
    Sender,
    Tone,
)
from leadrelay.drafting.records import twin_of
from leadrelay.drafting.sentences import Sentence, sentences_of
from leadrelay.drafting.templates import (
    MessageTemplate,
    Segment,
    SegmentKind,
    check_template,
    clean_value,
    cta_text,
    render_segments,
    shared_context,
    usable_evidence,
    with_lead,
)
from leadrelay.drafting.validate import Problem, occurs_verbatim, validate

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


_DraftFields = twin_of(Draft)


def _new_draft(
    channel: Channel,
    subject: str | None,
    body: str,
    sentences: list[Sentence],
    gaps: list[str],
    compliance: list[str],
    content_sha256: str,
    subject_sentences: list[Sentence],
    segments: list[Segment],
    subject_segments: list[Segment],
    template_id: str,
    tone: Tone,
    length: Length,
    cta: str,
    composed_at: datetime,
) -> Draft:
    """`Draft(...)`, made a few times cheaper (see `records`)."""
    made = _DraftFields()
    made.channel = channel
    made.subject = subject
    made.body = body
    made.sentences = sentences
    made.gaps = gaps
    made.compliance = compliance
    made.content_sha256 = content_sha256
    made.subject_sentences = subject_sentences
    made.segments = segments
    made.subject_segments = subject_segments
    made.template_id = template_id
    made.tone = tone
    made.length = length
    made.cta = cta
    made.composed_at = composed_at
    made.__class__ = Draft
    draft: Draft = made  # what it now is; no `cast`, a call per record
    return draft


def content_hash(channel: Channel, subject: str | None, body: str) -> str:
    """SHA-256 hex of exactly what is sent: for email `subject + "\\n\\n" + body`, else `body`.

    The send guard recomputes it on the approved text, so any edit after approval is caught.
    """
    if channel is _EMAIL:
        if subject is None:
            raise ValueError("an email has a subject")
        content = subject + "\n\n" + body
    else:
        content = body
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


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
    return list(_platform_part(channel, sender, first_message)[0])


@functools.lru_cache(maxsize=256)
def _platform_part(
    channel: Channel, sender: Sender, first_message: bool
) -> tuple[tuple[str, ...], Segment | None]:
    """`compliance_lines` and the segment that holds them. A tenant's sender is the same for
    every draft: worded once, and the segment, immutable, shared by the drafts."""
    lines = _compliance_lines(channel, sender, first_message=first_message)
    if not lines:
        return lines, None
    if channel is Channel.VOICE:
        return lines, Segment("\n".join(lines) + "\n\n", SegmentKind.COMPLIANCE)
    # Every SMS character counts; the other channels get a blank line before the platform's part.
    joiner = "\n" if channel is Channel.SMS else "\n\n"
    return lines, Segment(joiner + "\n".join(lines), SegmentKind.COMPLIANCE)


def _compliance_lines(channel: Channel, sender: Sender, *, first_message: bool) -> tuple[str, ...]:
    name, company = clean_value(sender.name), clean_value(sender.company)
    if channel is Channel.EMAIL:
        return (
            f"{name}, {company}",
            _address(sender.postal_address),
            f"Unsubscribe: {UNSUBSCRIBE_PLACEHOLDER}",
        )
    if channel in (Channel.SMS, Channel.WHATSAPP):
        return (company, STOP_INSTRUCTION) if first_message else ()
    return (_full_stop(f"Hello, this is {name} calling from {company}"),)


def _assemble(channel: Channel, writer: list[Segment], platform: Segment | None) -> list[Segment]:
    if platform is None:
        return writer
    if channel is Channel.VOICE:
        return [platform, *writer]
    return [*writer, platform]


# Enum members named on their class cost about ten global lookups each on Python 3.11 (`EnumType`
# has a `__getattr__`, which sends every class attribute through a slow hook); hot code uses these.
_EMAIL, _GAP = Channel.EMAIL, SegmentKind.GAP


# --- Compose ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Setting:
    """What `compose` makes of its arguments other than the lead's evidence, once checked."""

    template: MessageTemplate
    sender: Sender
    channel: Channel
    tone: Tone
    length: Length
    cta: str
    first_message: bool
    context: dict[str, Any]  # `templates.shared_context`
    platform_lines: tuple[str, ...]
    platform: Segment | None


# The last setting composed with. Every draft of a campaign step has the same template, sender
# and controls, mostly the very same objects: telling them apart by identity spares each draft
# hashing the template and the sender (frozen dataclasses hash field by field, in Python).
_last_setting: _Setting | None = None


def _setting(
    template: MessageTemplate,
    sender: Sender,
    channel: Channel,
    tone: Tone,
    length: Length,
    cta: str,
    first_message: bool,
) -> _Setting:
    """Raises what `compose` raises for its arguments other than the evidence, in its order."""
    global _last_setting
    last = _last_setting
    if (
        last is not None
        and last.template is template
        and last.sender is sender
        and last.channel is channel
        and last.tone is tone
        and last.length is length
        and last.cta == cta
        and last.first_message == first_message
    ):
        return last
    if template.channel is not channel:
        raise ValueError(f"template {template.id!r} is for {template.channel}, not {channel}")
    problems = check_template(template)
    if problems:
        raise TemplateRejected(template.id, problems)
    cta_sentence = cta_text(cta, tone)
    context = shared_context(sender=sender, cta=cta_sentence, tone=tone, length=length)
    lines, platform = _platform_part(channel, sender, first_message)
    _last_setting = _Setting(
        template, sender, channel, tone, length, cta, first_message, context, lines, platform
    )
    return _last_setting


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
    setting = _setting(template, sender, channel, tone, length, cta, first_message)
    # A mis-filed evidence map is the caller's bug (ValueError here), not the template's.
    usable = usable_evidence(evidence)
    context = with_lead(usable, setting.context)

    def run(source: str, *, single_line: bool) -> list[Segment]:
        try:
            return render_segments(source, context, usable, single_line=single_line)
        except (TemplateError, ArithmeticError, TypeError, ValueError, RecursionError) as exc:
            # What a tenant's template does at render time is the template's problem, reported
            # as such, not a server error.
            raise TemplateRejected(template.id, [f"{type(exc).__name__}: {exc}"]) from exc

    subject_segments: list[Segment] = []
    subject: str | None = None
    if channel is _EMAIL and template.subject is not None:
        subject_segments = run(template.subject, single_line=True)
        subject = "".join([s.text for s in subject_segments])
        if not subject:
            raise TemplateRejected(template.id, ["subject: renders to empty text"])
    writer = run(template.body, single_line=False)
    if not writer:
        raise TemplateRejected(template.id, ["body: renders to empty text"])
    writer_text = "".join([s.text for s in writer])
    if UNSUBSCRIBE_PLACEHOLDER in writer_text or UNSUBSCRIBE_PLACEHOLDER in (subject or ""):
        # The send step replaces every occurrence; only the platform's footer may hold it.
        raise ValueError(f"{UNSUBSCRIBE_PLACEHOLDER} is reserved for the platform's footer")

    lines = list(setting.platform_lines)
    segments = _assemble(channel, writer, setting.platform)
    body = "".join([s.text for s in segments])

    if subject is not None and len(subject) > SUBJECT_LIMIT:
        raise DraftTooLong(channel, SUBJECT_LIMIT, len(subject), "subject")
    limit = BODY_LIMITS[channel]
    if len(body) > limit:
        raise DraftTooLong(channel, limit, len(body))

    gap_fields = [s.field for s in [*subject_segments, *segments] if s.kind is _GAP and s.field]
    return _new_draft(
        channel=channel,
        subject=subject,
        body=body,
        sentences=sentences_of(segments, text=body),
        gaps=list(dict.fromkeys(gap_fields)),
        compliance=lines,
        content_sha256=content_hash(channel, subject, body),
        subject_sentences=sentences_of(subject_segments, text=subject or ""),
        segments=segments,
        subject_segments=subject_segments,
        template_id=template.id,
        tone=tone,
        length=length,
        cta=cta,
        composed_at=now,
    )


def _with_offsets(segments: Sequence[Segment]) -> list[tuple[int, int, Segment]]:
    placed: list[tuple[int, int, Segment]] = []
    position = 0
    for segment in segments:
        placed.append((position, position + len(segment.text), segment))
        position += len(segment.text)
    return placed


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
    platform_lines, platform = _platform_part(channel, sender, first_message)
    lines = list(platform_lines)
    segments = _assemble(channel, _written_segments(text, usable), platform)
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
    platform = _platform_part(channel, sender, first_message)[1]
    return len(platform.text) if platform is not None else 0


def check_draft(draft: Draft) -> list[Problem]:
    """What a template draft is validated for: its channel's length and the call to action the
    request asked for. Its values are evidence by construction (only evidenced fields can be
    inserted) and its wording is the tenant's own, checked by the sandbox when saved; the fact
    check (`validate` with facts) is for writers the platform does not vouch for, like an LLM."""
    cta_sentence = cta_text(draft.cta, draft.tone)
    limit = BODY_LIMITS[draft.channel]
    if len(draft.body) <= limit and occurs_verbatim(cta_sentence, draft.body):
        return []  # what `validate` finds in a draft within its limit that has its CTA as is
    return validate(
        draft.body,
        channel=str(draft.channel),  # a StrEnum's value (`.value` is a slow descriptor)
        evidence_values={},
        required=[cta_sentence],
        max_length=limit,
        facts=False,
    )
