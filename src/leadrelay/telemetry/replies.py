"""Classify inbound replies: opt-out, opt-in, HELP, auto-reply, or a real reply.

Pure functions, no I/O. Three entry points:

* :func:`classify_text` reads one SMS (or the new text of an e-mail) and returns a
  :class:`Classification` with an :class:`Intent` (``opt_out``, ``opt_in``, ``help``,
  ``reply``), the keyword or phrase that decided it and a short reason.
* :func:`is_auto_reply` looks at an e-mail's headers, subject and body and returns an
  :class:`AutoReply` saying why it is machine-generated, or ``None``.
* :func:`classify_reply` does both for e-mail: auto-replies first (intent ``auto_reply``),
  so an out-of-office notice is never counted as a reply or an opt-out.

Sources (the keyword lists below come from these; every list is one place to change)
--------------------------------------------------------------------------------------
* FCC, *Protecting Consumers from Unwanted Robocalls and Robotexts*, Report and Order
  FCC 24-24 (CG Docket No. 02-278, adopted 15 February 2024), codified at
  47 CFR 64.1200(a)(10)-(12): consent may be revoked "by any reasonable means"; a reply of
  "stop", "quit", "end", "revoke", "opt out", "cancel" or "unsubscribe" is a per se
  reasonable revocation, and other wording must be honoured where "a reasonable person
  would understand" it as a request to stop. Summaries read: natlawreview.com "FCC adopts
  new TCPA rules expanding consumer consent revocation mandates"; manatt.com "FCC Adopts
  Revocation Rules"; compliancepoint.com "FCC's Consent Revocation Rule: Language Analysis"
  (which also mentions other languages, e.g. Spanish "no mas").
* CTIA, *Messaging Principles and Best Practices* and the *Short Code Monitoring Handbook*:
  senders must act on STOP / END / CANCEL / UNSUBSCRIBE / QUIT and answer HELP (and INFO).
  Carrier-level lists as implemented by providers: Twilio "Advanced Opt-Out" (STOP,
  STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT; START/UNSTOP to opt back in),
  Telnyx (adds "STOP ALL"), Braze (START, YES, UNSTOP opt-in; HELP, INFO), AWS End User
  Messaging "Required opt-out keywords" (adds ARRET, OPT-OUT, OPTOUT, REMOVE, TD).
* RFC 3834 (Auto-Submitted, any value but "no"); Microsoft [MS-OXCMAIL] 2.1.3.2.20 for
  X-Auto-Response-Suppress; arp242.net "Detecting autoreplies" and the Jitbit blog "Do not
  use X-Auto-Response-Suppress" (it marks mail that *asks not to be* auto-answered, e.g.
  every Outlook message, not auto-replies); University of Oxford Nexus blog on the
  X-MS-Exchange-* loop headers; the well-known list of localised out-of-office subjects
  (Stack Overflow "Detecting Outlook autoreply/out-of-office emails").

Rules chosen
------------
Normalisation (:func:`normalize_text`): NFKC (full-width letters become ASCII), curly
quotes and apostrophes straightened, case-folded, diacritics removed (ARRÊT == ARRET),
apostrophes inside words dropped (``don't`` -> ``dont``), every other character that is
not a letter or digit (punctuation, emoji, symbols) becomes a space, whitespace collapsed.
Before that the text is cut into clauses at ``. ! ? ; , : —`` and line breaks, so
"Thanks. STOP" and "Stop, by the way ..." are read clause by clause.

Opt-out (checked first: a revocation must win over anything else in the message):

1. Whole message is an opt-out keyword (the FCC seven, STOPALL, STOP ALL, OPTOUT, REMOVE,
   and the multilingual ARRET, ARRETER, PARAR, BAJA, CANCELAR, NO MAS). REMOVE and the
   non-English words count **only** as the whole message ("Remove the old deck first",
   "Baja California").
2. A clause *starts* with STOP, STOPALL, STOP ALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE,
   OPT OUT or OPTOUT (optionally after "please", "ok", "hi", "no" ...) followed by any
   words: "Stop texting me", "STOP please", "unsubscribe me". Exception: a known
   non-opt-out continuation (:func:`is_known_continuation`): "stop by/in/over/off",
   "end of ...", "quit my job / smoking", and "cancel" followed within four words by an
   appointment word or a time ("cancel my appointment", "cancel the 3pm"). Cancelling an
   appointment is conversation, not revocation of consent to be texted.
3. Unambiguous keywords anywhere in a clause (UNSUBSCRIBE, UNSUBSCRIBED, STOPALL, OPTOUT,
   OPT OUT, OPTED OUT, REVOKE): "how do I unsubscribe".
4. Plain-language revocations anywhere ("please remove me from your list", "don't text me
   again", "take me off", "I no longer wish to receive", "leave me alone", "wrong number",
   "stop sending me these", "I said stop" ...), see ``_PHRASES``.

Rules 3 and 4 are negation-aware: a negator (not, don't, never, didn't, doesn't, won't) in
the four words before the match cancels it ("I don't want to unsubscribe", "please do not
remove me"), unless those words also hold "how" or "why" ("I don't know how to
unsubscribe", "why don't you stop texting me" are still opt-outs). "don't stop" and
"please don't stop" never start with a keyword, so they are replies. "Not interested" is a
reply (a "no thanks", not a request to stop contact).

HELP: the whole message is HELP, INFO or AYUDA -> ``help`` (the caller answers with the
tenant's HELP text). "Help me pick a plan" is a reply.

Opt-in: the whole message is START, UNSTOP, SUBSCRIBE, RESUBSCRIBE, OPT IN, OPTIN or
UNSUBSCRIBE's opposite in the carrier lists. YES is in the Braze/Twilio opt-in lists, but
in a sales conversation "Yes" is usually an answer ("Yes, Tuesday works"). So a bare "YES"
is an opt-in only when the caller says the contact is currently opted out
(``after_opt_out=True``); otherwise it is a reply.

Auto-replies (:func:`is_auto_reply`), strongest evidence first:

* headers: ``Auto-Submitted`` with any value but ``no`` (RFC 3834); ``X-Autoreply``,
  ``X-Autorespond``, ``X-Autoresponder`` (any value but no/false/0);
  ``Precedence``/``X-Precedence`` of ``auto_reply``, ``bulk``, ``junk`` or ``list``;
  ``X-MS-Exchange-Generated-Message-Source`` (only Exchange agents stamp it: "Mailbox Rules
  Agent" on out-of-office replies, "Transport Rule Agent", "Journal Agent"); and a null
  ``Return-Path: <>`` (RFC 3834 says automatic responses are sent from the null sender).
  Deliberately **not** used on their own: ``X-Auto-Response-Suppress`` (Outlook puts it on
  ordinary mail) and ``X-MS-Exchange-Inbox-Rules-Loop`` (also on mail forwarded by a rule,
  which can carry a human's words). A false positive here would hide a real "STOP".
* subject starting with a localised auto-reply marker ("Out of Office", "Automatic reply",
  "Auto:", "Autoreply", "Abwesenheitsnotiz", "Réponse automatique", "Respuesta
  automática", "Fuori sede", "Automatisch antwoord", "Autosvar", "Frånvaro" ...).
* body (weakest): a self-declared automatic message ("this is an automated reply"), or an
  absence phrase ("I am out of the office", "I'm currently out of office", "on annual
  leave") together with a follow-up phrase ("will be back on", "limited access to email",
  "upon my return", "for urgent matters"). One absence phrase alone is not enough: "I'm
  out of office today but yes, call me Monday" is a person.

:func:`classify_reply` drops quoted history first (``>`` lines, "On ... wrote:", Outlook's
"-----Original Message-----" / "From:/Sent:" blocks), so our own "Reply STOP to opt out"
quoted under a reply is not read as the lead's words. Header or subject evidence of an
auto-reply is final. Body-only evidence yields to an explicit revocation in the same text
(a reasonable person would read it as one, and missing it is the costlier error). When the
body says nothing decisive, a subject that is not a reply ("Re:", "AW:", ...) to ours is
read for an opt-out ("unsubscribe" as the subject of a mailto unsubscribe).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

__all__ = [
    "AutoReply",
    "Classification",
    "Intent",
    "classify_reply",
    "classify_text",
    "is_auto_reply",
    "is_known_continuation",
    "normalize_text",
    "strip_quoted",
]


class Intent(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    REPLY = "reply"
    AUTO_REPLY = "auto_reply"


@dataclass(frozen=True, slots=True)
class Classification:
    intent: Intent
    matched: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class AutoReply:
    source: Literal["header", "subject", "body"]
    matched: str
    reason: str


# --- normalisation ----------------------------------------------------------------------

_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u02bc": "'",
        "\u2032": "'",
        "\u00b4": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
    }
)
_INNER_APOSTROPHE = re.compile(r"(?<=\w)'(?=\w)")
_CLAUSE_BREAK = re.compile(r"[.!?;,:\u2014\u2013\u2026\n\r\u00a1\u00bf]+")


def _prepare(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_QUOTES)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    chars: list[str] = []
    for ch in decomposed:
        category = unicodedata.category(ch)
        if category == "Mn":  # combining marks: the accents of ARRÊT, the dot of İ
            continue
        chars.append(ch if category[0] in "LN" or ch == "'" else " ")
    joined = _INNER_APOSTROPHE.sub("", "".join(chars)).replace("'", " ")
    return unicodedata.normalize("NFKC", " ".join(joined.split()))


def normalize_text(text: str) -> str:
    """Case-folded, accent-free, punctuation- and emoji-free, single-spaced text."""
    return _fold(_prepare(text))


def _clauses(text: str) -> list[list[str]]:
    clauses = (_fold(part).split() for part in _CLAUSE_BREAK.split(_prepare(text)))
    return [tokens for tokens in clauses if tokens]


# --- keyword tables -----------------------------------------------------------------------

# Whole message only (after leading fillers): ambiguous or non-English words.
_WHOLE_MESSAGE_OPT_OUT = frozenset(
    {
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
        "remove",
        "arret",
        "arreter",
        "parar",
        "baja",
        "cancelar",
        "no mas",
    }
)
# May start a clause and be followed by any words.
_LEADING_OPT_OUT = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
)
_LEADING_TWO_WORD = frozenset({"opt out", "stop all"})
# Unambiguous wherever they appear (negation-checked).
_ANYWHERE_OPT_OUT = re.compile(r"\b(unsubscribed?|stopall|optout|opt out|opted out|revoke)\b")

_FILLERS = frozenset(
    {"please", "pls", "plz", "plez", "kindly", "ok", "okay", "hi", "hey", "hello", "no", "nope"}
    | {"just", "yes", "yeah", "thanks", "thx"}
)

_HELP = frozenset({"help", "info", "ayuda"})
_OPT_IN = frozenset({"start", "unstop", "subscribe", "resubscribe", "opt in", "optin"})
_AMBIGUOUS_OPT_IN = frozenset({"yes", "y"})

_APPOINTMENT_WORDS = frozenset(
    {
        "appointment",
        "appointments",
        "appt",
        "meeting",
        "meet",
        "call",
        "visit",
        "booking",
        "reservation",
        "showing",
        "order",
        "tour",
        "consultation",
        "consult",
        "demo",
        "session",
        "viewing",
        "inspection",
        "interview",
        "today",
        "tonight",
        "tomorrow",
        "tomorrows",
        "todays",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "am",
        "pm",
        "morning",
        "afternoon",
        "evening",
    }
)
# keyword -> (words that make it ordinary conversation, how many following words to look at)
_CONTINUATIONS: dict[str, tuple[frozenset[str], int]] = {
    "stop": (frozenset({"by", "in", "over", "off"}), 1),
    "end": (frozenset({"of"}), 1),
    "quit": (frozenset({"job", "smoking", "drinking", "vaping"}), 2),
    "cancel": (_APPOINTMENT_WORDS, 4),
}

_NEGATORS = frozenset({"not", "dont", "never", "didnt", "doesnt", "wont", "shouldnt"})
_NEGATION_RESCUE = frozenset({"how", "why"})
_NEGATION_WINDOW = 4

_CHANNEL = r"(?:texts?|txts?|text messages?|messages?|msgs?|sms|emails?|e mails?|calls?)"
_CONTACT_VERB = r"(?:text|txt|message|msg|sms|contact|call|email|e mail|bother|spam|reach out to)"
_MY_DATA = (
    r"(?:number|phone|phone number|cell|cell number|contact|contact info|contact information"
    r"|info|information|details|email|email address|data|name)"
)
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), reason)
    for pattern, reason in (
        (
            r"\bstop (?:texting|txting|messaging|msging|contacting|calling|emailing|sending"
            r"|spamming|bothering|harassing|receiving|getting)\b",
            "asks to stop contact",
        ),
        (
            rf"\bstop (?:these|the|all|your|all these|all the|all your|any|any more) {_CHANNEL}\b",
            "asks to stop messages",
        ),
        (
            r"\b(?:remove|delete|erase|unsubscribe) (?:me|us)\b",
            "asks to be removed",
        ),
        (
            rf"\btake (?:me|us|(?:my|this|our) {_MY_DATA}) (?:off|out)\b",
            "asks to be taken off the list",
        ),
        (
            rf"\b(?:remove|delete|erase|lose) (?:my|this|our) {_MY_DATA}\b",
            "asks to delete their details",
        ),
        (
            rf"\b(?:dont|do not|never|please dont)(?: ever| even| evar)? {_CONTACT_VERB} "
            r"(?:me|us|this number|this phone|again|anymore|any more)\b",
            "asks not to be contacted",
        ),
        (rf"\bno more {_CHANNEL}\b", "asks for no more messages"),
        (
            r"\b(?:no longer|dont|do not|never) (?:wish|want|like) to (?:receive|get|be contacted"
            r"|be texted|hear from|be messaged|be on)\b",
            "no longer wishes to receive",
        ),
        (r"\b(?:do not|dont) (?:call|contact|text|email) list\b", "asks for do-not-contact"),
        (r"\bdnc\b", "asks for do-not-contact"),
        (r"\bleave me alone\b", "asks to be left alone"),
        (r"\bwrong (?:number|person)\b", "wrong number: consent never given"),
        (
            r"\b(?:said|told you|asked you|asked)(?: to)? stop\b(?! (?:by|in|over|off)\b)",
            "repeats a stop request",
        ),
        (
            r"\b(?:can|could|would|will) you (?:please |pls |kindly )?(?:just )?stop\b"
            r"(?! (?:by|in|over|off)\b)",
            "asks to stop",
        ),
        (r"\bopt me out\b", "asks to be opted out"),
    )
)


def is_known_continuation(keyword: str, following: Sequence[str]) -> bool:
    """True when ``keyword`` starts ordinary conversation ("stop by", "end of the month",
    "cancel my appointment"), so a clause that starts with it is not an opt-out.

    ``keyword`` and ``following`` are normalised words (see :func:`normalize_text`).
    """
    rule = _CONTINUATIONS.get(keyword)
    if rule is None:
        return False
    words, window = rule
    ahead = following[:window]
    if any(word in words for word in ahead):
        return True
    # "cancel the 3pm", "cancel 10 30": a time means an appointment
    return keyword == "cancel" and any(any(ch.isdigit() for ch in word) for word in ahead)


def _negated(tokens_before: list[str]) -> bool:
    window = tokens_before[-_NEGATION_WINDOW:]
    return any(w in _NEGATORS for w in window) and not any(w in _NEGATION_RESCUE for w in window)


def _strip_fillers(tokens: list[str]) -> list[str]:
    start = 0
    while start < len(tokens) - 1 and start < 3 and tokens[start] in _FILLERS:
        start += 1
    return tokens[start:]


def _leading_keyword(tokens: list[str]) -> Classification | None:
    rest = _strip_fillers(tokens)
    if not rest:
        return None
    two = " ".join(rest[:2])
    if two in _LEADING_TWO_WORD:
        keyword, following = two, rest[2:]
    elif rest[0] in _LEADING_OPT_OUT:
        keyword, following = rest[0], rest[1:]
    else:
        return None
    if is_known_continuation(keyword, following):
        return None
    detail = "alone" if not following else "followed by other words"
    return Classification(Intent.OPT_OUT, keyword, f"opt-out keyword {keyword!r} {detail}")


def _scan(tokens: list[str]) -> Classification | None:
    clause = " ".join(tokens)
    for pattern, reason in _PHRASES:
        for match in pattern.finditer(clause):
            if not _negated(clause[: match.start()].split()):
                return Classification(Intent.OPT_OUT, match.group(0), f"plain language: {reason}")
    for match in _ANYWHERE_OPT_OUT.finditer(clause):
        if not _negated(clause[: match.start()].split()):
            word = match.group(0)
            return Classification(Intent.OPT_OUT, word, f"opt-out keyword {word!r} in the message")
    return None


def classify_text(text: str, *, after_opt_out: bool = False) -> Classification:
    """Classify one inbound message (an SMS, or the new part of an e-mail).

    ``after_opt_out`` says the contact is currently opted out; only then is a bare "YES"
    read as an opt-in.
    """
    whole = normalize_text(text)
    if not whole:
        return Classification(Intent.REPLY, None, "no words after normalisation")
    whole_tokens = whole.split()
    bare = whole if whole in _WHOLE_MESSAGE_OPT_OUT else " ".join(_strip_fillers(whole_tokens))
    if bare in _WHOLE_MESSAGE_OPT_OUT:
        return Classification(Intent.OPT_OUT, bare, f"whole message is opt-out keyword {bare!r}")
    for tokens in _clauses(text):
        found = _leading_keyword(tokens) or _scan(tokens)
        if found is not None:
            return found
    if whole in _HELP:
        return Classification(Intent.HELP, whole, f"whole message is help keyword {whole!r}")
    if whole in _OPT_IN:
        return Classification(Intent.OPT_IN, whole, f"whole message is opt-in keyword {whole!r}")
    if whole in _AMBIGUOUS_OPT_IN:
        if after_opt_out:
            return Classification(Intent.OPT_IN, whole, f"{whole!r} from an opted-out contact")
        return Classification(Intent.REPLY, None, f"{whole!r} is an answer unless opted out")
    return Classification(Intent.REPLY, None, "no opt-out, opt-in or help keyword")


# --- auto-replies -------------------------------------------------------------------------

_AUTORESPONDER_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder")
_FALSY = frozenset({"", "no", "false", "0", "off"})
_BULK_PRECEDENCE = frozenset({"auto_reply", "auto-reply", "bulk", "junk", "list"})

_SUBJECT_MARKERS = re.compile(
    r"^(?:\[[^\]]*\]\s*)?(?:"
    r"out of (?:the )?office|ooo\b|automatic reply|auto reply|autoreply|auto response"
    r"|autoresponse|automatic response|automated response|auto:|autosvar|automatisk svar"
    r"|automatisch antwoord|automatische antwort|abwesenheitsnotiz|abwesend|afwezig"
    r"|reponse automatique|absent du bureau|message d.absence|respuesta automatica"
    r"|fuera de la oficina|risposta automatica|risposta non al computer|fuori sede"
    r"|resposta automatica|fora do escritorio|franvaro|automatyczna odpowiedz"
    r"|automaticka odpoved|vacation reply|on vacation)"
)
_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|sv|vs|antw|rif|r|fw|fwd|wg|tr)\s*:", re.IGNORECASE)

_SELF_DECLARED = re.compile(
    r"\b(?:this is an? (?:automated|automatic|auto generated|autogenerated) "
    r"(?:reply|response|message|email|notification)"
    r"|(?:automated|automatic|auto) (?:reply|response) (?:from|to your)"
    r"|do not reply to this (?:automated|automatic) (?:message|email))\b"
)
_ABSENCE = re.compile(
    r"\b(?:out of (?:the )?office|ooo|away from (?:the |my )?(?:office|desk|email)"
    r"|on (?:annual |parental |maternity |paternity |sick |medical |holiday |vacation )?"
    r"(?:leave|vacation|holiday|holidays|pto)|currently (?:away|unavailable|traveling|travelling)"
    r"|nicht im buro|abwesend|absente?s? du bureau|je suis absente?"
    r"|fuera de la oficina|fuori ufficio)\b"
)
_FOLLOW_UP = re.compile(
    r"\b(?:will be back|be back (?:on|in|at)|will return|returning (?:on|to)|back in the office"
    r"|(?:limited|no|intermittent|sporadic) access to (?:my )?(?:e ?mail|emails)"
    r"|check(?:ing)? (?:my )?e ?mails? (?:periodically|intermittently|occasionally)"
    r"|upon my return|on my return|when i return|as soon as i (?:return|am back|get back)"
    r"|for urgent (?:matters|issues|requests|inquiries|enquiries)"
    r"|if (?:this|it|your matter) is urgent"
    r"|in case of emergency|respond (?:to your (?:email|message) )?(?:upon|when|as soon as)"
    r"|delayed (?:response|reply)|wieder erreichbar|de retour le|regresare)\b"
)


def _header_map(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.strip().lower(): value.strip() for name, value in headers.items()}


def _header_auto_reply(headers: Mapping[str, str]) -> AutoReply | None:
    found = _header_map(headers)
    submitted = found.get("auto-submitted")
    if submitted is not None:
        keyword = re.split(r"[\s;(]", submitted.lower(), maxsplit=1)[0]
        if keyword and keyword != "no":
            return AutoReply("header", f"Auto-Submitted: {submitted}", "RFC 3834 automatic message")
    for name in _AUTORESPONDER_HEADERS:
        value = found.get(name)
        if value is not None and value.lower() not in _FALSY:
            return AutoReply("header", f"{name}: {value}", "autoresponder header")
    for name in ("precedence", "x-precedence"):
        value = found.get(name, "").lower()
        if value in _BULK_PRECEDENCE:
            return AutoReply("header", f"{name}: {value}", f"Precedence {value}")
    source = found.get("x-ms-exchange-generated-message-source")
    if source is not None:
        return AutoReply(
            "header",
            f"X-MS-Exchange-Generated-Message-Source: {source}",
            "generated by an Exchange agent (out-of-office or rule)",
        )
    if found.get("return-path", "").replace(" ", "") == "<>":
        return AutoReply("header", "Return-Path: <>", "null sender (RFC 3834 auto-response)")
    return None


def _subject_auto_reply(subject: str) -> AutoReply | None:
    folded = _prepare(subject).casefold()
    folded = "".join(
        ch for ch in unicodedata.normalize("NFKD", folded) if unicodedata.category(ch) != "Mn"
    )
    folded = re.sub(r"[-_]", " ", " ".join(folded.split()))
    match = _SUBJECT_MARKERS.match(folded)
    if match is None:
        return None
    return AutoReply("subject", subject.strip(), f"auto-reply subject {match.group(0)!r}")


def _body_auto_reply(body: str) -> AutoReply | None:
    text = normalize_text(body)
    declared = _SELF_DECLARED.search(text)
    if declared is not None:
        return AutoReply("body", declared.group(0), "body says it is an automatic message")
    absence = _ABSENCE.search(text)
    follow_up = _FOLLOW_UP.search(text)
    if absence is not None and follow_up is not None:
        return AutoReply(
            "body",
            f"{absence.group(0)} / {follow_up.group(0)}",
            "out-of-office wording with a return or access note",
        )
    return None


_QUOTE_HEADER = re.compile(
    r"(?:\bwrote|a ecrit|a écrit|schrieb|escribió|escribio|ha scritto|schreef|skrev)\s*:\s*$",
    re.IGNORECASE,
)
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|forwarded message|ursprüngliche nachricht"
    r"|message d'origine|mensaje original)\s*-{2,}|_{10,}\s*$)",
    re.IGNORECASE,
)
_FROM_LINE = re.compile(r"^\s*(?:from|von|de|da)\s*:", re.IGNORECASE)
_SENT_LINE = re.compile(r"^\s*(?:sent|date|gesendet|envoyé|enviado|inviato)\s*:", re.IGNORECASE)


def strip_quoted(body: str) -> str:
    """The new part of an e-mail body: quoted lines and the history below a reply header
    ("On ... wrote:", "-----Original Message-----", Outlook's From:/Sent: block) removed."""
    lines = body.splitlines()
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _ORIGINAL_MESSAGE.match(line) or _QUOTE_HEADER.search(line):
            break
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if _FROM_LINE.match(line) and _SENT_LINE.match(following):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def is_auto_reply(headers: Mapping[str, str], subject: str, body: str) -> AutoReply | None:
    """Why this e-mail is an automatic reply (out-of-office, autoresponder, bulk), or None.

    Header names are matched case-insensitively.
    """
    return (
        _header_auto_reply(headers)
        or _subject_auto_reply(subject)
        or _body_auto_reply(strip_quoted(body))
    )


def classify_reply(
    headers: Mapping[str, str], subject: str, body: str, *, after_opt_out: bool = False
) -> Classification:
    """Classify an inbound e-mail: auto-replies first, then :func:`classify_text` on the new
    part of the body (and, failing that, on a subject that is not a "Re:")."""
    auto = _header_auto_reply(headers) or _subject_auto_reply(subject)
    if auto is not None:
        return Classification(Intent.AUTO_REPLY, auto.matched, f"{auto.source}: {auto.reason}")
    new_text = strip_quoted(body)
    result = classify_text(new_text, after_opt_out=after_opt_out)
    if result.intent is Intent.OPT_OUT:
        return result
    weak = _body_auto_reply(new_text)
    if weak is not None:
        return Classification(Intent.AUTO_REPLY, weak.matched, f"body: {weak.reason}")
    if result.intent is Intent.REPLY and subject.strip() and not _REPLY_PREFIX.match(subject):
        from_subject = classify_text(subject)
        if from_subject.intent is Intent.OPT_OUT:
            return Classification(
                Intent.OPT_OUT, from_subject.matched, f"subject: {from_subject.reason}"
            )
    return result
