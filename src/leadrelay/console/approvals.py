"""The approval queue: drafts waiting for review (oldest first, approved one by one or in
bulk), and the draft under review with the evidence of every sentence highlighted, its gaps,
the lines the platform adds, each revision's diff, and approve / reject / edit.

Approving names the revision on screen: an edit in between (another reviewer, the author)
makes the approval fail with a message instead of approving text nobody has read. Reject and
edit check the revision the same way.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from leadrelay.approvals import service
from leadrelay.approvals.models import Approval, Draft, DraftRevision, DraftStatus
from leadrelay.capture.models import Lead
from leadrelay.console.auth import Console, ReviewDrafts, ViewApprovals, settings_of
from leadrelay.console.errors import ConsoleProblem
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.identity.permissions import Permission

router = APIRouter(prefix="/console/approvals")

QUEUE_LIMIT = 200
MAX_REASON = 2000
MAX_SUBJECT = 300
MAX_BODY = 20_000
CONFIDENCES = ("high", "medium", "low")
SKIP_REASONS = {
    service.FourEyes.code: "four-eyes: its current revision is yours, another reviewer approves it",
    service.NotReviewable.code: "no longer pending (decided or expired meanwhile)",
}


# --- reading drafts ----------------------------------------------------------------------------


def expires_in(expires_at: datetime | None, now: datetime) -> tuple[str, str]:
    """How long a pending draft has left, and a tone: "bad" once expired, "warn" under a day."""
    if expires_at is None:
        return "—", "muted"
    seconds = int((expires_at - now).total_seconds())
    if seconds <= 0:
        return "expired", "bad"
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h", "muted"
    if hours:
        return f"{hours} h {minutes} min", "warn"
    return f"{max(minutes, 1)} min", "warn"


def _date_text(value: Any) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value)).strftime("%d %b %Y")
    except ValueError:
        return str(value)


def _value_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(_value_text(item) for item in value)
    return str(value)


@dataclass(frozen=True, slots=True)
class Evidence:
    field: str
    value: str
    source: str
    observed: str
    confidence: str
    sources: list[str]

    @property
    def line(self) -> str:
        parts = [f"{self.field} = {self.value}"]
        if self.source:
            parts.append(f"source: {self.source}")
        if self.observed:
            parts.append(f"observed {self.observed}")
        if self.confidence:
            parts.append(f"confidence {self.confidence}")
        return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class Claim:
    """A sentence of the draft resting on lead data: what it says, and what it rests on."""

    number: int
    text: str
    confidence: str  # high | medium | low | unrated
    evidence: list[Evidence]
    placed: bool  # found in the subject or the body (else listed only)

    @property
    def title(self) -> str:
        return "\n".join(item.line for item in self.evidence)


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    claim: Claim | None = None


def _evidence(item: Any) -> Evidence | None:
    if not isinstance(item, dict):
        return None
    sources = item.get("sources")
    return Evidence(
        field=str(item.get("field") or "?"),
        value=_value_text(item.get("value")),
        source=str(item.get("source") or ""),
        observed=_date_text(item.get("observed_at")),
        confidence=str(item.get("confidence") or ""),
        sources=[str(s) for s in sources] if isinstance(sources, list) else [],
    )


def _span(text: str, sentence: dict[str, Any], taken: list[tuple[int, int]]) -> tuple[int, int]:
    """Where a sentence sits in `text`: its own offsets when they still point at it, else its
    first free occurrence; (-1, -1) when it is not there."""
    wanted = str(sentence.get("text") or "")
    if not wanted:
        return -1, -1
    start, end = sentence.get("start"), sentence.get("end")
    candidates: list[int] = []
    if isinstance(start, int) and isinstance(end, int) and text[start:end] == wanted:
        candidates.append(start)
    at = text.find(wanted)
    while at >= 0:
        candidates.append(at)
        at = text.find(wanted, at + 1)
    for begin in candidates:
        finish = begin + len(wanted)
        if all(finish <= a or begin >= b for a, b in taken):
            return begin, finish
    return -1, -1


def _segments(text: str, spans: list[tuple[int, int, Claim]]) -> list[Segment]:
    segments: list[Segment] = []
    cursor = 0
    for start, end, claim in sorted(spans, key=lambda span: span[0]):
        if start > cursor:
            segments.append(Segment(text[cursor:start]))
        segments.append(Segment(text[start:end], claim))
        cursor = end
    if cursor < len(text):
        segments.append(Segment(text[cursor:]))
    return segments


@dataclass(frozen=True, slots=True)
class Highlighted:
    subject: list[Segment] | None
    body: list[Segment]
    claims: list[Claim]


def highlight(revision: DraftRevision) -> Highlighted:
    """The revision's subject and body cut into plain text and sentences with evidence (offsets
    are into the body; a sentence found only in the subject is marked there)."""
    body_spans: list[tuple[int, int, Claim]] = []
    subject_spans: list[tuple[int, int, Claim]] = []
    claims: list[Claim] = []
    sentences: list[Any] = list(revision.sentences or [])  # JSON: trust no shape
    for sentence in sentences:
        if not isinstance(sentence, dict):
            continue
        evidence = [e for e in map(_evidence, sentence.get("evidence") or []) if e is not None]
        if not evidence:
            continue
        confidence = str(sentence.get("confidence") or "").lower()
        number = len(claims) + 1
        start, end = _span(revision.body, sentence, [(a, b) for a, b, _ in body_spans])
        target = body_spans
        if start < 0 and revision.subject is not None:
            start, end = _span(
                revision.subject,
                {"text": sentence.get("text")},
                [(a, b) for a, b, _ in subject_spans],
            )
            target = subject_spans
        claim = Claim(
            number=number,
            text=str(sentence.get("text") or ""),
            confidence=confidence if confidence in CONFIDENCES else "unrated",
            evidence=evidence,
            placed=start >= 0,
        )
        claims.append(claim)
        if start >= 0:
            target.append((start, end, claim))
    return Highlighted(
        subject=None if revision.subject is None else _segments(revision.subject, subject_spans),
        body=_segments(revision.body, body_spans),
        claims=claims,
    )


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str  # file | hunk | add | del | same
    text: str


def diff_lines(diff: str | None) -> list[DiffLine]:
    lines: list[DiffLine] = []
    for line in (diff or "").split("\n") if diff else []:
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        lines.append(DiffLine(kind, line))
    return lines


@dataclass(frozen=True, slots=True)
class QueueRow:
    draft: Draft
    revision: DraftRevision
    lead: Lead | None
    expires: str
    expires_tone: str


def _queue_order() -> tuple[Any, ...]:
    return (Draft.submitted_at, Draft.created_at, Draft.id)


async def _leads(console: Console, ids: set[uuid.UUID]) -> dict[uuid.UUID, Lead]:
    if not ids:
        return {}
    return {
        lead.id: lead
        for lead in await console.session.scalars(select(Lead).where(Lead.id.in_(ids)))
    }


async def _queue(console: Console, channel: str) -> list[QueueRow]:
    query = select(Draft).where(Draft.status == DraftStatus.PENDING)
    if channel:
        query = query.where(Draft.channel == channel)
    drafts = list(await console.session.scalars(query.order_by(*_queue_order()).limit(QUEUE_LIMIT)))
    revisions: dict[tuple[uuid.UUID, int], DraftRevision] = {}
    if drafts:
        for item in await console.session.scalars(
            select(DraftRevision).where(DraftRevision.draft_id.in_([d.id for d in drafts]))
        ):
            revisions[(item.draft_id, item.number)] = item
    leads = await _leads(console, {draft.lead_id for draft in drafts})
    now = utcnow()
    rows = []
    for draft in drafts:
        revision = revisions.get((draft.id, draft.current_revision))
        if revision is None:  # a draft always has its current revision
            continue
        text, tone = expires_in(draft.expires_at, now)
        rows.append(QueueRow(draft, revision, leads.get(draft.lead_id), text, tone))
    return rows


async def _channels(console: Console) -> list[str]:
    return list(
        await console.session.scalars(
            select(Draft.channel)
            .where(Draft.status == DraftStatus.PENDING)
            .distinct()
            .order_by(Draft.channel)
        )
    )


async def _queue_panel(
    request: Request,
    console: Console,
    *,
    channel: str = "",
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    channels = await _channels(console)
    if channel and channel not in channels:
        channels.append(channel)
    rows = await _queue(console, channel)
    context: dict[str, Any] = {
        "rows": rows,
        "channel": channel,
        "channels": channels,
        "limit": QUEUE_LIMIT,
        "as_of": utcnow().isoformat(),
        "can_review": console.can(Permission.APPROVALS_REVIEW),
        "panel_notices": notices or [],
    }
    template = "approvals/_queue.html" if is_htmx(request) else "approvals/page.html"
    return render(request, template, context, status=status)


@router.get("")
async def queue_page(request: Request, console: ViewApprovals, channel: str = "") -> Response:
    return await _queue_panel(request, console, channel=channel.strip()[:20])


def _as_of(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _uuids(values: list[Any]) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    for value in values:
        try:
            ids.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    return list(dict.fromkeys(ids))


async def _policy(request: Request, console: Console) -> service.Policy:
    return await service.tenant_policy(
        console.session,
        console.principal.tenant_id,
        default_expiry_days=settings_of(request).approval_expiry_days,
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


async def _draft_names(console: Console, ids: list[uuid.UUID]) -> dict[str, str]:
    """Draft id → its lead's name, for the notices naming skipped drafts."""
    if not ids:
        return {}
    drafts = list(await console.session.scalars(select(Draft).where(Draft.id.in_(ids))))
    leads = await _leads(console, {draft.lead_id for draft in drafts})
    names = {}
    for draft in drafts:
        lead = leads.get(draft.lead_id)
        name = (lead.full_name or lead.email or "") if lead else ""
        names[str(draft.id)] = name or f"lead {str(draft.lead_id)[:8]}"
    return names


@router.post("/bulk")
async def bulk_approve(request: Request, console: ReviewDrafts) -> Response:
    """Approve the selected drafts ("selected": the ticked leads) or every draft on screen
    ("shown"), limited to the channel filter and to drafts older than the page."""
    form = await request.form()
    channel = str(form.get("channel") or "").strip()[:20]
    scope = str(form.get("scope") or "selected")
    lead_ids = _uuids(form.getlist("lead_id" if scope == "selected" else "shown"))
    if not lead_ids:
        text = (
            "Select at least one draft to approve."
            if scope == "selected"
            else "No drafts are shown: nothing to approve."
        )
        return await _queue_panel(
            request, console, channel=channel, notices=[Notice("error", text)], status=422
        )
    approved, skipped = await service.bulk_approve(
        console.session,
        console.principal,
        channel=channel or None,
        lead_ids=lead_ids,
        created_before=_as_of(str(form.get("as_of") or "")) or utcnow(),
        policy=await _policy(request, console),
        now=utcnow(),
    )
    notices = [
        Notice(
            "success" if approved else "info",
            f"Approved {_plural(len(approved), 'draft')}, skipped {len(skipped)}.",
        )
    ]
    names = await _draft_names(console, _uuids([item["draft_id"] for item in skipped]))
    reasons: dict[str, list[str]] = {}
    for item in skipped:
        reasons.setdefault(item["reason"], []).append(names.get(item["draft_id"], "a draft"))
    for reason, who in reasons.items():
        shown = ", ".join(who[:5]) + (f" and {len(who) - 5} more" if len(who) > 5 else "")
        notices.append(
            Notice("warning", f"Skipped {len(who)} ({shown}): {SKIP_REASONS.get(reason, reason)}.")
        )
    return await _queue_panel(request, console, channel=channel, notices=notices)


# --- one draft ---------------------------------------------------------------------------------


def _queue_key(draft: Draft) -> tuple[bool, datetime, datetime, uuid.UUID]:
    # Postgres puts a missing submission time last, as here.
    return (
        draft.submitted_at is None,
        draft.submitted_at or draft.created_at,
        draft.created_at,
        draft.id,
    )


async def _neighbours(
    console: Console, draft: Draft
) -> tuple[uuid.UUID | None, uuid.UUID | None, int | None, int]:
    """The previous and next pending drafts around this one in queue order, its place in the
    queue (None when it is not waiting) and the queue's length."""
    queue = list(
        await console.session.scalars(
            select(Draft)
            .where(Draft.status == DraftStatus.PENDING)
            .order_by(*_queue_order())
            .limit(QUEUE_LIMIT)
        )
    )
    key = _queue_key(draft)
    before = [item for item in queue if _queue_key(item) < key]
    after = [item for item in queue if _queue_key(item) > key]
    position = len(before) + 1 if any(item.id == draft.id for item in queue) else None
    return (
        before[-1].id if before else None,
        after[0].id if after else None,
        position,
        len(queue),
    )


@dataclass(frozen=True, slots=True)
class RevisionView:
    revision: DraftRevision
    diff: list[DiffLine]


@dataclass(frozen=True, slots=True)
class DecisionView:
    approval: Approval
    revision: int | None


@dataclass(slots=True)
class EditForm:
    subject: str | None
    body: str
    errors: dict[str, str]
    open: bool = False


async def _draft_panel(
    request: Request,
    console: Console,
    draft_id: uuid.UUID,
    *,
    notices: list[Notice] | None = None,
    form: EditForm | None = None,
    reject_error: str = "",
    reason: str = "",
    status: int = 200,
) -> Response:
    session = console.session
    draft = await service.get_draft(session, draft_id)
    if draft.tenant_id != console.principal.tenant_id:
        raise ConsoleProblem(404, "Not found", "This draft does not exist.")
    revisions = await service.revisions_of(session, draft.id)
    current = next((r for r in revisions if r.number == draft.current_revision), None)
    if current is None:
        raise ConsoleProblem(404, "Not found", "The draft's current revision is missing.")
    numbers = {revision.id: revision.number for revision in revisions}
    decisions = [
        DecisionView(approval, numbers.get(approval.revision_id))
        for approval in await session.scalars(
            select(Approval)
            .where(Approval.draft_id == draft.id)
            .order_by(Approval.decided_at.desc(), Approval.id)
        )
    ]
    previous, following, position, waiting = await _neighbours(console, draft)
    lead = await session.get(Lead, draft.lead_id)
    expires, expires_tone = expires_in(draft.expires_at, utcnow())
    can_review = console.can(Permission.APPROVALS_REVIEW)
    pending = draft.status == DraftStatus.PENDING
    context: dict[str, Any] = {
        "draft": draft,
        "lead": lead,
        "revision": current,
        "text": highlight(current),
        "history": [RevisionView(r, diff_lines(r.diff)) for r in reversed(revisions)],
        "decisions": decisions,
        "previous_id": previous,
        "next_id": following,
        "position": position,
        "waiting": waiting,
        "expires": expires,
        "expires_tone": expires_tone,
        "policy": await _policy(request, console),
        "can_review": can_review,
        "can_decide": can_review and pending,
        "can_edit": can_review and draft.status in (DraftStatus.PENDING, DraftStatus.APPROVED),
        "form": form or EditForm(current.subject, current.body, {}),
        "reject_error": reject_error,
        "reason": reason,
        "panel_notices": notices or [],
    }
    template = "approvals/_draft.html" if is_htmx(request) else "approvals/detail.html"
    return render(request, template, context, status=status)


@router.get("/{draft_id}")
async def draft_page(request: Request, console: ViewApprovals, draft_id: uuid.UUID) -> Response:
    return await _draft_panel(request, console, draft_id)


def _revision_number(value: str) -> int | None:
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number >= 1 else None


def _stale(shown: int | None, current: int) -> Notice:
    return Notice(
        "error",
        f"Not done: the draft changed while you were reading it (you saw revision {shown}, "
        f"revision {current} is now current). Read the new text below, then decide again.",
    )


@router.post("/{draft_id}/approve")
async def approve(
    request: Request,
    console: ReviewDrafts,
    draft_id: uuid.UUID,
    revision: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    shown = _revision_number(revision)
    if shown is None:
        notice = Notice("error", "Approve names the revision you read; reload the page.")
        return await _draft_panel(request, console, draft_id, notices=[notice], status=422)
    policy = await _policy(request, console)
    try:
        async with console.session.begin_nested():
            await service.approve(
                console.session,
                console.principal,
                draft_id,
                revision_number=shown,
                policy=policy,
                now=utcnow(),
            )
    except service.FourEyes:
        notice = Notice(
            "error",
            "Not approved: you wrote this revision, and four-eyes review needs another reviewer.",
        )
        return await _draft_panel(request, console, draft_id, notices=[notice], status=403)
    except service.NotReviewable as error:
        draft = await service.get_draft(console.session, draft_id)
        if draft.status == DraftStatus.PENDING and draft.current_revision != shown:
            notice = _stale(shown, draft.current_revision)
        else:
            notice = Notice("error", f"Not approved: {error.detail}")
        return await _draft_panel(request, console, draft_id, notices=[notice], status=409)
    notice = Notice(
        "success",
        f"Approved revision {shown}: exactly this text may now be sent.",
    )
    return await _draft_panel(request, console, draft_id, notices=[notice])


async def _current_matches(console: Console, draft_id: uuid.UUID, shown: int | None) -> bool:
    draft = await service.get_draft(console.session, draft_id)
    return shown is None or draft.current_revision == shown


@router.post("/{draft_id}/reject")
async def reject(
    request: Request,
    console: ReviewDrafts,
    draft_id: uuid.UUID,
    reason: Annotated[str, Form(max_length=MAX_REASON)] = "",
    revision: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    reason = reason.replace("\r\n", "\n").strip()
    if not reason:
        return await _draft_panel(
            request,
            console,
            draft_id,
            reject_error="Say why: the author reads the reason.",
            status=422,
        )
    shown = _revision_number(revision)
    if not await _current_matches(console, draft_id, shown):
        draft = await service.get_draft(console.session, draft_id)
        notice = _stale(shown, draft.current_revision)
        return await _draft_panel(
            request, console, draft_id, notices=[notice], reason=reason, status=409
        )
    try:
        async with console.session.begin_nested():
            await service.reject(
                console.session, console.principal, draft_id, reason=reason, now=utcnow()
            )
    except service.NotReviewable as error:
        notice = Notice("error", f"Not rejected: {error.detail}")
        return await _draft_panel(request, console, draft_id, notices=[notice], status=409)
    notice = Notice("success", "Rejected: the author sees your reason.")
    return await _draft_panel(request, console, draft_id, notices=[notice])


@router.post("/{draft_id}/edit")
async def edit(
    request: Request,
    console: ReviewDrafts,
    draft_id: uuid.UUID,
    body: Annotated[str, Form(max_length=MAX_BODY)] = "",
    subject: Annotated[str | None, Form(max_length=MAX_SUBJECT)] = None,
    revision: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    draft = await service.get_draft(console.session, draft_id)
    current = await service.current_revision(console.session, draft)
    body = body.replace("\r\n", "\n")
    if current.subject is not None:
        subject = (subject or "").replace("\r\n", " ").replace("\n", " ").strip()
    else:
        subject = None
    form = EditForm(subject, body, {}, open=True)
    if current.subject is not None and not subject:
        form.errors["subject"] = "An e-mail needs a subject."
    if not body.strip():
        form.errors["body"] = "The message cannot be empty."
    if form.errors:
        return await _draft_panel(request, console, draft_id, form=form, status=422)
    if draft.status not in (DraftStatus.PENDING, DraftStatus.APPROVED):
        notice = Notice("error", f"Not saved: the draft is {draft.status}.")
        return await _draft_panel(request, console, draft_id, notices=[notice], status=409)
    shown = _revision_number(revision)
    if shown is not None and shown != current.number:
        notice = _stale(shown, current.number)
        return await _draft_panel(request, console, draft_id, notices=[notice], status=409)
    if subject == current.subject and body == current.body:
        notice = Notice("info", "Nothing changed: no new revision.")
        return await _draft_panel(request, console, draft_id, notices=[notice])
    was_approved = draft.status == DraftStatus.APPROVED
    new = await service.edit(
        console.session, console.principal, draft_id, subject=subject, body=body, now=utcnow()
    )
    text = f"Saved as revision {new.number}; it waits for review"
    if was_approved:
        text += " (the approval of the previous text no longer lets it be sent)"
    notice = Notice("success", text + ".")
    return await _draft_panel(request, console, draft_id, notices=[notice])
