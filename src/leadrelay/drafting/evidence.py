"""Evidence for drafting: what we know about a lead, where it came from, and how sure we are.

A draft may only say about a lead what a provenance row backs. This module turns the raw rows
(one per field, source and observation time) into one `Evidence` per field, with a confidence
marker that travels with every inserted value down to the sentence that uses it, so a reviewer
sees at a glance which words rest on a verified address and which on a two-year-old guess.

Pure: no database and no clock; the caller passes `now`.
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from leadrelay.drafting.records import slot_setters

# The lead fields the provenance table records; templates may reference these and `first_name`.
LEAD_FIELDS: tuple[str, ...] = (
    "full_name",
    "email",
    "phone_e164",
    "company",
    "domain",
    "city",
    "country",
    "title",
)
DERIVED_FIELDS: tuple[str, ...] = ("first_name",)
TEMPLATE_LEAD_FIELDS: frozenset[str] = frozenset(LEAD_FIELDS + DERIVED_FIELDS)

# A fact nobody has re-observed for a year (job title, employer, city) is as likely stale as not.
STALE_AFTER = timedelta(days=365)

# Honorifics are not first names: "Dr. Jane Doe" is greeted as Jane.
_HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam"})


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    VOICE = "voice"


class Tone(StrEnum):
    FORMAL = "formal"
    FRIENDLY = "friendly"
    DIRECT = "direct"


class Length(StrEnum):
    SHORT = "short"
    MEDIUM = "medium"
    LONG = "long"


class Confidence(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


_RANK = {Confidence.LOW: 0, Confidence.MEDIUM: 1, Confidence.HIGH: 2}
# Enum members named on their class cost about ten global lookups each on Python 3.11 (`EnumType`
# has a `__getattr__`, which sends every class attribute through a slow hook); hot code uses these.
_HIGH, _MEDIUM, _LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW


def lowest(confidences: Iterable[Confidence]) -> Confidence | None:
    """The weakest confidence, None for none: a sentence is only as sure as its weakest value."""
    return min(confidences, key=_RANK.__getitem__, default=None)


@dataclass(frozen=True, slots=True)
class Observation:
    """One provenance row: `source` saw `field` = `value` at `observed_at` (timezone-aware)."""

    field: str
    value: str
    raw_value: str | None
    source: str
    observed_at: datetime


@dataclass(frozen=True, slots=True)
class Evidence:
    """The value a draft may use for one field, with the provenance a reviewer needs.

    `sources` counts the distinct sources that agree (case-insensitively) with `value`.
    `derived_from` names the field a derived value was cut from (`first_name` ← `full_name`); the
    source and time are then that field's.
    """

    field: str
    value: str
    source: str
    observed_at: datetime
    confidence: Confidence
    sources: int
    derived_from: str | None = None

    def __init__(
        self,
        field: str,
        value: str,
        source: str,
        observed_at: datetime,
        confidence: Confidence,
        sources: int,
        derived_from: str | None = None,
    ) -> None:
        # One per field per draft: set through the slots (see `records`).
        (
            set_field,
            set_value,
            set_source,
            set_observed_at,
            set_confidence,
            set_sources,
            set_derived_from,
        ) = _EVIDENCE_SETTERS
        set_field(self, field)
        set_value(self, value)
        set_source(self, source)
        set_observed_at(self, observed_at)
        set_confidence(self, confidence)
        set_sources(self, sources)
        set_derived_from(self, derived_from)

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "value": self.value,
            "source": self.source,
            "observed_at": self.observed_at.isoformat(),
            "confidence": self.confidence.value,
            "sources": self.sources,
            "derived_from": self.derived_from,
        }


_EVIDENCE_SETTERS = slot_setters(
    Evidence,
    ("field", "value", "source", "observed_at", "confidence", "sources", "derived_from"),
)


@dataclass(frozen=True, slots=True)
class Sender:
    """The tenant's identity. Not lead evidence: the platform vouches for it, so never a gap."""

    name: str
    company: str
    postal_address: str
    email: str | None = None
    phone: str | None = None

    def __post_init__(self) -> None:
        # The compliance footer is built from these; an empty one would send an anonymous message.
        for name in ("name", "company", "postal_address"):
            if not getattr(self, name).strip():
                raise ValueError(f"sender {name} is required")


# Values as compared: cleaned (every lead field is single-line: collapsing whitespace keeps
# layout in the template's hands) and folded (sources agree case-insensitively). The same values
# (a company, a title, one value from several sources) come back from row to row and lead to
# lead, so each is worked out once; a plain dict, emptied when full, is looked up in a fraction
# of an lru_cache call, and a lead has a few dozen rows.
_COMPARED: dict[str, tuple[str, str]] = {}
_OBSERVED_AT = operator.attrgetter("observed_at")
MAX_COMPARED = 8192


def _compare_form(value: str) -> tuple[str, str]:
    cleaned = " ".join(value.split())
    if len(_COMPARED) >= MAX_COMPARED:
        _COMPARED.clear()
    compared = _COMPARED[value] = (cleaned, cleaned.casefold())
    return compared


def evidence_from(
    observations: Sequence[Observation],
    *,
    now: datetime,
    verified: Collection[str] = (),
) -> dict[str, Evidence]:
    """One `Evidence` per field from provenance rows.

    - The newest observation's value wins (on equal times, the later row). Blank values are no
      observation at all, so a blank field becomes a gap rather than an empty insertion.
    - Confidence: HIGH when the field is in `verified` (e.g. an email that passed a mailbox
      check); else LOW when the newest observation is older than a year, because agreement
      between old records does not make them current; else HIGH when at least two distinct
      sources agree on the value (case-insensitively); else MEDIUM.
    - Derived: `first_name` is the first token of `full_name` (an honorific such as "Dr." is
      skipped), carrying `full_name`'s source, time and confidence, with `derived_from` set.

    Times must be timezone-aware: comparing naive and aware times would silently misorder them.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    by_field: dict[str, list[Observation]] = {}  # in row order
    for observation in observations:
        if observation.observed_at.tzinfo is None:
            raise ValueError(f"observation of {observation.field} has a naive time")
        value = observation.value
        if (_COMPARED.get(value) or _compare_form(value))[0]:
            rows = by_field.get(observation.field)
            if rows is None:
                by_field[observation.field] = [observation]
            else:
                rows.append(observation)

    result: dict[str, Evidence] = {}
    for field in sorted(by_field):
        rows = by_field[field]
        # `max` keeps the first of equals: from the end, that is the later row, which wins a tie.
        newest = max(reversed(rows), key=_OBSERVED_AT)
        value, folded = _COMPARED.get(newest.value) or _compare_form(newest.value)
        agreeing = {
            row.source
            for row in rows
            if row.value == newest.value
            or (_COMPARED.get(row.value) or _compare_form(row.value))[1] == folded
        }
        if field in verified:
            confidence = _HIGH
        elif now - newest.observed_at > STALE_AFTER:
            confidence = _LOW
        elif len(agreeing) >= 2:
            confidence = _HIGH
        else:
            confidence = _MEDIUM
        result[field] = Evidence(
            field, value, newest.source, newest.observed_at, confidence, len(agreeing)
        )

    first = _first_name(result.get("full_name"))
    if first is not None:
        result["first_name"] = first
    return result


def _first_name(full_name: Evidence | None) -> Evidence | None:
    if full_name is None:
        return None
    tokens = full_name.value.split()
    while len(tokens) > 1 and tokens[0].rstrip(".").casefold() in _HONORIFICS:
        tokens = tokens[1:]
    first = tokens[0].strip(",")
    if not first:
        return None
    return Evidence(
        field="first_name",
        value=first,
        source=full_name.source,
        observed_at=full_name.observed_at,
        confidence=full_name.confidence,
        sources=full_name.sources,
        derived_from="full_name",
    )
