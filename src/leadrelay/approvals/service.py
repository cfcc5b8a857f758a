"""Reviews and the send guard.

A draft moves draft → pending → approved | rejected | expired; every edit is a new revision
(with its diff) and any approval names one exact revision by the SHA-256 of its content. The
send guard (`handoff`) is the one door to a channel: it recomputes the hash of what is about to
leave and lets it through only if it equals an unexpired, unrevoked approval of the draft's
current revision of this tenant, and the lead may still be contacted.
"""

from __future__ import annotations

import difflib
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.approvals.models import (
    Approval,
    Decision,
    Draft,
    DraftRevision,
    DraftStatus,
)
from leadrelay.capture import service as capture
from leadrelay.capture.models import Lead
from leadrelay.compliance.audit import append_events
from leadrelay.core.db import raw_connection
from leadrelay.core.errors import (
    Conflict,
    Forbidden,
    LeadRelayError,
    NotFound,
    ValidationFailed,
)
from leadrelay.identity.models import Tenant
from leadrelay.identity.service import Principal

# The words an admin types to turn approval off: a deliberate act, not a stray click.
APPROVAL_OFF_CONFIRMATION = "send without approval"


class DraftNotFound(NotFound):
    """The draft does not exist."""


class NotReviewable(Conflict):
    """The draft is not waiting for review."""

    code = "not-reviewable"


class FourEyes(Forbidden):
    """Four-eyes rule: the author of a revision cannot approve it."""

    code = "four-eyes"


class GuardRefused(Forbidden):
    """The send guard refused to hand this message to a channel."""

    code = "send-guard-refused"


def content_sha256(subject: str | None, body: str) -> str:
    """The hash approvals and the guard compare: e-mail hashes subject, a blank line and the
    body; other channels the body alone (the composer uses the same rule)."""
    content = body if subject is None else f"{subject}\n\n{body}"
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


# --- policy --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    approval_required: bool = True
    four_eyes: bool = False
    expiry_days: int = 7


def policy_of(tenant: Tenant | None, *, default_expiry_days: int = 7) -> Policy:
    settings: Mapping[str, Any] = (tenant.settings if tenant else None) or {}
    approvals = settings.get("approvals") or {}
    if not isinstance(approvals, dict):
        approvals = {}
    return Policy(
        approval_required=approvals.get("approval_required", True) is not False,
        four_eyes=approvals.get("four_eyes", False) is True,
        expiry_days=int(approvals.get("expiry_days", default_expiry_days)),
    )


async def tenant_policy(
    session: AsyncSession, tenant_id: uuid.UUID, *, default_expiry_days: int = 7
) -> Policy:
    return policy_of(await session.get(Tenant, tenant_id), default_expiry_days=default_expiry_days)


async def set_policy(
    session: AsyncSession,
    actor: Principal,
    *,
    approval_required: bool | None,
    four_eyes: bool | None,
    confirmation: str | None,
    now: datetime,
) -> Policy:
    """Change the approval policy. Turning approval off needs the typed confirmation; every
    change is audited with the before and after."""
    tenant = await session.scalar(
        select(Tenant).where(Tenant.id == actor.tenant_id).with_for_update()
    )
    if tenant is None:
        raise NotFound("The tenant does not exist.")
    before = policy_of(tenant)
    confirmed = (confirmation or "").strip().lower() == APPROVAL_OFF_CONFIRMATION
    if approval_required is False and before.approval_required and not confirmed:
        raise ValidationFailed(
            "Turning approval off needs the confirmation typed out.",
            errors=[
                {"field": "confirmation", "reason": f"type exactly: {APPROVAL_OFF_CONFIRMATION}"}
            ],
        )
    current = (tenant.settings or {}).get("approvals")
    approvals: dict[str, Any] = dict(current) if isinstance(current, dict) else {}
    if approval_required is not None:
        approvals["approval_required"] = approval_required
    if four_eyes is not None:
        approvals["four_eyes"] = four_eyes
    tenant.settings = {**(tenant.settings or {}), "approvals": approvals}
    after = policy_of(tenant)
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "approvals.policy_changed",
                target_type="tenant",
                target_id=actor.tenant_id,
                before={
                    "approval_required": before.approval_required,
                    "four_eyes": before.four_eyes,
                },
                after={"approval_required": after.approval_required, "four_eyes": after.four_eyes},
            )
        ],
        now=now,
    )
    return after


# --- drafts and revisions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RevisionContent:
    subject: str | None
    body: str
    sentences: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    compliance: list[str] = field(default_factory=list)


async def get_draft(session: AsyncSession, draft_id: uuid.UUID, *, lock: bool = False) -> Draft:
    query = select(Draft).where(Draft.id == draft_id)
    if lock:
        query = query.with_for_update()
    draft = await session.scalar(query)
    if draft is None:
        raise DraftNotFound()
    return draft


async def revisions_of(session: AsyncSession, draft_id: uuid.UUID) -> list[DraftRevision]:
    return list(
        await session.scalars(
            select(DraftRevision)
            .where(DraftRevision.draft_id == draft_id)
            .order_by(DraftRevision.number)
        )
    )


async def current_revision(session: AsyncSession, draft: Draft) -> DraftRevision:
    revision = await session.scalar(
        select(DraftRevision).where(
            DraftRevision.draft_id == draft.id, DraftRevision.number == draft.current_revision
        )
    )
    if revision is None:  # a draft always has its current revision: the database is broken
        raise DraftNotFound("The draft's current revision is missing.")
    return revision


def _diff(old: DraftRevision | None, new: RevisionContent) -> str | None:
    if old is None:
        return None
    before = ([f"Subject: {old.subject}", ""] if old.subject is not None else []) + old.body.split(
        "\n"
    )
    after = ([f"Subject: {new.subject}", ""] if new.subject is not None else []) + new.body.split(
        "\n"
    )
    lines = difflib.unified_diff(
        before, after, f"revision {old.number}", f"revision {old.number + 1}", lineterm=""
    )
    return "\n".join(lines)


async def add_revision(
    session: AsyncSession,
    actor: Principal,
    draft: Draft,
    content: RevisionContent,
    *,
    now: datetime,
    previous: DraftRevision | None = None,
) -> DraftRevision:
    number = (previous.number + 1) if previous is not None else 1
    revision = DraftRevision(
        tenant_id=draft.tenant_id,
        draft_id=draft.id,
        number=number,
        subject=content.subject,
        body=content.body,
        content_sha256=content_sha256(content.subject, content.body),
        sentences=content.sentences,
        gaps=content.gaps,
        compliance=content.compliance,
        diff=_diff(previous, content),
        author_type=actor.kind,
        author_id=str(actor.id) if actor.id else None,
        author=actor.name,
        created_at=now,
    )
    session.add(revision)
    draft.current_revision = number
    await session.flush()
    return revision


async def submit(
    session: AsyncSession, actor: Principal, draft_id: uuid.UUID, *, policy: Policy, now: datetime
) -> Draft:
    """Ask for review; the request expires after the policy's days."""
    draft = await get_draft(session, draft_id, lock=True)
    if draft.status not in (DraftStatus.DRAFT, DraftStatus.REJECTED, DraftStatus.EXPIRED):
        raise NotReviewable(f"The draft is {draft.status}; only a draft can be submitted.")
    draft.status = DraftStatus.PENDING
    draft.submitted_at = now
    draft.expires_at = now + timedelta(days=policy.expiry_days)
    await _audit(session, actor, "draft.submitted", draft, now=now)
    return draft


async def _audit(
    session: AsyncSession,
    actor: Principal,
    action: str,
    draft: Draft,
    *,
    now: datetime,
    **data: Any,
) -> None:
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                action,
                target_type="draft",
                target_id=draft.id,
                lead_id=str(draft.lead_id),
                revision=draft.current_revision,
                **data,
            )
        ],
        now=now,
    )


def _is_author(actor: Principal, revision: DraftRevision) -> bool:
    return revision.author_type == actor.kind and revision.author_id == (
        str(actor.id) if actor.id else None
    )


async def _pending(session: AsyncSession, draft_id: uuid.UUID, now: datetime) -> Draft:
    draft = await get_draft(session, draft_id, lock=True)
    if draft.status == DraftStatus.PENDING and draft.expires_at and draft.expires_at <= now:
        draft.status = DraftStatus.EXPIRED
    if draft.status != DraftStatus.PENDING:
        raise NotReviewable(f"The draft is {draft.status}, not pending review.")
    return draft


async def approve(
    session: AsyncSession,
    actor: Principal,
    draft_id: uuid.UUID,
    *,
    revision_number: int | None,
    policy: Policy,
    now: datetime,
) -> Approval:
    """Approve the current revision (naming it guards against approving text one has not
    seen: an edit in between makes the call fail)."""
    draft = await _pending(session, draft_id, now)
    revision = await current_revision(session, draft)
    if revision_number is not None and revision_number != revision.number:
        raise NotReviewable(
            f"Revision {revision_number} is no longer current (now {revision.number})."
        )
    if policy.four_eyes and _is_author(actor, revision):
        raise FourEyes()
    approval = Approval(
        tenant_id=draft.tenant_id,
        draft_id=draft.id,
        revision_id=revision.id,
        content_sha256=revision.content_sha256,
        decision=Decision.APPROVED,
        reviewer_type=actor.kind,
        reviewer_id=str(actor.id) if actor.id else None,
        reviewer=actor.name,
        decided_at=now,
        expires_at=now + timedelta(days=policy.expiry_days),
    )
    session.add(approval)
    draft.status, draft.decided_at = DraftStatus.APPROVED, now
    await session.flush()
    await _audit(session, actor, "draft.approved", draft, now=now, sha256=revision.content_sha256)
    return approval


async def reject(
    session: AsyncSession, actor: Principal, draft_id: uuid.UUID, *, reason: str, now: datetime
) -> Approval:
    draft = await _pending(session, draft_id, now)
    revision = await current_revision(session, draft)
    decision = Approval(
        tenant_id=draft.tenant_id,
        draft_id=draft.id,
        revision_id=revision.id,
        content_sha256=revision.content_sha256,
        decision=Decision.REJECTED,
        reason=reason,
        reviewer_type=actor.kind,
        reviewer_id=str(actor.id) if actor.id else None,
        reviewer=actor.name,
        decided_at=now,
    )
    session.add(decision)
    draft.status, draft.decided_at = DraftStatus.REJECTED, now
    await session.flush()
    await _audit(session, actor, "draft.rejected", draft, now=now, reason=reason[:500])
    return decision


async def edit(
    session: AsyncSession,
    actor: Principal,
    draft_id: uuid.UUID,
    *,
    subject: str | None,
    body: str,
    now: datetime,
) -> DraftRevision:
    """A new revision of a draft not yet sent. Editing an approved draft withdraws its
    approval: the new text goes back to review."""
    draft = await get_draft(session, draft_id, lock=True)
    if draft.status in (DraftStatus.SENT,):
        raise NotReviewable("A sent draft cannot be edited.")
    previous = await current_revision(session, draft)
    if (subject is None) != (previous.subject is None):
        raise ValidationFailed(
            "Only e-mail drafts have a subject.",
            errors=[{"field": "subject", "reason": "must match the channel"}],
        )
    # The platform's compliance text (sender, address, unsubscribe, STOP) is not the editor's
    # to remove: an edit keeps every line of it.
    dropped = [line for line in previous.compliance if line not in body]
    if dropped:
        raise ValidationFailed(
            "An edit must keep the compliance text the platform added.",
            errors=[{"field": "body", "reason": f"missing: {line}"} for line in dropped],
        )
    content = RevisionContent(
        subject=subject,
        body=body,
        # Sentences left as they were keep their evidence; the editor's own words have none.
        sentences=[s for s in previous.sentences if _still_there(s, subject, body)],
        gaps=[gap for gap in previous.gaps if f"[missing: {gap}]" in body],
        compliance=list(previous.compliance),
    )
    revision = await add_revision(session, actor, draft, content, now=now, previous=previous)
    if draft.status == DraftStatus.APPROVED:
        draft.status = DraftStatus.PENDING
        draft.expires_at = now + timedelta(days=(await _expiry(session, draft)))
    await _audit(session, actor, "draft.edited", draft, now=now, sha256=revision.content_sha256)
    return revision


def _still_there(sentence: Mapping[str, Any], subject: str | None, body: str) -> bool:
    text = str(sentence.get("text") or "")
    where = (subject or "") if sentence.get("part") == "subject" else body
    return bool(text) and text in where


async def _expiry(session: AsyncSession, draft: Draft) -> int:
    return (await tenant_policy(session, draft.tenant_id)).expiry_days


async def revoke(
    session: AsyncSession, actor: Principal, approval_id: uuid.UUID, *, now: datetime
) -> Approval:
    approval = await session.get(Approval, approval_id)
    if approval is None or approval.decision != Decision.APPROVED:
        raise NotFound("The approval does not exist.")
    if approval.revoked_at is None:
        approval.revoked_at, approval.revoked_by = now, actor.name
        draft = await get_draft(session, approval.draft_id, lock=True)
        if draft.status == DraftStatus.APPROVED:
            draft.status = DraftStatus.PENDING
        await _audit(session, actor, "approval.revoked", draft, now=now, approval=str(approval.id))
    return approval


async def expire_pending(session: AsyncSession, *, now: datetime) -> int:
    """Pending drafts past their deadline expire (a periodic job, per tenant)."""
    result = await session.execute(
        update(Draft)
        .where(Draft.status == DraftStatus.PENDING, Draft.expires_at <= now)
        .values(status=DraftStatus.EXPIRED)
        .returning(Draft.id)
    )
    return len(result.all())


async def bulk_approve(
    session: AsyncSession,
    actor: Principal,
    *,
    channel: str | None,
    lead_ids: Sequence[uuid.UUID] | None,
    created_before: datetime | None,
    policy: Policy,
    now: datetime,
    limit: int = 500,
) -> tuple[list[uuid.UUID], list[dict[str, str]]]:
    """Approve every pending draft matching the filter; returns the approved ids and, for the
    others, why not (four-eyes, expired)."""
    query = select(Draft.id).where(Draft.status == DraftStatus.PENDING)
    if channel:
        query = query.where(Draft.channel == channel)
    if lead_ids:
        query = query.where(Draft.lead_id.in_(list(lead_ids)))
    if created_before is not None:
        query = query.where(Draft.created_at < created_before)
    ids = list(await session.scalars(query.order_by(Draft.created_at, Draft.id).limit(limit)))
    approved: list[uuid.UUID] = []
    skipped: list[dict[str, str]] = []
    for draft_id in ids:
        try:
            async with session.begin_nested():
                await approve(
                    session, actor, draft_id, revision_number=None, policy=policy, now=now
                )
            approved.append(draft_id)
        except (FourEyes, NotReviewable) as error:
            skipped.append({"draft_id": str(draft_id), "reason": error.code})
    return approved, skipped


# --- the send guard ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendTicket:
    """What a channel needs to send: proof that the guard let exactly this content through."""

    draft_id: uuid.UUID
    lead_id: uuid.UUID
    channel: str
    content_sha256: str
    approval_id: uuid.UUID | None  # None only when the tenant's policy requires no approval
    checks: list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """The exact text a path is about to send for a draft."""

    draft_id: uuid.UUID
    subject: str | None
    body: str


# Each draft with its current revision and that revision's latest approval, the drafts locked in
# id order (two chunks that share drafts queue up instead of deadlocking).
_GUARD_ROWS = (
    "SELECT d.id, d.tenant_id, d.lead_id, d.channel, d.status, r.id, r.content_sha256, "
    "a.id, a.content_sha256, a.revoked_at, a.revoked_by, a.expires_at "
    "FROM drafts d "
    "LEFT JOIN draft_revisions r ON r.draft_id = d.id AND r.number = d.current_revision "
    "LEFT JOIN LATERAL (SELECT id, content_sha256, revoked_at, revoked_by, expires_at "
    "  FROM approvals WHERE draft_id = d.id AND revision_id = r.id AND decision = %s "
    "  ORDER BY decided_at DESC LIMIT 1) a ON true "
    "WHERE d.id = ANY(%s) ORDER BY d.id FOR UPDATE OF d"
)


@dataclass(frozen=True, slots=True)
class _GuardRow:
    draft_id: uuid.UUID
    tenant_id: uuid.UUID
    lead_id: uuid.UUID
    channel: str
    status: str
    revision_id: uuid.UUID | None
    revision_sha256: str | None
    approval_id: uuid.UUID | None
    approval_sha256: str | None
    revoked_at: datetime | None
    revoked_by: str | None
    expires_at: datetime | None


async def handoff(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    draft_id: uuid.UUID,
    *,
    subject: str | None,
    body: str,
    now: datetime,
) -> SendTicket:
    """Let a message through to a channel, or raise `GuardRefused` naming the failed check.

    Every path that sends calls this (or `handoff_many`) with the exact text it is about to
    send: the hash is recomputed here, never taken from the caller."""
    [answer] = await handoff_many(session, tenant_id, [Outgoing(draft_id, subject, body)], now=now)
    if isinstance(answer, LeadRelayError):
        raise answer
    return answer


async def handoff_many(
    session: AsyncSession, tenant_id: uuid.UUID, outgoing: Sequence[Outgoing], *, now: datetime
) -> list[SendTicket | LeadRelayError]:
    """`handoff` for a chunk, in a constant number of statements: for each item, in order, its
    ticket or the error `handoff` would raise (`GuardRefused`, or `DraftNotFound` when the
    current revision is missing). The drafts stay locked FOR UPDATE until the caller's
    transaction ends, as `handoff` locks its one draft."""
    if not outgoing:
        return []
    await session.flush()  # pending ORM changes (an edit, a revocation) count
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(
            _GUARD_ROWS, (Decision.APPROVED.value, list({o.draft_id for o in outgoing}))
        )
        rows = {row[0]: _GuardRow(*row) for row in await cursor.fetchall()}
    policy = await tenant_policy(session, tenant_id)
    # The leads in one statement; `contact_blockers` (the one rule of who may be contacted) then
    # finds each in the session's identity map while the list holds it (the map itself keeps
    # only weak references).
    leads = list(
        await session.scalars(select(Lead).where(Lead.id.in_({r.lead_id for r in rows.values()})))
    )
    blockers = {lead.id: await capture.contact_blockers(session, lead.id) for lead in leads}
    answers: list[SendTicket | LeadRelayError] = []
    for item in outgoing:
        row = rows.get(item.draft_id)
        found: list[str] = []
        if row is not None and row.lead_id in blockers:
            found = blockers[row.lead_id]
        elif row is not None:  # gone meanwhile: the rule says so itself
            found = await capture.contact_blockers(session, row.lead_id)
        answers.append(_ticket(row, item, tenant_id, policy, found, now))
    return answers


def _ticket(
    row: _GuardRow | None,
    item: Outgoing,
    tenant_id: uuid.UUID,
    policy: Policy,
    blockers: list[str],
    now: datetime,
) -> SendTicket | LeadRelayError:
    """The send guard's checks for one draft, in order; the first refusal is the answer."""
    checks: list[dict[str, str]] = []

    def refuse(check: str, detail: str) -> GuardRefused:
        checks.append({"check": check, "result": "refused", "detail": detail})
        return GuardRefused(f"{check}: {detail}", errors=[{"field": check, "reason": detail}])

    if row is None or row.tenant_id != tenant_id:
        return refuse("draft", "no such draft in this tenant")
    if row.revision_id is None:  # a draft always has its current revision: the database is broken
        return DraftNotFound("The draft's current revision is missing.")
    sha = content_sha256(item.subject, item.body)
    if sha != row.revision_sha256:
        return refuse("content", "the text differs from the draft's current revision")
    checks.append({"check": "content", "result": "ok", "detail": sha})
    approval_id: uuid.UUID | None = None
    if policy.approval_required:
        if row.approval_id is None or row.approval_sha256 != sha:
            return refuse("approval", "the current revision has no approval")
        if row.revoked_at is not None:
            return refuse("approval", f"revoked by {row.revoked_by}")
        if row.expires_at is not None and row.expires_at <= now:
            return refuse("approval", f"expired at {row.expires_at.isoformat()}")
        if row.status != DraftStatus.APPROVED:
            return refuse("approval", f"the draft is {row.status}")
        approval_id = row.approval_id
        checks.append({"check": "approval", "result": "ok", "detail": str(approval_id)})
    else:
        checks.append({"check": "approval", "result": "ok", "detail": "not required by policy"})
    if blockers:
        return refuse("lead", ", ".join(blockers))
    checks.append({"check": "lead", "result": "ok", "detail": "contactable"})
    return SendTicket(row.draft_id, row.lead_id, row.channel, sha, approval_id, checks)
