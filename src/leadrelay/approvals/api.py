"""Approval routes: the review queue, approve / reject / edit, bulk approval, revocation, and
the tenant's approval policy (turning approval off takes an admin and a typed confirmation)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.approvals import service
from leadrelay.approvals.models import Approval, Draft, DraftRevision, DraftStatus
from leadrelay.core.clock import utcnow
from leadrelay.core.schemas import Input
from leadrelay.identity.deps import (
    CanReadDrafts,
    CanReview,
    CanSetApprovalPolicy,
    SessionDep,
)
from leadrelay.identity.service import Principal

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


class RevisionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    number: int
    subject: str | None
    body: str
    content_sha256: str
    sentences: list[dict[str, Any]]
    gaps: list[str]
    compliance: list[str]
    diff: str | None
    author: str
    created_at: datetime


class DecisionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    draft_id: uuid.UUID
    revision_id: uuid.UUID
    content_sha256: str
    decision: str
    reason: str | None
    reviewer: str
    decided_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None


class DraftOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    lead_id: uuid.UUID
    channel: str
    template: str
    tone: str
    length: str
    cta: str
    first_message: bool
    origin: str
    llm_note: str | None
    status: str
    current_revision: int
    created_by: str
    created_at: datetime
    submitted_at: datetime | None
    expires_at: datetime | None
    decided_at: datetime | None


class QueueItem(BaseModel):
    draft: DraftOut
    revision: RevisionOut


class ApproveIn(Input):
    revision: int | None = Field(
        default=None, ge=1, description="the revision you reviewed; refused if it changed"
    )


class RejectIn(Input):
    reason: str = Field(min_length=1, max_length=2000)


class EditIn(Input):
    subject: str | None = Field(default=None, max_length=300)
    body: str = Field(min_length=1, max_length=20_000)


class BulkIn(Input):
    channel: str | None = Field(default=None, max_length=20)
    lead_ids: list[uuid.UUID] | None = Field(default=None, max_length=1000)
    created_before: AwareDatetime | None = None


class BulkOut(BaseModel):
    approved: list[uuid.UUID]
    skipped: list[dict[str, str]]


class PolicyIn(Input):
    approval_required: bool | None = None
    four_eyes: bool | None = None
    confirmation: str | None = Field(
        default=None,
        max_length=100,
        description=f'to turn approval off, type "{service.APPROVAL_OFF_CONFIRMATION}"',
    )


class PolicyOut(BaseModel):
    approval_required: bool
    four_eyes: bool
    expiry_days: int


async def _policy(request: Request, session: AsyncSession, actor: Principal) -> service.Policy:
    return await service.tenant_policy(
        session,
        actor.tenant_id,
        default_expiry_days=request.app.state.settings.approval_expiry_days,
    )


@router.get("")
async def review_queue(
    session: SessionDep,
    _: CanReadDrafts,
    status: DraftStatus = DraftStatus.PENDING,
    limit: int = 100,
) -> list[QueueItem]:
    """Drafts waiting for review (oldest first), each with the revision to review."""
    drafts = list(
        await session.scalars(
            select(Draft)
            .where(Draft.status == status)
            .order_by(Draft.submitted_at, Draft.created_at, Draft.id)
            .limit(max(1, min(limit, 500)))
        )
    )
    items = []
    for draft in drafts:
        revision = await service.current_revision(session, draft)
        items.append(
            QueueItem(
                draft=DraftOut.model_validate(draft),
                revision=RevisionOut.model_validate(revision),
            )
        )
    return items


@router.post("/{draft_id}/approve")
async def approve(
    draft_id: uuid.UUID, body: ApproveIn, request: Request, session: SessionDep, actor: CanReview
) -> DecisionOut:
    policy = await _policy(request, session, actor)
    approval = await service.approve(
        session, actor, draft_id, revision_number=body.revision, policy=policy, now=utcnow()
    )
    return DecisionOut.model_validate(approval)


@router.post("/{draft_id}/reject")
async def reject(
    draft_id: uuid.UUID, body: RejectIn, session: SessionDep, actor: CanReview
) -> DecisionOut:
    decision = await service.reject(session, actor, draft_id, reason=body.reason, now=utcnow())
    return DecisionOut.model_validate(decision)


@router.post("/{draft_id}/edit")
async def edit(
    draft_id: uuid.UUID, body: EditIn, session: SessionDep, actor: CanReview
) -> RevisionOut:
    """The reviewer's own wording: a new revision (with its diff), back in the queue."""
    revision: DraftRevision = await service.edit(
        session, actor, draft_id, subject=body.subject, body=body.body, now=utcnow()
    )
    return RevisionOut.model_validate(revision)


@router.post("/bulk")
async def bulk(body: BulkIn, request: Request, session: SessionDep, actor: CanReview) -> BulkOut:
    """Approve every pending draft matching the filter (up to 500 at a time); the others are
    listed with the reason (four-eyes, no longer pending)."""
    policy = await _policy(request, session, actor)
    approved, skipped = await service.bulk_approve(
        session,
        actor,
        channel=body.channel,
        lead_ids=body.lead_ids,
        created_before=body.created_before,
        policy=policy,
        now=utcnow(),
    )
    return BulkOut(approved=approved, skipped=skipped)


@router.post("/decisions/{approval_id}/revoke")
async def revoke(approval_id: uuid.UUID, session: SessionDep, actor: CanReview) -> DecisionOut:
    approval: Approval = await service.revoke(session, actor, approval_id, now=utcnow())
    return DecisionOut.model_validate(approval)


@router.get("/policy")
async def get_policy(request: Request, session: SessionDep, actor: CanReadDrafts) -> PolicyOut:
    return _policy_out(await _policy(request, session, actor))


def _policy_out(policy: service.Policy) -> PolicyOut:
    return PolicyOut(
        approval_required=policy.approval_required,
        four_eyes=policy.four_eyes,
        expiry_days=policy.expiry_days,
    )


@router.patch("/policy")
async def set_policy(body: PolicyIn, session: SessionDep, actor: CanSetApprovalPolicy) -> PolicyOut:
    """Approval required (on by default) and four-eyes. Turning approval off needs the
    typed confirmation and is audited."""
    policy = await service.set_policy(
        session,
        actor,
        approval_required=body.approval_required,
        four_eyes=body.four_eyes,
        confirmation=body.confirmation,
        now=utcnow(),
    )
    return _policy_out(policy)
