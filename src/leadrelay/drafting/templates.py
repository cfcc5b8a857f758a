"""Message templates: tenant-written Jinja2 in a sandbox, rendered with evidence kept per value.

Templates are written by tenant users, so they are untrusted code. Three layers keep them
harmless:

1. `check_template` refuses, before anything is stored or rendered, what a message never
   needs: private attributes, attribute access beyond `lead.<field>` and `sender.<field>`,
   calls, loops, macros, imports, unknown variables, filters outside a short list.
2. Rendering runs in `ImmutableSandboxedEnvironment` with its globals removed (no `range`,
   `cycler`, `lipsum`...), string repetition and powers capped, and the output size capped, so
   even a template that skipped the check cannot reach Python internals or exhaust memory.
3. Lead values are data, never template code: `{{ lead.company }}` of "{{ 7*7 }}" prints those
   characters.

Evidence tracking. Each `lead.<field>` is a `str` subclass that remembers its field; the
environment's `finalize` hook wraps it, at the moment it is printed, in private-use sentinels:

    U+E000 field U+E001 value U+E002        an inserted value
    U+E003 field U+E004                     a missing field (rendered "[missing: field]")

After rendering, the text is cut into segments at the sentinels, and the sentinels are removed.
A marker is accepted only when its value is exactly the evidenced value of its field, so a
template cannot forge evidence (e.g. with "\\ue000" escapes in a string literal); any marker
that does not match, and any stray sentinel, aborts the render with `EvidenceTampered`. The
sentinels are stripped from template sources, lead values, sender fields and the CTA first, so
only the renderer ever produces them.

A missing lead field renders as a visible gap, never as an invented value; `{% if lead.title %}`
lets a template leave an optional phrase out instead.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, ClassVar

from jinja2 import Template, Undefined, nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from typing_extensions import override

from leadrelay.drafting.evidence import (
    TEMPLATE_LEAD_FIELDS,
    Channel,
    Evidence,
    Length,
    Sender,
    Tone,
)
from leadrelay.drafting.records import twin_of

VALUE_OPEN = "\ue000"
VALUE_SEP = "\ue001"
VALUE_CLOSE = "\ue002"
GAP_OPEN = "\ue003"
GAP_CLOSE = "\ue004"
_SENTINELS = re.compile("[\ue000-\ue004]")
_MARKER = re.compile(
    "\ue000([^\ue000-\ue004]*)\ue001([^\ue000-\ue004]*)\ue002|\ue003([^\ue000-\ue004]*)\ue004"
)
# Bidi overrides and isolates can make a company name display as different text in the console.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

SENDER_FIELDS: frozenset[str] = frozenset({"name", "company", "postal_address", "email", "phone"})
ALLOWED_NAMES: frozenset[str] = frozenset({"lead", "sender", "cta", "tone", "length"})
# Filters that cannot reach objects (no `attr`, `map`, `format`) and are deterministic (no
# `random`). Of these, only `default` keeps a lead value's evidence; the others are for the CTA
# and sender fields (see `check_template`).
ALLOWED_FILTERS: frozenset[str] = frozenset(
    {"default", "d", "trim", "lower", "upper", "capitalize", "title", "replace", "length"}
)
_PASS_THROUGH_FILTERS = frozenset({"default", "d"})

MAX_SUBJECT_SOURCE = 500
MAX_BODY_SOURCE = 20_000
# Generous next to the largest channel limit (email, 10,000), small enough to bound a render.
MAX_RENDERED = 50_000
MAX_REPEAT = 10_000
MAX_EXPONENT = 100
MAX_INT_BITS = 4096


def gap_text(field: str) -> str:
    """What a reader sees in place of a missing field."""
    return f"[missing: {field}]"


def strip_sentinels(text: str) -> str:
    return _SENTINELS.sub("", text)


def clean_value(value: str) -> str:
    """A value as it may be inserted: no sentinels, no control or bidi characters, single-line."""
    if value.isprintable():
        # Sentinels (private use), bidi controls (format) and control characters are all
        # non-printable, so the common case needs only the whitespace collapse. The one
        # printable whitespace is " ": most values are already clean, and kept as they are.
        if value.startswith(" ") or value.endswith(" ") or "  " in value:
            return " ".join(value.split())
        return value
    kept = (
        ch
        for ch in strip_sentinels(value)
        if ch not in _BIDI_CONTROLS and (ch.isspace() or unicodedata.category(ch) != "Cc")
    )
    return " ".join("".join(kept).split())


class EvidenceTampered(SecurityError):
    """The rendered text holds an evidence marker the renderer did not produce as-is."""


class SegmentKind(StrEnum):
    TEXT = "text"  # template wording
    VALUE = "value"  # an inserted lead value, with its evidence
    GAP = "gap"  # a missing lead field, shown as "[missing: field]"
    COMPLIANCE = "compliance"  # appended by the platform (footer, STOP line, voice intro)


# Enum members named on their class cost about ten global lookups each on Python 3.11 (`EnumType`
# has a `__getattr__`, which sends every class attribute through a slow hook); hot code uses these.
_VALUE = SegmentKind.VALUE


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of text; a draft's segments concatenate to exactly its text."""

    text: str
    kind: SegmentKind = SegmentKind.TEXT
    field: str | None = None
    evidence: Evidence | None = None


_SegmentFields = twin_of(Segment)


def _new_value_segment(text: str, field: str, evidence: Evidence) -> Segment:
    """`Segment(text, SegmentKind.VALUE, field, evidence)`, made a few times cheaper (see
    `records`)."""
    made = _SegmentFields()
    made.text = text
    made.kind = _VALUE
    made.field = field
    made.evidence = evidence
    made.__class__ = Segment
    segment: Segment = made  # what it now is; no `cast`, a call per record
    return segment


@dataclass(frozen=True, slots=True)
class Rendered:
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments)

    @property
    def gaps(self) -> list[str]:
        fields = (s.field for s in self.segments if s.kind is SegmentKind.GAP and s.field)
        return list(dict.fromkeys(fields))


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """A tenant's template for one channel; `subject` only for email. `tone` is a label for
    picking templates; the tone control itself reaches the template as the `tone` variable."""

    id: str
    channel: Channel
    subject: str | None
    body: str
    tone: Tone | None = None


# --- The sandbox ------------------------------------------------------------------------------


class _Tracked(str):
    """A lead value that knows its field until it is printed (see `_finalize`).

    One subclass per field holds the field as a class attribute: a value is then a plain `str`
    without an instance dict, several times cheaper to make.
    """

    __slots__ = ()
    # Underscored, so the sandbox refuses it to templates.
    _lr_field: ClassVar[str]


def _tracked_type(field: str) -> type[_Tracked]:
    class Tracked(_Tracked):
        __slots__ = ()
        _lr_field = field

    Tracked.__name__ = Tracked.__qualname__ = f"_Tracked_{field}"
    return Tracked


_TRACKED: Mapping[str, type[_Tracked]] = {
    field: _tracked_type(field) for field in sorted(TEMPLATE_LEAD_FIELDS)
}


class _Namespace:
    """`lead` and `sender` in templates: item lookup only, no attributes a template could use."""

    __slots__ = ("_kind", "_values")

    def __init__(self, kind: str, values: dict[str, str]) -> None:
        self._kind = kind
        self._values = values  # the caller's own dict, made for this namespace

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    @override
    def __str__(self) -> str:
        return ""

    @override
    def __repr__(self) -> str:
        return f"<{self._kind}>"


class _LeadNamespace(_Namespace):
    """`lead`: each value becomes a `_Tracked` when the template first reads it, and stays that
    one object; a template reads a few of the lead's fields, not all of them."""

    __slots__ = ("_evidence",)

    def __init__(self, evidence: Mapping[str, Evidence]) -> None:
        self._kind = "lead"
        self._values = {}  # the values made so far
        self._evidence = evidence

    @override
    def __getitem__(self, key: str) -> str:
        made = self._values.get(key)
        if made is None:
            # A missing field raises KeyError here, as a dict would: the sandbox makes it a gap.
            made = _TRACKED[key](self._evidence[key].value)
            self._values[key] = made
        return made


class _GapUndefined(Undefined):
    """Strict everywhere except a missing lead field, which renders as a gap marker.

    An unknown variable, a missing sender field or an unsafe attribute (the sandbox reports
    those as Undefined carrying a SecurityError) raises on any use, so nothing fails silently.
    """

    __slots__ = ()

    def _gap_field(self) -> str | None:
        obj = self._undefined_obj
        name = self._undefined_name
        if (
            self._undefined_hint is None
            and isinstance(obj, _Namespace)
            and obj._kind == "lead"
            and name in TEMPLATE_LEAD_FIELDS
        ):
            return str(name)
        return None

    @property
    @override
    def _undefined_message(self) -> str:
        obj = self._undefined_obj
        if self._undefined_hint is None and isinstance(obj, _Namespace):
            return f"{obj._kind}.{self._undefined_name} is not available"
        return super()._undefined_message

    @override
    def __str__(self) -> str:
        field = self._gap_field()
        if field is None:
            self._fail_with_undefined_error()
        return f"{GAP_OPEN}{field}{GAP_CLOSE}"

    @override
    def __bool__(self) -> bool:
        if self._gap_field() is None:
            self._fail_with_undefined_error()
        return False

    @override
    def __iter__(self) -> Iterator[Any]:
        if self._gap_field() is None:
            self._fail_with_undefined_error()
        return iter(())

    @override
    def __len__(self) -> int:
        if self._gap_field() is None:
            self._fail_with_undefined_error()
        return 0


def _finalize(value: Any) -> Any:
    if isinstance(value, _Tracked):
        return f"{VALUE_OPEN}{value._lr_field}{VALUE_SEP}{str.__str__(value)}{VALUE_CLOSE}"
    return value


class _Sandbox(ImmutableSandboxedEnvironment):
    # `"x" * 10**9` or `(9**99)**99` would take the process down before any output limit
    # applies; the other operators grow their result at most linearly in the source.
    intercepted_binops = frozenset({"*", "**"})

    @override
    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if isinstance(left, int) and isinstance(right, int):
            if operator == "**" and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is over the limit of {MAX_EXPONENT}")
            factor = abs(right) if operator == "**" else 1
            bits = left.bit_length() * factor + (right.bit_length() if operator == "*" else 0)
            if bits > MAX_INT_BITS:
                raise SecurityError(f"a number over {MAX_INT_BITS} bits")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if sized and len(seq) * count > MAX_REPEAT:
                    raise SecurityError(f"repetition over {MAX_REPEAT} items")
        return super().call_binop(context, operator, left, right)


_ENV = _Sandbox(
    # Plain text for every channel (email goes out as text/plain): HTML escaping would corrupt
    # "&" and quotes in names, and nothing here is ever inserted into HTML unescaped.
    autoescape=False,
    undefined=_GapUndefined,
    finalize=_finalize,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
_ENV.globals.clear()
_ENV.filters = {name: f for name, f in _ENV.filters.items() if name in ALLOWED_FILTERS}


def _bounded_replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    # Chained `replace("x", "xxxxxxxxxx")` grows tenfold per filter: size it before building.
    text, old, new = str(value), str(old), str(new)
    limit = -1 if count is None else count
    hits = text.count(old) if limit < 0 else min(limit, text.count(old))
    if old == "":
        hits = len(text) + 1 if limit < 0 else min(limit, len(text) + 1)
    if len(text) + hits * (len(new) - len(old)) > MAX_RENDERED:
        raise SecurityError(f"replace would produce over {MAX_RENDERED} characters")
    return text.replace(old, new, limit)


_ENV.filters["replace"] = _bounded_replace


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> Template:
    template = _ENV.from_string(source)
    # The environment has no globals, so neither has the template. A plain empty dict for
    # Jinja's chain of empty mappings spares every render two walks over that chain.
    template.globals = {}
    return template


@functools.lru_cache(maxsize=256)
def _compile_stripped(source: str) -> Template:
    # Rendering strips sentinels from the source first; a cached template saves that pass too.
    return _compile(strip_sentinels(source))


# --- The check ---------------------------------------------------------------------------------


def _ref(node: nodes.Node) -> tuple[str, str] | None:
    """("lead", field) for `lead.field` or `lead["field"]`; same for sender; else None."""
    if isinstance(node, nodes.Getattr):
        target, name = node.node, node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        target, name = node.node, node.arg.value
    else:
        return None
    if (
        isinstance(target, nodes.Name)
        and target.name in ("lead", "sender")
        and isinstance(name, str)
    ):
        return target.name, name
    return None


_REFUSED_STATEMENTS: dict[type[nodes.Node], str] = {
    nodes.For: "loops are not available in message templates",
    nodes.Macro: "macros are not available in message templates",
    nodes.CallBlock: "macros are not available in message templates",
    nodes.FilterBlock: "filter blocks are not available: they would change inserted values",
    nodes.AssignBlock: "block assignments are not available in message templates",
    nodes.With: "with blocks are not available in message templates",
    nodes.Extends: "extends is not available in message templates",
    nodes.Include: "include is not available in message templates",
    nodes.Import: "import is not available in message templates",
    nodes.FromImport: "import is not available in message templates",
}


class _Checker:
    def __init__(self, part: str) -> None:
        self.part = part
        self.problems: list[str] = []

    def problem(self, node: nodes.Node, message: str) -> None:
        self.problems.append(f"{self.part}: line {node.lineno}: {message}")

    def visit(self, node: nodes.Node, *, transformed: bool, condition: bool) -> None:
        """`transformed`: the value of `node` is changed before it can reach the text, so a lead
        value there would print without its evidence. `condition`: only a truth value or a
        comparison comes out, so lead values may be used freely."""
        ref = _ref(node)
        if ref is not None:
            self._ref(node, *ref)
            if ref[0] == "lead" and transformed and not condition:
                self.problem(
                    node,
                    f"lead.{ref[1]} must be inserted as is ({{{{ lead.{ref[1]} }}}}, optionally"
                    " with | default(...)), or its evidence is lost",
                )
            return
        for kind, message in _REFUSED_STATEMENTS.items():
            if isinstance(node, kind):
                self.problem(node, message)
        if isinstance(node, nodes.Name):
            if node.name in ("lead", "sender"):
                self.problem(node, f"use {node.name}.<field>, not {node.name} itself")
            return
        if isinstance(node, nodes.Const) and isinstance(node.value, str):
            if _SENTINELS.search(node.value):
                self.problem(node, "a string holds reserved characters U+E000 to U+E004")
            return
        if isinstance(node, nodes.Assign):
            # Built only from the namespace and literals, a variable stays as small as the
            # source: `{% set a = a ~ a %}` repeated would double it each time.
            for name in node.node.find_all(nodes.Name):
                if name.name not in ALLOWED_NAMES:
                    self.problem(name, f"set may not use the variable {name.name!r}")
        if isinstance(node, nodes.Getattr):
            if node.attr.startswith("_"):
                self.problem(node, f"private attribute {node.attr!r} is not accessible")
            else:
                self.problem(node, "attributes are only available as lead.<field>, sender.<field>")
        elif isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Const) and str(arg.value).startswith("_"):
                self.problem(node, f"private attribute {arg.value!r} is not accessible")
            else:
                self.problem(node, "subscripts are not available in message templates")
        elif isinstance(node, nodes.Call):
            self.problem(node, "calls are not available in message templates")
        elif isinstance(node, nodes.Filter) and node.name not in ALLOWED_FILTERS:
            self.problem(node, f"filter {node.name!r} is not available")

        if isinstance(node, nodes.Output | nodes.Template):
            self._children(node, transformed=False, condition=condition)
        elif isinstance(node, nodes.If):
            self.visit(node.test, transformed=transformed, condition=True)
            for child in [*node.body, *node.elif_, *node.else_]:
                self.visit(child, transformed=False, condition=condition)
        elif isinstance(node, nodes.CondExpr):
            if node.expr2 is None:
                # Jinja's value for a false test without else is strict here, so it would raise.
                self.problem(node, "an inline if needs an else: {{ a if b else '' }}")
            self.visit(node.test, transformed=transformed, condition=True)
            self.visit(node.expr1, transformed=transformed, condition=condition)
            if node.expr2 is not None:
                self.visit(node.expr2, transformed=transformed, condition=condition)
        elif isinstance(node, nodes.Compare | nodes.Test | nodes.Not):
            self._children(node, transformed=transformed, condition=True)
        elif isinstance(node, nodes.And | nodes.Or):
            # `lead.first_name or "there"` evaluates to one operand, unchanged.
            self._children(node, transformed=transformed, condition=condition)
        elif isinstance(node, nodes.Filter) and node.name in _PASS_THROUGH_FILTERS:
            self._children(node, transformed=transformed, condition=condition)
        else:
            # Concatenation, arithmetic, other filters, assignments, literals: whatever comes out
            # is a new string, not the evidenced value.
            self._children(node, transformed=True, condition=condition)

    def _children(self, node: nodes.Node, *, transformed: bool, condition: bool) -> None:
        for child in node.iter_child_nodes():
            self.visit(child, transformed=transformed, condition=condition)

    def _ref(self, node: nodes.Node, namespace: str, name: str) -> None:
        if name.startswith("_"):
            self.problem(node, f"private attribute {name!r} is not accessible")
        elif namespace == "lead" and name not in TEMPLATE_LEAD_FIELDS:
            known = ", ".join(sorted(TEMPLATE_LEAD_FIELDS))
            self.problem(node, f"unknown lead field {name!r} (known: {known})")
        elif namespace == "sender" and name not in SENDER_FIELDS:
            known = ", ".join(sorted(SENDER_FIELDS))
            self.problem(node, f"unknown sender field {name!r} (known: {known})")


def check_source(source: str, *, part: str = "body", max_chars: int = MAX_BODY_SOURCE) -> list[str]:
    """Problems with one template source, each as "part: line N: message"; empty when fine."""
    if len(source) > max_chars:
        # Not even parsed: the check itself must stay cheap on hostile input.
        return [f"{part}: {len(source)} characters, over the limit of {max_chars}"]
    problems: list[str] = []
    if _SENTINELS.search(source):
        problems.append(f"{part}: contains reserved characters U+E000 to U+E004")
    try:
        ast = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        return [*problems, f"{part}: line {exc.lineno}: syntax error: {exc.message}"]
    checker = _Checker(part)
    # Without loops, macros or with blocks, `{% set %}` is the only way to declare a name.
    names = list(ast.find_all(nodes.Name))
    declared = {name.name for name in names if name.ctx == "store"}
    reported: set[str] = set()
    for name in names:
        if name.ctx == "load" and name.name not in ALLOWED_NAMES | declared | reported:
            checker.problem(name, f"unknown variable {name.name!r}")
            reported.add(name.name)
    checker.visit(ast, transformed=False, condition=False)
    problems.extend(checker.problems)
    if not problems:
        try:
            _compile(source)
        except TemplateError as exc:
            lineno = getattr(exc, "lineno", None)
            where = f"line {lineno}: " if lineno else ""
            problems.append(f"{part}: {where}{exc}")
    return list(dict.fromkeys(problems))


def check_template(template: MessageTemplate) -> list[str]:
    """Every problem that keeps `template` from being saved or used; empty when it is fine."""
    # Parsing and walking the template costs about a millisecond, as much as the rest of a
    # draft: each distinct template (a frozen value) is checked once per process.
    return list(_checked_template(template))


@functools.lru_cache(maxsize=512)
def _checked_template(template: MessageTemplate) -> tuple[str, ...]:
    problems: list[str] = []
    if template.channel is Channel.EMAIL:
        if template.subject is None or not template.subject.strip():
            problems.append("subject: an email template needs a subject")
    elif template.subject is not None:
        problems.append(f"subject: {template.channel} templates have no subject")
    if template.subject is not None:
        problems += check_source(template.subject, part="subject", max_chars=MAX_SUBJECT_SOURCE)
    if not template.body.strip():
        problems.append("body: empty")
    else:
        problems += check_source(template.body, part="body", max_chars=MAX_BODY_SOURCE)
    return tuple(problems)


# --- Rendering ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _sender_view(sender: Sender) -> _Namespace:
    # A tenant's sender is the same for every draft: cleaned once. Sharing the namespace between
    # renders is safe: it has no mutating method and the sandbox is immutable.
    cleaned = {name: clean_value(getattr(sender, name) or "") for name in sorted(SENDER_FIELDS)}
    return _Namespace("sender", {name: value for name, value in cleaned.items() if value})


def usable_evidence(lead: Mapping[str, Evidence]) -> dict[str, Evidence]:
    """The evidence a template may insert, values cleaned (`clean_value`), blanks dropped.

    The cleaned copy is what segments carry, so an inserted value always equals its evidence.
    """
    usable: dict[str, Evidence] = {}
    for field, evidence in lead.items():
        if evidence.field != field:
            raise ValueError(f"evidence for {evidence.field!r} filed under {field!r}")
        value = evidence.value
        # `clean_value`'s own test for a value that is already clean, without the call.
        if not value.isprintable() or value[:1] == " " or value[-1:] == " " or "  " in value:
            value = clean_value(value)
        if field in TEMPLATE_LEAD_FIELDS and value:
            usable[field] = evidence if value == evidence.value else replace(evidence, value=value)
    return usable


def template_context(
    usable: Mapping[str, Evidence], *, sender: Sender, cta: str, tone: Tone, length: Length
) -> dict[str, Any]:
    """What a template sees, from `usable_evidence(...)`. One context serves several renders (a
    subject and a body): Jinja copies it into each render's own context."""
    return with_lead(usable, shared_context(sender=sender, cta=cta, tone=tone, length=length))


def shared_context(*, sender: Sender, cta: str, tone: Tone, length: Length) -> dict[str, Any]:
    """The part of a template's context that is not the lead: the same for every draft with
    one sender, CTA sentence and controls."""
    return {
        "sender": _sender_view(sender),
        "cta": clean_value(cta),
        # A StrEnum's value (`.value` is a slow descriptor).
        "tone": str(tone),
        "length": str(length),
    }


def with_lead(usable: Mapping[str, Evidence], shared: Mapping[str, Any]) -> dict[str, Any]:
    """A template's context: `shared_context(...)` and the lead's `usable_evidence(...)`."""
    return {"lead": _LeadNamespace(usable), **shared}


def render_segments(
    source: str,
    context: dict[str, Any],
    usable: Mapping[str, Evidence],
    *,
    single_line: bool = False,
) -> list[Segment]:
    """`render` with its inputs prepared: `usable` from `usable_evidence`, `context` from
    `template_context` with the same evidence. Raises what `render` raises."""
    template = _compile_stripped(source)
    chunks: list[str] = []
    size = 0
    try:
        # `Template.generate` without its extra generator and copy of the context: the context
        # is ours, and shared as is, since the environment has no globals to add to it.
        for chunk in template.root_render_func(template.new_context(context, shared=True)):
            size += len(chunk)
            if size > MAX_RENDERED:
                raise SecurityError(f"rendered text is over {MAX_RENDERED} characters")
            chunks.append(chunk)
    except Exception:
        template.environment.handle_exception()  # raises it, as `generate` does
    segments = _chunk_segments(chunks, usable, single_line=single_line)
    if segments is None:
        segments = _tidy(_cut("".join(chunks), usable), single_line=single_line)
    return segments


# A piece of template wording, as the chunks Jinja printed it in (joined, it is the text).
Wording = tuple[str, ...]

# Chunks known to hold no sentinel. Template text and the sender's and CTA's words are the same
# string objects from draft to draft, so this stays small; a flood of others only costs
# checking them again.
_CLEAN_CHUNKS: set[str] = set()
MAX_CLEAN_CHUNKS = 4096


def _chunk_segments(
    chunks: list[str], lead: Mapping[str, Evidence], *, single_line: bool
) -> list[Segment] | None:
    """`_tidy(_cut(...))` of the joined chunks, read chunk by chunk: Jinja prints each value,
    and so each marker, as a chunk of its own. None when a chunk is neither free of sentinels
    nor one whole marker: only `_cut` can tell what that sentinel is part of."""
    segments: list[Segment] = []
    wording: list[str] = []
    parts = 0  # pieces of wording and markers so far, as `_tidy` counts them
    clean = _CLEAN_CHUNKS
    for chunk in chunks:
        if chunk in clean:  # most chunks: known template text, sender and CTA
            wording.append(chunk)
        elif not chunk:
            continue
        elif chunk[0] == VALUE_OPEN or chunk[0] == GAP_OPEN:
            marker = _MARKER.fullmatch(chunk)
            if marker is None:
                return None
            if wording:
                _add_tidied(segments, tuple(wording), single_line, parts == 0, False)
                wording.clear()
                parts += 1
            segments.append(_marker_segment(marker, lead))
            parts += 1
        elif _SENTINELS.search(chunk):
            return None
        else:
            if len(clean) >= MAX_CLEAN_CHUNKS:
                clean.clear()
            clean.add(chunk)
            wording.append(chunk)
    if wording:
        _add_tidied(segments, tuple(wording), single_line, parts == 0, True)
    return segments


def _marker_segment(marker: re.Match[str], lead: Mapping[str, Evidence]) -> Segment:
    value_field, value, gap_field = marker.groups()
    if gap_field is not None:
        if gap_field not in TEMPLATE_LEAD_FIELDS or gap_field in lead:
            raise EvidenceTampered(f"gap marker for {gap_field!r} was not produced as is")
        return _gap_segment(gap_field)
    evidence = lead.get(value_field)
    if evidence is None or evidence.value != value:
        raise EvidenceTampered(f"value marker for {value_field!r} does not match its evidence")
    return _new_value_segment(value, value_field, evidence)


def _cut(raw: str, lead: Mapping[str, Evidence]) -> list[Wording | Segment]:
    """The rendered text cut at its markers: template wording (never empty, never two in a
    row), values and gaps as segments. Raises `EvidenceTampered` for the first bad marker or
    stray sentinel in the text, in text order."""
    parts: list[Wording | Segment] = []
    position = 0
    for match in _MARKER.finditer(raw):
        _add_wording(parts, raw[position : match.start()])
        position = match.end()
        parts.append(_marker_segment(match, lead))
    _add_wording(parts, raw[position:])
    return parts


def _add_wording(parts: list[Wording | Segment], wording: str) -> None:
    if _SENTINELS.search(wording):
        raise EvidenceTampered("a template changed an inserted value's evidence marker")
    if wording:
        parts.append((wording,))


_SPACES = re.compile(r"\s+")
_SPACES_BEFORE_BREAK = re.compile(r"[ \t]+\n")
_SPACES_AFTER_BREAK = re.compile(r"\n[ \t]+")
_DOUBLE_SPACES = re.compile(r"[ \t]{2,}")
_BLANK_LINES = re.compile(r"\n{3,}")
_DOUBLE_FULL_STOP = re.compile(r"(?<!\.)\.\.(?!\.)")
_LEADING_FULL_STOP = re.compile(r"\.(?!\.)")


def _tidy_text(text: str, *, single_line: bool) -> str:
    if single_line:
        text = _SPACES.sub(" ", text)
    else:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = _SPACES_BEFORE_BREAK.sub("\n", text)
        text = _SPACES_AFTER_BREAK.sub("\n", text)
        text = _DOUBLE_SPACES.sub(" ", text)
        text = _BLANK_LINES.sub("\n\n", text)
    # A sender company ending in "." before a full stop ("Acme Ltd.."); an ellipsis stays.
    return _DOUBLE_FULL_STOP.sub(".", text)


@functools.lru_cache(maxsize=4096)
def _wording_segment(
    wording: Wording, single_line: bool, after_full_stop: bool, first: bool, last: bool
) -> Segment | None:
    # Template wording between values repeats from lead to lead: each piece is tidied once and
    # its segment, immutable, shared by every draft that has it. None: nothing left.
    tidied = _tidy_text("".join(wording), single_line=single_line)
    # "Globex Inc." before the template's own full stop; the value itself stays as observed.
    if after_full_stop and _LEADING_FULL_STOP.match(tidied):
        tidied = tidied[1:]
    if first:
        tidied = tidied.lstrip()
    if last:
        tidied = tidied.rstrip()
    return Segment(tidied) if tidied else None


@functools.lru_cache(maxsize=len(TEMPLATE_LEAD_FIELDS))
def _gap_segment(field: str) -> Segment:
    return Segment(gap_text(field), SegmentKind.GAP, field)


def _tidy(parts: list[Wording | Segment], *, single_line: bool) -> list[Segment]:
    """Whitespace left by `{% if %}` blocks is template wording: tidy it, never a value."""
    tidied: list[Segment] = []
    last = len(parts) - 1
    for index, part in enumerate(parts):
        if isinstance(part, Segment):
            tidied.append(part)
        else:
            _add_tidied(tidied, part, single_line, index == 0, index == last)
    return tidied


def _add_tidied(
    segments: list[Segment], wording: Wording, single_line: bool, first: bool, last: bool
) -> None:
    # Wording follows a value or a gap (never wording), or nothing.
    after_full_stop = bool(segments) and segments[-1].text.endswith(".")
    # Positional: the cache's key is then the call's own arguments.
    segment = _wording_segment(wording, single_line, after_full_stop, first, last)
    if segment is not None:
        segments.append(segment)


def render(
    source: str,
    *,
    lead: Mapping[str, Evidence],
    sender: Sender,
    cta: str,
    tone: Tone,
    length: Length,
    single_line: bool = False,
) -> Rendered:
    """Render one template source into segments.

    Raises the sandbox's errors (`jinja2.exceptions.SecurityError`, `UndefinedError`, ...) for
    what the sandbox refuses, and `EvidenceTampered` for a forged or altered marker. Meant to run
    after `check_template`; safe without it.
    """
    usable = usable_evidence(lead)
    context = template_context(usable, sender=sender, cta=cta, tone=tone, length=length)
    return Rendered(render_segments(source, context, usable, single_line=single_line))


# --- Calls to action and built-in templates ------------------------------------------------------

# One sentence per tone; worded to work spoken as well as written.
CTA_TEXTS: Mapping[str, Mapping[Tone, str]] = {
    "book_call": {
        Tone.FORMAL: "Would you be available for a 15-minute conversation in the coming days?",
        Tone.FRIENDLY: "Would you be up for a quick 15-minute chat this week?",
        Tone.DIRECT: "Can we set up 15 minutes this week?",
    },
    "reply": {
        Tone.FORMAL: "I would be grateful if you could let me know whether this is of interest.",
        Tone.FRIENDLY: "Just let me know if this sounds useful.",
        Tone.DIRECT: "Is this worth a conversation?",
    },
    "send_info": {
        Tone.FORMAL: "May I send you a brief overview?",
        Tone.FRIENDLY: "Want me to send over a short overview?",
        Tone.DIRECT: "Shall I send a one-page overview?",
    },
}


def cta_text(cta: str, tone: Tone) -> str:
    """The call-to-action sentence for a CTA key (`CTA_TEXTS`) in a tone."""
    try:
        return CTA_TEXTS[cta][tone]
    except KeyError:
        known = ", ".join(CTA_TEXTS)
        raise ValueError(f"unknown call to action {cta!r} (known: {known})") from None


# Optional paragraphs: `length != "short"` for the middle one, `length == "long"` for the last.
# Greeting fallbacks ("there") are generic words, not facts about the lead.
_EMAIL: dict[Tone, tuple[str, str]] = {
    Tone.FORMAL: (
        "{{ lead.company }} and {{ sender.company }}",
        """\
{% if lead.full_name %}Dear {{ lead.full_name }},{% else %}Good day,{% endif %}


My name is {{ sender.name }}, and I am writing from {{ sender.company }} regarding \
{{ lead.company }}.
{% if length != "short" %}

{% if lead.title %}Given your role as {{ lead.title }}, I thought it best to contact you \
directly. {% endif %}I would welcome the opportunity to learn about your current priorities and \
to explain briefly how we work.
{% endif %}
{% if length == "long" %}

There is no obligation of any kind. If the timing is not right, a short reply is sufficient and \
I will not follow up further.
{% endif %}

{{ cta }}

Kind regards,
{{ sender.name }}
""",
    ),
    Tone.FRIENDLY: (
        "Quick question about {{ lead.company }}",
        """\
Hi {{ lead.first_name | default("there") }},

I'm {{ sender.name }} from {{ sender.company }}, and I've been meaning to reach out to the team \
at {{ lead.company }}.
{% if length != "short" %}

{% if lead.title %}As {{ lead.title }}, you probably have a good view of what's working and \
what isn't. {% endif %}I'd love to hear what's on your plate right now and share a few ideas.
{% endif %}
{% if length == "long" %}

No pressure at all. If now isn't a good time, just say so and I won't keep nudging.
{% endif %}

{{ cta }}

Cheers,
{{ sender.name }}
""",
    ),
    Tone.DIRECT: (
        "Idea for {{ lead.company }}",
        """\
{{ lead.first_name | default("Hello") }},

I'm {{ sender.name }} at {{ sender.company }}, writing to {{ lead.company }} with one question.
{% if length != "short" %}

{% if lead.title %}As {{ lead.title }}, you'll know quickly whether this is relevant. \
{% endif %}If it isn't, tell me and I'll close the loop.
{% endif %}
{% if length == "long" %}

What I'd cover: where you are today, where we could help, and whether a second conversation \
makes sense. Nothing more.
{% endif %}

{{ cta }}

{{ sender.name }}
""",
    ),
}

_SMS: dict[Tone, str] = {
    Tone.FORMAL: (
        "Hello{% if lead.full_name %} {{ lead.full_name }}{% endif %}, this is {{ sender.name }} "
        "from {{ sender.company }} regarding {{ lead.company }}."
        '{% if length != "short" %} I would welcome a brief conversation about your priorities.'
        "{% endif %}"
        '{% if length == "long" %} There is no obligation.{% endif %}'
        " {{ cta }}"
    ),
    Tone.FRIENDLY: (
        'Hi {{ lead.first_name | default("there") }}, it\'s {{ sender.name }} from '
        "{{ sender.company }}. I'd love to connect about {{ lead.company }}."
        '{% if length != "short" %} I have a few ideas that might help your team.{% endif %}'
        '{% if length == "long" %} No pressure if the timing is off.{% endif %}'
        " {{ cta }}"
    ),
    Tone.DIRECT: (
        '{{ lead.first_name | default("Hi") }}, {{ sender.name }} from {{ sender.company }} '
        "here, about {{ lead.company }}."
        '{% if length != "short" %} I think we can help and would like to show you how.'
        "{% endif %}"
        '{% if length == "long" %} If it is not relevant, just say so.{% endif %}'
        " {{ cta }}"
    ),
}

_WHATSAPP: dict[Tone, str] = {
    Tone.FORMAL: """\
Hello{% if lead.full_name %} {{ lead.full_name }}{% endif %},

This is {{ sender.name }} from {{ sender.company }}, writing regarding {{ lead.company }}.
{% if length != "short" %}
I would welcome a brief conversation about your current priorities.
{% endif %}
{% if length == "long" %}
There is no obligation, and a short reply is enough if the timing is not right.
{% endif %}

{{ cta }}
""",
    Tone.FRIENDLY: """\
Hi {{ lead.first_name | default("there") }}, it's {{ sender.name }} from {{ sender.company }}.

I'd love to connect about {{ lead.company }}.
{% if length != "short" %}
I have a few ideas that might help your team.
{% endif %}
{% if length == "long" %}
No pressure if the timing is off; just let me know.
{% endif %}

{{ cta }}
""",
    Tone.DIRECT: """\
{{ lead.first_name | default("Hi") }}, {{ sender.name }} from {{ sender.company }} here, \
about {{ lead.company }}.
{% if length != "short" %}
I think we can help and would like to show you how.
{% endif %}
{% if length == "long" %}
If it is not relevant, just say so.
{% endif %}

{{ cta }}
""",
}

# The platform opens every script with the caller's name and company; these carry on from there.
_VOICE: dict[Tone, str] = {
    Tone.FORMAL: """\
{% if lead.full_name %}Am I speaking with {{ lead.full_name }}?

{% endif %}
I am calling regarding {{ lead.company }}.
{% if length != "short" %}
I would welcome the opportunity to learn about your current priorities and explain briefly \
how we work.
{% endif %}
{% if length == "long" %}
There is no obligation, and if now is not a convenient time I am happy to call back.
{% endif %}

{{ cta }}
""",
    Tone.FRIENDLY: """\
Hi {{ lead.first_name | default("there") }}, thanks for picking up.

I'm calling about {{ lead.company }}.
{% if length != "short" %}
I'd love to hear what's on your plate right now and share a few ideas.
{% endif %}
{% if length == "long" %}
If this isn't a good moment, no problem at all; I can call back whenever suits you.
{% endif %}

{{ cta }}
""",
    Tone.DIRECT: """\
I'm calling about {{ lead.company }}, and I'll keep it to a minute.
{% if length != "short" %}
I think we can help, and I'd like to find out whether that's true.
{% endif %}
{% if length == "long" %}
If it isn't relevant, just tell me and I won't call again.
{% endif %}

{{ cta }}
""",
}


def _defaults() -> dict[tuple[Channel, Tone], MessageTemplate]:
    templates: dict[tuple[Channel, Tone], MessageTemplate] = {}
    for tone in Tone:
        subject, body = _EMAIL[tone]
        bodies = {
            Channel.EMAIL: body,
            Channel.SMS: _SMS[tone],
            Channel.WHATSAPP: _WHATSAPP[tone],
            Channel.VOICE: _VOICE[tone],
        }
        for channel, text in bodies.items():
            templates[channel, tone] = MessageTemplate(
                id=f"default.{channel}.{tone}",
                channel=channel,
                subject=subject if channel is Channel.EMAIL else None,
                body=text,
                tone=tone,
            )
    return templates


DEFAULT_TEMPLATES: Mapping[tuple[Channel, Tone], MessageTemplate] = _defaults()


def default_template(channel: Channel, tone: Tone) -> MessageTemplate:
    return DEFAULT_TEMPLATES[channel, tone]
