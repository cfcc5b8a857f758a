"""Evidence from provenance rows, and composed drafts: every inserted value traceable to its
evidence, gaps visible, compliance text added by the platform, limits enforced, hash exact."""

from __future__ import annotations

import hashlib
import json
from dataclasses import FrozenInstanceError, fields, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrelay.drafting import evidence as evidence_module
from leadrelay.drafting import sentences as sentences_module
from leadrelay.drafting import templates as templates_module
from leadrelay.drafting.compose import (
    BODY_LIMITS,
    STOP_INSTRUCTION,
    SUBJECT_LIMIT,
    UNSUBSCRIBE_PLACEHOLDER,
    Draft,
    DraftTooLong,
    TemplateRejected,
    compliance_lines,
    compose,
    content_hash,
    highlight,
)
from leadrelay.drafting.evidence import (
    Channel,
    Confidence,
    Evidence,
    Length,
    Observation,
    Sender,
    Tone,
    evidence_from,
    lowest,
)
from leadrelay.drafting.sentences import Sentence, split_sentences
from leadrelay.drafting.templates import (
    MessageTemplate,
    Segment,
    SegmentKind,
    clean_value,
    default_template,
)

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
SENDER = Sender(
    name="Sam Patel",
    company="Relay Works Ltd.",
    postal_address="1 Main Street\nLeeds LS1 4AP\nUnited Kingdom",
)
SENTINEL_CHARS = "\ue000\ue001\ue002\ue003\ue004"


def obs(field: str, value: str, source: str = "web_form", age: timedelta = DAY) -> Observation:
    return Observation(field, value, value, source, NOW - age)


LEAD = evidence_from(
    [
        obs("full_name", "Dana Whitfield"),
        obs("company", "Northwind Traders"),
        obs("company", "NORTHWIND TRADERS", source="crm_sync"),
        obs("title", "Head of Sales Operations", age=400 * DAY),
        obs("email", "dana@northwind.example"),
    ],
    now=NOW,
    verified={"email"},
)


def draft(
    channel: Channel = Channel.EMAIL,
    *,
    tone: Tone = Tone.FRIENDLY,
    length: Length = Length.MEDIUM,
    evidence: dict[str, Evidence] | None = None,
    template: MessageTemplate | None = None,
    first_message: bool = True,
    cta: str = "book_call",
) -> Draft:
    return compose(
        template or default_template(channel, tone),
        LEAD if evidence is None else evidence,
        sender=SENDER,
        channel=channel,
        tone=tone,
        length=length,
        cta=cta,
        first_message=first_message,
        now=NOW,
    )


# --- Evidence ------------------------------------------------------------------------------------


def test_newest_observation_wins() -> None:
    result = evidence_from(
        [
            obs("company", "Old Name Ltd", source="import", age=30 * DAY),
            obs("company", "New Name Ltd", source="web_form", age=2 * DAY),
            obs("company", "Older Name Ltd", source="crm_sync", age=90 * DAY),
        ],
        now=NOW,
    )
    company = result["company"]
    assert (company.value, company.source, company.observed_at) == (
        "New Name Ltd",
        "web_form",
        NOW - 2 * DAY,
    )
    assert company.confidence is Confidence.MEDIUM
    assert company.sources == 1


def test_equal_times_take_the_later_row() -> None:
    rows = [obs("city", "Leeds", source="a"), obs("city", "York", source="b")]
    assert evidence_from(rows, now=NOW)["city"].value == "York"


def test_two_agreeing_sources_make_high_confidence() -> None:
    company = LEAD["company"]
    assert company.value == "NORTHWIND TRADERS"  # the newest row, as observed
    assert company.confidence is Confidence.HIGH
    assert company.sources == 2


def test_one_source_twice_is_not_agreement() -> None:
    rows = [obs("city", "Leeds", age=3 * DAY), obs("city", "leeds")]
    city = evidence_from(rows, now=NOW)["city"]
    assert (city.confidence, city.sources) == (Confidence.MEDIUM, 1)


def test_disagreeing_sources_stay_medium() -> None:
    rows = [obs("city", "Leeds", source="a", age=3 * DAY), obs("city", "York", source="b")]
    city = evidence_from(rows, now=NOW)["city"]
    assert (city.value, city.confidence, city.sources) == ("York", Confidence.MEDIUM, 1)


def test_verified_field_is_high() -> None:
    assert LEAD["email"].confidence is Confidence.HIGH
    old = evidence_from([obs("email", "a@b.example", age=800 * DAY)], now=NOW, verified={"email"})
    assert old["email"].confidence is Confidence.HIGH


def test_old_observation_is_low_even_when_sources_agree() -> None:
    assert LEAD["title"].confidence is Confidence.LOW
    rows = [
        obs("company", "Acme", source="a", age=500 * DAY),
        obs("company", "acme", source="b", age=400 * DAY),
    ]
    company = evidence_from(rows, now=NOW)["company"]
    assert (company.confidence, company.sources) == (Confidence.LOW, 2)
    fresh = evidence_from([obs("company", "Acme", age=365 * DAY)], now=NOW)
    assert fresh["company"].confidence is Confidence.MEDIUM


def test_first_name_is_derived_from_full_name() -> None:
    first = LEAD["first_name"]
    full = LEAD["full_name"]
    assert first.value == "Dana"
    assert first.derived_from == "full_name"
    assert (first.source, first.observed_at, first.confidence) == (
        full.source,
        full.observed_at,
        full.confidence,
    )
    titled = evidence_from([obs("full_name", "Dr. Jane  van Doe")], now=NOW)
    assert titled["first_name"].value == "Jane"
    assert titled["full_name"].value == "Dr. Jane van Doe"
    assert "first_name" not in evidence_from([obs("company", "Acme")], now=NOW)


def test_blank_observations_are_no_evidence() -> None:
    result = evidence_from([obs("company", "   "), obs("city", "")], now=NOW)
    assert result == {}


def test_naive_times_are_refused() -> None:
    naive = Observation("city", "Leeds", None, "a", datetime(2025, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="naive"):
        evidence_from([naive], now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        evidence_from([], now=datetime(2025, 1, 1))  # noqa: DTZ001


def test_lowest_confidence() -> None:
    assert lowest([Confidence.HIGH, Confidence.LOW, Confidence.MEDIUM]) is Confidence.LOW
    assert lowest([Confidence.HIGH, Confidence.MEDIUM]) is Confidence.MEDIUM
    assert lowest([]) is None


def test_sender_needs_identity_and_address() -> None:
    with pytest.raises(ValueError, match="postal_address"):
        Sender(name="Sam", company="Relay", postal_address=" ")


# --- Sentences -----------------------------------------------------------------------------------


def texts(text: str, protected: list[tuple[int, int]] | None = None) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text, protected or [])]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you? Fine!", ["Hello there.", "How are you?", "Fine!"]),
        (
            "We help teams, e.g. Acme and Globex. Next.",
            ["We help teams, e.g. Acme and Globex.", "Next."],
        ),
        ("Acme Inc. is growing. Good.", ["Acme Inc. is growing.", "Good."]),
        ("I called Acme Inc. Then I waited.", ["I called Acme Inc.", "Then I waited."]),
        ("Dear Dr. Doe, hi. Bye.", ["Dear Dr. Doe, hi.", "Bye."]),
        ("Ask J. Doe today. Thanks.", ["Ask J. Doe today.", "Thanks."]),
        ("Pay approx. ten now. Ok.", ["Pay approx. ten now.", "Ok."]),
        ("Version 3.5 shipped. Yes.", ["Version 3.5 shipped.", "Yes."]),
        ('He said "Go." Then left.', ['He said "Go."', "Then left."]),
        ("Hi Dana,\n\nLine two\nLine three.", ["Hi Dana,", "Line two", "Line three."]),
        ("  padded.   ", ["padded."]),
        ("", []),
    ],
)
def test_sentence_splitter(text: str, expected: list[str]) -> None:
    assert texts(text) == expected


def test_splitter_never_cuts_inside_an_inserted_value() -> None:
    text = "We met Foo. Bar Corp today. Great."
    start = text.index("Foo")
    assert texts(text, [(start, start + len("Foo. Bar Corp"))]) == [
        "We met Foo. Bar Corp today.",
        "Great.",
    ]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .!?\n\"'eg")), max_size=80))
def test_splitter_spans_are_ordered_trimmed_and_cover_the_text(text: str) -> None:
    spans = split_sentences(text)
    previous = 0
    for start, end in spans:
        assert previous <= start < end <= len(text)
        chunk = text[start:end]
        assert chunk == chunk.strip()
        assert "\n" not in chunk
        previous = end
    covered = "".join(text[s:e] for s, e in spans)
    assert covered.replace(" ", "") == "".join(text.split()).replace(" ", "")


def test_values_compare_cleaned_and_case_insensitively() -> None:
    rows = [
        obs("company", "  Northwind   Traders "),
        obs("company", "NORTHWIND TRADERS", source="crm_sync", age=2 * DAY),
        obs("title", " "),
    ]
    result = evidence_from(rows, now=NOW)
    assert result["company"].value == "Northwind Traders"
    assert result["company"].sources == 2
    assert "title" not in result


class TestRecordMakers:
    """Drafts make their evidence, value segments and sentences without the constructors (see
    `records`); what they make must be what the constructors make, and frozen like it."""

    def test_evidence(self) -> None:
        made = evidence_module._new_evidence(
            "company", "Acme", "web_form", NOW, Confidence.HIGH, 2, None
        )
        built = Evidence("company", "Acme", "web_form", NOW, Confidence.HIGH, 2)
        assert type(made) is Evidence
        assert made == built
        assert hash(made) == hash(built)
        assert repr(made) == repr(built)
        assert replace(made, value="Globex").value == "Globex"
        with pytest.raises(FrozenInstanceError):
            made.value = "Globex"  # type: ignore[misc]

    def test_value_segment(self) -> None:
        evidence = LEAD["company"]
        made = templates_module._new_value_segment("Northwind Traders", "company", evidence)
        built = Segment("Northwind Traders", SegmentKind.VALUE, "company", evidence)
        assert type(made) is Segment
        assert (made, hash(made), repr(made)) == (built, hash(built), repr(built))
        with pytest.raises(FrozenInstanceError):
            made.text = "Contoso"  # type: ignore[misc]

    def test_draft(self) -> None:
        made = draft(Channel.EMAIL)
        built = Draft(**{field.name: getattr(made, field.name) for field in fields(Draft)})
        assert type(made) is Draft
        assert (made, repr(made)) == (built, repr(built))
        with pytest.raises(FrozenInstanceError):
            made.body = "edited"  # type: ignore[misc]

    def test_sentence(self) -> None:
        evidence = [LEAD["company"]]
        made = sentences_module._new_sentence("Hi.", 0, 3, evidence, Confidence.HIGH, [], False)
        built = Sentence("Hi.", 0, 3, evidence, Confidence.HIGH, [])
        assert type(made) is Sentence
        assert (made, repr(made)) == (built, repr(built))
        assert made.evidence is evidence
        with pytest.raises(FrozenInstanceError):
            made.text = "Bye."  # type: ignore[misc]


# --- Compose -------------------------------------------------------------------------------------


def test_every_inserted_value_sits_in_a_sentence_with_its_evidence() -> None:
    result = draft(length=Length.LONG)
    values = []
    position = 0
    for segment in result.segments:
        if segment.kind is SegmentKind.VALUE:
            values.append((position, segment))
        position += len(segment.text)
    assert {s.field for _, s in values} >= {"first_name", "company", "title"}
    for start, segment in values:
        assert segment.evidence is not None
        assert segment.text == segment.evidence.value
        assert result.body[start : start + len(segment.text)] == segment.text
        holding = [s for s in result.sentences if s.start <= start < s.end]
        assert len(holding) == 1
        assert segment.evidence in holding[0].evidence
    for sentence in result.sentences:
        assert result.body[sentence.start : sentence.end] == sentence.text


def test_sentence_confidence_is_the_lowest_of_its_values() -> None:
    template = MessageTemplate(
        "t",
        Channel.SMS,
        None,
        "{{ lead.company }} and {{ lead.title }}. Only {{ lead.company }}. No values here.",
    )
    first, second, third = draft(Channel.SMS, template=template, first_message=False).sentences
    assert [e.field for e in first.evidence] == ["company", "title"]
    assert first.confidence is Confidence.LOW  # title is 400 days old, company agreed on
    assert second.confidence is Confidence.HIGH
    assert (third.evidence, third.confidence) == ([], None)


def test_missing_company_is_a_visible_gap_not_an_invention() -> None:
    evidence = {k: v for k, v in LEAD.items() if k != "company"}
    result = draft(evidence=evidence)
    assert result.gaps == ["company"]
    assert result.subject == "Quick question about [missing: company]"
    assert "[missing: company]" in result.body
    for known in ("Northwind", "NORTHWIND"):
        assert known not in result.body
    gap_sentences = [s for s in result.sentences if s.gaps]
    assert gap_sentences
    assert all(s.gaps == ["company"] for s in gap_sentences)
    assert result.subject_sentences[0].gaps == ["company"]


def test_a_lead_value_cannot_inject_sentinels_or_forge_evidence() -> None:
    forged = "Evil \ue000title\ue001CEO\ue002 Corp\ue003company\ue004"
    evidence = dict(LEAD)
    evidence["company"] = Evidence("company", forged, "web_form", NOW, Confidence.MEDIUM, 1)
    result = draft(evidence=evidence)
    for text in (result.body, result.subject or ""):
        assert not any(ch in text for ch in SENTINEL_CHARS)
    companies = [s for s in result.segments if s.field == "company"]
    assert companies
    assert {s.text for s in companies} == {"Evil titleCEO Corpcompany"}
    assert all(s.kind is SegmentKind.VALUE for s in companies)
    assert result.gaps == []
    assert not [s for s in result.segments if s.field == "title" and "CEO" in s.text]


def test_email_compliance_footer_comes_after_the_writer() -> None:
    result = draft(Channel.EMAIL)
    assert result.compliance == [
        "Sam Patel, Relay Works Ltd.",
        "1 Main Street, Leeds LS1 4AP, United Kingdom",
        f"Unsubscribe: {UNSUBSCRIBE_PLACEHOLDER}",
    ]
    assert UNSUBSCRIBE_PLACEHOLDER == "{{unsubscribe_url}}"
    assert result.body.endswith("\n\n" + "\n".join(result.compliance))
    assert result.body.count(UNSUBSCRIBE_PLACEHOLDER) == 1
    assert [s.text for s in result.sentences if s.compliance] == result.compliance
    assert not any(s.compliance for s in result.sentences[:-3])


def test_compliance_lines_are_a_fresh_list_each_time() -> None:
    lines = compliance_lines(Channel.EMAIL, SENDER, first_message=True)
    lines.append("tampered")
    assert "tampered" not in compliance_lines(Channel.EMAIL, SENDER, first_message=True)
    assert "tampered" not in draft(Channel.EMAIL).compliance


def test_each_call_uses_its_own_template_sender_and_controls() -> None:
    # `compose` keeps the last template, sender and controls it was given: a call with others
    # must not get the previous ones.
    first = draft(Channel.EMAIL)
    other_sender = Sender(name="Ana Lopez", company="Globex", postal_address="2 High Street")
    other = compose(
        default_template(Channel.EMAIL, Tone.DIRECT),
        LEAD,
        sender=other_sender,
        channel=Channel.EMAIL,
        tone=Tone.DIRECT,
        length=Length.SHORT,
        cta="reply",
        first_message=True,
        now=NOW,
    )
    assert other.compliance == [
        "Ana Lopez, Globex",
        "2 High Street",
        f"Unsubscribe: {UNSUBSCRIBE_PLACEHOLDER}",
    ]
    assert "Is this worth a conversation?" in other.body
    assert draft(Channel.EMAIL) == first
    with pytest.raises(ValueError, match="is for email, not sms"):
        draft(Channel.SMS, template=default_template(Channel.EMAIL, Tone.FRIENDLY))
    with pytest.raises(ValueError, match="unknown call to action"):
        draft(Channel.EMAIL, cta="buy_now")


def test_drafts_share_no_mutable_parts() -> None:
    first, second = draft(Channel.EMAIL), draft(Channel.EMAIL)
    assert first == second
    for a, b in zip(first.sentences, second.sentences, strict=True):
        assert a.evidence is not b.evidence
        assert a.gaps is not b.gaps
    assert first.compliance is not second.compliance
    assert first.segments is not second.segments


def test_sms_stop_instruction_only_on_the_first_message() -> None:
    first = draft(Channel.SMS, first_message=True)
    assert first.compliance == ["Relay Works Ltd.", STOP_INSTRUCTION]
    assert first.body.endswith("\nRelay Works Ltd.\nReply STOP to opt out.")
    later = draft(Channel.SMS, first_message=False)
    assert later.compliance == []
    assert "STOP" not in later.body


def test_whatsapp_first_message_names_the_company_and_stop() -> None:
    result = draft(Channel.WHATSAPP)
    assert result.compliance == ["Relay Works Ltd.", STOP_INSTRUCTION]
    assert result.body.endswith("\n\nRelay Works Ltd.\nReply STOP to opt out.")
    assert draft(Channel.WHATSAPP, first_message=False).compliance == []


def test_voice_script_opens_with_the_callers_identity() -> None:
    result = draft(Channel.VOICE, first_message=False)
    intro = "Hello, this is Sam Patel calling from Relay Works Ltd."
    assert result.compliance == [intro]
    assert result.body.startswith(intro + "\n\n")
    assert result.sentences[0].text == intro
    assert result.sentences[0].compliance
    assert result.segments[0].kind is SegmentKind.COMPLIANCE


def test_compliance_is_added_even_when_the_template_omits_the_sender() -> None:
    template = MessageTemplate("bare", Channel.EMAIL, "Hi", "Hi {{ lead.first_name }}.")
    result = draft(template=template)
    assert result.body == (
        "Hi Dana.\n\nSam Patel, Relay Works Ltd.\n1 Main Street, Leeds LS1 4AP, United Kingdom\n"
        "Unsubscribe: {{unsubscribe_url}}"
    )


def test_sms_over_its_limit_raises_rather_than_cutting() -> None:
    evidence = dict(LEAD)
    evidence["company"] = Evidence("company", "N" * 400, "web_form", NOW, Confidence.MEDIUM, 1)
    with pytest.raises(DraftTooLong) as caught:
        draft(Channel.SMS, evidence=evidence)
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.channel, error.limit, error.part) == (Channel.SMS, 480, "body")
    assert error.length > 480


def test_long_subject_raises() -> None:
    evidence = dict(LEAD)
    evidence["company"] = Evidence("company", "N" * 140, "web_form", NOW, Confidence.MEDIUM, 1)
    with pytest.raises(DraftTooLong) as caught:
        draft(Channel.EMAIL, evidence=evidence)
    assert (caught.value.limit, caught.value.part) == (SUBJECT_LIMIT, "subject")


@pytest.mark.parametrize("channel", list(Channel))
def test_body_limit_per_channel(channel: Channel) -> None:
    limit = BODY_LIMITS[channel]
    subject = "Hi" if channel is Channel.EMAIL else None
    fits = MessageTemplate("t", channel, subject, "x" * (limit - 200))
    assert len(draft(channel, template=fits).body) <= limit
    over = MessageTemplate("t", channel, subject, "x" * limit)
    with pytest.raises(DraftTooLong) as caught:
        draft(channel, template=over)
    assert (caught.value.channel, caught.value.limit) == (channel, limit)
    assert caught.value.length > limit


@pytest.mark.parametrize("channel", list(Channel))
def test_length_controls_the_text(channel: Channel) -> None:
    short, medium, long = (len(draft(channel, length=n).body) for n in Length)
    assert short < medium < long


@pytest.mark.parametrize("channel", list(Channel))
def test_tone_changes_the_text(channel: Channel) -> None:
    bodies = {draft(channel, tone=tone).body for tone in Tone}
    assert len(bodies) == len(Tone)


def test_cta_is_worded_per_tone() -> None:
    assert "Can we set up 15 minutes this week?" in draft(tone=Tone.DIRECT).body
    assert "May I send you a brief overview?" in draft(tone=Tone.FORMAL, cta="send_info").body
    with pytest.raises(ValueError, match="unknown call to action"):
        draft(cta="buy_now")


def test_content_hash_covers_subject_and_body() -> None:
    email = draft(Channel.EMAIL)
    assert email.subject is not None
    expected = hashlib.sha256((email.subject + "\n\n" + email.body).encode()).hexdigest()
    assert email.content_sha256 == expected
    sms = draft(Channel.SMS)
    assert sms.content_sha256 == hashlib.sha256(sms.body.encode()).hexdigest()
    assert content_hash(Channel.SMS, None, sms.body) == sms.content_sha256
    with pytest.raises(ValueError, match="subject"):
        content_hash(Channel.EMAIL, None, "body")


@pytest.mark.parametrize("channel", list(Channel))
def test_compose_is_deterministic(channel: Channel) -> None:
    first, second = draft(channel), draft(channel)
    assert first == second
    assert json.dumps(first.as_dict(), sort_keys=True) == json.dumps(
        second.as_dict(), sort_keys=True
    )


def test_highlight_segments_rebuild_the_text() -> None:
    result = draft(Channel.EMAIL)
    body = highlight(result)
    assert "".join(part["text"] for part in body) == result.body
    assert all(result.body[p["start"] : p["end"]] == p["text"] for p in body)
    company = next(p for p in body if p["field"] == "company")
    assert company == {
        "text": "NORTHWIND TRADERS",
        "start": company["start"],
        "end": company["end"],
        "kind": "value",
        "field": "company",
        "confidence": "high",
    }
    assert body[-1]["kind"] == "compliance"
    assert body[-1]["confidence"] is None
    subject = highlight(result, part="subject")
    assert "".join(p["text"] for p in subject) == result.subject
    assert [p["kind"] for p in subject] == ["text", "value"]


def test_unsafe_template_is_rejected_with_its_problems() -> None:
    template = MessageTemplate(
        "evil", Channel.SMS, None, "{{ cycler.__init__.__globals__.os.popen('id').read() }}"
    )
    with pytest.raises(TemplateRejected) as caught:
        draft(Channel.SMS, template=template)
    assert caught.value.template_id == "evil"
    assert "body: line 1: unknown variable 'cycler'" in caught.value.problems


def test_render_time_failures_are_template_problems() -> None:
    template = MessageTemplate("t", Channel.SMS, None, "{{ 1 / 0 }} {{ sender.phone }}")
    with pytest.raises(TemplateRejected, match="ZeroDivisionError"):
        draft(Channel.SMS, template=template)
    phone = MessageTemplate("t", Channel.SMS, None, "Call {{ sender.phone }}")
    with pytest.raises(TemplateRejected, match=r"sender\.phone is not available"):
        draft(Channel.SMS, template=phone)


def test_template_for_another_channel_is_refused() -> None:
    with pytest.raises(ValueError, match="is for sms"):
        draft(Channel.EMAIL, template=default_template(Channel.SMS, Tone.FRIENDLY))


def test_empty_render_is_refused() -> None:
    template = MessageTemplate(
        "t", Channel.SMS, None, "{% if lead.city %}{{ lead.city }}{% endif %}"
    )
    with pytest.raises(TemplateRejected, match="empty"):
        draft(Channel.SMS, template=template)


def test_unsubscribe_placeholder_is_reserved_for_the_footer() -> None:
    evidence = dict(LEAD)
    evidence["company"] = Evidence(
        "company", UNSUBSCRIBE_PLACEHOLDER, "web_form", NOW, Confidence.MEDIUM, 1
    )
    with pytest.raises(ValueError, match="reserved"):
        draft(Channel.EMAIL, evidence=evidence)


def test_misfiled_evidence_is_a_caller_error() -> None:
    evidence = {"company": LEAD["full_name"]}
    with pytest.raises(ValueError, match="filed under"):
        draft(evidence=evidence)


@settings(max_examples=100, deadline=None)
@given(
    company=st.text(max_size=80),
    channel=st.sampled_from(list(Channel)),
    tone=st.sampled_from(list(Tone)),
    length=st.sampled_from(list(Length)),
)
def test_any_company_value_composes_into_consistent_drafts(
    company: str, channel: Channel, tone: Tone, length: Length
) -> None:
    evidence = dict(LEAD)
    evidence["company"] = Evidence("company", company, "web_form", NOW, Confidence.MEDIUM, 1)
    if UNSUBSCRIBE_PLACEHOLDER in clean_value(company):
        with pytest.raises(ValueError, match="reserved"):
            draft(channel, tone=tone, length=length, evidence=evidence)
        return
    result = draft(channel, tone=tone, length=length, evidence=evidence)
    assert "".join(s.text for s in result.segments) == result.body
    assert "".join(s.text for s in result.subject_segments) == (result.subject or "")
    assert not any(ch in result.body + (result.subject or "") for ch in SENTINEL_CHARS)
    assert result.content_sha256 == content_hash(channel, result.subject, result.body)
    for segment in result.segments:
        if segment.kind is SegmentKind.VALUE:
            assert segment.evidence is not None
            assert segment.text == segment.evidence.value
    assert result.gaps == ([] if clean_value(company) else ["company"])
