"""A message's delivery state from provider events that arrive late, twice and out of order.

Pure: the service feeds it the stored state and each new event, and writes back what it says.

* The state only moves forward. Each event kind has a rank; an event moves the state only
  when its rank is higher than the current one, so `delivered` arriving after `read` is kept
  as history but changes nothing. Outcomes of equal rank (delivered, bounced, failed, a
  call's answer …) do not replace one another: the first one stands.
* Milestones are the earliest time seen, whatever the arrival order: an `opened` that
  overtakes its `delivered` still dates delivery from the `delivered` event once it lands,
  and an open, a read or a click also proves delivery.
* Effects on the address (suppression) depend on the event alone, not on whether it moved
  the state: a hard bounce after `delivered` (a late DSN) still suppresses the address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from leadrelay.outreach.models import SuppressionReason
from leadrelay.telemetry.events import DeliveryEvent, EventKind, Provider

RANK: dict[EventKind, int] = {
    EventKind.QUEUED: 10,
    EventKind.SENT: 20,  # SMS: handed to the carrier; a call: ringing
    EventKind.DEFERRED: 30,  # a temporary failure: the provider keeps trying
    # Outcomes: the message reached its end one way or another.
    EventKind.DELIVERED: 50,
    EventKind.BOUNCED: 50,
    EventKind.DROPPED: 50,
    EventKind.FAILED: 50,
    EventKind.NO_ANSWER: 50,
    EventKind.BUSY: 50,
    EventKind.ANSWERED: 50,
    EventKind.VOICEMAIL: 50,
    # What the person did with it.
    EventKind.OPENED: 60,
    EventKind.READ: 60,
    EventKind.CLICKED: 70,
    EventKind.UNSUBSCRIBED: 80,
    EventKind.COMPLAINED: 90,
}

# Kinds that prove the message arrived, and those that prove it was opened.
_DELIVERED = frozenset(
    {
        EventKind.DELIVERED,
        EventKind.OPENED,
        EventKind.READ,
        EventKind.CLICKED,
        EventKind.ANSWERED,
        EventKind.VOICEMAIL,
    }
)
_OPENED = frozenset({EventKind.OPENED, EventKind.READ, EventKind.CLICKED})

# Twilio error codes that say the number itself cannot take our messages (Twilio's error
# dictionary): 21610 the recipient replied STOP (Twilio blocks every further send), 21211 and
# 21614 not a valid mobile number, 30005 unknown destination, 30006 landline or unreachable
# carrier. Other failures (30003 unreachable handset, 30007 carrier filtering …) can clear.
TWILIO_ADDRESS_ERRORS: dict[str, SuppressionReason] = {
    "21610": SuppressionReason.OPTED_OUT,
    "21211": SuppressionReason.HARD_BOUNCE,
    "21614": SuppressionReason.HARD_BOUNCE,
    "30005": SuppressionReason.HARD_BOUNCE,
    "30006": SuppressionReason.HARD_BOUNCE,
}


@dataclass(frozen=True, slots=True)
class DeliveryState:
    status: str | None = None
    rank: int = 0
    updated_at: datetime | None = None
    delivered_at: datetime | None = None
    opened_at: datetime | None = None
    clicked_at: datetime | None = None


def _earliest(current: datetime | None, seen: datetime) -> datetime:
    return seen if current is None or seen < current else current


def advance(state: DeliveryState, event: DeliveryEvent) -> tuple[DeliveryState, bool]:
    """The state after `event`, and whether the event moved the status forward."""
    kind, at = event.kind, event.occurred_at
    rank = RANK[kind]
    moved = rank > state.rank
    # One new state, built once (a webhook batch folds thousands of events).
    return DeliveryState(
        status=kind.value if moved else state.status,
        rank=rank if moved else state.rank,
        updated_at=at if moved else state.updated_at,
        delivered_at=_earliest(state.delivered_at, at)
        if kind in _DELIVERED
        else state.delivered_at,
        opened_at=_earliest(state.opened_at, at) if kind in _OPENED else state.opened_at,
        clicked_at=_earliest(state.clicked_at, at)
        if kind is EventKind.CLICKED
        else state.clicked_at,
    ), moved


def suppression_for(event: DeliveryEvent) -> SuppressionReason | None:
    """Why this event bars the recipient's address from further messages, if it does."""
    if event.kind is EventKind.BOUNCED and event.bounce == "hard":
        return SuppressionReason.HARD_BOUNCE
    if event.kind is EventKind.COMPLAINED:
        return SuppressionReason.COMPLAINT
    if event.kind is EventKind.UNSUBSCRIBED:
        return SuppressionReason.OPTED_OUT
    if event.kind is EventKind.FAILED and event.provider is Provider.TWILIO and event.error_code:
        return TWILIO_ADDRESS_ERRORS.get(event.error_code)
    return None
