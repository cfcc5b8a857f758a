"""Who may not be contacted: suppressions (opt-outs, hard bounces, complaints), do-not-call lists,
and consent records.

Addresses are stored as keyed hashes of their normalized form (`core.security.keyed_hash`), so a
suppression outlives the person's erasure and reveals nothing without the key: looking one up
means hashing the address at hand the same way.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture.normalize import normalize_email, normalize_phone
from leadrelay.compliance.audit import append_events
from leadrelay.core.db import raw_connection
from leadrelay.core.errors import NotFound, ValidationFailed
from leadrelay.core.security import keyed_hash, keyed_hasher
from leadrelay.identity.service import Principal
from leadrelay.outreach.models import (
    Consent,
    ConsentState,
    DncEntry,
    Suppression,
    SuppressionReason,
)

AddressKind = Literal["email", "phone"]
DNC_CHUNK = 5_000  # rows per INSERT when importing a registry file


def normalized_address(kind: AddressKind, raw: str, *, default_region: str | None) -> str:
    """The form every hash is taken of; a clear 422 when `raw` is no address of that kind."""
    if kind == "email":
        email = normalize_email(raw)
        if email.value is None:
            raise ValidationFailed(
                "Not an e-mail address.",
                errors=[{"field": "address", "reason": email.error or "invalid"}],
            )
        return email.value.casefold()
    phone = normalize_phone(raw, default_region=default_region)
    if phone.e164 is None:
        raise ValidationFailed(
            "Not a phone number.",
            errors=[{"field": "address", "reason": phone.error or "invalid"}],
        )
    return phone.e164


def address_hash(keys: str, kind: AddressKind, normalized: str) -> str:
    return keyed_hash(keys, f"suppression:{kind}", normalized)


async def suppress(
    session: AsyncSession,
    actor: Principal,
    *,
    keys: str,
    kind: AddressKind,
    normalized: str,
    reason: SuppressionReason,
    source: str,
    now: datetime,
    note: str | None = None,
) -> Suppression:
    """Suppress an address (idempotent: the first reason recorded stays)."""
    digest = address_hash(keys, kind, normalized)
    await session.execute(
        insert(Suppression)
        .values(
            tenant_id=actor.tenant_id,
            address_kind=kind,
            address_hash=digest,
            reason=reason,
            source=source,
            note=note,
            created_by=actor.name,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "address_kind", "address_hash"])
    )
    row = await session.scalar(
        select(Suppression).where(
            Suppression.address_kind == kind, Suppression.address_hash == digest
        )
    )
    if row is None:  # inserted or already there: one of the two holds under RLS
        raise NotFound("The suppression vanished.")
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "suppression.added",
                target_type="suppression",
                target_id=row.id,
                kind=kind,
                reason=str(reason),
                source=source,
            )
        ],
        now=now,
    )
    return row


async def lift(
    session: AsyncSession, actor: Principal, suppression_id: uuid.UUID, *, now: datetime
) -> None:
    """The person opted back in (START, a signed form): the suppression goes, audited."""
    row = await session.get(Suppression, suppression_id)
    if row is None:
        raise NotFound("The suppression does not exist.")
    await session.execute(delete(Suppression).where(Suppression.id == suppression_id))
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "suppression.lifted",
                target_type="suppression",
                target_id=suppression_id,
                kind=row.address_kind,
                reason=str(row.reason),
            )
        ],
        now=now,
    )


async def suppression_reasons(
    session: AsyncSession, keys: str, *, email: str | None, phone: str | None
) -> list[str]:
    """Why these addresses are suppressed (empty: they are not)."""
    wanted = []
    if email:
        wanted.append(("email", address_hash(keys, "email", email.casefold())))
    if phone:
        wanted.append(("phone", address_hash(keys, "phone", phone)))
    reasons: list[str] = []
    for kind, digest in wanted:
        reason = await session.scalar(
            select(Suppression.reason).where(
                Suppression.address_kind == kind, Suppression.address_hash == digest
            )
        )
        if reason is not None:
            reasons.append(f"{kind}_{reason}")
    return reasons


async def dnc_lists(session: AsyncSession, keys: str, phone: str | None) -> list[str]:
    """The do-not-call lists holding this E.164 number."""
    if not phone:
        return []
    digest = address_hash(keys, "phone", phone)
    return sorted(
        await session.scalars(select(DncEntry.list_name).where(DncEntry.phone_hash == digest))
    )


# --- the same look-ups for a chunk of messages (the send path) ---------------------------------


async def suppression_reasons_for(
    session: AsyncSession, keys: str, addresses: Iterable[tuple[AddressKind, str]]
) -> dict[tuple[AddressKind, str], str]:
    """`suppression_reasons` for many (kind, address) pairs in one statement: the reason of each
    suppressed one ("email_opted_out" …); e-mails are casefolded here, as there."""
    hashers = {kind: keyed_hasher(keys, f"suppression:{kind}") for kind in ("email", "phone")}
    wanted: dict[tuple[str, str], tuple[AddressKind, str]] = {}
    for kind, address in addresses:
        normalized = address.casefold() if kind == "email" else address
        wanted[(kind, hashers[kind](normalized))] = (kind, address)
    if not wanted:
        return {}
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(
            "SELECT address_kind, address_hash, reason FROM suppressions "
            "WHERE address_hash = ANY(%s)",
            ([digest for _, digest in wanted],),
        )
        rows = await cursor.fetchall()
    found: dict[tuple[AddressKind, str], str] = {}
    for row_kind, digest, reason in rows:
        pair = wanted.get((row_kind, digest))
        if pair is not None:
            found[pair] = f"{row_kind}_{reason}"
    return found


async def dnc_lists_for(
    session: AsyncSession, keys: str, phones: Iterable[str]
) -> dict[str, list[str]]:
    """`dnc_lists` for many E.164 numbers in one statement: the lists holding each listed one."""
    hasher = keyed_hasher(keys, "suppression:phone")
    wanted = {hasher(phone): phone for phone in phones}
    if not wanted:
        return {}
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(
            "SELECT phone_hash, list_name FROM dnc_entries WHERE phone_hash = ANY(%s)",
            (list(wanted),),
        )
        rows = await cursor.fetchall()
    lists: dict[str, list[str]] = {}
    for digest, name in rows:
        lists.setdefault(wanted[digest], []).append(name)
    return {phone: sorted(names) for phone, names in lists.items()}


async def consent_states(
    session: AsyncSession, wanted: Iterable[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], tuple[ConsentState, datetime]]:
    """`consent_state` for many (lead, channel) pairs in one statement: the newest record's
    state and time, for the pairs that have one."""
    pairs = set(wanted)
    if not pairs:
        return {}
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(
            "SELECT DISTINCT ON (lead_id, channel) lead_id, channel, state, recorded_at "
            "FROM consents WHERE lead_id = ANY(%s) AND channel = ANY(%s) "
            "ORDER BY lead_id, channel, recorded_at DESC",
            (list({lead for lead, _ in pairs}), list({channel for _, channel in pairs})),
        )
        rows = await cursor.fetchall()
    return {
        (lead, channel): (ConsentState(state), recorded_at)
        for lead, channel, state, recorded_at in rows
        if (lead, channel) in pairs
    }


@dataclass
class DncImport:
    list_name: str
    rows: int = 0
    added: int = 0
    already_listed: int = 0
    rejected: list[dict[str, object]] = field(default_factory=list)


def _numbers(lines: Iterable[str]) -> Iterable[tuple[int, str]]:
    """(line, number) from a registry file: one number per line, or a CSV whose column
    `phone`/`number`/`phone_number` (else the first) holds it."""
    reader = csv.reader(lines)
    header: list[str] | None = None
    column = 0
    for line, row in enumerate(reader, start=1):
        if not row or not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().casefold() for cell in row]
            names = [n for n in ("phone", "number", "phone_number") if n in header]
            if names:
                column = header.index(names[0])
                continue
        yield line, row[column] if column < len(row) else ""


async def import_dnc(
    session: AsyncSession,
    actor: Principal,
    *,
    keys: str,
    list_name: str,
    lines: Iterable[str],
    default_region: str | None,
    now: datetime,
) -> DncImport:
    """Add a registry file's numbers (idempotent, streamed a chunk at a time); every rejected
    line is reported with its number."""
    report = DncImport(list_name=list_name)
    pending: list[str] = []

    async def flush() -> None:
        if not pending:
            return
        inserted = await session.scalars(
            insert(DncEntry)
            .values(
                [
                    {"tenant_id": actor.tenant_id, "list_name": list_name, "phone_hash": digest}
                    for digest in pending
                ]
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "list_name", "phone_hash"])
            .returning(DncEntry.id)
        )
        added = len(list(inserted))
        report.added += added
        report.already_listed += len(pending) - added
        pending.clear()

    for line, raw in _numbers(lines):
        report.rows += 1
        phone = normalize_phone(raw.strip(), default_region=default_region)
        if phone.e164 is None:
            report.rejected.append({"line": line, "reason": phone.error or "invalid"})
            continue
        pending.append(address_hash(keys, "phone", phone.e164))
        if len(pending) >= DNC_CHUNK:
            await flush()
    await flush()
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "dnc.imported",
                target_type="dnc_list",
                list_name=list_name,
                rows=report.rows,
                added=report.added,
                rejected=len(report.rejected),
            )
        ],
        now=now,
    )
    return report


# --- consent ---------------------------------------------------------------------------------


async def record_consent(
    session: AsyncSession,
    actor: Principal,
    *,
    lead_id: uuid.UUID,
    channel: str,
    state: ConsentState,
    purpose: str,
    method: str,
    evidence: str | None,
    now: datetime,
) -> Consent:
    row = Consent(
        tenant_id=actor.tenant_id,
        lead_id=lead_id,
        channel=channel,
        state=state,
        purpose=purpose,
        method=method,
        evidence=evidence,
        recorded_by=actor.name,
        recorded_at=now,
    )
    session.add(row)
    await session.flush()
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                f"consent.{state}",
                target_type="lead",
                target_id=lead_id,
                channel=channel,
                purpose=purpose,
                method=method,
            )
        ],
        now=now,
    )
    return row


async def consents_of(session: AsyncSession, lead_id: uuid.UUID) -> Sequence[Consent]:
    """Every record for the lead, newest first (the first per channel is the state)."""
    return list(
        await session.scalars(
            select(Consent)
            .where(Consent.lead_id == lead_id)
            .order_by(Consent.recorded_at.desc(), Consent.id)
        )
    )


async def consent_state(session: AsyncSession, lead_id: uuid.UUID, channel: str) -> Consent | None:
    return await session.scalar(
        select(Consent)
        .where(Consent.lead_id == lead_id, Consent.channel == channel)
        .order_by(Consent.recorded_at.desc())
        .limit(1)
    )
