"""Data-subject requests: find everything held about one person, hand it over (export), or
forget it (erasure) — each step audited, with no personal data in the audit trail.

A person is named by an e-mail address, a phone number or a lead id. Their leads are the ones
holding that address (e-mail compared case-insensitively, phone as E.164, both normalized the
way capture normalizes them) plus the leads merged into or with them; everything else hangs off
those leads (drafts, approvals, messages, delivery events, replies, scores, outcomes,
assignments, consents, campaign membership), off their messages' provider ids (events no tenant
could be found for yet), or mentions their ids or addresses (events in the outbox and their
webhook deliveries, stored idempotent answers, dead letters, signed inbound payloads, replies
not yet matched to a lead).

Erasure deletes those rows in the caller's transaction, child tables first so the purge summary
counts every table itself, and keeps — or adds — the keyed-hash suppression of each of the
person's addresses, so they are never contacted again. Audit rows stay: they hold ids and hashes
only, the database refuses to change them, and the chain still verifies.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Table,
    Text,
    case,
    cast,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay import models as all_models
from leadrelay.capture.normalize import normalize_email, normalize_phone
from leadrelay.compliance.audit import append_events, neutralize_cell
from leadrelay.compliance.models import DsarRequest
from leadrelay.core.errors import Conflict, NotFound, ValidationFailed
from leadrelay.core.security import keyed_hash
from leadrelay.identity.service import Principal
from leadrelay.outreach import suppression
from leadrelay.outreach.models import SuppressionReason
from leadrelay.routing.service import close_for_leads

DUE_AFTER = timedelta(days=30)  # GDPR art. 12(3): one month to answer
EXPORT_FORMAT = 1
TABLES = all_models.metadata.tables


class DsarKind(StrEnum):
    EXPORT = "export"
    ERASURE = "erasure"


class DsarStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    REJECTED = "rejected"
    FAILED = "failed"


class SubjectKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    LEAD = "lead"


class DsarNotFound(NotFound):
    """The data-subject request does not exist."""


class DsarNotOpen(Conflict):
    """The data-subject request is no longer open."""

    code = "dsar-not-open"


class DsarWrongKind(Conflict):
    """This action does not apply to this kind of data-subject request."""

    code = "dsar-wrong-kind"


class ConfirmationMismatch(ValidationFailed):
    """Type the confirmation exactly as asked."""

    code = "confirmation-mismatch"


# --- subjects --------------------------------------------------------------------------------


def check_subject(kind: SubjectKind, raw: str, *, default_region: str | None) -> str:
    """The subject as it is matched and hashed, or a 422 naming the `subject` field."""
    text = raw.strip()
    if kind is SubjectKind.EMAIL:
        email = normalize_email(text)
        if email.value is None:
            raise ValidationFailed(
                "Not an e-mail address.",
                errors=[{"field": "subject", "message": email.error or "invalid"}],
            )
        return email.value
    if kind is SubjectKind.PHONE:
        phone = normalize_phone(text, default_region=default_region)
        if phone.e164 is None:
            reason = phone.error or "invalid"
            if reason == "missing_region":
                reason = "no country code: start with + or give the region"
            raise ValidationFailed(
                "Not a phone number.", errors=[{"field": "subject", "message": reason}]
            )
        return phone.e164
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ValidationFailed(
            "Not a lead id.", errors=[{"field": "subject", "message": "expected a UUID"}]
        ) from None


def subject_hash(keys: str, kind: SubjectKind, subject: str) -> str:
    """For an address, the very hash its suppression is stored under."""
    if kind is SubjectKind.EMAIL:
        return suppression.address_hash(keys, "email", subject.casefold())
    if kind is SubjectKind.PHONE:
        return suppression.address_hash(keys, "phone", subject)
    return keyed_hash(keys, "dsar:lead", subject)


def confirmation_phrase(request: DsarRequest) -> str:
    return f"erase {request.subject}"


# --- finding the person ----------------------------------------------------------------------


@dataclass
class Person:
    """Every id and address that is this person's, found once and used by export and erasure."""

    tenant_id: uuid.UUID
    lead_ids: list[uuid.UUID] = field(default_factory=list)
    emails: set[str] = field(default_factory=set)  # casefolded
    phones: set[str] = field(default_factory=set)  # E.164
    draft_ids: list[uuid.UUID] = field(default_factory=list)
    message_ids: list[uuid.UUID] = field(default_factory=list)
    provider_message_ids: list[str] = field(default_factory=list)
    lead_message_ids: list[uuid.UUID] = field(default_factory=list)
    inbound_ids: list[uuid.UUID] = field(default_factory=list)
    event_ids: list[uuid.UUID] = field(default_factory=list)
    delivery_ids: list[uuid.UUID] = field(default_factory=list)
    unmatched_ids: list[uuid.UUID] = field(default_factory=list)
    idempotency_ids: list[int] = field(default_factory=list)
    dead_letter_ids: list[uuid.UUID] = field(default_factory=list)

    def address_patterns(self) -> list[str]:
        """ILIKE patterns for the addresses as any payload may spell them (WhatsApp gives a
        number without its +)."""
        values = {*self.emails, *self.phones, *(p.lstrip("+") for p in self.phones)}
        return [f"%{_escape_like(v)}%" for v in sorted(values) if len(v) >= 5]

    def id_patterns(self) -> list[str]:
        ids = [*self.lead_ids, *self.message_ids, *self.draft_ids, *self.lead_message_ids]
        return [f"%{i}%" for i in ids]


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _mentions(column: Any, patterns: Sequence[str]) -> ColumnElement[bool]:
    """The column's text (JSONB as its JSON text) contains one of the patterns."""
    if not patterns:
        return false()
    as_text = cast(column, Text)
    return or_(*[as_text.ilike(pattern, escape="\\") for pattern in patterns])


async def _ids(session: AsyncSession, query: Any) -> list[Any]:
    return list(await session.scalars(query))


async def _seed_leads(
    session: AsyncSession, tenant_id: uuid.UUID, kind: SubjectKind, subject: str
) -> list[uuid.UUID]:
    leads = TABLES["leads"]
    condition: ColumnElement[bool]
    if kind is SubjectKind.EMAIL:
        # ix_leads_tenant_id_lower_email: any case of the address, on its index.
        condition = func.lower(leads.c.email) == subject.lower()
    elif kind is SubjectKind.PHONE:
        condition = leads.c.phone_e164 == subject
    else:
        condition = leads.c.id == uuid.UUID(subject)
    return await _ids(session, select(leads.c.id).where(leads.c.tenant_id == tenant_id, condition))


async def _merge_closure(session: AsyncSession, seeds: list[uuid.UUID]) -> list[uuid.UUID]:
    """The seeds and every lead merged into or with them (a merge said: the same person)."""
    merges, leads = TABLES["lead_merges"], TABLES["leads"]
    found = set(seeds)
    frontier = list(seeds)
    while frontier:
        linked = await _ids(
            session,
            select(merges.c.merged_id)
            .where(merges.c.survivor_id.in_(frontier), merges.c.undone_at.is_(None))
            .union(
                select(merges.c.survivor_id).where(
                    merges.c.merged_id.in_(frontier), merges.c.undone_at.is_(None)
                ),
                select(leads.c.merged_into_id).where(
                    leads.c.id.in_(frontier), leads.c.merged_into_id.is_not(None)
                ),
            ),
        )
        frontier = [i for i in linked if i not in found]
        found.update(frontier)
    return sorted(found)


async def find_person(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    kind: SubjectKind,
    subject: str,
    *,
    references: bool = False,
) -> Person:
    """Every id and address of the person named by `subject` in the tenant; with
    `references`, also the outbox events (and their webhook deliveries) naming their ids.

    The tables read whole (replies not yet matched, signed inbound payloads, stored answers,
    dead letters, outbox events) are filtered on tenant_id explicitly as well: PostgreSQL then
    checks the row-level-security policy once, not once per row."""
    person = Person(tenant_id)
    if kind is SubjectKind.EMAIL:
        person.emails.add(subject.casefold())
    elif kind is SubjectKind.PHONE:
        person.phones.add(subject)
    seeds = await _seed_leads(session, tenant_id, kind, subject)
    person.lead_ids = await _merge_closure(session, seeds)
    t = TABLES
    ids = person.lead_ids
    if ids:
        leads = t["leads"]
        for email, phone in await session.execute(
            select(leads.c.email, leads.c.phone_e164).where(leads.c.id.in_(ids))
        ):
            if email:
                person.emails.add(str(email).casefold())
            if phone:
                person.phones.add(str(phone))
        person.draft_ids = await _ids(
            session, select(t["drafts"].c.id).where(t["drafts"].c.lead_id.in_(ids))
        )
        messages = t["messages"]
        for message_id, provider_id in await session.execute(
            select(messages.c.id, messages.c.provider_message_id).where(messages.c.lead_id.in_(ids))
        ):
            person.message_ids.append(message_id)
            if provider_id:
                person.provider_message_ids.append(str(provider_id))
    addresses = person.address_patterns()
    lead_messages = t["lead_messages"]
    person.lead_message_ids = await _ids(
        session,
        select(lead_messages.c.id).where(
            lead_messages.c.tenant_id == tenant_id,
            or_(
                lead_messages.c.lead_id.in_(ids) if ids else false(),
                # A reply not yet matched to a lead names only its sender.
                lead_messages.c.lead_id.is_(None)
                & or_(
                    _mentions(lead_messages.c.raw, addresses),
                    _mentions(lead_messages.c.body, addresses),
                ),
            ),
        ),
    )
    if addresses:
        inbound = t["inbound_messages"]
        person.inbound_ids = await _ids(
            session,
            select(inbound.c.id).where(
                inbound.c.tenant_id == tenant_id, _mentions(inbound.c.payload, addresses)
            ),
        )
    if references:
        person.event_ids = await _event_ids(session, person)
    if person.event_ids:
        deliveries = t["webhook_deliveries"]
        person.delivery_ids = await _ids(
            session, select(deliveries.c.id).where(deliveries.c.event_id.in_(person.event_ids))
        )
    unmatched = t["unmatched_delivery_events"]
    if person.message_ids:
        person.unmatched_ids = await _ids(
            session,
            select(unmatched.c.id).where(
                or_(
                    unmatched.c.provider_message_id.in_(person.provider_message_ids)
                    if person.provider_message_ids
                    else false(),
                    unmatched.c.our_message_id.in_([str(i) for i in person.message_ids]),
                )
            ),
        )
    patterns = person.id_patterns() + addresses
    if patterns:
        keys_table, letters = t["idempotency_keys"], t["dead_letters"]
        person.idempotency_ids = await _ids(
            session,
            select(keys_table.c.id).where(
                keys_table.c.tenant_id == tenant_id, _mentions(keys_table.c.response, patterns)
            ),
        )
        person.dead_letter_ids = await _ids(
            session,
            select(letters.c.id).where(
                letters.c.tenant_id == tenant_id, _mentions(letters.c.payload, patterns)
            ),
        )
    return person


async def _event_ids(session: AsyncSession, person: Person) -> list[uuid.UUID]:
    """Outbox events naming one of the person's leads, messages or replies (payloads hold
    ids, by the same rule as the audit trail)."""
    events = TABLES["outbox_events"]
    payload = events.c.payload
    by_key: list[tuple[str, list[str]]] = [
        ("lead_id", [str(i) for i in person.lead_ids]),
        ("merged_id", [str(i) for i in person.lead_ids]),
        ("message_id", [str(i) for i in (*person.message_ids, *person.inbound_ids)]),
        ("lead_message_id", [str(i) for i in person.lead_message_ids]),
        ("draft_id", [str(i) for i in person.draft_ids]),
    ]
    conditions = [payload[key].astext.in_(values) for key, values in by_key if values]
    if not conditions:
        return []
    return await _ids(
        session, select(events.c.id).where(events.c.tenant_id == person.tenant_id, or_(*conditions))
    )


# --- what belongs to the person, table by table ----------------------------------------------


def _in(column: Any, values: Sequence[Any]) -> ColumnElement[bool] | None:
    return column.in_(list(values)) if values else None


def person_rows(person: Person) -> list[tuple[str, ColumnElement[bool] | None]]:
    """(table, the person's rows in it), children before parents: the erasure order. None: the
    person has nothing there."""
    t = TABLES
    lead_ids = person.lead_ids

    def by_lead(name: str) -> tuple[str, ColumnElement[bool] | None]:
        return name, _in(t[name].c.lead_id, lead_ids)

    def either(name: str, a: str, b: str) -> tuple[str, ColumnElement[bool] | None]:
        if not lead_ids:
            return name, None
        return name, or_(t[name].c[a].in_(lead_ids), t[name].c[b].in_(lead_ids))

    return [
        ("delivery_events", _in(t["delivery_events"].c.message_id, person.message_ids)),
        (
            "unmatched_delivery_events",
            _in(t["unmatched_delivery_events"].c.id, person.unmatched_ids),
        ),
        ("approvals", _in(t["approvals"].c.draft_id, person.draft_ids)),
        by_lead("campaign_members"),
        by_lead("consents"),
        ("lead_messages", _in(t["lead_messages"].c.id, person.lead_message_ids)),
        ("messages", _in(t["messages"].c.id, person.message_ids)),
        ("draft_revisions", _in(t["draft_revisions"].c.draft_id, person.draft_ids)),
        ("drafts", _in(t["drafts"].c.id, person.draft_ids)),
        by_lead("lead_scores"),
        by_lead("lead_outcomes"),
        by_lead("lead_assignments"),
        by_lead("lead_observations"),
        by_lead("lead_external_ids"),
        either("lead_merges", "survivor_id", "merged_id"),
        either("match_reviews", "lead_a_id", "lead_b_id"),
        by_lead("lead_import_issues"),
        ("inbound_messages", _in(t["inbound_messages"].c.id, person.inbound_ids)),
        ("idempotency_keys", _in(t["idempotency_keys"].c.id, person.idempotency_ids)),
        ("dead_letters", _in(t["dead_letters"].c.id, person.dead_letter_ids)),
        ("leads", _in(t["leads"].c.id, lead_ids)),
    ]


def _references(person: Person, keys: str) -> list[tuple[str, ColumnElement[bool] | None]]:
    """What the export lists beside the person's rows and erasure keeps: outbox events naming
    their records and those events' webhook deliveries, audit events about their records (all
    ids and hashes only, by the same rule: `core.events` payloads carry ids, never personal
    data), and the suppressions and do-not-call entries of their addresses (keyed hashes)."""
    t = TABLES
    targets = [
        str(i)
        for i in (
            *person.lead_ids,
            *person.message_ids,
            *person.draft_ids,
            *person.lead_message_ids,
        )
    ]
    hashes = [suppression.address_hash(keys, "email", e) for e in sorted(person.emails)] + [
        suppression.address_hash(keys, "phone", p) for p in sorted(person.phones)
    ]
    phone_hashes = [suppression.address_hash(keys, "phone", p) for p in sorted(person.phones)]
    return [
        (
            "webhook_delivery_attempts",
            _in(t["webhook_delivery_attempts"].c.delivery_id, person.delivery_ids),
        ),
        ("webhook_deliveries", _in(t["webhook_deliveries"].c.id, person.delivery_ids)),
        ("outbox_events", _in(t["outbox_events"].c.id, person.event_ids)),
        ("audit_events", _in(t["audit_events"].c.target_id, targets)),
        ("suppressions", _in(t["suppressions"].c.address_hash, hashes)),
        ("dnc_entries", _in(t["dnc_entries"].c.phone_hash, phone_hashes)),
    ]


# --- requests --------------------------------------------------------------------------------


async def open_request(
    session: AsyncSession,
    actor: Principal,
    *,
    keys: str,
    kind: DsarKind,
    subject_kind: SubjectKind,
    subject: str,
    default_region: str | None,
    now: datetime,
    note: str | None = None,
) -> DsarRequest:
    """Record a request (answer due in 30 days); the audit event names its hash, not the
    subject."""
    normalized = check_subject(subject_kind, subject, default_region=default_region)
    row = DsarRequest(
        tenant_id=actor.tenant_id,
        kind=kind.value,
        status=DsarStatus.OPEN.value,
        subject_kind=subject_kind.value,
        subject=normalized,
        subject_hash=subject_hash(keys, subject_kind, normalized),
        requested_by=actor.name,
        requested_at=now,
        due_at=now + DUE_AFTER,
        note=note,
    )
    session.add(row)
    await session.flush()
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "dsar.opened",
                target_type="dsar_request",
                target_id=row.id,
                kind=row.kind,
                subject_kind=row.subject_kind,
                subject_hash=row.subject_hash,
                due_at=row.due_at.isoformat(),
            )
        ],
        now=now,
    )
    return row


async def access_request(
    session: AsyncSession, request_id: uuid.UUID, *, lock: bool = False
) -> DsarRequest:
    """The request (RLS keeps it to the session's tenant), or DsarNotFound."""
    query = select(DsarRequest).where(DsarRequest.id == request_id)
    if lock:
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None:
        raise DsarNotFound()
    return row


async def list_requests(
    session: AsyncSession, *, status: DsarStatus | None = None, limit: int = 200
) -> list[DsarRequest]:
    """Open ones first (oldest first: the nearest deadline), then the rest newest first."""
    query = select(DsarRequest)
    if status is not None:
        query = query.where(DsarRequest.status == status.value)
    is_open = DsarRequest.status == DsarStatus.OPEN.value
    rows = await session.scalars(
        query.order_by(
            case((is_open, 0), else_=1),
            case((is_open, DsarRequest.requested_at)).asc(),
            DsarRequest.requested_at.desc(),
        ).limit(limit)
    )
    return list(rows)


def is_overdue(request: DsarRequest, now: datetime) -> bool:
    return request.status == DsarStatus.OPEN.value and now > request.due_at


def age_days(request: DsarRequest, now: datetime) -> int:
    return max(0, (now - request.requested_at).days)


def _check_open(request: DsarRequest, kind: DsarKind) -> None:
    if request.kind != kind.value:
        raise DsarWrongKind(f"this is an {request.kind} request, not an {kind.value} request")
    if request.status != DsarStatus.OPEN.value:
        raise DsarNotOpen(f"the request is {request.status}")


async def reject_request(
    session: AsyncSession, actor: Principal, request_id: uuid.UUID, *, reason: str, now: datetime
) -> DsarRequest:
    """Refuse an open request (identity not proven, manifestly unfounded…) with the reason
    kept on the request; the audit event says only that it was rejected."""
    row = await access_request(session, request_id, lock=True)
    if row.status != DsarStatus.OPEN.value:
        raise DsarNotOpen(f"the request is {row.status}")
    row.status = DsarStatus.REJECTED.value
    row.note = reason
    row.completed_at = now
    await append_events(
        session,
        actor.tenant_id,
        [actor.audit("dsar.rejected", target_type="dsar_request", target_id=row.id, kind=row.kind)],
        now=now,
    )
    return row


# --- export ----------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return None  # encrypted secrets and the like: never the person's, never exported
    return value


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return neutralize_cell(json.dumps(value, sort_keys=True, ensure_ascii=False))
    return neutralize_cell(str(value))


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row[c]) for c in columns])
    return buffer.getvalue()


async def _rows(
    session: AsyncSession, table: Table, condition: ColumnElement[bool] | None
) -> list[dict[str, Any]]:
    if condition is None:
        return []
    pk = list(table.primary_key.columns)
    result = await session.execute(select(table).where(condition).order_by(*pk))
    return [{k: _json_value(v) for k, v in row.items()} for row in result.mappings()]


@dataclass(frozen=True, slots=True)
class Export:
    filename: str
    content: bytes
    counts: dict[str, int]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


async def collect(
    session: AsyncSession, person: Person, keys: str
) -> dict[str, tuple[list[str], list[dict[str, Any]]]]:
    """Every table's rows for the person: (columns, rows), every table listed even when empty."""
    found: dict[str, tuple[list[str], list[dict[str, Any]]]] = {}
    for name, condition in sorted(person_rows(person) + _references(person, keys)):
        table = TABLES[name]
        found[name] = ([c.name for c in table.columns], await _rows(session, table, condition))
    return found


def build_zip(
    request: DsarRequest,
    tables: dict[str, tuple[list[str], list[dict[str, Any]]]],
    *,
    now: datetime,
) -> bytes:
    """manifest.json, then json/<table>.json and csv/<table>.csv for every table."""
    manifest = {
        "format": EXPORT_FORMAT,
        "request_id": str(request.id),
        "tenant_id": str(request.tenant_id),
        "subject_kind": request.subject_kind,
        "subject": request.subject,
        "requested_at": request.requested_at.isoformat(),
        "generated_at": now.isoformat(),
        "tables": {name: len(rows) for name, (_, rows) in tables.items()},
        "notes": [
            "json/<table>.json and csv/<table>.csv hold the same rows.",
            "audit_events lists the audit trail's references to these records: ids and "
            "hashes only, never personal data.",
            "suppressions and dnc_entries are keyed hashes of the addresses: kept after an "
            "erasure so the person is never contacted again.",
            "CSV cells starting with = + - @ are prefixed with ' against formula injection.",
        ],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
        for name, (columns, rows) in tables.items():
            archive.writestr(
                f"json/{name}.json", json.dumps(rows, indent=2, ensure_ascii=False, default=str)
            )
            archive.writestr(f"csv/{name}.csv", _csv(columns, rows))
    return buffer.getvalue()


async def export_request(
    session: AsyncSession, actor: Principal, request_id: uuid.UUID, *, keys: str, now: datetime
) -> Export:
    """Build the ZIP of everything held about the person. The first export completes the
    request (counts per table in `result`); each download is audited with the archive's
    SHA-256."""
    request = await access_request(session, request_id, lock=True)
    if request.kind != DsarKind.EXPORT.value:
        raise DsarWrongKind("only an export request has an export")
    if request.status not in (DsarStatus.OPEN.value, DsarStatus.COMPLETED.value):
        raise DsarNotOpen(f"the request is {request.status}")
    if request.subject is None:
        raise DsarNotOpen("the subject was erased since")
    person = await find_person(
        session,
        request.tenant_id,
        SubjectKind(request.subject_kind),
        request.subject,
        references=True,
    )
    tables = await collect(session, person, keys)
    export = Export(
        filename=f"dsar-{request.id}.zip",
        content=build_zip(request, tables, now=now),
        counts={name: len(rows) for name, (_, rows) in tables.items() if rows},
    )
    if request.status == DsarStatus.OPEN.value:
        request.status = DsarStatus.COMPLETED.value
        request.completed_at = now
        request.result = {"tables": export.counts}
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "dsar.exported",
                target_type="dsar_request",
                target_id=request.id,
                counts=export.counts,
                sha256=export.sha256,
            )
        ],
        now=now,
    )
    return export


# --- erasure ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PurgeSummary:
    deleted: dict[str, int]  # rows per table, tables with none left out
    suppressed: dict[str, int]  # addresses suppressed by kind (already suppressed included)
    requests_cleared: int  # data-subject requests whose subject text was replaced by its hash

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def as_result(self) -> dict[str, object]:
        return {
            "deleted": self.deleted,
            "suppressed": self.suppressed,
            "requests_cleared": self.requests_cleared,
        }


async def purge(
    session: AsyncSession, actor: Principal, person: Person, *, keys: str, now: datetime
) -> PurgeSummary:
    """Delete the person's rows, children first, in the caller's transaction, and suppress
    their addresses (keyed hashes: kept). Open assignments are closed first, so their reps get
    the capacity back."""
    await close_for_leads(session, person.lead_ids, now=now)
    deleted: dict[str, int] = {}
    for name, condition in person_rows(person):
        if condition is None:
            continue
        result = await session.execute(TABLES[name].delete().where(condition))
        count = int(getattr(result, "rowcount", 0) or 0)
        if count:
            deleted[name] = count
    suppressed: dict[str, int] = {}
    addresses: list[tuple[Literal["email", "phone"], str]] = [
        *(("email", e) for e in sorted(person.emails)),
        *(("phone", p) for p in sorted(person.phones)),
    ]
    for kind, address in addresses:
        await suppression.suppress(
            session,
            actor,
            keys=keys,
            kind=kind,
            normalized=address,
            reason=SuppressionReason.ERASED,
            source="erasure",
            now=now,
        )
        suppressed[kind] = suppressed.get(kind, 0) + 1
    return PurgeSummary(deleted=deleted, suppressed=suppressed, requests_cleared=0)


async def erase_request(
    session: AsyncSession,
    actor: Principal,
    request_id: uuid.UUID,
    *,
    keys: str,
    confirmation: str,
    now: datetime,
) -> PurgeSummary:
    """Erase the person of an open erasure request, in the caller's one transaction; the
    request (and any other naming the same subject) keeps only the subject's hash."""
    request = await access_request(session, request_id, lock=True)
    _check_open(request, DsarKind.ERASURE)
    expected = confirmation_phrase(request)
    if " ".join(confirmation.split()).casefold() != expected.casefold():
        raise ConfirmationMismatch(
            f"type {expected!r} to confirm",
            errors=[{"field": "confirmation", "message": f"type exactly: {expected}"}],
        )
    if request.subject is None:  # an open request always has its subject
        raise DsarNotOpen("the subject was erased already")
    person = await find_person(
        session, request.tenant_id, SubjectKind(request.subject_kind), request.subject
    )
    summary = await purge(session, actor, person, keys=keys, now=now)
    cleared = await session.execute(
        update(DsarRequest)
        .where(DsarRequest.subject_hash == request.subject_hash, DsarRequest.subject.is_not(None))
        .values(subject=None)
        .execution_options(synchronize_session=False)
    )
    summary = PurgeSummary(
        deleted=summary.deleted,
        suppressed=summary.suppressed,
        requests_cleared=int(getattr(cleared, "rowcount", 0) or 0),
    )
    request.status = DsarStatus.COMPLETED.value
    request.completed_at = now
    request.subject = None
    request.result = summary.as_result()
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "dsar.erased",
                target_type="dsar_request",
                target_id=request.id,
                subject_hash=request.subject_hash,
                deleted=summary.deleted,
                suppressed=summary.suppressed,
                total=summary.total,
            )
        ],
        now=now,
    )
    return summary


async def preview(
    session: AsyncSession, tenant_id: uuid.UUID, kind: SubjectKind, subject: str
) -> dict[str, int]:
    """What an erasure of this subject would delete, rows per table (nothing is changed)."""
    person = await find_person(session, tenant_id, kind, subject)
    counts: dict[str, int] = {}
    for name, condition in person_rows(person):
        if condition is None:
            continue
        count = await session.scalar(
            select(func.count()).select_from(TABLES[name]).where(condition)
        )
        if count:
            counts[name] = int(count)
    return counts
