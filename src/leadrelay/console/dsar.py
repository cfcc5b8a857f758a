"""Data-subject requests in the console: the open ones with their age (overdue ones marked),
a form to open one, the export's download, and erasure behind a typed confirmation that shows
the purge summary once done."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from leadrelay.compliance import dsar
from leadrelay.compliance.models import DsarRequest
from leadrelay.console.auth import Console, action, page
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import ValidationFailed
from leadrelay.identity.permissions import Permission
from leadrelay.identity.service import get_tenant
from leadrelay.outreach.api import keys_of

router = APIRouter(prefix="/console/dsar")

ViewDsar = Annotated[Console, Depends(page(Permission.DSAR_MANAGE))]
ManageDsar = Annotated[Console, Depends(action(Permission.DSAR_MANAGE))]

KINDS = {"export": "Export (access)", "erasure": "Erasure"}
SUBJECT_KINDS = {"email": "E-mail", "phone": "Phone", "lead": "Lead id"}
STATUS_TONES = {"open": "info", "completed": "good", "rejected": "muted", "failed": "bad"}


@dataclass(slots=True)
class OpenForm:
    kind: str = "export"
    subject_kind: str = "email"
    subject: str = ""
    region: str = ""
    note: str = ""
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Row:
    request: DsarRequest
    age_days: int
    overdue: bool


def _rows(requests: list[DsarRequest]) -> list[Row]:
    now = utcnow()
    return [Row(r, dsar.age_days(r, now), dsar.is_overdue(r, now)) for r in requests]


def _labels() -> dict[str, Any]:
    return {"kinds": KINDS, "subject_kinds": SUBJECT_KINDS, "status_tones": STATUS_TONES}


async def _panel(
    request: Request,
    console: Console,
    *,
    form: OpenForm | None = None,
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    rows = _rows(await dsar.list_requests(console.session))
    context: dict[str, Any] = {
        "rows": rows,
        "open_count": sum(1 for r in rows if r.request.status == "open"),
        "overdue_count": sum(1 for r in rows if r.overdue),
        "form": form or OpenForm(),
        "panel_notices": notices or [],
        **_labels(),
    }
    template = "dsar/_panel.html" if is_htmx(request) else "dsar/page.html"
    return render(request, template, context, status=status)


@router.get("")
async def dsar_page(request: Request, console: ViewDsar) -> Response:
    return await _panel(request, console)


@router.post("")
async def open_dsar(
    request: Request,
    console: ManageDsar,
    kind: Annotated[str, Form(max_length=20)] = "export",
    subject_kind: Annotated[str, Form(max_length=10)] = "email",
    subject: Annotated[str, Form(max_length=320)] = "",
    region: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    form = OpenForm(kind, subject_kind, subject.strip(), region.strip().upper(), note.strip())
    if kind not in KINDS:
        form.errors["kind"] = "Choose export or erasure."
    if subject_kind not in SUBJECT_KINDS:
        form.errors["subject_kind"] = "Choose e-mail, phone or lead id."
    if not form.subject:
        form.errors["subject"] = "Type the person's e-mail, phone or lead id."
    if form.region and (len(form.region) != 2 or not form.region.isalpha()):
        form.errors["region"] = "Two letters, such as US or DE."
    if not form.errors:
        region_setting = (await get_tenant(console.session, console.principal.tenant_id)).settings
        default_region = form.region or str((region_setting or {}).get("default_country") or "")
        try:
            row = await dsar.open_request(
                console.session,
                console.principal,
                keys=keys_of(request),
                kind=dsar.DsarKind(kind),
                subject_kind=dsar.SubjectKind(subject_kind),
                subject=form.subject,
                default_region=default_region.upper() or None,
                note=form.note or None,
                now=utcnow(),
            )
        except ValidationFailed as error:
            reason = next((str(e.get("message")) for e in error.errors if e.get("message")), "")
            form.errors["subject"] = f"{error.detail} ({reason})" if reason else error.detail
        else:
            what = "export" if row.kind == "export" else "erasure"
            notice = Notice(
                "success",
                f"Opened: an {what} request, due {row.due_at:%d %b %Y}.",
                href=f"/console/dsar/{row.id}",
                link="Open it",
            )
            return await _panel(request, console, notices=[notice])
    notice = Notice("error", "Not opened: check the marked fields.")
    return await _panel(request, console, form=form, notices=[notice], status=422)


async def _detail(
    request: Request,
    console: Console,
    row: DsarRequest,
    *,
    confirmation: str = "",
    errors: dict[str, str] | None = None,
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    now = utcnow()
    is_open = row.status == dsar.DsarStatus.OPEN.value
    context: dict[str, Any] = {
        "row": row,
        "age_days": dsar.age_days(row, now),
        "overdue": dsar.is_overdue(row, now),
        "phrase": dsar.confirmation_phrase(row) if is_open else "",
        "confirmation": confirmation,
        "errors": errors or {},
        "result": row.result or {},
        "detail_notices": notices or [],
        **_labels(),
    }
    return render(request, "dsar/detail.html", context, status=status)


@router.get("/{dsar_id}")
async def dsar_detail(request: Request, console: ViewDsar, dsar_id: uuid.UUID) -> Response:
    row = await dsar.access_request(console.session, dsar_id)
    return await _detail(request, console, row)


@router.get("/{dsar_id}/export.zip")
async def download_export(request: Request, console: ViewDsar, dsar_id: uuid.UUID) -> Response:
    """The ZIP (JSON and CSV per table, a manifest); the first download completes the request,
    every download is audited."""
    export = await dsar.export_request(
        console.session, console.principal, dsar_id, keys=keys_of(request), now=utcnow()
    )
    return Response(
        export.content,
        media_type="application/zip",
        headers={
            "content-disposition": f'attachment; filename="{export.filename}"',
            "cache-control": "no-store",
        },
    )


@router.post("/{dsar_id}/erase")
async def erase(
    request: Request,
    console: ManageDsar,
    dsar_id: uuid.UUID,
    confirmation: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    row = await dsar.access_request(console.session, dsar_id)
    try:
        summary = await dsar.erase_request(
            console.session,
            console.principal,
            dsar_id,
            keys=keys_of(request),
            confirmation=confirmation,
            now=utcnow(),
        )
    except dsar.ConfirmationMismatch:
        errors = {"confirmation": f"Type exactly: {dsar.confirmation_phrase(row)}"}
        notice = Notice("error", "Not erased: the confirmation does not match.")
        return await _detail(
            request,
            console,
            row,
            confirmation=confirmation,
            errors=errors,
            notices=[notice],
            status=422,
        )
    notice = Notice(
        "success",
        f"Erased: {summary.total} rows in {len(summary.deleted)} tables. The addresses stay "
        "suppressed as keyed hashes, so the person is never contacted again.",
    )
    return await _detail(request, console, row, notices=[notice])


@router.post("/{dsar_id}/reject")
async def reject(
    request: Request,
    console: ManageDsar,
    dsar_id: uuid.UUID,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    row = await dsar.access_request(console.session, dsar_id)
    if len(reason.strip()) < 3:
        errors = {"reason": "Say why the request is rejected."}
        return await _detail(request, console, row, errors=errors, status=422)
    row = await dsar.reject_request(
        console.session, console.principal, dsar_id, reason=reason.strip(), now=utcnow()
    )
    return await _detail(request, console, row, notices=[Notice("info", "Rejected.")])
