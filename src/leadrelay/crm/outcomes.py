"""The one shape every CRM outcome connector produces.

HubSpot deals, a spreadsheet export and a webhook all say the same thing in the end: this
deal (or lead) was won, lost or disqualified, on this day, for this much. Connectors turn
their source's vocabulary into `OutcomeRecord`s so that matching outcomes to leads (and
learning from them) is written once, without knowing where a label came from.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class OutcomeLabel(StrEnum):
    WON = "won"
    LOST = "lost"
    DISQUALIFIED = "disqualified"


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    source: str  # "hubspot" | "csv" | "webhook"
    external_id: str  # idempotency key within the source, e.g. the HubSpot deal id
    label: OutcomeLabel
    closed_at: datetime  # tz-aware UTC
    amount: Decimal | None
    currency: str | None  # ISO 4217 upper-case, or None
    emails: tuple[str, ...]  # lower-cased contact e-mails to match leads by
    lead_id: uuid.UUID | None = None  # when the source names our lead directly
