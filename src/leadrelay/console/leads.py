"""Leads: the filtered list with keyset "Load more", and one lead's detail (normalized fields,
verification, where every value came from, merges that can be undone, and its timeline)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from leadrelay.capture import dedup, service, sources
from leadrelay.capture.dedup_models import LeadMerge
from leadrelay.capture.models import Lead, LeadImport, LeadStatus
from leadrelay.compliance import audit
from leadrelay.console.auth import Console, ViewLeads, WriteLeads
from leadrelay.console.errors import ConsoleProblem
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.identity import service as identity
from leadrelay.identity.permissions import Permission

router = APIRouter(prefix="/console/leads")

PAGE_SIZE = 50
TIMELINE_EVENTS = 20
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


@dataclass(frozen=True, slots=True)
class LeadsQuery:
    """The filter form as typed (kept for re-display) and as the service wants it."""

    status: str = ""
    source: str = ""
    flag: str = ""
    q: str = ""

    def to_filter(self) -> tuple[service.LeadFilter, list[Notice]]:
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
        return (
            service.LeadFilter(
                status=status,
                source_id=source_id,
                flag=self.flag.strip() or None,
                q=self.q.strip() or None,
            ),
            notices,
        )

    @property
    def params(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value}


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
    after: uuid.UUID | None = None,
) -> Response:
    query = LeadsQuery(status, source, flag, q)
    filters, notices = query.to_filter()
    found = await service.list_leads(console.session, filters, limit=PAGE_SIZE + 1, after=after)
    leads = found[:PAGE_SIZE]
    all_sources = await sources.list_sources(console.session)
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
    return {
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
