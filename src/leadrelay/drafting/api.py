"""Drafting routes: generate a draft for a lead, list and read drafts with the evidence of every
sentence, submit for review, the tenant's templates (checked by the sandbox when saved) and the
sender identity every message carries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from leadrelay.approvals import service as approvals
from leadrelay.approvals.api import DecisionOut, DraftOut, RevisionOut
from leadrelay.approvals.models import Approval, Draft, DraftStatus, MessageTemplateRow
from leadrelay.compliance.audit import append_events
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import Conflict, ValidationFailed
from leadrelay.core.schemas import Input
from leadrelay.drafting import service
from leadrelay.drafting.evidence import Channel, Length, Tone
from leadrelay.drafting.llm import LlmDrafter, llm_settings
from leadrelay.drafting.templates import CTA_TEXTS, MessageTemplate
from leadrelay.identity.deps import (
    CanManageTemplates,
    CanReadDrafts,
    CanWriteDrafts,
    SessionDep,
)
from leadrelay.identity.service import Principal, get_tenant

router = APIRouter(tags=["drafting"])


class DraftIn(Input):
    lead_id: uuid.UUID
    channel: Channel
    tone: Tone = Tone.FRIENDLY
    length: Length = Length.MEDIUM
    cta: str = Field(default="book_call", description="one of " + ", ".join(CTA_TEXTS))
    template: str | None = Field(
        default=None,
        max_length=120,
        description="a tenant template's id or builtin:default.<channel>.<tone>; "
        "default: the tenant's active template for the channel, else the built-in one",
    )
    use_llm: bool = Field(default=True, description="use the configured LLM, if any")
    instructions: str | None = Field(default=None, max_length=2000)
    first_message: bool | None = Field(
        default=None, description="default: nothing was sent to this lead on this channel yet"
    )
    submit: bool = Field(default=False, description="submit for review at once")


class DraftDetail(BaseModel):
    draft: DraftOut
    revision: RevisionOut  # the current one, with the evidence of each sentence
    revisions: list[RevisionOut]
    decisions: list[DecisionOut]


class EditIn(Input):
    subject: str | None = Field(default=None, max_length=300)
    body: str = Field(min_length=1, max_length=20_000)


class TemplateIn(Input):
    name: str = Field(min_length=1, max_length=100)
    channel: Channel
    tone: Tone | None = None
    subject: str | None = Field(default=None, max_length=500)
    body: str = Field(min_length=1, max_length=20_000)
    active: bool = True


class TemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    channel: str
    tone: str | None
    subject: str | None
    body: str
    active: bool
    builtin: bool
    created_by: str | None = None
    updated_at: datetime | None = None


class SenderIn(Input):
    name: str | None = Field(default=None, max_length=200)
    company: str | None = Field(default=None, max_length=200)
    postal_address: str | None = Field(default=None, max_length=500)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=50)


class SenderOut(BaseModel):
    name: str | None
    company: str | None
    postal_address: str | None
    email: str | None
    phone: str | None
    complete: bool


def drafter_of(request: Request) -> LlmDrafter | None:
    """The app's one LLM client (a connection pool), made on first use; None when off."""
    state = request.app.state
    if not hasattr(state, "llm_drafter"):
        settings = llm_settings(state.settings)
        state.llm_drafter = LlmDrafter(settings) if settings else None
    drafter: LlmDrafter | None = state.llm_drafter
    return drafter


async def _policy(request: Request, session: SessionDep, actor: Principal) -> approvals.Policy:
    return await approvals.tenant_policy(
        session,
        actor.tenant_id,
        default_expiry_days=request.app.state.settings.approval_expiry_days,
    )


async def _detail(session: SessionDep, draft: Draft) -> DraftDetail:
    revisions = await approvals.revisions_of(session, draft.id)
    decisions = await session.scalars(
        select(Approval).where(Approval.draft_id == draft.id).order_by(Approval.decided_at)
    )
    current = next(r for r in revisions if r.number == draft.current_revision)
    return DraftDetail(
        draft=DraftOut.model_validate(draft),
        revision=RevisionOut.model_validate(current),
        revisions=[RevisionOut.model_validate(r) for r in revisions],
        decisions=[DecisionOut.model_validate(d) for d in decisions],
    )


@router.post("/v1/drafts", status_code=status.HTTP_201_CREATED)
async def generate_draft(
    body: DraftIn, request: Request, session: SessionDep, actor: CanWriteDrafts
) -> DraftDetail:
    """Draft a message for a lead from the evidence its provenance holds: a template, or the
    configured LLM when its text passes validation (else the template; `llm_note` says why).
    Missing facts show as "[missing: field]" gaps; compliance text is appended."""
    draft = await service.generate(
        session,
        actor,
        service.DraftRequest(**body.model_dump()),
        drafter=drafter_of(request),
        policy=await _policy(request, session, actor),
        now=utcnow(),
    )
    return await _detail(session, draft)


@router.get("/v1/drafts")
async def list_drafts(
    session: SessionDep,
    _: CanReadDrafts,
    draft_status: Annotated[DraftStatus | None, Query(alias="status")] = None,
    lead_id: uuid.UUID | None = None,
    channel: Channel | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[DraftOut]:
    """Newest first."""
    query = select(Draft).order_by(Draft.created_at.desc(), Draft.id)
    if draft_status is not None:
        query = query.where(Draft.status == draft_status)
    if lead_id is not None:
        query = query.where(Draft.lead_id == lead_id)
    if channel is not None:
        query = query.where(Draft.channel == channel)
    drafts = await session.scalars(query.limit(limit).offset(offset))
    return [DraftOut.model_validate(d) for d in drafts]


@router.get("/v1/drafts/{draft_id}")
async def get_draft(draft_id: uuid.UUID, session: SessionDep, _: CanReadDrafts) -> DraftDetail:
    """The draft, its current revision with each sentence's evidence (field, source, observed
    time, confidence) and gaps, every revision with its diff, and the review decisions."""
    return await _detail(session, await approvals.get_draft(session, draft_id))


@router.post("/v1/drafts/{draft_id}/submit")
async def submit_draft(
    draft_id: uuid.UUID, request: Request, session: SessionDep, actor: CanWriteDrafts
) -> DraftOut:
    """Ask for review; the request expires after the tenant's expiry days."""
    policy = await _policy(request, session, actor)
    draft = await approvals.submit(session, actor, draft_id, policy=policy, now=utcnow())
    return DraftOut.model_validate(draft)


@router.post("/v1/drafts/{draft_id}/edit")
async def edit_draft(
    draft_id: uuid.UUID, body: EditIn, session: SessionDep, actor: CanWriteDrafts
) -> RevisionOut:
    """The writer's own changes: a new revision with its diff; an approved draft goes back to
    review. The platform's compliance lines must stay."""
    revision = await approvals.edit(
        session, actor, draft_id, subject=body.subject, body=body.body, now=utcnow()
    )
    return RevisionOut.model_validate(revision)


# --- templates ---------------------------------------------------------------------------------


def _builtin_out(template: MessageTemplate) -> TemplateOut:
    return TemplateOut(
        id=service.BUILTIN + template.id,
        name=template.id,
        channel=template.channel.value,
        tone=template.tone.value if template.tone else None,
        subject=template.subject,
        body=template.body,
        active=True,
        builtin=True,
    )


def _row_out(row: MessageTemplateRow) -> TemplateOut:
    return TemplateOut(
        id=str(row.id),
        name=row.name,
        channel=row.channel,
        tone=row.tone,
        subject=row.subject,
        body=row.body,
        active=row.active,
        builtin=False,
        created_by=row.created_by,
        updated_at=row.updated_at,
    )


def _checked(body: TemplateIn, template_id: str) -> None:
    candidate = MessageTemplate(
        id=template_id,
        channel=body.channel,
        subject=body.subject,
        body=body.body,
        tone=body.tone,
    )
    errors = service.template_problems(candidate)
    if errors:
        raise ValidationFailed("The template is refused.", errors=errors)


async def _name_free(session: SessionDep, name: str, template_id: uuid.UUID | None) -> None:
    taken = await session.scalar(
        select(MessageTemplateRow.id).where(MessageTemplateRow.name == name)
    )
    if taken is not None and taken != template_id:
        raise Conflict(
            f"A template named {name!r} exists.",
            errors=[{"field": "name", "reason": "already used"}],
        )


async def _audit(
    session: SessionDep, actor: Principal, action: str, row: MessageTemplateRow, **data: Any
) -> None:
    await append_events(
        session,
        actor.tenant_id,
        [actor.audit(action, target_type="template", target_id=row.id, name=row.name, **data)],
        now=utcnow(),
    )


@router.get("/v1/templates")
async def list_templates(
    session: SessionDep, _: CanReadDrafts, channel: Channel | None = None
) -> list[TemplateOut]:
    """The tenant's templates, then the built-in ones (one per channel and tone)."""
    query = select(MessageTemplateRow).order_by(MessageTemplateRow.name)
    if channel is not None:
        query = query.where(MessageTemplateRow.channel == channel)
    own = [_row_out(row) for row in await session.scalars(query)]
    builtins = [
        _builtin_out(t)
        for t in service.BUILTIN_TEMPLATES.values()
        if channel is None or t.channel is channel
    ]
    return own + builtins


@router.post("/v1/templates", status_code=status.HTTP_201_CREATED)
async def create_template(
    body: TemplateIn, session: SessionDep, actor: CanManageTemplates
) -> TemplateOut:
    """Checked by the sandbox before it is stored: unknown variables, attribute access to
    internals and other template-injection payloads are refused with the reason."""
    _checked(body, body.name)
    await _name_free(session, body.name, None)
    now = utcnow()
    row = MessageTemplateRow(
        tenant_id=actor.tenant_id,
        name=body.name,
        channel=body.channel.value,
        tone=body.tone.value if body.tone else None,
        subject=body.subject,
        body=body.body,
        active=body.active,
        created_by=actor.name,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    await _audit(session, actor, "template.created", row, channel=row.channel)
    return _row_out(row)


@router.put("/v1/templates/{template_id}")
async def update_template(
    template_id: uuid.UUID, body: TemplateIn, session: SessionDep, actor: CanManageTemplates
) -> TemplateOut:
    row = await session.get(MessageTemplateRow, template_id, with_for_update=True)
    if row is None:
        raise service.TemplateNotFound()
    _checked(body, str(template_id))
    await _name_free(session, body.name, template_id)
    row.name, row.channel = body.name, body.channel.value
    row.tone = body.tone.value if body.tone else None
    row.subject, row.body, row.active = body.subject, body.body, body.active
    row.updated_at = utcnow()
    await _audit(session, actor, "template.updated", row, active=row.active)
    return _row_out(row)


# --- sender ------------------------------------------------------------------------------------


def _sender_out(values: dict[str, str | None]) -> SenderOut:
    return SenderOut(
        **values,
        complete=all(values.get(name) for name in ("name", "company", "postal_address")),
    )


@router.get("/v1/drafting/sender")
async def get_sender(session: SessionDep, actor: CanReadDrafts) -> SenderOut:
    """The sender identity every message carries (name, company, postal address)."""
    tenant = await get_tenant(session, actor.tenant_id)
    return _sender_out(service.sender_settings(tenant))


@router.patch("/v1/drafting/sender")
async def set_sender(body: SenderIn, session: SessionDep, actor: CanManageTemplates) -> SenderOut:
    values = await service.set_sender(
        session, actor, body.model_dump(exclude_unset=True), now=utcnow()
    )
    return _sender_out(values)
