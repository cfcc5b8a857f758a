"""Opt-out / opt-in / HELP keywords and auto-reply detection (issue 8)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrelay.telemetry.replies import (
    AutoReply,
    Classification,
    Intent,
    classify_reply,
    classify_text,
    is_auto_reply,
    is_known_continuation,
    normalize_text,
    strip_quoted,
)

OUT, IN, HELP, REPLY, AUTO = (
    Intent.OPT_OUT,
    Intent.OPT_IN,
    Intent.HELP,
    Intent.REPLY,
    Intent.AUTO_REPLY,
)

# (message, expected intent, expected matched keyword/phrase or None to skip the check)
TEXT_TABLE: list[tuple[str, Intent, str | None]] = [
    # FCC 24-24 seven and the carrier list, whole message, any case
    ("STOP", OUT, "stop"),
    ("stop", OUT, "stop"),
    ("Stop", OUT, "stop"),
    ("sToP", OUT, "stop"),
    ("QUIT", OUT, "quit"),
    ("End", OUT, "end"),
    ("revoke", OUT, "revoke"),
    ("Opt out", OUT, "opt out"),
    ("OPT-OUT", OUT, "opt out"),
    ("optout", OUT, "optout"),
    ("Cancel", OUT, "cancel"),
    ("UNSUBSCRIBE", OUT, "unsubscribe"),
    ("StopAll", OUT, "stopall"),
    ("STOP ALL", OUT, "stop all"),
    ("REMOVE", OUT, "remove"),
    # punctuation, emoji, full-width, curly quotes, whitespace
    ("STOP!!!", OUT, "stop"),
    ("  stop.  ", OUT, "stop"),
    ("🛑 STOP 🛑", OUT, "stop"),
    ("Stop 😡😡", OUT, "stop"),
    ("“STOP”", OUT, "stop"),
    ("ＳＴＯＰ", OUT, "stop"),
    ("s.t.o.p", REPLY, None),  # letters split into clauses; not a keyword
    ("...unsubscribe...", OUT, "unsubscribe"),
    ("QUIT\n", OUT, "quit"),
    # multilingual, whole message only
    ("ARRÊT", OUT, "arret"),
    ("arret", OUT, "arret"),
    ("Parar", OUT, "parar"),
    ("BAJA", OUT, "baja"),
    ("No más", OUT, "no mas"),
    ("Baja California is where we live", REPLY, None),
    # keyword followed by trailing words
    ("Stop texting me", OUT, None),
    ("STOP please", OUT, "stop"),
    ("unsubscribe me", OUT, "unsubscribe"),
    ("End these messages now", OUT, "end"),
    ("Quit messaging me!", OUT, "quit"),
    ("Cancel all texts", OUT, "cancel"),
    ("opt out of everything", OUT, "opt out"),
    ("Please stop", OUT, "stop"),
    ("ok STOP", OUT, "stop"),
    ("Thanks for the info. STOP", OUT, "stop"),
    ("Stop, by the way I am not interested", OUT, "stop"),
    ("Revoke my consent", OUT, "revoke"),
    # plain-language revocations
    ("Please remove me from your list", OUT, "remove me"),
    ("don't text me again", OUT, None),
    ("Don’t contact me anymore", OUT, None),
    ("Don't ever text me again!", OUT, "dont ever text me"),
    ("Take me off your list", OUT, "take me off"),
    ("I no longer wish to receive these messages", OUT, None),
    ("leave me alone", OUT, "leave me alone"),
    ("No more texts please", OUT, "no more texts"),
    ("Can you stop sending me these", OUT, None),
    ("How do I unsubscribe from this?", OUT, "unsubscribe"),
    ("I don't know how to unsubscribe", OUT, "unsubscribe"),
    ("Why don't you stop texting me", OUT, "stop texting"),
    ("I'd like to opt out", OUT, "opt out"),
    ("Wrong number", OUT, "wrong number"),
    ("I said stop", OUT, None),
    ("Please delete my number", OUT, "delete my number"),
    ("I already unsubscribed, why are you still texting?", OUT, "unsubscribed"),
    ("Cancel my appointment and stop texting me", OUT, "stop texting"),
    ("Put me on your do not call list", OUT, None),
    # negations and ordinary conversation that must NOT match
    ("don't stop", REPLY, None),
    ("Please don't stop!", REPLY, None),
    ("I don't want to unsubscribe", REPLY, None),
    ("Please do not remove me from your list", REPLY, None),
    ("I don't want you to stop texting me", REPLY, None),
    ("Stop by our office anytime", REPLY, None),
    ("I can stop by on Tuesday", REPLY, None),
    ("stop in tomorrow?", REPLY, None),
    ("End of the month works for me", REPLY, None),
    ("Cancel my appointment for tomorrow please", REPLY, None),
    ("cancel the 3pm, can we do 4?", REPLY, None),
    ("Quit my job last week so I have time now", REPLY, None),
    ("Remove the old deck first", REPLY, None),
    ("Can you take me through the pricing?", REPLY, None),
    ("Take my number: 555 0100", REPLY, None),
    ("Not interested right now", REPLY, None),
    ("Sounds good, see you then", REPLY, None),
    ("", REPLY, None),
    ("👍", REPLY, None),
    # HELP / INFO
    ("HELP", HELP, "help"),
    ("help?", HELP, "help"),
    ("Info", HELP, "info"),
    ("Help me pick a plan", REPLY, None),
    # opt-in
    ("START", IN, "start"),
    ("unstop", IN, "unstop"),
    ("Subscribe", IN, "subscribe"),
    ("YES", REPLY, None),  # ambiguous without context, see after_opt_out
    ("Yes, Tuesday works", REPLY, None),
    ("Start date is Monday", REPLY, None),
]


@pytest.mark.parametrize(("text", "intent", "matched"), TEXT_TABLE)
def test_classify_text_table(text: str, intent: Intent, matched: str | None) -> None:
    result = classify_text(text)
    assert result.intent is intent, result
    if matched is not None:
        assert result.matched == matched, result
    assert result.reason


def test_table_is_large_enough() -> None:
    assert len(TEXT_TABLE) + len(EMAIL_TABLE) >= 60


def test_yes_is_opt_in_only_after_opt_out() -> None:
    assert classify_text("YES", after_opt_out=True).intent is IN
    assert classify_text("Yes!", after_opt_out=True).intent is IN
    assert classify_text("yes").intent is REPLY
    assert classify_text("Yes, call me", after_opt_out=True).intent is REPLY


def test_opt_out_wins_over_help_and_opt_in() -> None:
    assert classify_text("STOP HELP").intent is OUT
    assert classify_text("unsubscribe, start over").intent is OUT


def test_normalize_text() -> None:
    assert normalize_text("  Don’t   STOP!! 🙏 ") == "dont stop"
    assert normalize_text("ＡＲＲÊＴ") == "arret"
    assert normalize_text("opt-out") == "opt out"


def test_known_continuations() -> None:
    assert is_known_continuation("stop", ["by", "the", "office"])
    assert is_known_continuation("end", ["of", "day"])
    assert is_known_continuation("cancel", ["my", "appointment"])
    assert is_known_continuation("cancel", ["the", "3pm"])
    assert not is_known_continuation("stop", ["texting", "me"])
    assert not is_known_continuation("stop", ["all", "by"])
    assert not is_known_continuation("unsubscribe", ["by", "email"])
    assert not is_known_continuation("cancel", ["all", "messages"])


# --- e-mail: auto-replies and classify_reply ------------------------------------------------

GMAIL_VACATION = {
    "From": "Lead <lead@gmail.com>",
    "Subject": "Re: Your quote",
    "Auto-Submitted": "auto-replied",
    "Precedence": "bulk",
}
OUTLOOK_OOF = {
    "Auto-Submitted": "auto-generated",
    "X-Auto-Response-Suppress": "All",
    "X-MS-Exchange-Inbox-Rules-Loop": "person@example.com",
    "X-MS-Exchange-Generated-Message-Source": "Mailbox Rules Agent",
}
EXCHANGE_ONPREM_OOF = {
    "x-ms-exchange-generated-message-source": "Mailbox Rules Agent",
    "X-Auto-Response-Suppress": "All",
}
ORDINARY_OUTLOOK_REPLY = {
    # Outlook stamps this on ordinary mail: it asks others not to auto-reply, nothing more
    "X-Auto-Response-Suppress": "All",
    "X-MS-Has-Attach": "",
    "Thread-Topic": "Your quote",
}
RULE_FORWARDED = {"X-MS-Exchange-Inbox-Rules-Loop": "assistant@example.com"}

# (headers, subject, body, expected intent, expected AutoReply source or None)
EMAIL_TABLE: list[tuple[dict[str, str], str, str, Intent, str | None]] = [
    (GMAIL_VACATION, "Re: Your quote", "I'm travelling, back next week.", AUTO, "header"),
    (OUTLOOK_OOF, "Automatic reply: Your quote", "I am out of the office.", AUTO, "header"),
    (EXCHANGE_ONPREM_OOF, "Out of Office: Your quote", "Away", AUTO, "header"),
    ({"Auto-Submitted": "auto-replied; owner-email=x@y.z"}, "Hi", "STOP", AUTO, "header"),
    ({"Auto-Submitted": "no"}, "Re: Your quote", "Sounds good", REPLY, None),
    ({"X-Autoreply": "yes"}, "Re: hi", "Thanks for your email", AUTO, "header"),
    ({"X-Autorespond": "Your message"}, "Re: hi", "Received", AUTO, "header"),
    ({"X-Autoreply": "no"}, "Re: hi", "Interested!", REPLY, None),
    ({"Precedence": "auto_reply"}, "Re: hi", "Thanks", AUTO, "header"),
    ({"X-Precedence": "junk"}, "Re: hi", "Thanks", AUTO, "header"),
    ({"Precedence": "list"}, "Re: hi", "Thanks", AUTO, "header"),
    ({"Precedence": "first-class"}, "Re: hi", "Thanks", REPLY, None),
    ({"Return-Path": "<>"}, "Re: hi", "Thanks", AUTO, "header"),
    (ORDINARY_OUTLOOK_REPLY, "RE: Your quote", "Yes please send it over", REPLY, None),
    (ORDINARY_OUTLOOK_REPLY, "RE: Your quote", "Please remove me from your list", OUT, None),
    (RULE_FORWARDED, "FW: Your quote", "Call me Monday", REPLY, None),
    # subjects in several languages
    ({}, "Out of Office: Your quote", "Back Monday", AUTO, "subject"),
    ({}, "Automatic reply: Your quote", "", AUTO, "subject"),
    ({}, "Auto: Your quote", "", AUTO, "subject"),
    ({}, "AutoReply: Your quote", "", AUTO, "subject"),
    ({}, "Auto-Reply: Your quote", "", AUTO, "subject"),
    ({}, "Abwesenheitsnotiz: Ihr Angebot", "", AUTO, "subject"),
    ({}, "Automatische Antwort: Ihr Angebot", "", AUTO, "subject"),
    ({}, "Réponse automatique : Votre devis", "", AUTO, "subject"),
    ({}, "Respuesta automática: Su cotización", "", AUTO, "subject"),
    ({}, "Fuori sede: preventivo", "", AUTO, "subject"),
    ({}, "Automatisch antwoord: Uw offerte", "", AUTO, "subject"),
    ({}, "Autosvar: Ert erbjudande", "", AUTO, "subject"),
    ({}, "Frånvaro: Ert erbjudande", "", AUTO, "subject"),
    ({}, "[EXTERNAL] Automatic reply: Your quote", "", AUTO, "subject"),
    ({}, "Auto insurance quote", "What's the price?", REPLY, None),
    # body phrasings (no headers, plain subject)
    (
        {},
        "Re: Your quote",
        "Thank you for your email. I am out of the office until 5 May with limited access "
        "to email.",
        AUTO,
        "body",
    ),
    (
        {},
        "Re: Your quote",
        "I'm currently out of office and will be back on Monday.",
        AUTO,
        "body",
    ),
    ({}, "Re: Your quote", "This is an automated reply. Your message was received.", AUTO, "body"),
    ({}, "Re: Your quote", "I'm out of office today but yes, call me Monday!", REPLY, None),
    # a body-only heuristic never swallows an explicit revocation
    (
        {},
        "Re: Your quote",
        "I'm out of the office and will be back on Monday. Stop emailing me.",
        OUT,
        "body",
    ),
    # quoted history is ignored
    (
        {},
        "Re: Your quote",
        "Sounds good.\n\nOn Tue, 4 Mar 2025 at 10:00, Rep <rep@x.com> wrote:\n"
        "> Reply STOP to unsubscribe.",
        REPLY,
        None,
    ),
    (
        {},
        "RE: Your quote",
        "Let's talk.\n-----Original Message-----\nFrom: Rep\nSent: Monday\n"
        "To unsubscribe reply STOP",
        REPLY,
        None,
    ),
    ({}, "Re: Your quote", "UNSUBSCRIBE\n\n> Reply STOP to opt out", OUT, None),
    # subject-only opt-out (mailto unsubscribe), but never from our own "Re:" subject
    ({}, "unsubscribe", "", OUT, None),
    ({}, "Re: Stop overpaying for insurance", "Tell me more", REPLY, None),
]


@pytest.mark.parametrize(("headers", "subject", "body", "intent", "source"), EMAIL_TABLE)
def test_classify_reply_table(
    headers: dict[str, str], subject: str, body: str, intent: Intent, source: str | None
) -> None:
    result = classify_reply(headers, subject, body)
    assert result.intent is intent, result
    auto = is_auto_reply(headers, subject, body)
    if source is None:
        assert auto is None, auto
    else:
        assert auto is not None
        assert auto.source == source
        assert auto.reason


def test_auto_reply_reports_why() -> None:
    auto = is_auto_reply(OUTLOOK_OOF, "Automatic reply: x", "")
    assert isinstance(auto, AutoReply)
    assert (auto.source, auto.matched) == ("header", "Auto-Submitted: auto-generated")
    assert "3834" in auto.reason
    result = classify_reply(OUTLOOK_OOF, "Automatic reply: x", "STOP")
    assert result.intent is AUTO
    assert result.reason.startswith("header:")


def test_header_names_are_case_insensitive() -> None:
    assert is_auto_reply({"AUTO-SUBMITTED": "Auto-Replied"}, "", "") is not None
    assert is_auto_reply({"x-autorespond": "1"}, "", "") is not None


def test_x_auto_response_suppress_alone_is_not_an_auto_reply() -> None:
    for value in ("All", "OOF", "DR, RN, NRN, OOF, AutoReply"):
        assert is_auto_reply({"X-Auto-Response-Suppress": value}, "Re: hi", "Hi") is None


def test_strip_quoted() -> None:
    body = "New text\n> old line\nmore new\nOn Mon, Rep wrote:\nhistory"
    assert strip_quoted(body) == "New text\nmore new"
    outlook = "Reply\nFrom: Rep <r@x.com>\nSent: Monday\nSTOP to end"
    assert strip_quoted(outlook) == "Reply"
    assert strip_quoted("Le lun. 3 mars, Rep a écrit :\n> STOP") == ""


def test_sms_text_with_after_opt_out_passes_through_classify_reply() -> None:
    assert classify_reply({}, "", "yes", after_opt_out=True).intent is IN


# --- properties -----------------------------------------------------------------------------

SAMPLES = [text for text, _, _ in TEXT_TABLE]
OPT_OUT_KEYWORDS = [
    "stop",
    "stopall",
    "stop all",
    "unsubscribe",
    "cancel",
    "end",
    "quit",
    "revoke",
    "opt out",
    "optout",
]


@st.composite
def recased(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SAMPLES) | st.text(alphabet=string.printable, max_size=40))
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(
        ch.swapcase() if flip and ch in string.ascii_letters else ch
        for ch, flip in zip(text, flips, strict=True)
    )


@settings(max_examples=300)
@given(recased())
def test_classification_is_case_insensitive(text: str) -> None:
    expected = classify_text(text.lower())
    assert classify_text(text) == expected
    assert classify_text(text.upper()) == expected


SURROUND = st.text(alphabet=" \t\n.,!?;:\"'()[]*~-…“”‘’🙏😡👍🛑", max_size=6)


@settings(max_examples=300)
@given(st.sampled_from(SAMPLES), SURROUND, SURROUND)
def test_surrounding_punctuation_never_changes_the_result(
    text: str, prefix: str, suffix: str
) -> None:
    assert classify_text(prefix + text + suffix) == classify_text(text)


CASES = {"lower": str.lower, "upper": str.upper, "title": str.title}
WORDS = st.lists(
    st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=10), min_size=1, max_size=8
)


@settings(max_examples=500)
@given(st.sampled_from(OPT_OUT_KEYWORDS), WORDS, st.sampled_from(["lower", "upper", "title"]))
def test_keyword_followed_by_words_is_an_opt_out(keyword: str, words: list[str], case: str) -> None:
    lead, *rest = keyword.split()
    if is_known_continuation(lead, [*rest, *words]):
        return  # "stop by ...", "end of ...", "cancel my appointment ..."
    message = CASES[case](" ".join([keyword, *words]))
    result = classify_text(message)
    assert result.intent is OUT, (message, result)


@given(st.sampled_from(["by", "in", "over", "off"]), WORDS)
def test_stop_by_continuation_is_not_a_keyword_opt_out(prep: str, words: list[str]) -> None:
    result = classify_text(" ".join(["stop", prep, *words]))
    # only a plain-language phrase later in the words could still make it an opt-out
    assert result.intent is REPLY or (result.matched is not None and result.matched != "stop")


@settings(max_examples=200)
@given(st.text(max_size=60))
def test_never_crashes_and_always_explains(text: str) -> None:
    result = classify_text(text)
    assert isinstance(result, Classification)
    assert result.intent in {OUT, IN, HELP, REPLY}
    assert result.reason
