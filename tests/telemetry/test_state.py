"""The delivery state moves only forward, milestones keep their earliest time, and the events
that bar an address say so whatever order they come in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leadrelay.outreach.models import SuppressionReason
from leadrelay.telemetry.events import DeliveryEvent, EventKind, Provider
from leadrelay.telemetry.state import RANK, DeliveryState, advance, suppression_for

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def event(
    kind: EventKind,
    minutes: int = 0,
    *,
    provider: Provider = Provider.SENDGRID,
    bounce: str | None = None,
    error_code: str | None = None,
) -> DeliveryEvent:
    return DeliveryEvent(
        provider=provider,
        kind=kind,
        provider_message_id="pm-1",
        our_message_id=None,
        recipient="dana@northwind.example",
        occurred_at=T0 + timedelta(minutes=minutes),
        provider_event_id=f"{kind.value}-{minutes}",
        bounce=bounce,  # type: ignore[arg-type]
        error_code=error_code,
    )


def fold(*events: DeliveryEvent) -> tuple[DeliveryState, list[bool]]:
    state, moves = DeliveryState(), []
    for item in events:
        state, moved = advance(state, item)
        moves.append(moved)
    return state, moves


def test_every_kind_has_a_rank() -> None:
    assert set(RANK) == set(EventKind)


def test_in_order_events_walk_the_state_forward() -> None:
    state, moves = fold(
        event(EventKind.QUEUED, 0),
        event(EventKind.DELIVERED, 1),
        event(EventKind.OPENED, 5),
        event(EventKind.CLICKED, 6),
    )
    assert moves == [True, True, True, True]
    assert state.status == "clicked"
    assert (state.delivered_at, state.opened_at, state.clicked_at) == (
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=5),
        T0 + timedelta(minutes=6),
    )
    assert state.updated_at == T0 + timedelta(minutes=6)


def test_a_late_delivered_after_read_does_not_go_back_but_dates_delivery() -> None:
    state, moves = fold(event(EventKind.READ, 7), event(EventKind.DELIVERED, 2))
    assert moves == [True, False]
    assert state.status == "read"
    assert state.delivered_at == T0 + timedelta(minutes=2)  # the earliest proof of delivery
    assert state.opened_at == T0 + timedelta(minutes=7)


def test_an_open_alone_proves_delivery() -> None:
    state, _ = fold(event(EventKind.OPENED, 3))
    assert state.delivered_at == state.opened_at == T0 + timedelta(minutes=3)


def test_the_first_outcome_stands() -> None:
    state, moves = fold(event(EventKind.DELIVERED, 1), event(EventKind.BOUNCED, 9, bounce="hard"))
    assert moves == [True, False]
    assert state.status == "delivered"


def test_a_complaint_outranks_everything() -> None:
    state, _ = fold(event(EventKind.COMPLAINED, 1), event(EventKind.CLICKED, 2))
    assert state.status == "complained"


def test_a_repeated_event_changes_nothing() -> None:
    once, _ = fold(event(EventKind.DELIVERED, 1))
    twice, moves = fold(event(EventKind.DELIVERED, 1), event(EventKind.DELIVERED, 1))
    assert once == twice
    assert moves == [True, False]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (event(EventKind.BOUNCED, bounce="hard"), SuppressionReason.HARD_BOUNCE),
        (event(EventKind.BOUNCED, bounce="soft"), None),
        (event(EventKind.BOUNCED), None),  # the provider did not say: not known bad
        (event(EventKind.COMPLAINED), SuppressionReason.COMPLAINT),
        (event(EventKind.UNSUBSCRIBED), SuppressionReason.OPTED_OUT),
        (event(EventKind.DROPPED), None),
        (
            event(EventKind.FAILED, provider=Provider.TWILIO, error_code="21610"),
            SuppressionReason.OPTED_OUT,
        ),
        (
            event(EventKind.FAILED, provider=Provider.TWILIO, error_code="30006"),
            SuppressionReason.HARD_BOUNCE,
        ),
        (event(EventKind.FAILED, provider=Provider.TWILIO, error_code="30003"), None),
        (event(EventKind.FAILED, provider=Provider.WHATSAPP, error_code="21610"), None),
        (event(EventKind.DELIVERED), None),
    ],
)
def test_which_events_bar_the_address(
    item: DeliveryEvent, reason: SuppressionReason | None
) -> None:
    assert suppression_for(item) == reason
