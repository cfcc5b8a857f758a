"""The provider parsers against the documented example payloads in ``fixtures/``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from leadrelay.telemetry.events import (
    DeliveryEvent,
    EventKind,
    MalformedPayload,
    ParseResult,
    Provider,
    parse_mailgun,
    parse_sendgrid,
    parse_twilio,
    parse_whatsapp,
)

FIXTURES = Path(__file__).parent / "fixtures"
RECEIVED = datetime(2024, 5, 14, 17, 10, tzinfo=UTC)


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def form(name: str) -> dict[str, str]:
    return dict(parse_qsl(body(name).decode().strip(), strict_parsing=True))


def only(result: ParseResult) -> DeliveryEvent:
    assert result.ignored == ()
    assert len(result.events) == 1
    return result.events[0]


def test_kinds_are_exactly_the_issue_list() -> None:
    assert {kind.value for kind in EventKind} == {
        "queued",
        "sent",
        "delivered",
        "deferred",
        "bounced",
        "dropped",
        "complained",
        "opened",
        "clicked",
        "unsubscribed",
        "failed",
        "read",
        "answered",
        "no-answer",
        "busy",
        "voicemail",
    }


# --- SendGrid ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "kind", "bounce"),
    [
        ("sendgrid_processed.json", EventKind.QUEUED, None),
        ("sendgrid_deferred.json", EventKind.DEFERRED, None),
        ("sendgrid_delivered.json", EventKind.DELIVERED, None),
        ("sendgrid_bounce.json", EventKind.BOUNCED, "hard"),
        ("sendgrid_bounce_blocked.json", EventKind.BOUNCED, "soft"),
        ("sendgrid_dropped.json", EventKind.DROPPED, None),
        ("sendgrid_spamreport.json", EventKind.COMPLAINED, None),
        ("sendgrid_open.json", EventKind.OPENED, None),
        ("sendgrid_click.json", EventKind.CLICKED, None),
        ("sendgrid_unsubscribe.json", EventKind.UNSUBSCRIBED, None),
        ("sendgrid_group_unsubscribe.json", EventKind.UNSUBSCRIBED, None),
    ],
)
def test_sendgrid_event_kinds(fixture: str, kind: EventKind, bounce: str | None) -> None:
    raw = json.loads(body(fixture))[0]
    event = only(parse_sendgrid(body(fixture)))
    assert event.provider is Provider.SENDGRID
    assert event.kind is kind
    assert event.bounce == bounce
    assert event.provider_message_id == "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"
    assert event.our_message_id == "msg_0001"
    assert event.recipient == "example@test.com"
    assert event.occurred_at == datetime(2017, 12, 15, 0, 59, 29, tzinfo=UTC)
    assert event.provider_event_id == raw["sg_event_id"]
    assert event.raw == raw


def test_sendgrid_reason_and_status() -> None:
    bounce = only(parse_sendgrid(body("sendgrid_bounce.json")))
    assert (bounce.reason, bounce.error_code) == ("500 unknown recipient", "5.0.0")
    deferred = only(parse_sendgrid(body("sendgrid_deferred.json")))
    assert deferred.reason == "400 try again later"
    dropped = only(parse_sendgrid(body("sendgrid_dropped.json")))
    assert dropped.reason == "Bounced Address"
    assert only(parse_sendgrid(body("sendgrid_open.json"))).reason is None


def test_sendgrid_batch_keeps_order_and_reports_unknown_types() -> None:
    names = ["processed", "group_resubscribe", "delivered", "open"]
    batch = [json.loads(body(f"sendgrid_{name}.json"))[0] for name in names]
    batch.append({"event": "account_status_change", "timestamp": 1513299569})
    result = parse_sendgrid(json.dumps(batch).encode())
    assert [e.kind for e in result.events] == [
        EventKind.QUEUED,
        EventKind.DELIVERED,
        EventKind.OPENED,
    ]
    assert result.ignored == ("group_resubscribe", "account_status_change")


def test_sendgrid_unknown_bounce_type_is_bounced_without_class() -> None:
    event = json.loads(body("sendgrid_bounce.json"))[0]
    event["type"] = "expired"
    assert only(parse_sendgrid(json.dumps([event]).encode())).bounce is None
    del event["type"]
    assert only(parse_sendgrid(json.dumps([event]).encode())).bounce is None


def test_sendgrid_legacy_unique_args_and_missing_message_id() -> None:
    event = json.loads(body("sendgrid_dropped.json"))[0]
    del event["leadrelay_message_id"]
    del event["sg_message_id"]
    event["unique_args"] = {"leadrelay_message_id": "msg_legacy"}
    parsed = only(parse_sendgrid(json.dumps([event]).encode()))
    assert parsed.our_message_id == "msg_legacy"
    assert parsed.provider_message_id is None
    del event["unique_args"]
    assert only(parse_sendgrid(json.dumps([event]).encode())).our_message_id is None


def test_sendgrid_duplicate_delivery_keeps_provider_event_id() -> None:
    event = json.loads(body("sendgrid_delivered.json"))[0]
    result = parse_sendgrid(json.dumps([event, event]).encode())
    first, second = result.events
    assert first.provider_event_id == second.provider_event_id == event["sg_event_id"]
    assert first == second
    assert only(parse_sendgrid(body("sendgrid_delivered.json"))) == first


def test_sendgrid_empty_batch() -> None:
    assert parse_sendgrid(b"[]") == ParseResult()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"event": "delivered"}', "body must be an array"),
        (b"[1]", r"event\[0\] must be an object"),
        (b'[{"timestamp": 1, "sg_event_id": "x"}]', r"event\[0\]\.event"),
        (b'[{"event": "open", "sg_event_id": "x"}]', r"timestamp must be Unix seconds"),
        (b'[{"event": "open", "timestamp": "soon", "sg_event_id": "x"}]', "Unix seconds"),
        (b'[{"event": "open", "timestamp": true, "sg_event_id": "x"}]', "got bool"),
        (b'[{"event": "open", "timestamp": 1e300, "sg_event_id": "x"}]', "out of range"),
        (b'[{"event": "open", "timestamp": 1}]', r"sg_event_id must be a non-empty"),
        (b'[{"event": "open", "timestamp": 1, "sg_event_id": "x", "email": []}]', "email"),
    ],
)
def test_sendgrid_malformed(payload: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message) as caught:
        parse_sendgrid(payload)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith("sendgrid: ")


def test_sendgrid_one_bad_event_fails_the_batch() -> None:
    good = json.loads(body("sendgrid_open.json"))[0]
    with pytest.raises(MalformedPayload, match=r"event\[1\]"):
        parse_sendgrid(json.dumps([good, {"event": "click"}]).encode())


# --- Mailgun -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "kind", "bounce"),
    [
        ("mailgun_accepted.json", EventKind.QUEUED, None),
        ("mailgun_delivered.json", EventKind.DELIVERED, None),
        ("mailgun_failed_permanent.json", EventKind.BOUNCED, "hard"),
        ("mailgun_failed_old.json", EventKind.BOUNCED, "soft"),
        ("mailgun_failed_temporary.json", EventKind.DEFERRED, None),
        ("mailgun_failed_suppress_bounce.json", EventKind.DROPPED, None),
        ("mailgun_complained.json", EventKind.COMPLAINED, None),
        ("mailgun_opened.json", EventKind.OPENED, None),
        ("mailgun_clicked.json", EventKind.CLICKED, None),
        ("mailgun_unsubscribed.json", EventKind.UNSUBSCRIBED, None),
        ("mailgun_rejected.json", EventKind.DROPPED, None),
    ],
)
def test_mailgun_event_kinds(fixture: str, kind: EventKind, bounce: str | None) -> None:
    raw = json.loads(body(fixture))["event-data"]
    event = only(parse_mailgun(body(fixture)))
    assert event.provider is Provider.MAILGUN
    assert event.kind is kind
    assert event.bounce == bounce
    assert event.provider_message_id == "20130503182626.18666.16540@sample.mailgun.com"
    assert event.our_message_id == "msg_0002"
    assert event.recipient == "alice@example.com"
    assert event.provider_event_id == raw["id"]
    assert event.raw == raw


def test_mailgun_float_timestamp_keeps_microseconds() -> None:
    event = only(parse_mailgun(body("mailgun_delivered.json")))
    assert event.occurred_at == datetime(2018, 3, 16, 23, 35, 39, 873676, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC


def test_mailgun_failure_details() -> None:
    hard = only(parse_mailgun(body("mailgun_failed_permanent.json")))
    assert (hard.error_code, hard.reason) == ("550", "bounce: No Such User Here")
    soft = only(parse_mailgun(body("mailgun_failed_temporary.json")))
    assert soft.error_code == "452"
    assert soft.reason == "generic: 4.2.2 The email account that you tried to reach is over quota."
    suppressed = only(parse_mailgun(body("mailgun_failed_suppress_bounce.json")))
    assert suppressed.reason == "suppress-bounce: Not delivering to previously bounced address"
    delivered = only(parse_mailgun(body("mailgun_delivered.json")))
    assert (delivered.error_code, delivered.reason) == (None, None)


def test_mailgun_failed_without_severity_is_unclassified_bounce() -> None:
    envelope = json.loads(body("mailgun_failed_permanent.json"))
    del envelope["event-data"]["severity"]
    event = only(parse_mailgun(json.dumps(envelope).encode()))
    assert (event.kind, event.bounce) == (EventKind.BOUNCED, None)


def test_mailgun_unknown_event_is_ignored() -> None:
    assert parse_mailgun(body("mailgun_stored.json")) == ParseResult(ignored=("stored",))


def test_mailgun_optional_parts_may_be_absent() -> None:
    envelope = json.loads(body("mailgun_complained.json"))
    for key in ("message", "user-variables", "recipient"):
        del envelope["event-data"][key]
    event = only(parse_mailgun(json.dumps(envelope).encode()))
    assert (event.provider_message_id, event.our_message_id, event.recipient) == (None,) * 3


def test_mailgun_duplicate_delivery_keeps_provider_event_id() -> None:
    first = only(parse_mailgun(body("mailgun_opened.json")))
    again = only(parse_mailgun(body("mailgun_opened.json")))
    assert first == again
    assert first.provider_event_id == "-laxIqj9QWubsjY_3pTq_g"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "body must be an object"),
        (b'{"signature": {}}', "event-data must be an object"),
        (b'{"event-data": {"id": "x", "timestamp": 1}}', r"event-data\.event"),
        (b'{"event-data": {"event": "opened", "id": "x"}}', "timestamp"),
        (b'{"event-data": {"event": "opened", "id": "x", "timestamp": "1.5"}}', "Unix seconds"),
        (b'{"event-data": {"event": "opened", "timestamp": 1}}', r"event-data\.id"),
        (
            b'{"event-data": {"event": "opened", "id": "x", "timestamp": 1, "message": "m"}}',
            r"event-data\.message must be an object",
        ),
        (
            b'{"event-data": {"event": "opened", "id": "x", "timestamp": 1, "user-variables": []}}',
            r"user-variables must be an object",
        ),
    ],
)
def test_mailgun_malformed(payload: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_mailgun(payload)


# --- Twilio --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "kind", "error_code"),
    [
        ("twilio_sms_queued.form", EventKind.QUEUED, None),
        ("twilio_sms_sent.form", EventKind.SENT, None),
        ("twilio_sms_delivered.form", EventKind.DELIVERED, None),
        ("twilio_sms_undelivered.form", EventKind.FAILED, "30003"),
        ("twilio_sms_failed.form", EventKind.FAILED, "30008"),
        ("twilio_whatsapp_sent.form", EventKind.SENT, None),
        ("twilio_whatsapp_read.form", EventKind.READ, None),
        ("twilio_whatsapp_failed.form", EventKind.FAILED, "63016"),
    ],
)
def test_twilio_message_statuses(fixture: str, kind: EventKind, error_code: str | None) -> None:
    fields = form(fixture)
    event = only(parse_twilio(fields, received_at=RECEIVED))
    assert event.provider is Provider.TWILIO
    assert event.kind is kind
    assert event.error_code == error_code
    assert event.provider_message_id == "SM1342fe1b2c904d1ab04f0fc7a58abca9"
    assert event.our_message_id is None
    assert event.recipient == fields["To"]
    assert event.occurred_at == RECEIVED
    assert (
        event.provider_event_id == f"SM1342fe1b2c904d1ab04f0fc7a58abca9:{fields['MessageStatus']}"
    )
    assert event.raw == fields


def test_twilio_whatsapp_recipient_as_given() -> None:
    event = only(parse_twilio(form("twilio_whatsapp_read.form"), received_at=RECEIVED))
    assert event.recipient == "whatsapp:+15558675310"


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("twilio_call_queued.form", EventKind.QUEUED),
        ("twilio_call_initiated.form", EventKind.QUEUED),
        ("twilio_call_ringing.form", EventKind.SENT),
        ("twilio_call_in_progress.form", EventKind.ANSWERED),
        ("twilio_call_completed.form", EventKind.ANSWERED),
        ("twilio_call_completed_machine.form", EventKind.VOICEMAIL),
        ("twilio_call_busy.form", EventKind.BUSY),
        ("twilio_call_no_answer.form", EventKind.NO_ANSWER),
        ("twilio_call_failed.form", EventKind.FAILED),
        ("twilio_call_canceled.form", EventKind.DROPPED),
    ],
)
def test_twilio_call_statuses(fixture: str, kind: EventKind) -> None:
    fields = form(fixture)
    event = only(parse_twilio(fields))
    assert event.kind is kind
    assert event.provider_message_id == "CAafd5c6ef1e0b7a8d0ea4a8c7b34f5e19"
    assert event.provider_event_id == f"CAafd5c6ef1e0b7a8d0ea4a8c7b34f5e19:{fields['CallStatus']}"
    assert event.recipient == "+15558675310"
    assert event.occurred_at == datetime(2024, 5, 14, 17, 3, 35, tzinfo=UTC)


def test_twilio_in_progress_answered_by_machine_is_voicemail() -> None:
    fields = form("twilio_call_in_progress.form") | {"AnsweredBy": "machine_start"}
    assert only(parse_twilio(fields)).kind is EventKind.VOICEMAIL
    fields["AnsweredBy"] = "unknown"
    assert only(parse_twilio(fields)).kind is EventKind.ANSWERED


def test_twilio_failed_call_error_code() -> None:
    assert only(parse_twilio(form("twilio_call_failed.form"))).error_code == "32009"


def test_twilio_timestamp_offset_is_normalized_to_utc() -> None:
    fields = form("twilio_call_busy.form") | {"Timestamp": "Tue, 14 May 2024 19:03:35 +0200"}
    occurred = only(parse_twilio(fields)).occurred_at
    assert occurred == datetime(2024, 5, 14, 17, 3, 35, tzinfo=UTC)
    assert occurred.utcoffset() == timedelta(0)


def test_twilio_timestamp_wins_over_received_at() -> None:
    event = only(parse_twilio(form("twilio_call_busy.form"), received_at=RECEIVED))
    assert event.occurred_at == datetime(2024, 5, 14, 17, 3, 35, tzinfo=UTC)


def test_twilio_received_at_is_converted_to_utc() -> None:
    local = RECEIVED.astimezone(timezone(timedelta(hours=-5)))
    event = only(parse_twilio(form("twilio_sms_sent.form"), received_at=local))
    assert event.occurred_at == RECEIVED
    assert event.occurred_at.tzinfo is UTC


@pytest.mark.parametrize("received_at", [None, datetime(2024, 5, 14)])  # noqa: DTZ001
def test_twilio_message_callback_needs_aware_received_at(received_at: datetime | None) -> None:
    with pytest.raises(ValueError, match="received_at") as caught:
        parse_twilio(form("twilio_sms_sent.form"), received_at=received_at)
    assert not isinstance(caught.value, MalformedPayload)


def test_twilio_unknown_and_transient_statuses_are_ignored() -> None:
    assert parse_twilio(form("twilio_sms_sending.form")) == ParseResult(ignored=("sending",))
    scheduled = form("twilio_sms_sent.form") | {"MessageStatus": "scheduled"}
    assert parse_twilio(scheduled).ignored == ("scheduled",)


def test_twilio_zero_error_code_is_no_error() -> None:
    fields = form("twilio_sms_delivered.form") | {"ErrorCode": "0"}
    assert only(parse_twilio(fields, received_at=RECEIVED)).error_code is None


def test_twilio_retry_keeps_provider_event_id() -> None:
    first = only(parse_twilio(form("twilio_sms_delivered.form"), received_at=RECEIVED))
    later = RECEIVED + timedelta(minutes=3)
    retry = only(parse_twilio(form("twilio_sms_delivered.form"), received_at=later))
    assert retry.provider_event_id == first.provider_event_id


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"AccountSid": "AC1"}, "neither MessageStatus nor CallStatus"),
        ({"MessageStatus": "sent"}, r"form\.MessageSid"),
        ({"MessageStatus": "", "MessageSid": "SM1"}, r"form\.MessageStatus"),
        ({"CallStatus": "busy"}, r"form\.CallSid"),
        ({"CallStatus": "busy", "CallSid": "CA1", "Timestamp": "yesterday"}, "RFC 2822"),
        (
            {"CallStatus": "busy", "CallSid": "CA1", "Timestamp": "Tue, 14 May 2024 17:03:35"},
            "no UTC offset",
        ),
    ],
)
def test_twilio_malformed(fields: dict[str, str], message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_twilio(fields, received_at=RECEIVED)


# --- WhatsApp Cloud API --------------------------------------------------------------------

WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA"


@pytest.mark.parametrize(
    ("fixture", "kind", "seconds"),
    [
        ("whatsapp_sent.json", EventKind.SENT, 1750030073),
        ("whatsapp_delivered.json", EventKind.DELIVERED, 1750030074),
        ("whatsapp_read.json", EventKind.READ, 1750030081),
        ("whatsapp_failed.json", EventKind.FAILED, 1750030075),
    ],
)
def test_whatsapp_statuses(fixture: str, kind: EventKind, seconds: int) -> None:
    raw = json.loads(body(fixture))["entry"][0]["changes"][0]["value"]["statuses"][0]
    event = only(parse_whatsapp(body(fixture)))
    assert event.provider is Provider.WHATSAPP
    assert event.kind is kind
    assert event.provider_message_id == WAMID
    assert event.our_message_id is None
    assert event.recipient == "16505551234"
    assert event.occurred_at == datetime.fromtimestamp(seconds, tz=UTC)
    assert event.provider_event_id == f"{WAMID}:{raw['status']}"
    assert event.raw == raw


def test_whatsapp_epoch_string_timestamp() -> None:
    event = only(parse_whatsapp(body("whatsapp_sent.json")))
    assert event.occurred_at == datetime(2025, 6, 15, 23, 27, 53, tzinfo=UTC)


def test_whatsapp_failed_carries_first_error() -> None:
    event = only(parse_whatsapp(body("whatsapp_failed.json")))
    assert event.error_code == "131050"
    assert event.reason is not None
    assert event.reason.startswith("Unable to deliver the message.")
    assert only(parse_whatsapp(body("whatsapp_read.json"))).error_code is None


def test_whatsapp_batches_across_entries_and_changes() -> None:
    payload = json.loads(body("whatsapp_sent.json"))
    statuses = payload["entry"][0]["changes"][0]["value"]["statuses"]
    for name in ("delivered", "read"):
        other = json.loads(body(f"whatsapp_{name}.json"))
        statuses.extend(other["entry"][0]["changes"][0]["value"]["statuses"])
    statuses.append({"id": WAMID, "status": "deleted", "timestamp": "1750030090"})
    inbound = json.loads(body("whatsapp_inbound_message.json"))
    failed = json.loads(body("whatsapp_failed.json"))
    payload["entry"] += inbound["entry"] + failed["entry"]
    result = parse_whatsapp(json.dumps(payload).encode())
    assert [e.kind for e in result.events] == [
        EventKind.SENT,
        EventKind.DELIVERED,
        EventKind.READ,
        EventKind.FAILED,
    ]
    assert result.ignored == ("deleted",)


def test_whatsapp_inbound_messages_are_not_events() -> None:
    assert parse_whatsapp(body("whatsapp_inbound_message.json")) == ParseResult()


def test_whatsapp_duplicate_status_keeps_provider_event_id() -> None:
    payload = json.loads(body("whatsapp_delivered.json"))
    statuses = payload["entry"][0]["changes"][0]["value"]["statuses"]
    statuses.append(dict(statuses[0]))
    first, second = parse_whatsapp(json.dumps(payload).encode()).events
    assert first.provider_event_id == second.provider_event_id == f"{WAMID}:delivered"


def _status_payload(status: object) -> bytes:
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": status}]}],
        }
    ).encode()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"<xml/>", "not valid JSON"),
        (b"[]", "body must be an object"),
        (b'{"object": "page", "entry": []}', "whatsapp_business_account"),
        (b'{"object": "whatsapp_business_account"}', r"body\.entry must be an array"),
        (b'{"object": "whatsapp_business_account", "entry": [{}]}', r"entry\[0\]\.changes"),
        (_status_payload([]), r"changes\[0\]\.value must be an object"),
        (_status_payload({"statuses": {}}), r"value\.statuses must be an array"),
        (_status_payload({"statuses": [{"id": "w", "timestamp": "1"}]}), r"\.status must"),
        (_status_payload({"statuses": [{"status": "read", "timestamp": "1"}]}), r"\.id must"),
        (_status_payload({"statuses": [{"id": "w", "status": "read"}]}), "timestamp"),
        (
            _status_payload({"statuses": [{"id": "w", "status": "read", "timestamp": "1.5"}]}),
            "Unix seconds",
        ),
        (
            _status_payload(
                {"statuses": [{"id": "w", "status": "failed", "timestamp": "1", "errors": {}}]}
            ),
            r"errors must be an array",
        ),
    ],
)
def test_whatsapp_malformed(payload: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_whatsapp(payload)


# --- the event itself ----------------------------------------------------------------------


def _event(**changes: object) -> DeliveryEvent:
    fields: dict[str, object] = {
        "provider": Provider.SENDGRID,
        "kind": EventKind.DELIVERED,
        "provider_message_id": "m",
        "our_message_id": None,
        "recipient": "a@example.com",
        "occurred_at": RECEIVED,
        "provider_event_id": "e",
    }
    fields.update(changes)
    return DeliveryEvent(**fields)  # type: ignore[arg-type]


def test_event_requires_aware_utc_time() -> None:
    with pytest.raises(ValueError, match="UTC"):
        _event(occurred_at=datetime(2024, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="UTC"):
        _event(occurred_at=RECEIVED.astimezone(timezone(timedelta(hours=2))))


def test_bounce_class_only_on_bounced() -> None:
    with pytest.raises(ValueError, match="bounce"):
        _event(bounce="hard")
    assert _event(kind=EventKind.BOUNCED, bounce="soft").bounce == "soft"


def test_event_is_frozen_and_hashable() -> None:
    event = _event()
    with pytest.raises(AttributeError):
        event.kind = EventKind.FAILED  # type: ignore[misc]
    assert hash(event) == hash(_event(raw={"other": 1}))
