"""Leads: the filtered list with keyset "Load more", and one lead's detail (normalized fields,
verification, its ICP score and routing decision, where every value came from, merges that can
be undone, and its timeline).

Scores and owners show only to those who may read scoring and routing: a reviewer sees the
leads without them, and a score or owner filter in their URL is ignored."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture import dedup, service, sources
from leadrelay.capture.dedup_models import LeadMerge
from leadrelay.capture.models import Lead, LeadImport, LeadStatus
from leadrelay.capture.provider_models import LeadMessage
from leadrelay.compliance import audit
from leadrelay.console import drafting
from leadrelay.console.auth import Console, ViewLeads, WriteLeads
from leadrelay.console.errors import ConsoleProblem
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.console.routing import QUEUE_REASONS, time_left
from leadrelay.core.clock import utcnow
from leadrelay.identity import service as identity
from leadrelay.identity.permissions import Permission
from leadrelay.outreach.models import Message
from leadrelay.routing import service as routing
from leadrelay.routing.models import Assignment, AssignmentStatus, Rep, Team
from leadrelay.scoring import service as scoring
from leadrelay.scoring.models import IcpVersion, LeadScore, VersionStatus

router = APIRouter(prefix="/console/leads")

PAGE_SIZE = 50
TIMELINE_EVENTS = 20
CONVERSATION_ITEMS = 30  # each way: the newest messages we sent and the newest we received
# Flags the normalizers and verifiers set; the filter offers these (any other can be typed in
# the URL).
KNOWN_FLAGS = (
    "disposable_email",
    "email_verified",
    "free_email",
    "invalid_email",
    "invalid_phone",
    "invalid_website",
    "personal_email",
    "phone_verified",
    "role_email",
    "unknown_country",
)
FIELD_LABELS = {
    "full_name": "Name",
    "email": "E-mail",
    "phone_e164": "Phone",
    "phone_type": "Phone type",
    "company": "Company",
    "company_key": "Company key",
    "domain": "Domain",
    "city": "City",
    "country": "Country",
    "title": "Title",
    "website": "Website",
}
TextFilter = Annotated[str, Query(max_length=200)]
UNASSIGNED = "unassigned"  # the owner filter's value for "never routed or in the work queue"
MAX_SCORE = 100


@dataclass(frozen=True, slots=True)
class ScoreCell:
    """A lead's score by the active ICP version, as the list shows it."""

    score: int
    qualified: bool


@dataclass(frozen=True, slots=True)
class OwnerCell:
    """A lead's current assignment, as the list shows it: a rep's name or the queue's reason."""

    status: str
    rep: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class LeadsQuery:
    """The filter form as typed (kept for re-display) and as the service wants it."""

    status: str = ""
    source: str = ""
    flag: str = ""
    q: str = ""
    min_score: str = ""
    owner: str = ""

    def to_filter(
        self,
        *,
        reps: Sequence[Rep] = (),
        scores: bool = True,
        owners: bool = True,
    ) -> tuple[service.LeadFilter, list[Notice]]:
        """`reps` are the tenant's reps (an owner must be one); `scores` and `owners` say
        whether the viewer may filter by them."""
        notices: list[Notice] = []
        status: LeadStatus | None = None
        if self.status:
            try:
                status = LeadStatus(self.status)
            except ValueError:
                notices.append(Notice("warning", f"Ignored the unknown status {self.status!r}."))
        source_id: uuid.UUID | None = None
        if self.source:
            try:
                source_id = uuid.UUID(self.source)
            except ValueError:
                notices.append(Notice("warning", "Ignored a source that is not an id."))
        min_score: int | None = None
        if self.min_score.strip():
            if not scores:
                notices.append(Notice("warning", "Ignored the score filter: scores are hidden."))
            else:
                min_score = _score(self.min_score)
                if min_score is None:
                    notices.append(
                        Notice(
                            "warning",
                            f"Ignored the score {self.min_score.strip()!r}: "
                            f"a score is a whole number from 0 to {MAX_SCORE}.",
                        )
                    )
        owner: uuid.UUID | None = None
        unassigned = False
        if self.owner:
            if not owners:
                notices.append(Notice("warning", "Ignored the owner filter: owners are hidden."))
            elif self.owner == UNASSIGNED:
                unassigned = True
            else:
                try:
                    owner = uuid.UUID(self.owner)
                except ValueError:
                    notices.append(Notice("warning", "Ignored an owner that is not a rep id."))
                else:
                    if owner not in {rep.id for rep in reps}:
                        owner = None
                        notices.append(Notice("warning", "Ignored an owner who is not a rep here."))
        return (
            service.LeadFilter(
                status=status,
                source_id=source_id,
                flag=self.flag.strip() or None,
                q=self.q.strip() or None,
                min_score=min_score,
                owner=owner,
                unassigned=unassigned,
            ),
            notices,
        )

    @property
    def params(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value}


def _score(text: str) -> int | None:
    """A typed score, 0–100 (a whole number; "60.0" is 60), or None when it is not one."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not value.is_integer() or not 0 <= value <= MAX_SCORE:
        return None
    return int(value)


async def _scores(
    session: AsyncSession, lead_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ScoreCell]:
    """The scores of the active ICP version for these leads, in one query."""
    if not lead_ids:
        return {}
    rows = await session.execute(
        select(LeadScore.lead_id, LeadScore.score, LeadScore.qualified)
        .join(IcpVersion, IcpVersion.id == LeadScore.version_id)
        .where(IcpVersion.status == VersionStatus.ACTIVE, LeadScore.lead_id.in_(lead_ids))
    )
    return {row.lead_id: ScoreCell(row.score, row.qualified) for row in rows}


async def _owners(
    session: AsyncSession, lead_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, OwnerCell]:
    """The current assignment (or queue entry) of these leads with the rep's name, in one
    query."""
    if not lead_ids:
        return {}
    rows = await session.execute(
        select(Assignment.lead_id, Assignment.status, Assignment.reason, Rep.name)
        .outerjoin(Rep, Rep.id == Assignment.rep_id)
        .where(
            Assignment.lead_id.in_(lead_ids),
            Assignment.status != AssignmentStatus.REASSIGNED,
        )
    )
    return {row.lead_id: OwnerCell(str(row.status), row.name, row.reason) for row in rows}


def _htmx_target(request: Request) -> str | None:
    """The element an htmx request will swap (None for a page load or a history restore)."""
    if not is_htmx(request) or request.headers.get("hx-history-restore-request"):
        return None
    return request.headers.get("hx-target")


@router.get("")
async def leads_page(
    request: Request,
    console: ViewLeads,
    status: TextFilter = "",
    source: TextFilter = "",
    flag: Annotated[str, Query(max_length=40)] = "",
    q: TextFilter = "",
    min_score: Annotated[str, Query(max_length=20)] = "",
    owner: Annotated[str, Query(max_length=40)] = "",
    after: uuid.UUID | None = None,
) -> Response:
    session = console.session
    show_scores = console.can(Permission.SCORING_READ)
    show_owners = console.can(Permission.ROUTING_READ)
    reps = (
        list(await session.scalars(select(Rep).order_by(Rep.name, Rep.id))) if show_owners else []
    )
    query = LeadsQuery(status, source, flag, q, min_score, owner)
    filters, notices = query.to_filter(reps=reps, scores=show_scores, owners=show_owners)
    found = await service.list_leads(session, filters, limit=PAGE_SIZE + 1, after=after)
    leads = found[:PAGE_SIZE]
    lead_ids = [lead.id for lead in leads]
    all_sources = await sources.list_sources(session)
    context: dict[str, Any] = {
        "leads": leads,
        "next_after": leads[-1].id if len(found) > PAGE_SIZE else None,
        "query": query,
        "sources": all_sources,
        "source_names": {source.id: source.name for source in all_sources},
        "statuses": [status.value for status in LeadStatus],
        "flags": sorted({*KNOWN_FLAGS, *([query.flag] if query.flag else [])}),
        "filter_notices": notices,
        "can_write": console.can(Permission.LEADS_WRITE),
        "show_scores": show_scores,
        "show_owners": show_owners,
        "scores": await _scores(session, lead_ids) if show_scores else {},
        "owners": await _owners(session, lead_ids) if show_owners else {},
        "reps": reps,
        "unassigned": UNASSIGNED,
        "queue_reasons": QUEUE_REASONS,
        "columns": 8 + show_scores + show_owners,
    }
    target = _htmx_target(request)
    template = {"leads-more": "leads/_rows.html", "leads-list": "leads/_list.html"}.get(
        target or "", "leads/page.html"
    )
    return render(request, template, context)


async def _detail_context(console: Console, lead_id: uuid.UUID) -> dict[str, Any]:
    session = console.session
    record = await service.access_lead(session, console.principal, lead_id)
    lead = record.lead
    merges = list(
        await session.scalars(
            select(LeadMerge)
            .where(LeadMerge.survivor_id == lead.id, LeadMerge.undone_at.is_(None))
            .order_by(LeadMerge.merged_at.desc())
        )
    )
    related_ids = {*record.merged, *(merge.merged_id for merge in merges)}
    if lead.merged_into_id is not None:
        related_ids.add(lead.merged_into_id)
    related = (
        {
            item.id: item
            for item in await session.scalars(select(Lead).where(Lead.id.in_(related_ids)))
        }
        if related_ids
        else {}
    )
    import_ids = {item.import_id for item in record.provenance if item.import_id is not None}
    imports = (
        {
            item.id: item
            for item in await session.scalars(
                select(LeadImport).where(LeadImport.id.in_(import_ids))
            )
        }
        if import_ids
        else {}
    )
    events = await audit.list_events(
        session, audit.AuditFilter(target_id=str(lead.id)), limit=TIMELINE_EVENTS
    )
    # People who may see the user list see who acted; others see short ids, as on the trail.
    actors = (
        {str(user.id): user.email for user in await identity.list_users(session)}
        if console.can(Permission.USERS_READ)
        else {}
    )
    context: dict[str, Any] = {
        "lead": lead,
        "record": record,
        "merges": merges,
        "related": related,
        "imports": imports,
        "events": events,
        "actors": actors,
        "source_names": {source.id: source.name for source in await sources.list_sources(session)},
        "labels": FIELD_LABELS,
        "can_write": console.can(Permission.LEADS_WRITE),
        "show_scores": console.can(Permission.SCORING_READ),
        "show_owners": console.can(Permission.ROUTING_READ),
    }
    if console.can(Permission.OUTREACH_READ):
        context["conversation"] = await _conversation(session, lead.id)
    if context["show_scores"]:
        context.update(await _score_context(session, lead.id))
    if context["show_owners"]:
        context.update(await _routing_context(session, lead.id))
    return context


@dataclass(frozen=True, slots=True)
class ConversationItem:
    """One message of the lead's conversation, either way, as the card shows it."""

    at: datetime
    direction: str  # outbound | inbound
    channel: str
    text: str
    status: str  # outbound: the furthest delivery state, else the send status; inbound: intent
    message_id: uuid.UUID | None  # outbound: the message page to open
    dry_run: bool = False


async def _conversation(session: AsyncSession, lead_id: uuid.UUID) -> list[ConversationItem]:
    """What we sent the lead (with what providers reported) and what they answered (with how
    it was read: reply, opt-out, auto-reply …), newest first."""
    sent = await session.scalars(
        select(Message)
        .where(Message.lead_id == lead_id)
        .order_by(Message.created_at.desc())
        .limit(CONVERSATION_ITEMS)
    )
    received = await session.scalars(
        select(LeadMessage)
        .where(LeadMessage.lead_id == lead_id)
        .order_by(LeadMessage.received_at.desc())
        .limit(CONVERSATION_ITEMS)
    )
    items = [
        ConversationItem(
            at=message.sent_at or message.created_at,
            direction="outbound",
            channel=message.channel,
            text=message.subject or message.body,
            status=message.delivery_status or str(message.status),
            message_id=message.id,
            dry_run=message.dry_run,
        )
        for message in sent
    ]
    items += [
        ConversationItem(
            at=reply.received_at,
            direction="inbound",
            channel=str(reply.channel),
            text=reply.body,
            status=reply.classification or "received",
            message_id=None,
        )
        for reply in received
    ]
    return sorted(items, key=lambda item: item.at, reverse=True)


async def _score_context(session: AsyncSession, lead_id: uuid.UUID) -> dict[str, Any]:
    score = await scoring.score_of(session, lead_id)
    version = await session.get(IcpVersion, score.version_id) if score is not None else None
    if version is None:
        version = await scoring.active_version(session)
    return {"score": score, "version": version}


async def _routing_context(session: AsyncSession, lead_id: uuid.UUID) -> dict[str, Any]:
    """The current assignment with what the routing trace template reads: team and rep names
    by id as text, as the routing page gives them."""
    assignment = await routing.current_assignment(session, lead_id)
    if assignment is None:
        return {"assignment": None}
    now = utcnow()
    due = assignment.sla_due_at
    open_timer = (
        due is not None
        and assignment.status == AssignmentStatus.ASSIGNED
        and assignment.first_touch_at is None
        and assignment.breached_at is None
    )
    return {
        "assignment": assignment,
        "team_names": {str(team.id): team.name for team in await session.scalars(select(Team))},
        "rep_names": {str(rep.id): rep.name for rep in await session.scalars(select(Rep))},
        "queue_reasons": QUEUE_REASONS,
        "sla_overdue": open_timer and due is not None and due <= now,
        "sla_left": time_left(due, now) if open_timer and due is not None else "",
    }


async def _detail(
    request: Request,
    console: Console,
    lead_id: uuid.UUID,
    *,
    notices: list[Notice] | None = None,
) -> Response:
    context = await _detail_context(console, lead_id)
    context["panel_notices"] = notices or []
    context["draft_form"] = (
        await drafting.draft_form_context(request, console, context["lead"])
        if console.can(Permission.DRAFTS_WRITE)
        else None
    )
    template = (
        "leads/_detail.html" if _htmx_target(request) == "lead-detail" else "leads/detail.html"
    )
    return render(request, template, context)


@router.get("/{lead_id}")
async def lead_page(request: Request, console: ViewLeads, lead_id: uuid.UUID) -> Response:
    return await _detail(request, console, lead_id)


@router.post("/{lead_id}/merges/{merge_id}/undo")
async def undo_merge(
    request: Request, console: WriteLeads, lead_id: uuid.UUID, merge_id: uuid.UUID
) -> Response:
    await service.access_lead(console.session, console.principal, lead_id)
    merge = await console.session.get(LeadMerge, merge_id)
    if merge is None or merge.survivor_id != lead_id:
        raise ConsoleProblem(404, "Not found", "That merge does not exist.")
    await dedup.undo_merge(
        console.session,
        merge_id,
        now=utcnow(),
        actor_type="user",
        actor_id=str(console.principal.id),
    )
    notice = Notice(
        "success",
        "Merge undone: the other lead is on its own again, with its own values.",
        href=f"/console/leads/{merge.merged_id}",
        link="Open it",
    )
    return await _detail(request, console, lead_id, notices=[notice])
