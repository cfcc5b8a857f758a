"""The audit trail: a filtered timeline, chain verification, and a CSV export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from leadrelay.compliance import audit
from leadrelay.console.auth import Console, ExportAudit, ViewAudit, database
from leadrelay.console.rendering import SECURITY_HEADERS, Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.identity import service
from leadrelay.identity.permissions import Permission

router = APIRouter(prefix="/console/audit")

PAGE_SIZE = 50
# Suggestions for the filter inputs; any other value can still be typed.
KNOWN_ACTIONS = (
    "api_key.created",
    "api_key.revoked",
    "dead_letter.replayed",
    "tenant.created",
    "user.created",
    "user.login",
    "user.logout",
    "user.updated",
)
KNOWN_TARGET_TYPES = ("api_key", "dead_letter", "tenant", "user")
TextFilter = Annotated[str, Query(max_length=100)]


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """The filter form as typed (kept for re-display) and as the service wants it."""

    action: str = ""
    target_type: str = ""
    since: str = ""
    until: str = ""

    def to_filter(self) -> tuple[audit.AuditFilter, list[Notice]]:
        notices: list[Notice] = []

        def day(value: str, label: str) -> date | None:
            if not value:
                return None
            try:
                return date.fromisoformat(value)
            except ValueError:
                notices.append(Notice("warning", f"Ignored the {label} date {value!r}."))
                return None

        since, until = day(self.since, "from"), day(self.until, "to")
        return (
            audit.AuditFilter(
                action=self.action.strip() or None,
                target_type=self.target_type.strip() or None,
                since=datetime.combine(since, time.min, tzinfo=UTC) if since else None,
                # "until" is inclusive of the whole day the person picked.
                until=datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC)
                if until
                else None,
            ),
            notices,
        )

    @property
    def params(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value}


async def _actor_names(console: Console) -> dict[str, str]:
    """User ids to e-mails, for people who may see the user list; others see short ids."""
    if not console.can(Permission.USERS_READ):
        return {}
    return {str(user.id): user.email for user in await service.list_users(console.session)}


def _wants_list_only(request: Request) -> bool:
    return (
        is_htmx(request)
        and request.headers.get("hx-target") == "audit-list"
        and not request.headers.get("hx-history-restore-request")
    )


@router.get("")
async def audit_page(
    request: Request,
    console: ViewAudit,
    action: TextFilter = "",
    target_type: TextFilter = "",
    since: TextFilter = "",
    until: TextFilter = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    query = AuditQuery(action, target_type, since, until)
    filters, notices = query.to_filter()
    events = await audit.list_events(
        console.session, filters, limit=PAGE_SIZE + 1, before_seq=before
    )
    context: dict[str, Any] = {
        "events": events[:PAGE_SIZE],
        "older_than": events[PAGE_SIZE - 1].seq if len(events) > PAGE_SIZE else None,
        "query": query,
        "actors": await _actor_names(console),
        "known_actions": sorted({*KNOWN_ACTIONS, *(event.action for event in events)}),
        "known_target_types": KNOWN_TARGET_TYPES,
        "can_export": console.can(Permission.AUDIT_EXPORT),
        "filter_notices": notices,
    }
    template = "audit/_list.html" if _wants_list_only(request) else "audit/page.html"
    return render(request, template, context)


@router.get("/verify")
async def verify_chain(request: Request, console: ViewAudit) -> Response:
    report = await audit.verify_chain(console.session, console.principal.tenant_id)
    return render(request, "audit/_chain.html", {"report": report})


@router.get("/export.csv")
async def export_csv(
    request: Request,
    console: ExportAudit,
    action: TextFilter = "",
    target_type: TextFilter = "",
    since: TextFilter = "",
    until: TextFilter = "",
) -> StreamingResponse:
    filters, _ = AuditQuery(action, target_type, since, until).to_filter()
    tenant_id = console.principal.tenant_id
    db = database(request)

    async def rows() -> AsyncIterator[str]:
        # The request's own transaction has ended by the time the body streams: the export
        # reads in its own, bound to the same tenant.
        async with db.session(tenant_id) as session:
            async for chunk in audit.export_csv(session, filters):
                yield chunk

    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={
            **SECURITY_HEADERS,
            "content-disposition": f'attachment; filename="audit-{stamp}.csv"',
        },
    )
