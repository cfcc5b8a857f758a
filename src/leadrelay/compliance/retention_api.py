"""Retention over HTTP: the tenant's policy (read, replace) and a sweep now."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from leadrelay.compliance import retention
from leadrelay.core.clock import utcnow
from leadrelay.core.schemas import Input
from leadrelay.identity.deps import CanReadAudit, SessionDep, require
from leadrelay.identity.permissions import Permission
from leadrelay.identity.service import Principal, get_tenant

router = APIRouter(prefix="/v1/compliance/retention", tags=["compliance"])
CanManageCompliance = Annotated[Principal, Depends(require(Permission.COMPLIANCE_MANAGE))]

Days = Annotated[int | None, Field(ge=1, le=retention.MAX_DAYS)]


class RetentionPolicyIn(Input):
    """Days each record type is kept; null keeps it forever; a key left out takes its
    default."""

    leads_not_contacted_days: Days = retention.DEFAULT_POLICY.leads_not_contacted_days
    messages_days: Days = retention.DEFAULT_POLICY.messages_days
    telemetry_days: Days = retention.DEFAULT_POLICY.telemetry_days
    outcomes_days: Days = retention.DEFAULT_POLICY.outcomes_days
    audit_days: Days = retention.DEFAULT_POLICY.audit_days


class RetentionPolicyOut(BaseModel):
    leads_not_contacted_days: int | None
    messages_days: int | None
    telemetry_days: int | None
    outcomes_days: int | None
    audit_days: int | None
    defaults: dict[str, int | None]


class SweepOut(BaseModel):
    counts: dict[str, int]
    total: int
    checkpoint_seq: int
    cutoffs: dict[str, str]


class SweepEventOut(BaseModel):
    seq: int
    occurred_at: datetime
    actor_type: str
    actor_id: str | None
    counts: dict[str, int]
    checkpoint_seq: int | None


def _policy_out(policy: retention.RetentionPolicy) -> RetentionPolicyOut:
    return RetentionPolicyOut(**policy.as_dict(), defaults=retention.DEFAULT_POLICY.as_dict())


@router.get("")
async def get_retention_policy(session: SessionDep, actor: CanReadAudit) -> RetentionPolicyOut:
    """The tenant's retention policy, beside the defaults."""
    return _policy_out(retention.retention_policy(await get_tenant(session, actor.tenant_id)))


@router.put("")
async def put_retention_policy(
    body: RetentionPolicyIn, session: SessionDep, actor: CanManageCompliance
) -> RetentionPolicyOut:
    """Replace the policy; audited (`retention.policy_changed`) with before and after."""
    policy = await retention.set_retention_policy(session, actor, body.model_dump(), now=utcnow())
    return _policy_out(policy)


@router.post("/run")
async def run_retention(session: SessionDep, actor: CanManageCompliance) -> SweepOut:
    """Sweep now: purge what the policy says is due, audited (`retention.swept`) with the
    counts per table."""
    result = await retention.sweep_tenant(session, actor.tenant_id, now=utcnow(), actor=actor)
    return SweepOut(
        counts=result.counts,
        total=result.total,
        checkpoint_seq=result.checkpoint_seq,
        cutoffs=result.cutoffs,
    )


@router.get("/runs")
async def list_retention_runs(
    session: SessionDep,
    _: CanReadAudit,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[SweepEventOut]:
    """The latest sweeps from the audit trail, newest first."""
    return [
        SweepEventOut(
            seq=event.seq,
            occurred_at=event.occurred_at,
            actor_type=event.actor_type,
            actor_id=event.actor_id,
            counts=event.data.get("counts") or {},  # validated by the model
            checkpoint_seq=event.data.get("checkpoint_seq"),
        )
        for event in await retention.recent_sweeps(session, limit=limit)
    ]
