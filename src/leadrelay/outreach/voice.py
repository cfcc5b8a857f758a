"""The voice call's script and what the callee said: TwiML out, Twilio's callbacks in. Pure.

TwiML, per Twilio's TwiML Voice reference:
- `<Say voice="Polly.Joanna" language="en-US">` speaks text (Amazon Polly voices are named
  `Polly.<Name>`); `<Gather input="speech" action=... method="POST" speechTimeout="auto">`
  with the `<Say>` nested speaks while listening and POSTs `SpeechResult` and `Confidence` to
  `action` when the caller stops talking. Without input, Twilio goes on to the next verb —
  here a closing `<Say>` and `<Hangup/>`. No `speechModel` is set: Twilio rejects
  `speechTimeout="auto"` with an explicit model (warning 13335).
- Answering machine detection with `DetectMessageEnd` (see `channels.twilio`) reports
  `AnsweredBy` = `machine_end_beep` / `machine_end_silence` / `machine_end_other` once the
  greeting is over: the voicemail TwiML speaks right away, then hangs up.
Documents are built with ElementTree, which escapes `&`, `<`, `>` and quotes in attributes;
characters XML 1.0 cannot carry at all (most C0 controls) are dropped from the script.

Callback parameters (Voice › TwiML › "Twilio's request to your application", the Call
resource's status callback table, Recording status callbacks, `<Gather>` action parameters):
`CallSid`, `CallStatus` (queued, initiated, ringing, in-progress, completed, busy, failed,
no-answer, canceled), `CallDuration` (seconds, on `completed`), `AnsweredBy`, `RecordingSid`,
`RecordingUrl`, `RecordingDuration`, `SpeechResult`, `Confidence` (0.0–1.0).
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

DEFAULT_VOICE: Final = "Polly.Joanna"
DEFAULT_LANGUAGE: Final = "en-US"
DEFAULT_FALLBACK: Final = "Sorry we missed you. We will follow up another time. Goodbye."
MACHINE_END_VALUES: Final = frozenset(
    {"machine_end_beep", "machine_end_silence", "machine_end_other"}
)
FINAL_CALL_STATUSES: Final = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})

_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
# XML 1.0 Char production: tab, newline, carriage return and everything from U+0020 up,
# minus the surrogates and U+FFFE/U+FFFF.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class Intent(StrEnum):
    INTERESTED = "interested"
    NOT_INTERESTED = "not_interested"
    REMOVE_ME = "remove_me"
    CALL_BACK_LATER = "call_back_later"
    UNCLEAR = "unclear"


# --- TwiML ------------------------------------------------------------------------------------


def intro_twiml(
    script: str,
    *,
    gather_action_url: str,
    voice: str = DEFAULT_VOICE,
    language: str = DEFAULT_LANGUAGE,
    fallback: str = DEFAULT_FALLBACK,
) -> str:
    """The introduction for a human: `script` spoken inside a speech `<Gather>` whose result
    goes to `gather_action_url`; if the callee says nothing, `fallback` and a hang-up."""
    if not gather_action_url:
        raise ValueError("gather_action_url is required")
    response = ET.Element("Response")
    gather = ET.SubElement(
        response,
        "Gather",
        {
            "input": "speech",
            "action": gather_action_url,
            "method": "POST",
            "speechTimeout": "auto",
            "language": language,
        },
    )
    _say(gather, script, voice=voice, language=language)
    _say(response, fallback, voice=voice, language=language)
    ET.SubElement(response, "Hangup")
    return _document(response)


def voicemail_twiml(
    script: str, *, voice: str = DEFAULT_VOICE, language: str = DEFAULT_LANGUAGE
) -> str:
    """The message left after the greeting (AMD said `machine_end_*`), then a hang-up."""
    response = ET.Element("Response")
    _say(response, script, voice=voice, language=language)
    ET.SubElement(response, "Hangup")
    return _document(response)


def _say(parent: ET.Element, text: str, *, voice: str, language: str) -> None:
    cleaned = _NOT_XML_CHAR.sub("", text).strip()
    if not cleaned:
        raise ValueError("nothing to say")
    say = ET.SubElement(parent, "Say", {"voice": voice, "language": language})
    say.text = cleaned


def _document(root: ET.Element) -> str:
    return _XML_DECLARATION + ET.tostring(root, encoding="unicode")


# --- intents ----------------------------------------------------------------------------------

_NEGATORS: Final = frozenset({"not", "never", "hardly", "nor", "without"})
# Words that may stand between a negator and what it negates: "not at all interested",
# "not really all that interested", "never been interested".
_NEGATION_FILLERS: Final = frozenset(
    {"really", "at", "all", "that", "very", "so", "too", "even", "quite", "particularly",
     "in", "the", "least", "a", "bit", "any", "more", "much", "be", "been", "being", "am",
     "is", "are", "was", "were", "i", "im", "we", "currently", "actually"}
)  # fmt: skip
_NEGATION_WINDOW: Final = 4
_CONTRACTIONS: Final = (
    (re.compile(r"\bcannot\b"), "can not"),
    (re.compile(r"\bcant\b"), "can not"),
    (re.compile(r"\bwont\b"), "will not"),
    (re.compile(r"\bshant\b"), "shall not"),
    (
        re.compile(r"\b(do|does|did|is|are|was|were|could|would|should|have|has|had|need)nt\b"),
        r"\1 not",
    ),
)


def _rules(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(pattern) for pattern in patterns)


_CALL = (
    r"(call|calling|contact|contacting|phone|phoning|ring|ringing|text|texting|bother|bothering)"
)
_ME = r"(me|us|this number|my number|here)"
# Each rule runs on the normalized utterance (see `_normalize`): lower case, no apostrophes,
# contractions spelled out, clause punctuation turned into " . ".
_REMOVE_ME = _rules(
    rf"\b(stop|quit|cease) {_CALL}\b",
    rf"\b(do not|never) (ever )?{_CALL}( {_ME})?( (again|anymore|any more|back|ever))\b",
    rf"\b(do not|never) (ever )?{_CALL} {_ME}( please)?( \.|$)",
    r"\bdo not call list\b",
    r"\bremove (me|us|my (number|name|details|info|information))\b",
    r"\b(be|get|been) removed\b",
    r"\btake (me|us|my (number|name|details)) off\b",
    r"\boff (your|the|this|that) (calling |call |contact |mailing |phone )?list\b",
    r"\bunsubscribe\b",
    r"\bopt(ed)? (me )?out\b",
    r"\b(delete|lose|forget) (my|our) (number|details|data|information|info)\b",
    r"\bleave (me|us) alone\b",
    r"\bno more (calls|calling|messages)\b",
    r"^(stop|stop it|stop please|please stop)( \.)?$",
)
_NOT_INTERESTED = _rules(
    r"\b(no|zero) interest\b",
    r"\b(uninterested|disinterested)\b",
    r"\bno( \.)? (thanks|thank you)\b",
    r"^(no|nope|nah|no way|not really)( \.)?( (thanks|thank you|sorry))?( \.)*$",
    r"\bnot for (me|us)\b",
    r"\bnot (looking|in the market)\b",
    r"\b(do not|does not) (need|want) (it|this|that|one|any|anything)\b",
    r"^(i am|im|we are|were) (good|fine|all set|ok|okay)( \.)?( (thanks|thank you))?( \.)*$",
)
# "interested"/"interesting" with a negator shortly before it in the same clause.
_INTEREST = re.compile(r"\binterest(ed|ing)?\b")
_CALL_BACK_LATER = _rules(
    r"\bcall (me |us )?back\b",
    r"\b(call|try|ring|phone|reach) (me |us )?(again )?(later|tomorrow|another time|"
    r"some other time|next (week|month|time)|this (afternoon|evening)|tonight|on (monday|"
    r"tuesday|wednesday|thursday|friday|saturday|sunday)|in (a|an|one|two|few|a few|\w+) "
    r"(minutes?|hours?|days?|weeks?))\b",
    r"\b(busy|in a meeting|driving|at work|with a customer|with a client)\b",
    r"\b(bad|inconvenient|not a good|not the right) time\b",
    r"\bnot (right )?now\b",
    r"\b(later|another time) (please|would be better|works better)\b",
    r"\bcan (we|you) (talk|speak|do this) (later|tomorrow|another time)\b",
)
# A hedge keeps an otherwise positive answer from counting as interest: "maybe", "I'm not
# sure if I'm interested" are for a person to follow up, not for the pipeline to act on.
_HEDGES = _rules(r"\b(not sure|unsure|do not know|maybe|perhaps|i guess|possibly)\b")
_INTERESTED = _rules(
    r"\b(yes|yeah|yep|yup|sure|absolutely|definitely|of course|certainly)\b",
    r"\b(sounds (good|great|interesting)|tell me more|go ahead|go on|i am listening)\b",
    r"\b(i would|id|we would|wed) (like|love) (to|that|more|it|some)\b",
    r"\bsend (me |us )?(more |the |some )?(info|information|details|an email|a quote)\b",
    r"\bplease do\b",
)


def classify_intent(speech_result: str) -> Intent:
    """What the callee's answer asks of us. Keyword and phrase rules on the normalized
    transcript; a keyword right after a negator ("not interested", "not at all interested",
    "not busy", "not sure") does not count for itself. When several intents match, the
    most restrictive wins: remove_me > not_interested > call_back_later > interested —
    a "yes, but don't call me again" is a removal, a "sure, call me tomorrow" a callback, and
    a hedged yes ("maybe", "not sure") stays unclear."""
    text = _normalize(speech_result)
    if not text.strip(" ."):
        return Intent.UNCLEAR
    if _matches(_REMOVE_ME, text, negatable=False):
        return Intent.REMOVE_ME
    if _matches(_NOT_INTERESTED, text, negatable=False) or any(
        _is_negated(text, match.start()) for match in _INTEREST.finditer(text)
    ):
        return Intent.NOT_INTERESTED
    if _matches(_CALL_BACK_LATER, text, negatable=True):
        return Intent.CALL_BACK_LATER
    if _matches(_HEDGES, text, negatable=False):
        return Intent.UNCLEAR
    if _matches(_INTERESTED, text, negatable=True) or _INTEREST.search(text):
        return Intent.INTERESTED
    return Intent.UNCLEAR


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"['\u2018\u2019\u02bc`]", "", text)  # don't, don’t -> dont
    text = re.sub(r"[,.;:!?\u2026]+|\b(but|however|and)\b", " . ", text)
    text = re.sub(r"[^\w\s.]", " ", text)
    for pattern, replacement in _CONTRACTIONS:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def _matches(rules: tuple[re.Pattern[str], ...], text: str, *, negatable: bool) -> bool:
    for rule in rules:
        for match in rule.finditer(text):
            if not negatable or not _is_negated(text, match.start()):
                return True
    return False


def _is_negated(text: str, start: int) -> bool:
    """A negator just before `start`, or a few filler words before it, in the same clause."""
    for skipped, word in enumerate(reversed(text[:start].split())):
        if word in _NEGATORS:
            return True
        if word not in _NEGATION_FILLERS or skipped == _NEGATION_WINDOW:
            return False
    return False


# --- callbacks --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """What one of Twilio's voice callbacks (call status, `<Gather>` action or recording
    status) says about a call. Absent parameters are `None`; `intent` is classified from
    `speech_result` when there is one."""

    call_sid: str
    call_status: str | None = None
    duration_seconds: int | None = None
    answered_by: str | None = None
    recording_sid: str | None = None
    recording_url: str | None = None
    recording_duration_seconds: int | None = None
    speech_result: str | None = None
    confidence: float | None = None
    intent: Intent | None = None

    @property
    def is_final(self) -> bool:
        return self.call_status in FINAL_CALL_STATUSES

    @property
    def reached_voicemail(self) -> bool:
        """AMD heard a machine's greeting end: time to leave the voicemail."""
        return self.answered_by in MACHINE_END_VALUES

    @property
    def answered_by_machine(self) -> bool:
        return self.answered_by is not None and (
            self.answered_by.startswith("machine_") or self.answered_by == "fax"
        )


def parse_call_callback(form: Mapping[str, str]) -> CallOutcome:
    """The outcome in Twilio's form parameters. Raises `ValueError` when `CallSid` is missing
    or a number is not one: the request did not come from Twilio as documented."""
    call_sid = _text(form, "CallSid")
    if call_sid is None:
        raise ValueError("CallSid is missing")
    speech = _text(form, "SpeechResult")
    confidence = _number(form, "Confidence")
    if confidence is not None and not 0.0 <= confidence <= 1.0:
        raise ValueError("Confidence must be between 0 and 1")
    return CallOutcome(
        call_sid=call_sid,
        call_status=_text(form, "CallStatus"),
        duration_seconds=_whole(form, "CallDuration"),
        answered_by=_text(form, "AnsweredBy"),
        recording_sid=_text(form, "RecordingSid"),
        recording_url=_text(form, "RecordingUrl"),
        recording_duration_seconds=_whole(form, "RecordingDuration"),
        speech_result=speech,
        confidence=confidence,
        intent=classify_intent(speech) if speech is not None else None,
    )


def _text(form: Mapping[str, str], name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if value is not None else None


def _whole(form: Mapping[str, str], name: str) -> int | None:
    value = _text(form, name)
    if value is None:
        return None
    if not value.isdecimal() or not value.isascii():
        raise ValueError(f"{name} must be whole seconds")
    return int(value)


def _number(form: Mapping[str, str], name: str) -> float | None:
    value = _text(form, name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None
    if number != number:  # NaN
        raise ValueError(f"{name} must be a number")
    return number
