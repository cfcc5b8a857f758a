"""Tenant templates are untrusted code: the sandbox and the check must hold against known
template-injection payloads, and every inserted lead value must keep its evidence."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError

from leadrelay.drafting import templates
from leadrelay.drafting.evidence import (
    Channel,
    Confidence,
    Evidence,
    Length,
    Sender,
    Tone,
)
from leadrelay.drafting.templates import (
    CTA_TEXTS,
    DEFAULT_TEMPLATES,
    MAX_BODY_SOURCE,
    EvidenceTampered,
    MessageTemplate,
    Rendered,
    Segment,
    SegmentKind,
    check_source,
    check_template,
    clean_value,
    cta_text,
    render,
    render_segments,
    template_context,
    usable_evidence,
)

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
SENDER = Sender(name="Sam Patel", company="Relay Works", postal_address="1 Main Street, Leeds")
SENTINEL_CHARS = "\ue000\ue001\ue002\ue003\ue004"


def ev(field: str, value: str, confidence: Confidence = Confidence.MEDIUM) -> Evidence:
    return Evidence(field, value, "web_form", NOW, confidence, 1)


LEAD = {
    "full_name": ev("full_name", "Dana Whitfield"),
    "first_name": ev("first_name", "Dana"),
    "company": ev("company", "Northwind Traders", Confidence.HIGH),
}


def draw(source: str, lead: dict[str, Evidence] | None = None, **kwargs: object) -> Rendered:
    return render(
        source,
        lead=LEAD if lead is None else lead,
        sender=SENDER,
        cta="Can we talk?",
        tone=Tone.FRIENDLY,
        length=Length.MEDIUM,
        **kwargs,  # type: ignore[arg-type]
    )


# --- Known server-side template injection payloads ---------------------------------------------

SSTI_PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ namespace.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ request.application }}",
    "{{ request.application.__globals__.__builtins__.__import__('os').popen('id').read() }}",
    "{{ lead.__dict__ }}",
    "{{ lead.__class__.__init__.__globals__ }}",
    "{{ lead._values }}",
    "{{ lead['_values'] }}",
    "{{ lead.company.__class__.__mro__ }}",
    "{{ '{0.__class__}'.format(lead) }}",
    "{{ '{0.__class__.__init__.__globals__}'.format(lead) }}",
    "{{ '%s' % lead }}",
    "{{ lead | attr('__class__') }}",
    "{{ sender.__class__.__init__.__globals__ }}",
    "{{ cta.__class__.__base__.__subclasses__() }}",
    "{{ range.__globals__ }}",
    "{{ dict(a=1).__class__ }}",
    "{% set x = ''.__class__ %}{{ x }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{% extends '/etc/passwd' %}",
]
DANGER = ("subclasses", "globals", "builtins", "<class", "uid=", "function", "module", "os.")


@pytest.mark.parametrize("payload", SSTI_PAYLOADS)
def test_injection_payloads_are_refused_by_the_check(payload: str) -> None:
    assert check_source(payload), payload


@pytest.mark.parametrize("payload", SSTI_PAYLOADS)
def test_injection_payloads_cannot_execute_even_without_the_check(payload: str) -> None:
    try:
        text = draw(payload).text
    except (SecurityError, UndefinedError, TemplateError):
        return
    except TypeError as exc:
        error = str(exc)
    else:
        assert not any(word in text for word in DANGER), text
        return
    # include/import/extends: there is no loader to read anything with.
    assert "no loader" in error


def test_email_template_with_a_payload_in_the_subject_is_refused() -> None:
    template = MessageTemplate("t", Channel.EMAIL, "{{ config }}", "Hello {{ lead.company }}")
    problems = check_template(template)
    assert problems == ["subject: line 1: unknown variable 'config'"]


def test_lead_values_are_data_not_template_code() -> None:
    lead = {"company": ev("company", "{{ 7*7 }} {% for x in y %}")}
    rendered = draw("About {{ lead.company }}.", lead)
    assert rendered.text == "About {{ 7*7 }} {% for x in y %}."
    assert "49" not in rendered.text


def test_globals_are_gone() -> None:
    for name in ("range", "dict", "lipsum", "cycler", "joiner", "namespace"):
        with pytest.raises(UndefinedError):
            draw(f"{{{{ {name} }}}}")


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 100000 }}",
        "{{ [1] * 100000 }}",
        "{{ (9 ** 99) ** 99 }}",
        "{{ 2 ** 1000000 }}",
        "{{ 'x' | replace('x', 'xxxxxxxxxx') | replace('x', 'xxxxxxxxxx')"
        " | replace('x', 'xxxxxxxxxx') | replace('x', 'xxxxxxxxxx')"
        " | replace('x', 'xxxxxxxxxx') }}",
        "{{ 'x' * 10000 }}" * 6,
    ],
)
def test_resource_exhaustion_is_refused(source: str) -> None:
    with pytest.raises(SecurityError):
        draw(source)


def test_self_doubling_variables_are_refused_by_the_check() -> None:
    problems = check_source("{% set a = 'xx' %}{% set a = a ~ a %}{{ a }}")
    assert problems == ["body: line 1: set may not use the variable 'a'"]


# --- The check -----------------------------------------------------------------------------------


@pytest.mark.parametrize("template", list(DEFAULT_TEMPLATES.values()), ids=lambda t: t.id)
def test_default_templates_pass_the_check(template: MessageTemplate) -> None:
    assert check_template(template) == []


def test_defaults_cover_every_channel_and_tone() -> None:
    assert set(DEFAULT_TEMPLATES) == {(c, t) for c in Channel for t in Tone}
    for (channel, tone), template in DEFAULT_TEMPLATES.items():
        assert template.channel is channel
        assert template.tone is tone
        assert (template.subject is not None) == (channel is Channel.EMAIL)


def test_syntax_errors_carry_their_line() -> None:
    problems = check_source("Hello,\n\n{{ lead.company \nBye")
    assert problems == [
        "body: line 4: syntax error: expected token 'end of print statement', got 'Bye'"
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ config }}", "unknown variable 'config'"),
        ("{{ lead.salary }}", "unknown lead field 'salary'"),
        ("{{ sender.password }}", "unknown sender field 'password'"),
        ("{{ lead.__dict__ }}", "private attribute '__dict__'"),
        ("{{ lead }}", "use lead.<field>, not lead itself"),
        ("{{ cta.upper() }}", "calls are not available"),
        ("{{ cta | attr('x') }}", "filter 'attr' is not available"),
        ("{{ cta | random }}", "filter 'random' is not available"),
        ("{% for x in 'ab' %}{% endfor %}", "loops are not available"),
        ("{% macro m() %}{% endmacro %}", "macros are not available"),
        ("{% filter upper %}{{ lead.company }}{% endfilter %}", "filter blocks are not available"),
        ("{% set x %}{{ lead.company }}{% endset %}", "block assignments are not available"),
        ("{% with x = 1 %}{{ x }}{% endwith %}", "with blocks are not available"),
        ("{% include 'x' %}", "include is not available"),
        ("{% from 'x' import y %}", "import is not available"),
        ("{{ lead.title if lead.title }}", "an inline if needs an else"),
        ('{{ "\\ue000" }}', "reserved characters"),
        ("\ue000", "reserved characters"),
    ],
)
def test_check_reports(source: str, expected: str) -> None:
    problems = check_source(source)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    "source",
    [
        "{{ lead.company | upper }}",
        "{{ lead.company ~ '!' }}",
        "{{ lead.company[0] }}",
        "{{ lead.company * 2 }}",
        "{{ lead.company | length }}",
        "{{ (lead.company, 1) }}",
        "{% set name = lead.company %}{{ name }}",
        "{{ lead.company | default('x') | trim }}",
    ],
)
def test_transforming_a_lead_value_is_refused(source: str) -> None:
    # The printed text would no longer be the evidenced value, so its evidence would be lost.
    problems = check_source(source)
    assert any("must be inserted as is" in problem for problem in problems), problems


@pytest.mark.parametrize(
    "source",
    [
        "{{ lead.company }}",
        "{{ lead['company'] }}",
        "{{ lead.first_name | default('there') }}",
        "{{ lead.first_name or 'there' }}",
        "{{ lead.full_name if lead.full_name else 'Hello' }}",
        "{% if lead.country == 'DE' %}Hallo{% endif %}",
        "{% if lead.company | length > 40 %}short{% endif %}",
        "{% if lead.title is defined and not lead.city %}x{% endif %}",
        "{{ sender.name | upper }} {{ cta | lower }}",
        "{% set greeting = 'Hi' if tone == 'friendly' else 'Dear' %}{{ greeting }}",
        '{% if length != "short" %}More.{% endif %}',
    ],
)
def test_plain_uses_pass_the_check(source: str) -> None:
    assert check_source(source) == []


def test_too_long_sources_are_refused_before_parsing() -> None:
    body = "{{" * (MAX_BODY_SOURCE // 2 + 1)
    assert check_source(body) == [
        f"body: {len(body)} characters, over the limit of {MAX_BODY_SOURCE}"
    ]
    template = MessageTemplate("t", Channel.EMAIL, "x" * 501, "Hi")
    assert check_template(template) == ["subject: 501 characters, over the limit of 500"]


def test_subject_belongs_to_email_only() -> None:
    assert check_template(MessageTemplate("t", Channel.EMAIL, None, "Hi")) == [
        "subject: an email template needs a subject"
    ]
    assert check_template(MessageTemplate("t", Channel.SMS, "Hi", "Hi")) == [
        "subject: sms templates have no subject"
    ]
    assert check_template(MessageTemplate("t", Channel.SMS, None, "  ")) == ["body: empty"]


# --- Evidence tracking ---------------------------------------------------------------------------


def test_inserted_values_become_value_segments_with_their_evidence() -> None:
    rendered = draw("Hi {{ lead.first_name }}, how is {{ lead.company }}?")
    assert rendered.text == "Hi Dana, how is Northwind Traders?"
    values = [s for s in rendered.segments if s.kind is SegmentKind.VALUE]
    assert [(s.text, s.field) for s in values] == [
        ("Dana", "first_name"),
        ("Northwind Traders", "company"),
    ]
    assert values[1].evidence == LEAD["company"]
    assert rendered.gaps == []


def test_default_filter_keeps_evidence_and_gives_no_gap() -> None:
    present = draw("Hi {{ lead.first_name | default('there') }},")
    assert [s.kind for s in present.segments] == [
        SegmentKind.TEXT,
        SegmentKind.VALUE,
        SegmentKind.TEXT,
    ]
    absent = draw("Hi {{ lead.first_name | default('there') }},", {})
    assert absent.text == "Hi there,"
    assert absent.gaps == []


def test_missing_field_is_a_visible_gap() -> None:
    rendered = draw("About {{ lead.company }} in {{ lead.city }}.", {})
    assert rendered.text == "About [missing: company] in [missing: city]."
    assert rendered.gaps == ["company", "city"]
    gap = rendered.segments[1]
    assert (gap.kind, gap.field, gap.evidence) == (SegmentKind.GAP, "company", None)


def test_optional_phrase_leaves_no_gap() -> None:
    rendered = draw("Hello{% if lead.title %}, {{ lead.title }}{% endif %}.", {})
    assert rendered.text == "Hello."
    assert rendered.gaps == []


def test_blank_evidence_is_a_gap_not_an_empty_insertion() -> None:
    rendered = draw("About {{ lead.company }}.", {"company": ev("company", "  \t ")})
    assert rendered.gaps == ["company"]


def test_sentinels_inside_a_lead_value_are_stripped() -> None:
    forged = "Evil\ue002 Corp \ue000company\ue001Northwind Traders\ue002"
    rendered = draw("About {{ lead.company }}.", {"company": ev("company", forged)})
    assert not any(ch in rendered.text for ch in SENTINEL_CHARS)
    values = [s for s in rendered.segments if s.kind is SegmentKind.VALUE]
    assert len(values) == 1
    assert values[0].text == "Evil Corp companyNorthwind Traders"
    assert values[0].evidence is not None
    assert values[0].evidence.value == values[0].text


def test_control_and_bidi_characters_are_stripped_from_values() -> None:
    lead = {"company": ev("company", "Acme\u202e\x00 Ltd\n\nInc")}
    assert draw("{{ lead.company }}", lead).text == "Acme Ltd Inc"


def cleaned_the_long_way(value: str) -> str:
    """`clean_value` without its shortcut for values that are already clean."""
    kept = (
        ch
        for ch in value
        if ch not in SENTINEL_CHARS
        and ch not in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
        and (ch.isspace() or unicodedata.category(ch) != "Cc")
    )
    return " ".join("".join(kept).split())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from([*"ab .\t\n\x00", "\u00a0", "\u202e", "\ue000"])))
def test_clean_values_are_cleaned_as_the_long_way_cleans_them(value: str) -> None:
    assert clean_value(value) == cleaned_the_long_way(value)
    usable = usable_evidence({"company": ev("company", value)})
    if cleaned_the_long_way(value):
        assert usable["company"].value == cleaned_the_long_way(value)
    else:
        assert usable == {}


def test_forged_markers_from_string_escapes_are_refused() -> None:
    with pytest.raises(EvidenceTampered):
        draw('{{ "\\ue000company\\ue001Contoso\\ue002" }}')
    with pytest.raises(EvidenceTampered):
        draw('{{ "\\ue003company\\ue004" }}')  # a gap for a field we do have
    with pytest.raises(EvidenceTampered):
        draw('{{ "stray \\ue002" }}')


def test_raw_sentinels_in_the_source_are_stripped_at_render() -> None:
    rendered = draw("\ue000company\ue001Contoso\ue002 and {{ lead.company }}")
    assert rendered.text == "companyContoso and Northwind Traders"


def test_missing_sender_field_raises_instead_of_printing_none() -> None:
    with pytest.raises(UndefinedError, match=r"sender\.phone is not available"):
        draw("Call {{ sender.phone }}")


def test_whitespace_from_blocks_is_tidied() -> None:
    source = 'Hi,\n\n{% if length == "long" %}\nLong.\n{% endif %}\n\n\n\nBye   now  \n'
    assert draw(source).text == "Hi,\n\nBye now"


def test_single_line_rendering_for_subjects() -> None:
    assert draw("A\n  {{ lead.company }}\n", single_line=True).text == "A Northwind Traders"


def test_value_ending_in_a_full_stop_does_not_double_it() -> None:
    lead = {"company": ev("company", "Globex Inc.")}
    assert draw("About {{ lead.company }}. Next.", lead).text == "About Globex Inc. Next."


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_any_value_is_inserted_with_evidence_or_shown_as_a_gap(value: str) -> None:
    rendered = draw("About {{ lead.company }}.", {"company": ev("company", value)})
    assert not any(ch in rendered.text for ch in SENTINEL_CHARS)
    values = [s for s in rendered.segments if s.kind is SegmentKind.VALUE]
    if rendered.gaps:
        assert rendered.gaps == ["company"]
        assert values == []
    else:
        assert len(values) == 1
        assert values[0].evidence is not None
        assert values[0].text == values[0].evidence.value
        assert values[0].text in rendered.text


# --- Cutting the rendered text -------------------------------------------------------------------

# Printed pieces that hold sentinels in every way a template could arrange them: whole markers
# (right, forged, for a present or a missing field), stray sentinels, a marker split over two
# outputs. Reading the output chunk by chunk must give what cutting the joined text gives.
PRINTED = [
    "Hi ",
    ", and. ",
    "{{ lead.company }}",
    "{{ lead.title }}",
    "{{ lead.first_name | default('there') }}",
    "{{ sender.name }}",
    "{{ cta }}",
    '{{ "\\ue000company\\ue001Northwind Traders\\ue002" }}',
    '{{ "\\ue000company\\ue001Contoso\\ue002" }}',
    '{{ "\\ue003title\\ue004" }}',
    '{{ "\\ue003company\\ue004" }}',
    '{{ "\\ue000company" }}',
    '{{ "\\ue001Northwind Traders\\ue002" }}',
    '{{ "stray \\ue002" }}',
    '{{ "" }}',
]


def outcome(work: Callable[[], list[Segment]]) -> object:
    try:
        return work()
    except TemplateError as exc:
        return type(exc), str(exc)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PRINTED), max_size=8), st.booleans())
def test_reading_printed_chunks_cuts_like_the_joined_text(
    printed: list[str], single_line: bool
) -> None:
    source = "".join(printed) or "x"
    usable = usable_evidence(LEAD)
    context = template_context(
        usable, sender=SENDER, cta="Can we talk?", tone=Tone.FRIENDLY, length=Length.MEDIUM
    )
    chunks = list(templates._compile_stripped(source).generate(context))
    by_chunks = outcome(lambda: render_segments(source, context, usable, single_line=single_line))
    joined = outcome(
        lambda: templates._tidy(templates._cut("".join(chunks), usable), single_line=single_line)
    )
    assert by_chunks == joined


def test_one_context_renders_subject_and_body_as_render_does() -> None:
    usable = usable_evidence(LEAD)
    context = template_context(
        usable, sender=SENDER, cta="Can we talk?", tone=Tone.FRIENDLY, length=Length.MEDIUM
    )
    for source, single_line in (
        ("Idea for {{ lead.company }}", True),
        ("{% set x = 'y' %}Hi {{ lead.first_name }}, {{ x }}. {{ cta }}", False),
        ("Hi {{ lead.first_name }}. {{ lead.title }}", False),
    ):
        assert render_segments(source, context, usable, single_line=single_line) == (
            draw(source, single_line=single_line).segments
        )


# --- Calls to action -----------------------------------------------------------------------------


def test_cta_texts_cover_every_tone() -> None:
    for key, texts in CTA_TEXTS.items():
        assert set(texts) == set(Tone), key
        assert len({texts[tone] for tone in Tone}) == len(Tone)
    assert cta_text("book_call", Tone.DIRECT) == "Can we set up 15 minutes this week?"


def test_unknown_cta_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown call to action"):
        cta_text("buy_now", Tone.FORMAL)
