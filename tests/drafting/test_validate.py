"""The draft validator on realistic drafts: what rests on evidence passes, what a model made up
is rejected with its exact span."""

from __future__ import annotations

import pytest

from leadrelay.drafting.validate import (
    MISSING_REQUIRED,
    TOO_LONG,
    UNSUPPORTED_CLAIM,
    Problem,
    normalize,
    validate,
)

EVIDENCE = {
    "first_name": "Dana",
    "last_name": "Whitfield",
    "company": "Northwind Traders",
    "job_title": "Head of Sales Operations",
    "phone": "+1 415 555 0142",
    "email": "dana.whitfield@northwind.example",
    "website": "https://www.northwind.example",
    "message": "We need faster lead routing for our 12 sales reps before Q3.",
}
CTA = "Would a 15-minute call on Tuesday work?"
ALLOWED = ("Sam Patel", "LeadRelay", CTA)
REQUIRED = (CTA, "Dana")

CLEAN_EMAIL = f"""Subject: Your enquiry about lead routing

Hi Dana,

Thanks for asking about lead routing for Northwind Traders. You mentioned your 12 sales reps
need faster routing before Q3, and I can show you how that would work for your team.

{CTA}

Sam Patel
LeadRelay"""

INVENTED_EMAIL = f"""Subject: Congrats on your 40% growth

Hi Dana,

Congrats on your 40% growth this year; your CEO Maria must be thrilled. As featured in Forbes,
we help teams route leads in minutes. See https://evil.example or call me on +1 555 0100.

{CTA}

Sam Patel
LeadRelay"""


def check(text: str, **overrides: object) -> list[Problem]:
    arguments: dict[str, object] = {
        "channel": "email",
        "evidence_values": EVIDENCE,
        "allowed": ALLOWED,
        "required": REQUIRED,
        "max_length": 1200,
    }
    arguments.update(overrides)
    return validate(text, **arguments)  # type: ignore[arg-type]


def spans(problems: list[Problem]) -> list[str]:
    return [p.span for p in problems if p.kind == UNSUPPORTED_CLAIM]


def test_a_clean_draft_passes() -> None:
    assert check(CLEAN_EMAIL) == []


def test_invented_facts_are_rejected_with_their_exact_spans() -> None:
    problems = check(INVENTED_EMAIL)

    assert spans(problems) == [
        "40%",
        "40%",
        "CEO Maria",
        "As featured in",
        "Forbes",
        "https://evil.example",
        "+1 555 0100",
    ]
    assert all(p.kind == UNSUPPORTED_CLAIM for p in problems)
    for problem in problems:
        assert INVENTED_EMAIL[problem.start : problem.end] == problem.span
    details = [p.detail for p in problems]
    assert details[0] == "number not in the evidence: '40%'"
    assert details[2] == "name not in the evidence: 'CEO Maria'"
    assert details[3].startswith("claim not in the evidence")
    assert details[5].startswith("link not in the evidence")
    assert details[6].startswith("phone number not in the evidence")


def test_an_evidenced_name_passes_and_a_made_up_title_next_to_it_does_not() -> None:
    evidence = {**EVIDENCE, "contact_name": "Maria Lopez"}

    assert (
        spans(check("Hi Dana, Maria Lopez suggested I write.\n" + CTA, evidence_values=evidence))
        == []
    )
    # First and last name from two fields, possessive, case-insensitive.
    assert spans(check(f"Hi Dana Whitfield, I read NORTHWIND TRADERS’s note. {CTA}")) == []
    assert spans(
        check(f"Hi Dana, your CEO Maria Lopez asked me. {CTA}", evidence_values=evidence)
    ) == ["CEO"]


@pytest.mark.parametrize(
    ("sentence", "span"),
    [
        ("We increased revenue by 3x for Globex.", "increased revenue by"),
        ("Results are guaranteed.", "guaranteed"),
        ("We are the #1 routing tool.", "#1"),
        ("Our award-winning support is here.", "award-winning"),
        ("We are trusted by sales teams everywhere.", "trusted by"),
        ("It saved teams $5M last year.", "$5M"),
        ("It has worked since 2019.", "2019"),
        ("Write to sales@leadrelay.example today.", "sales@leadrelay.example"),
        ("See leadrelay.example/pricing for details.", "leadrelay.example/pricing"),
        ("Or call (212) 555-0199 now.", "(212) 555-0199"),
        ("We are an industry-leading platform.", "industry-leading"),
    ],
)
def test_claims_numbers_and_contacts_need_evidence(sentence: str, span: str) -> None:
    problems = check(f"Hi Dana, thanks for your note. {sentence} {CTA}")

    assert span in spans(problems)


def test_evidenced_numbers_links_and_phones_pass_in_other_spellings() -> None:
    text = (
        f"Hi Dana, you wrote about 12 reps and Q3. I looked at northwind.example and can call "
        f"you on (415) 555-0142 or write to Dana.Whitfield@northwind.example. {CTA}"
    )

    assert check(text) == []


def test_a_different_page_of_the_leads_own_site_is_still_unsupported() -> None:
    text = f"Hi Dana, I read https://www.northwind.example/careers closely. {CTA}"

    assert spans(check(text)) == ["https://www.northwind.example/careers"]


def test_sentence_starts_greetings_and_days_are_not_names() -> None:
    text = (
        "Hi Dana,\n\nThanks for reaching out. Looking forward to it. I can do Monday or "
        f"Friday.\n- Faster routing\n- Fewer missed leads\n\n{CTA}\n\nBest regards,\nSam Patel"
    )

    assert check(text) == []


def test_an_unknown_company_opening_a_sentence_is_still_caught() -> None:
    problems = check(f"Hi Dana, thanks. Globex Corporation uses a similar setup. {CTA}")

    assert spans(problems) == ["Globex Corporation"]


def test_too_long_reports_the_overflow() -> None:
    text = "Hi Dana, " + "routing " * 30 + CTA

    problems = check(text, channel="sms", max_length=160)

    assert problems[0].kind == TOO_LONG
    assert problems[0].start == 160
    assert problems[0].span == text[160:]
    assert problems[0].detail == f"{len(text)} characters; a sms draft may have at most 160"


def test_missing_cta_and_missing_first_name_are_reported() -> None:
    text = "Hello there, thanks for your note about lead routing. Talk soon."

    problems = check(text)

    assert [(p.kind, p.detail) for p in problems] == [
        (MISSING_REQUIRED, f"required element missing: {CTA!r}"),
        (MISSING_REQUIRED, "required element missing: 'Dana'"),
    ]


def test_required_elements_match_despite_case_and_whitespace() -> None:
    text = "Hi DANA, thanks.\nWould a 15-minute call\non  Tuesday work?"

    assert check(text) == []


def test_a_first_name_inside_another_word_does_not_count() -> None:
    problems = check(f"Hi Danae, thanks. {CTA}")

    assert (MISSING_REQUIRED, "required element missing: 'Dana'") in [
        (p.kind, p.detail) for p in problems
    ]
    assert spans(problems) == ["Danae"]


def test_normalize_folds_case_quotes_dashes_and_whitespace() -> None:
    assert normalize("  Northwind\u00a0TRADERS’  –\tQ3 ") == "northwind traders' - q3"
