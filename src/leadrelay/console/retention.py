"""Retention in the console: the tenant's policy (days per record type, blank = keep forever),
a sweep now with its counts, and the latest sweeps from the audit trail. Reading takes the
audit permission; changing or running it takes COMPLIANCE_MANAGE (admins and owners)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from leadrelay.compliance import retention
from leadrelay.console.auth import Console, ViewAudit, action
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import ValidationFailed
from leadrelay.identity.permissions import Permission
from leadrelay.identity.service import get_tenant

router = APIRouter(prefix="/console/retention")
ManageCompliance = Annotated[Console, Depends(action(Permission.COMPLIANCE_MANAGE))]

LABELS = {
    "leads_not_contacted_days": "Leads never contacted",
    "messages_days": "Messages",
    "telemetry_days": "Delivery events and inbound messages",
    "outcomes_days": "CRM outcomes",
    "audit_days": "Audit trail",
}
HINTS = {
    "leads_not_contacted_days": "created this long ago, with no message or conversation kept",
    "messages_days": "at least 30 days: the outreach cooldown reads them",
    "telemetry_days": "provider events and replies, by when they arrived",
    "outcomes_days": "won and lost deals, by their close date",
    "audit_days": "the database keeps every link for now: due links are reported, not deleted",
}
DaysField = Annotated[str, Form(max_length=12)]


async def _panel(
    request: Request,
    console: Console,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    sweep: retention.SweepResult | None = None,
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    tenant = await get_tenant(console.session, console.principal.tenant_id)
    policy = retention.retention_policy(tenant).as_dict()
    context: dict[str, Any] = {
        "policy": policy,
        "defaults": retention.DEFAULT_POLICY.as_dict(),
        "form": form or {k: "" if v is None else str(v) for k, v in policy.items()},
        "errors": errors or {},
        "labels": LABELS,
        "hints": HINTS,
        "min_days": retention.MIN_DAYS,
        "max_days": retention.MAX_DAYS,
        "sweep": sweep,
        "runs": await retention.recent_sweeps(console.session, limit=10),
        "can_manage": console.can(Permission.COMPLIANCE_MANAGE),
        "panel_notices": notices or [],
    }
    template = "retention/_panel.html" if is_htmx(request) else "retention/page.html"
    return render(request, template, context, status=status)


@router.get("")
async def retention_page(request: Request, console: ViewAudit) -> Response:
    return await _panel(request, console)


@router.post("")
async def save_retention_policy(
    request: Request,
    console: ManageCompliance,
    leads_not_contacted_days: DaysField = "",
    messages_days: DaysField = "",
    telemetry_days: DaysField = "",
    outcomes_days: DaysField = "",
    audit_days: DaysField = "",
) -> Response:
    """Blank keeps a record type forever; audited by `retention.set_retention_policy`."""
    form = {
        "leads_not_contacted_days": leads_not_contacted_days.strip(),
        "messages_days": messages_days.strip(),
        "telemetry_days": telemetry_days.strip(),
        "outcomes_days": outcomes_days.strip(),
        "audit_days": audit_days.strip(),
    }
    errors: dict[str, str] = {}
    values: dict[str, int | None] = {}
    for name, typed in form.items():
        if not typed:
            values[name] = None
        elif typed.isdigit():
            values[name] = int(typed)
        else:
            errors[name] = "A whole number of days, or blank to keep forever."
    try:  # every field's error at once: the numbers are checked even beside a typo
        retention.check_policy(values)
    except ValidationFailed as error:
        for item in error.errors:
            errors.setdefault(str(item["field"]), str(item["reason"]).capitalize() + ".")
    if not errors:
        await retention.set_retention_policy(
            console.session, console.principal, values, now=utcnow()
        )
    if errors:
        notice = Notice("error", "Not saved: check the marked fields.")
        return await _panel(
            request, console, form=form, errors=errors, notices=[notice], status=422
        )
    notice = Notice("success", "Retention policy saved; the change is in the audit trail.")
    return await _panel(request, console, notices=[notice])


@router.post("/run")
async def run_retention_now(request: Request, console: ManageCompliance) -> Response:
    result = await retention.sweep_tenant(
        console.session, console.principal.tenant_id, now=utcnow(), actor=console.principal
    )
    text = f"Swept: {result.total} records purged; the run is in the audit trail."
    notices = [Notice("success", text)]
    return await _panel(request, console, sweep=result, notices=notices)
