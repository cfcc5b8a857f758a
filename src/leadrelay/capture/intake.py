"""One path in for every lead: API, batch, CSV import and signed webhooks all call `ingest`.

A chunk (one lead from the API, up to a thousand from a batch or a file) is normalized in
Python, matched exactly (same e-mail, or same external id from the same source) against the
tenant's leads in one query, and written with a handful of
set-based statements: new leads, provenance of every field, external ids, the outbox events
and one audit entry. Fuzzy matching and verification follow as jobs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture.models import FIELD_ORDER, Source
from leadrelay.compliance.audit import AuditEntry, append_events
from leadrelay.core.db import raw_connection
from leadrelay.core.events import emit_many
from leadrelay.core.jobs import defer

# Registered by capture.jobs (which imports this module).
DEDUP_TASK = "capture.dedup_leads"
VERIFY_TASK = "capture.verify_leads"
SCORE_TASK = "scoring.score_leads"  # registered by scoring.jobs; deferred after verification

# Fields a source may send (after column mapping); anything else is refused by name.
INPUT_FIELDS = (
    "full_name",
    "first_name",
    "last_name",
    "email",
    "phone",
    "company",
    "website",
    "city",
    "country",
    "title",
    "external_id",
)
STORED_FIELDS = (
    "full_name",
    "email",
    "phone_e164",
    "phone_type",
    "company",
    "company_key",
    "domain",
    "city",
    "country",
    "title",
)
# Provenance keeps the value each field was given from the raw input it came from (the
# input of the same name, but for these two).
_RAW_INPUT = {"phone_e164": "phone", "domain": "website"}
PROVENANCE = {field: _RAW_INPUT.get(field, field) for field in FIELD_ORDER}


class BusinessEmailPolicy(StrEnum):
    ALLOW = "allow"
    FLAG = "flag"  # accepted, flagged personal_email
    REFUSE = "refuse"  # personal-provider addresses are rejected


# Data minimization: the lead fields a tenant may choose to store (tenant settings
# `capture.allowed_fields`; absent = all). A name covers its parts (first and last name belong
# to full_name); the source's own external id is always kept, so a repeat delivery still
# matches the lead it made.
MINIMIZABLE_FIELDS = (
    "full_name",
    "email",
    "phone",
    "company",
    "website",
    "city",
    "country",
    "title",
)
_FIELD_PARTS = {"full_name": ("full_name", "first_name", "last_name")}


@dataclass(frozen=True, slots=True)
class CapturePolicy:
    business_email: BusinessEmailPolicy = BusinessEmailPolicy.FLAG
    allowed_fields: frozenset[str] | None = None  # None: every field is stored

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> CapturePolicy:
        value = settings.get("business_email_policy", BusinessEmailPolicy.FLAG.value)
        try:
            business_email = BusinessEmailPolicy(str(value))
        except ValueError:
            business_email = BusinessEmailPolicy.FLAG
        return cls(business_email=business_email, allowed_fields=allowed_fields(settings))

    def minimize(self, row: Mapping[str, str | None]) -> tuple[Mapping[str, str | None], list[str]]:
        """The row without the fields the tenant does not store, and the names of those that
        carried a value (reported on the row; their values are never stored)."""
        if self.allowed_fields is None:
            return row, []
        refused = {
            part
            for name in MINIMIZABLE_FIELDS
            if name not in self.allowed_fields
            for part in _FIELD_PARTS.get(name, (name,))
        }
        dropped = sorted(name for name in refused if row.get(name))
        if not dropped:
            return row, []
        return {k: v for k, v in row.items() if k not in refused}, dropped


def allowed_fields(settings: Mapping[str, Any]) -> frozenset[str] | None:
    """The tenant's allowlist (`capture.allowed_fields`), None when it has none."""
    capture = settings.get("capture")
    names = capture.get("allowed_fields") if isinstance(capture, Mapping) else None
    if not isinstance(names, list):
        return None
    return frozenset(str(n) for n in names if n in MINIMIZABLE_FIELDS)


@dataclass(frozen=True, slots=True)
class CleanLead:
    """A row after normalization: values to store, raw inputs, flags, field-level reasons."""

    values: dict[str, str | None]
    raw: dict[str, str | None]
    flags: tuple[str, ...] = ()
    errors: tuple[dict[str, str], ...] = ()


Normalizer = Callable[[Mapping[str, str | None], str | None], CleanLead]


class RowStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # an exact match: observations added to the existing lead
    REJECTED = "rejected"


@dataclass(slots=True)
class RowResult:
    index: int
    status: RowStatus
    lead_id: uuid.UUID | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    lead: dict[str, Any] = field(default_factory=dict)
    # Fields sent with a value that the tenant's allowlist does not store (data minimization).
    dropped_fields: list[str] = field(default_factory=list)


def decide(clean: CleanLead, policy: CapturePolicy) -> list[dict[str, str]]:
    """Reasons to reject the row; empty when it is acceptable."""
    reasons: list[dict[str, str]] = []
    values = clean.values
    if not values.get("email") and not values.get("phone_e164"):
        reasons.append({"field": "email", "reason": "no_valid_contact"})
    if "personal_email" in clean.flags and policy.business_email == BusinessEmailPolicy.REFUSE:
        reasons.append({"field": "email", "reason": "personal_email_refused"})
    return reasons


def _exact_keys(values: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """Keys that identify one person beyond doubt. A phone number does not: colleagues share a
    switchboard, so equal phones go to the fuzzy matcher, which also weighs the names."""
    return [("email", str(values["email"]))] if values.get("email") else []


# Never prepared (`prepare=False` where it runs): planned with the chunk's addresses as a
# constant, `= ANY` becomes a hash look-up — an index probe per address once the table's
# statistics are current, else one pass over the tenant's leads with a hash probe each. As a
# prepared statement its generic plan compared every lead with the whole array (no hashing
# for a parameter): 0.25 s a chunk at 30,000 leads while an import grew the table faster than
# autovacuum re-analysed it, the import's largest cost.
_FIND_EXISTING = "SELECT id, email FROM leads WHERE status = 'new' AND email = ANY(%b::text[])"
_FIND_EXTERNAL = (
    "SELECT external_id, lead_id FROM lead_external_ids "
    "WHERE source_id = %s AND external_id = ANY(%b::text[])"
)
_INSERT_LEADS = (
    "INSERT INTO leads (id, tenant_id, source_id, full_name, email, phone_e164, phone_type, "
    "company, company_key, domain, city, country, title, flags, created_at, updated_at) "
    "SELECT id, %s, %s, coalesce(full_name, ''), email, phone_e164, phone_type, company, "
    "company_key, domain, city, country, title, "
    "coalesce(string_to_array(flags, ','), '{}'), %s, %s "
    "FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[]) "
    "AS t(id, full_name, email, phone_e164, phone_type, company, company_key, domain, city, "
    "country, title, flags)"
)
# Exact duplicates fill the existing lead's empty fields; a value already there is never
# overwritten here (provenance keeps the other observation).
_FILL_EMPTY = (
    "UPDATE leads AS l SET "
    "full_name = CASE WHEN l.full_name = '' THEN coalesce(t.full_name, '') ELSE l.full_name END, "
    "email = coalesce(l.email, t.email), phone_e164 = coalesce(l.phone_e164, t.phone_e164), "
    "phone_type = coalesce(l.phone_type, t.phone_type), company = coalesce(l.company, t.company), "
    "company_key = coalesce(l.company_key, t.company_key), domain = coalesce(l.domain, t.domain), "
    "city = coalesce(l.city, t.city), country = coalesce(l.country, t.country), "
    "title = coalesce(l.title, t.title), updated_at = %s "
    "FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[]) "
    "AS t(id, full_name, email, phone_e164, phone_type, company, company_key, domain, city, "
    "country, title) WHERE l.id = t.id"
)
# One observation per lead and row: every field the row gave, its value kept and the raw
# value it came from, as one jsonb object (see models.LeadObservation).
_INSERT_OBSERVATIONS = (
    "INSERT INTO lead_observations (tenant_id, lead_id, source_id, import_id, observed_at, "
    "fields) SELECT %s, lead_id, %s, %s, %s, fields::jsonb "
    "FROM unnest(%b::uuid[], %b::text[]) AS t(lead_id, fields)"
)
_INSERT_EXTERNAL = (
    "INSERT INTO lead_external_ids (tenant_id, lead_id, source_id, external_id) "
    "SELECT %s, lead_id, %s, external_id FROM unnest(%b::uuid[], %b::text[]) "
    "AS t(lead_id, external_id) ON CONFLICT DO NOTHING"
)


THREAD_ROWS = 50


@dataclass(slots=True)
class PreparedChunk:
    """A chunk after normalization and the policy decision, before anything is matched or
    written: pure CPU, so a caller may prepare the next chunk while this one is written."""

    results: list[RowResult]
    cleans: list[CleanLead | None]  # None where the row is rejected


def prepare(
    rows: Sequence[Mapping[str, str | None]],
    normalize: Normalizer,
    region: str | None,
    policy: CapturePolicy,
) -> PreparedChunk:
    results: list[RowResult] = []
    cleans: list[CleanLead | None] = []
    for index, row in enumerate(rows):
        kept, dropped = policy.minimize(row)
        clean = normalize(kept, region)
        reasons = decide(clean, policy)
        results.append(
            RowResult(
                index,
                RowStatus.REJECTED if reasons else RowStatus.ACCEPTED,
                errors=reasons + list(clean.errors),
                lead={**clean.values, "flags": list(clean.flags)},
                dropped_fields=dropped,
            )
        )
        cleans.append(None if reasons else clean)
    return PreparedChunk(results, cleans)


def observation_json(clean: CleanLead) -> str:
    """The provenance of one row: each field given, with the raw input it came from."""
    fields = {}
    for stored, raw_name in PROVENANCE.items():
        value, raw = clean.values.get(stored), clean.raw.get(raw_name)
        if value is not None or raw:
            fields[stored] = {"value": value, "raw_value": raw}
    return json.dumps(fields, ensure_ascii=False)


def _columns(rows: Sequence[tuple[uuid.UUID, CleanLead]], names: Sequence[str]) -> list[Any]:
    return [[clean.values.get(name) for _, clean in rows] for name in names]


async def ingest(
    session: AsyncSession,
    source: Source,
    rows: Sequence[Mapping[str, str | None]],
    *,
    normalize: Normalizer,
    policy: CapturePolicy,
    now: datetime,
    actor_type: str = "system",
    actor_id: str | None = None,
    import_id: uuid.UUID | None = None,
    dry_run: bool = False,
    prepared: PreparedChunk | None = None,
) -> list[RowResult]:
    """Capture a chunk of rows from one (already accepted) source. Caller's transaction; the
    session is bound to the source's tenant. `dry_run` normalizes, matches and reports, and
    writes nothing. `prepared` is `prepare(rows, normalize, source.default_country, policy)`
    when the caller already ran it (the CSV import overlaps it with the previous chunk's
    writes)."""
    tenant_id = source.tenant_id
    if prepared is None:
        # Normalizing a chunk is pure CPU (tenths of a second for a thousand rows): off the
        # event loop, so the process keeps answering other requests meanwhile.
        args = (rows, normalize, source.default_country, policy)
        prepared = (
            await asyncio.to_thread(prepare, *args) if len(rows) >= THREAD_ROWS else prepare(*args)
        )
    results, cleans = prepared.results, prepared.cleans

    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        # Exact matches: by external id from this source, then by e-mail or phone.
        externals = [
            str(row.get("external_id"))
            for row, clean in zip(rows, cleans, strict=True)
            if clean is not None and row.get("external_id")
        ]
        by_external: dict[str, uuid.UUID] = {}
        if externals:
            await cursor.execute(_FIND_EXTERNAL, (source.id, externals))
            by_external = {str(e): lead for e, lead in await cursor.fetchall()}
        emails = [c.values["email"] for c in cleans if c is not None and c.values.get("email")]
        known: dict[tuple[str, str], uuid.UUID] = {}
        if emails:
            await cursor.execute(_FIND_EXISTING, (emails,), prepare=False)
            for lead_id, email in await cursor.fetchall():
                known.setdefault(("email", email), lead_id)

        new_rows: list[tuple[uuid.UUID, CleanLead]] = []
        duplicate_rows: list[tuple[uuid.UUID, CleanLead]] = []
        for result, row, accepted in zip(results, rows, cleans, strict=True):
            if accepted is None:
                continue
            external = row.get("external_id")
            match = by_external.get(str(external)) if external else None
            keys = _exact_keys(accepted.values)
            for key in keys:
                match = match or known.get(key)
            if match is not None:
                result.status, result.lead_id = RowStatus.DUPLICATE, match
                duplicate_rows.append((match, accepted))
            else:
                result.lead_id = uuid.uuid4()
                new_rows.append((result.lead_id, accepted))
            for key in keys:  # later rows of the same chunk match this one
                known.setdefault(key, result.lead_id)
            if external:  # the source's own id names one record, within the chunk too
                by_external.setdefault(str(external), result.lead_id)

        if dry_run:
            return results

        # Pipelined: no write needs another's result, so each statement's parameters are
        # built while the server runs the one before (the leads' insert, with its indexes
        # and funnel trigger, is the chunk's longest). Errors surface when it syncs, at the
        # block's end.
        async with connection.pipeline():
            if new_rows:
                await cursor.execute(
                    _INSERT_LEADS,
                    (
                        tenant_id,
                        source.id,
                        now,
                        now,
                        [lead_id for lead_id, _ in new_rows],
                        *_columns(new_rows, STORED_FIELDS),
                        [",".join(clean.flags) or None for _, clean in new_rows],
                    ),
                )
            if duplicate_rows:
                await cursor.execute(
                    _FILL_EMPTY,
                    (
                        now,
                        [lead_id for lead_id, _ in duplicate_rows],
                        *_columns(duplicate_rows, STORED_FIELDS),
                    ),
                )
            observed = [*new_rows, *duplicate_rows]
            if observed:
                await cursor.execute(
                    _INSERT_OBSERVATIONS,
                    (
                        tenant_id,
                        source.id,
                        import_id,
                        now,
                        [lead_id for lead_id, _ in observed],
                        [observation_json(clean) for _, clean in observed],
                    ),
                )
            ext_leads, ext_ids = [], []
            for result, row in zip(results, rows, strict=True):
                if result.lead_id is not None and row.get("external_id"):
                    ext_leads.append(result.lead_id)
                    ext_ids.append(str(row["external_id"])[:200])
            if ext_leads:
                await cursor.execute(_INSERT_EXTERNAL, (tenant_id, source.id, ext_leads, ext_ids))

    await emit_many(
        session,
        tenant_id,
        [
            ("lead.created", {"lead_id": str(lead_id), "source_id": str(source.id)})
            for lead_id, _ in new_rows
        ],
    )
    if new_rows:  # verification and fuzzy matching follow as jobs, one each per chunk
        new_ids = [str(lead_id) for lead_id, _ in new_rows]
        await defer(session, VERIFY_TASK, tenant_id=str(tenant_id), lead_ids=new_ids)
        await defer(session, DEDUP_TASK, tenant_id=str(tenant_id), lead_ids=new_ids)
    counts = {status.value: 0 for status in RowStatus}
    for result in results:
        counts[result.status.value] += 1
    digest = hashlib.sha256(
        b"".join(r.lead_id.bytes for r in results if r.lead_id is not None)
    ).hexdigest()
    dropped = sorted({name for r in results for name in r.dropped_fields})
    await append_events(
        session,
        tenant_id,
        [
            AuditEntry(
                "leads.captured",
                actor_type=actor_type,
                actor_id=actor_id,
                target_type="source",
                target_id=str(source.id),
                data={
                    **counts,
                    "import_id": str(import_id) if import_id else None,
                    "lead_ids_sha256": digest,
                    "rejections": sorted(
                        {
                            e["reason"]
                            for r in results
                            if r.status == RowStatus.REJECTED
                            for e in r.errors
                        }
                    ),
                    # Names only: the values were never stored.
                    **({"dropped_fields": dropped} if dropped else {}),
                },
            )
        ],
        now=now,
    )
    return results
