"""TwiML built for the call, read back with ElementTree; what the callee's words mean; and
Twilio's voice callbacks (fixtures in `fixtures/twilio`, see its README)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest

from leadrelay.outreach.voice import (
    DEFAULT_FALLBACK,
    CallOutcome,
    Intent,
    classify_intent,
    intro_twiml,
    parse_call_callback,
    voicemail_twiml,
)

FIXTURES = Path(__file__).parent / "fixtures" / "twilio"
ACTION = "https://leadrelay.example.com/webhooks/twilio/gather?message=7f0c&step=intro"
DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


def parse(document: str) -> ET.Element:
    return ET.fromstring(document)  # noqa: S314 - our own output, not untrusted input


def form(name: str) -> dict[str, str]:
    """A callback fixture as Twilio posts it: form-encoded, then decoded by the web layer."""
    values: dict[str, str] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return dict(parse_qsl(urlencode(values), keep_blank_values=True))


class TestIntroTwiml:
    def test_speaks_the_script_inside_a_speech_gather_then_falls_back_and_hangs_up(
        self,
    ) -> None:
        document = intro_twiml("Hi Grace, this is Ada from Navy Labs.", gather_action_url=ACTION)
        assert document.startswith(DECLARATION)
        root = parse(document)
        assert root.tag == "Response"
        assert [child.tag for child in root] == ["Gather", "Say", "Hangup"]
        gather, fallback, _ = root
        assert gather.attrib == {
            "input": "speech",
            "action": ACTION,
            "method": "POST",
            "speechTimeout": "auto",
            "language": "en-US",
        }
        [say] = gather
        assert say.tag == "Say"
        assert say.attrib == {"voice": "Polly.Joanna", "language": "en-US"}
        assert say.text == "Hi Grace, this is Ada from Navy Labs."
        assert fallback.text == DEFAULT_FALLBACK

    def test_escapes_markup_ampersands_and_quotes(self) -> None:
        script = 'Tom & Jerry\'s <b>"deal"</b> </Say><Hangup/> ]]> &amp;'
        action = 'https://x.example/g?a=1&b="2"<'
        document = intro_twiml(script, gather_action_url=action)
        assert "<b>" not in document
        assert "</Say><Hangup/>" not in document
        assert "&lt;b&gt;" in document
        assert "&amp;amp;" in document
        assert 'action="https://x.example/g?a=1&amp;b=&quot;2&quot;&lt;"' in document
        root = parse(document)
        gather = root.find("Gather")
        assert gather is not None
        assert gather.get("action") == action
        assert gather.findtext("Say") == script
        assert root.find("Hangup") is not None
        assert len(root.findall(".//Say")) == 2

    def test_drops_characters_xml_cannot_carry(self) -> None:
        document = intro_twiml("Hello\x00 there\x07\x1b.", gather_action_url=ACTION)
        assert parse(document).findtext("Gather/Say") == "Hello there."

    def test_takes_the_voice_and_language_it_is_given(self) -> None:
        root = parse(
            intro_twiml(
                "Bonjour !",
                gather_action_url=ACTION,
                voice="Polly.Celine",
                language="fr-FR",
                fallback="Au revoir.",
            )
        )
        gather = root.find("Gather")
        assert gather is not None
        assert gather.get("language") == "fr-FR"
        assert [say.attrib for say in root.iter("Say")] == [
            {"voice": "Polly.Celine", "language": "fr-FR"}
        ] * 2
        assert root.findtext("Say") == "Au revoir."

    @pytest.mark.parametrize(("script", "action"), [("   ", ACTION), ("Hi", "")])
    def test_refuses_an_empty_script_or_action(self, script: str, action: str) -> None:
        with pytest.raises(ValueError, match=r"."):
            intro_twiml(script, gather_action_url=action)


class TestVoicemailTwiml:
    def test_speaks_the_message_then_hangs_up(self) -> None:
        document = voicemail_twiml("Hi, it's Ada & team <Navy Labs>. Call 555-0100.")
        assert document.startswith(DECLARATION)
        root = parse(document)
        assert [child.tag for child in root] == ["Say", "Hangup"]
        assert root.findtext("Say") == "Hi, it's Ada & team <Navy Labs>. Call 555-0100."
        assert root[0].attrib == {"voice": "Polly.Joanna", "language": "en-US"}


INTENTS = [
    # interested
    ("Yes, I'm interested.", Intent.INTERESTED),
    ("Sure, tell me more", Intent.INTERESTED),
    ("That sounds interesting", Intent.INTERESTED),
    ("yeah", Intent.INTERESTED),
    ("I'd love to hear more", Intent.INTERESTED),
    ("Please send me the details", Intent.INTERESTED),
    ("I'm not busy, go ahead", Intent.INTERESTED),
    ("I'm not busy and I'm interested", Intent.INTERESTED),
    # not interested, negations included
    ("I'm not interested", Intent.NOT_INTERESTED),
    ("I’m not interested", Intent.NOT_INTERESTED),
    ("I am NOT interested!!!", Intent.NOT_INTERESTED),
    ("Not really interested, thanks", Intent.NOT_INTERESTED),
    ("I'm not at all interested", Intent.NOT_INTERESTED),
    ("I am not really all that interested", Intent.NOT_INTERESTED),
    ("im not interested", Intent.NOT_INTERESTED),
    ("Yes I'm sure, I'm not interested", Intent.NOT_INTERESTED),
    ("No thanks", Intent.NOT_INTERESTED),
    ("No, thanks.", Intent.NOT_INTERESTED),
    ("Nope.", Intent.NOT_INTERESTED),
    ("I have no interest", Intent.NOT_INTERESTED),
    ("I don't need it", Intent.NOT_INTERESTED),
    ("We're not looking for anything", Intent.NOT_INTERESTED),
    ("I'm good, thanks", Intent.NOT_INTERESTED),
    # remove me
    ("Take me off your list", Intent.REMOVE_ME),
    ("Please take my number off your calling list.", Intent.REMOVE_ME),
    ("Don't call me again", Intent.REMOVE_ME),
    ("Do not call me again.", Intent.REMOVE_ME),
    ("dont call me anymore", Intent.REMOVE_ME),
    ("Don't ever call this number again!", Intent.REMOVE_ME),
    ("Don't call me back", Intent.REMOVE_ME),
    ("please don't call me.", Intent.REMOVE_ME),
    ("Stop calling me", Intent.REMOVE_ME),
    ("Please stop texting me", Intent.REMOVE_ME),
    ("Remove me from your list", Intent.REMOVE_ME),
    ("I would like to be removed", Intent.REMOVE_ME),
    ("Put me on your do not call list", Intent.REMOVE_ME),
    ("Unsubscribe", Intent.REMOVE_ME),
    ("STOP", Intent.REMOVE_ME),
    ("Leave me alone", Intent.REMOVE_ME),
    # precedence
    ("I'm not interested, stop calling", Intent.REMOVE_ME),
    ("Yes, but don't call me again", Intent.REMOVE_ME),
    ("Not interested, call me back never", Intent.NOT_INTERESTED),
    ("Sure, call me tomorrow", Intent.CALL_BACK_LATER),
    ("Yes but I'm busy, call me later", Intent.CALL_BACK_LATER),
    # call back later
    ("Call me back tomorrow", Intent.CALL_BACK_LATER),
    ("I'm busy right now", Intent.CALL_BACK_LATER),
    ("Can you try again next week?", Intent.CALL_BACK_LATER),
    ("I'm driving", Intent.CALL_BACK_LATER),
    ("It's a bad time", Intent.CALL_BACK_LATER),
    ("Not now", Intent.CALL_BACK_LATER),
    ("Can we talk later?", Intent.CALL_BACK_LATER),
    ("Don't call me now, call me later", Intent.CALL_BACK_LATER),
    ("Call me in two hours", Intent.CALL_BACK_LATER),
    # unclear
    ("I'm not sure", Intent.UNCLEAR),
    ("I'm not sure if I'm interested", Intent.UNCLEAR),
    ("Maybe, I don't know", Intent.UNCLEAR),
    ("Who is this?", Intent.UNCLEAR),
    ("what?", Intent.UNCLEAR),
    ("", Intent.UNCLEAR),
    ("  ...  ", Intent.UNCLEAR),
]


class TestClassifyIntent:
    @pytest.mark.parametrize(("speech", "intent"), INTENTS)
    def test_reads_the_intent(self, speech: str, intent: Intent) -> None:
        assert classify_intent(speech) == intent

    @pytest.mark.parametrize(("speech", "intent"), INTENTS)
    def test_ignores_case_and_punctuation(self, speech: str, intent: Intent) -> None:
        variants = [
            speech.upper(),
            speech.replace(",", "").replace(".", "!"),
            speech.replace("'", "\u2019"),
            f'"{speech}?!"',
        ]
        assert [classify_intent(variant) for variant in variants] == [intent] * 4

    def test_intents_are_stable_strings(self) -> None:
        assert [intent.value for intent in Intent] == [
            "interested",
            "not_interested",
            "remove_me",
            "call_back_later",
            "unclear",
        ]


class TestParseCallCallback:
    def test_reads_a_completed_call(self) -> None:
        outcome = parse_call_callback(form("call_status_completed.json"))
        assert outcome == CallOutcome(
            call_sid="CAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            call_status="completed",
            duration_seconds=49,
            answered_by="human",
        )
        assert outcome.is_final
        assert not outcome.answered_by_machine

    def test_reads_a_call_nobody_answered(self) -> None:
        outcome = parse_call_callback(form("call_status_no_answer.json"))
        assert (outcome.call_status, outcome.duration_seconds, outcome.answered_by) == (
            "no-answer",
            0,
            None,
        )
        assert outcome.is_final

    def test_a_voicemail_greeting_ending_in_a_beep_is_time_to_leave_the_message(self) -> None:
        outcome = parse_call_callback(form("twiml_request_machine_end_beep.json"))
        assert outcome.answered_by == "machine_end_beep"
        assert outcome.reached_voicemail
        assert outcome.answered_by_machine
        assert not outcome.is_final

    @pytest.mark.parametrize(
        ("answered_by", "voicemail", "machine"),
        [
            ("machine_end_silence", True, True),
            ("machine_end_other", True, True),
            ("machine_start", False, True),
            ("fax", False, True),
            ("human", False, False),
            ("unknown", False, False),
        ],
    )
    def test_answered_by_values(self, answered_by: str, voicemail: bool, machine: bool) -> None:
        outcome = parse_call_callback({"CallSid": "CA1", "AnsweredBy": answered_by})
        assert (outcome.reached_voicemail, outcome.answered_by_machine) == (voicemail, machine)

    def test_classifies_what_the_gather_heard(self) -> None:
        outcome = parse_call_callback(form("gather_speech.json"))
        assert outcome.speech_result == "Can you call me back tomorrow? I'm driving."
        assert outcome.confidence == pytest.approx(0.9162597)
        assert outcome.intent == Intent.CALL_BACK_LATER
        assert outcome.call_status == "in-progress"

    def test_keeps_the_recording_reference(self) -> None:
        outcome = parse_call_callback(form("recording_status_completed.json"))
        assert outcome.recording_sid == "REaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        assert outcome.recording_url == (
            "https://api.twilio.com/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "/Recordings/REaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        )
        assert outcome.recording_duration_seconds == 47
        assert (outcome.call_status, outcome.intent) == (None, None)

    def test_blank_values_are_absent(self) -> None:
        outcome = parse_call_callback({"CallSid": "CA1", "AnsweredBy": "", "SpeechResult": " "})
        assert (outcome.answered_by, outcome.speech_result, outcome.intent) == (None, None, None)

    @pytest.mark.parametrize(
        "params",
        [
            {"CallStatus": "completed"},
            {"CallSid": ""},
            {"CallSid": "CA1", "CallDuration": "ten"},
            {"CallSid": "CA1", "CallDuration": "-3"},
            {"CallSid": "CA1", "RecordingDuration": "4.5"},
            {"CallSid": "CA1", "Confidence": "high"},
            {"CallSid": "CA1", "Confidence": "1.5"},
            {"CallSid": "CA1", "Confidence": "nan"},
        ],
    )
    def test_refuses_what_twilio_does_not_send(self, params: dict[str, str]) -> None:
        with pytest.raises(ValueError, match=r"."):
            parse_call_callback(params)
