"""Evidence for drafting: what we know about a lead, where it came from, and how sure we are.

A draft may only say about a lead what a provenance row backs. This module turns the raw rows
(one per field, source and observation time) into one `Evidence` per field, with a confidence
marker that travels with every inserted value down to the sentence that uses it, so a reviewer
sees at a glance which words rest on a verified address and which on a two-year-old guess.

Pure: no database and no clock; the caller passes `now`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from leadrelay.drafting.records import twin_of

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


_EvidenceFields = twin_of(Evidence)


def _new_evidence(
    field: str,
    value: str,
    source: str,
    observed_at: datetime,
    confidence: Confidence,
    sources: int,
    derived_from: str | None,
) -> Evidence:
    """`Evidence(...)`, made a few times cheaper (see `records`)."""
    made = _EvidenceFields()
    made.field = field
    made.value = value
    made.source = source
    made.observed_at = observed_at
    made.confidence = confidence
    made.sources = sources
    made.derived_from = derived_from
    made.__class__ = Evidence
    evidence: Evidence = made  # what it now is; no `cast`, a call per record
    return evidence


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
    # Each distinct value cleaned (every lead field is single-line: collapsing whitespace keeps
    # layout in the template's hands) and folded (sources agree case-insensitively) once, for a
    # value comes from several sources. Kept for this call only: no lead's data outlives it.
    compared: dict[str, tuple[str, str]] = {}
    by_field: dict[str, list[Observation]] = {}  # in row order
    for observation in observations:
        if observation.observed_at.tzinfo is None:
            raise ValueError(f"observation of {observation.field} has a naive time")
        value = observation.value
        forms = compared.get(value)
        if forms is None:
            cleaned = " ".join(value.split())
            forms = compared[value] = (cleaned, cleaned.casefold())
        if forms[0]:
            rows = by_field.get(observation.field)
            if rows is None:
                by_field[observation.field] = [observation]
            else:
                rows.append(observation)

    result: dict[str, Evidence] = {}
    for field in sorted(by_field):
        rows = by_field[field]
        newest = rows[0]
        for row in rows:
            if row.observed_at >= newest.observed_at:  # `>=`: the later row wins a tie
                newest = row
        value, folded = compared[newest.value]
        agreeing = {row.source for row in rows if compared[row.value][1] == folded}
        if field in verified:
            confidence = _HIGH
        elif now - newest.observed_at > STALE_AFTER:
            confidence = _LOW
        elif len(agreeing) >= 2:
            confidence = _HIGH
        else:
            confidence = _MEDIUM
        result[field] = _new_evidence(
            field, value, newest.source, newest.observed_at, confidence, len(agreeing), None
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
