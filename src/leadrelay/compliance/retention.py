"""Retention: each tenant's records are kept for as long as its policy says, then purged.

The policy lives in the tenant's settings under `"retention"`, one number of days per record
type (`null` keeps that type forever):

- `leads_not_contacted_days` (default 365): leads created before the cutoff with no message and
  no conversation kept; their provenance, scores, consents… go with them (ON DELETE CASCADE);
- `messages_days` (730): messages created before the cutoff and no longer in flight (their
  delivery events cascade);
- `telemetry_days` (365): delivery events and inbound messages received before the cutoff;
- `outcomes_days` (1095): CRM outcomes closed before the cutoff;
- `audit_days` (null): audit events before the cutoff — see below.

A sweep runs per tenant in one transaction: telemetry, messages, outcomes, then leads, so a lead
whose last message has just gone counts as not contacted and one sweep reaches a fixed point.
Suppression and do-not-call entries (keyed hashes) are never purged: an opt-out outlives
everything. Every sweep appends `retention.swept` to the audit chain with the counts per table
and the chain's checkpoint (`audit_heads.checkpoint_seq`, where `verify_chain` starts); no
personal data.

Audit events: `audit_events` is append-only (a trigger refuses UPDATE and DELETE). Retention
cuts a prefix through `audit_cut_prefix` (migration 0020), a SECURITY DEFINER function that
moves the tenant's checkpoint to the last link older than the cutoff and deletes the links at
or before it — the only deletions the trigger lets through. The newest link always stays, and
`verify_chain` starts from the checkpoint, so the chain still verifies after a sweep.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.compliance.audit import AuditEntry, AuditFilter, append_events, list_events
from leadrelay.compliance.models import AuditEvent, AuditHead
from leadrelay.core.clock import utcnow
from leadrelay.core.db import all_tenant_ids
from leadrelay.core.errors import NotFound, ValidationFailed
from leadrelay.core.jobs import job_app, retry_strategy, runtime
from leadrelay.identity.models import Tenant
from leadrelay.identity.service import Principal

SETTINGS_KEY = "retention"
SWEPT_ACTION = "retention.swept"
POLICY_CHANGED_ACTION = "retention.policy_changed"
MAX_DAYS = 36_500  # a century: longer is "forever", which is null
# A message younger than the longest outreach cooldown still decides whether a lead may be
# contacted again; purging it sooner would let the guard contact the person too early.
MIN_DAYS = {
    "leads_not_contacted_days": 1,
    "messages_days": 30,
    "telemetry_days": 1,
    "outcomes_days": 1,
    "audit_days": 30,
}
UNMATCHED_EVENTS_KEPT = timedelta(days=7)
# Messages still waiting for a channel are never purged under the sender.
IN_FLIGHT = ("queued", "deferred", "sending")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days each record type is kept; None keeps it forever."""

    leads_not_contacted_days: int | None = 365
    messages_days: int | None = 730
    telemetry_days: int | None = 365
    outcomes_days: int | None = 1095
    audit_days: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return dataclasses.asdict(self)


DEFAULT_POLICY = RetentionPolicy()
FIELDS = tuple(DEFAULT_POLICY.as_dict())


def check_policy(values: Mapping[str, Any]) -> RetentionPolicy:
    """A complete policy from `values` (missing keys take the defaults); ValidationFailed with
    one error per bad field."""
    errors: list[dict[str, str]] = [
        {"field": name, "reason": "unknown record type"}
        for name in sorted(set(values) - set(FIELDS))
    ]
    chosen: dict[str, int | None] = DEFAULT_POLICY.as_dict()
    for name in FIELDS:
        if name not in values:
            continue
        value = values[name]
        if value is None:
            chosen[name] = None
        elif isinstance(value, bool) or not isinstance(value, int):
            errors.append({"field": name, "reason": "a whole number of days, or null (keep)"})
        elif not MIN_DAYS[name] <= value <= MAX_DAYS:
            errors.append(
                {
                    "field": name,
                    "reason": f"from {MIN_DAYS[name]} to {MAX_DAYS} days, or null (keep)",
                }
            )
        else:
            chosen[name] = value
    if errors:
        raise ValidationFailed("The retention policy is not valid.", errors=errors)
    return RetentionPolicy(**chosen)


def retention_policy(tenant: Tenant) -> RetentionPolicy:
    """The tenant's policy; a stored value that is no longer valid falls back to its default."""
    stored = (tenant.settings or {}).get(SETTINGS_KEY)
    if not isinstance(stored, dict):
        return DEFAULT_POLICY
    chosen = DEFAULT_POLICY.as_dict()
    for name in FIELDS:
        if name not in stored:
            continue
        try:
            chosen[name] = getattr(check_policy({name: stored[name]}), name)
        except ValidationFailed:
            continue
    return RetentionPolicy(**chosen)


async def _locked_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await session.scalar(select(Tenant).where(Tenant.id == tenant_id).with_for_update())
    if tenant is None:
        raise NotFound("The tenant does not exist.")
    return tenant


async def set_retention_policy(
    session: AsyncSession, actor: Principal, values: Mapping[str, Any], *, now: datetime
) -> RetentionPolicy:
    """Replace the tenant's policy (missing keys take the defaults); audited with before and
    after."""
    policy = check_policy(values)
    tenant = await _locked_tenant(session, actor.tenant_id)
    before = retention_policy(tenant)
    tenant.settings = {**(tenant.settings or {}), SETTINGS_KEY: policy.as_dict()}
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                POLICY_CHANGED_ACTION,
                target_type="tenant",
                target_id=actor.tenant_id,
                before=before.as_dict(),
                after=policy.as_dict(),
            )
        ],
        now=now,
    )
    return policy


# --- the sweep ---------------------------------------------------------------------------------

# Each statement names the tenant besides RLS doing so, so the planner can use the indexes that
# lead with tenant_id; every one is a single set-based DELETE.
_PURGES: tuple[tuple[str, str, str], ...] = (
    (
        "telemetry_days",
        "delivery_events",
        "DELETE FROM delivery_events WHERE tenant_id = :tenant AND received_at < :cutoff",
    ),
    (
        "telemetry_days",
        "lead_messages",
        "DELETE FROM lead_messages WHERE tenant_id = :tenant AND received_at < :cutoff",
    ),
    (
        "messages_days",
        "messages",
        "DELETE FROM messages WHERE tenant_id = :tenant AND created_at < :cutoff "
        "AND status NOT IN ('queued', 'deferred', 'sending')",
    ),
    (
        "outcomes_days",
        "lead_outcomes",
        "DELETE FROM lead_outcomes WHERE tenant_id = :tenant AND closed_at < :cutoff",
    ),
    (
        "leads_not_contacted_days",
        "leads",
        "DELETE FROM leads AS l WHERE l.tenant_id = :tenant AND l.created_at < :cutoff "
        "AND NOT EXISTS (SELECT 1 FROM messages AS m "
        "WHERE m.tenant_id = l.tenant_id AND m.lead_id = l.id) "
        "AND NOT EXISTS (SELECT 1 FROM lead_messages AS c WHERE c.lead_id = l.id)",
    ),
)
TABLES = tuple(table for _, table, _ in _PURGES)


@dataclass(frozen=True, slots=True)
class SweepResult:
    tenant_id: uuid.UUID
    counts: dict[str, int]
    checkpoint_seq: int
    cutoffs: dict[str, str]
    event_hash: str

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def sweep_tenant(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    now: datetime,
    actor: Principal | None = None,
) -> SweepResult:
    """Purge what the tenant's policy says is due at `now`, in the caller's transaction (the
    session is bound to the tenant), and append `retention.swept`. Sweeps of one tenant queue
    behind each other on the tenant row's lock."""
    tenant = await _locked_tenant(session, tenant_id)
    policy = retention_policy(tenant).as_dict()
    cutoffs = {
        name: now - timedelta(days=days) for name, days in policy.items() if days is not None
    }
    counts = dict.fromkeys(TABLES, 0)
    for name, table, statement in _PURGES:
        cutoff = cutoffs.get(name)
        if cutoff is None:
            continue
        result = await session.execute(text(statement), {"tenant": tenant_id, "cutoff": cutoff})
        counts[table] = int(result.rowcount)  # type: ignore[attr-defined]
    counts["audit_events"] = 0
    audit_cutoff = cutoffs.get("audit_days")
    if audit_cutoff is not None:
        cut = (
            await session.execute(
                text("SELECT cut FROM audit_cut_prefix(:tenant, :cutoff)"),
                {"tenant": tenant_id, "cutoff": audit_cutoff},
            )
        ).scalar_one()
        counts["audit_events"] = int(cut)
    head = await session.scalar(select(AuditHead).where(AuditHead.tenant_id == tenant_id))
    checkpoint_seq = head.checkpoint_seq if head is not None else 0
    cutoff_text = {name: cutoff.isoformat() for name, cutoff in cutoffs.items()}
    data: dict[str, Any] = {
        "counts": counts,
        "checkpoint_seq": checkpoint_seq,
        "cutoffs": cutoff_text,
    }
    entry = (
        actor.audit(SWEPT_ACTION, target_type="tenant", target_id=tenant_id, **data)
        if actor is not None
        else AuditEntry(SWEPT_ACTION, target_type="tenant", target_id=str(tenant_id), data=data)
    )
    (event_hash,) = await append_events(session, tenant_id, [entry], now=now)
    return SweepResult(tenant_id, counts, checkpoint_seq, cutoff_text, event_hash)


async def recent_sweeps(session: AsyncSession, *, limit: int = 10) -> Sequence[AuditEvent]:
    """The tenant's latest `retention.swept` events, newest first (RLS: the session's tenant)."""
    return await list_events(session, AuditFilter(action=SWEPT_ACTION), limit=limit)


@job_app.periodic(cron="41 3 * * *")
@job_app.task(name="compliance.sweep_retention", retry=retry_strategy(3))
async def sweep_retention(timestamp: int) -> dict[str, int]:
    """Once a day: every tenant's sweep, each in its own transaction under its RLS context, so
    one tenant's failure leaves the others' purges committed (and the job retries it)."""
    db = runtime().db
    async with db.session() as session:
        tenant_ids = await all_tenant_ids(session)
        # Provider events no message ever claimed (no tenant: deployment data, see
        # telemetry.service): a week is longer than any send takes to record its provider id.
        await session.execute(
            text("DELETE FROM unmatched_delivery_events WHERE received_at < :cutoff"),
            {"cutoff": utcnow() - UNMATCHED_EVENTS_KEPT},
        )
    purged: dict[str, int] = {}
    for tenant_id in tenant_ids:
        async with db.session(tenant_id) as session:
            result = await sweep_tenant(session, tenant_id, now=utcnow())
        purged[str(tenant_id)] = result.total
    return purged
