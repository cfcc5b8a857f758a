"""Data-subject requests over HTTP: open, list, read, export (a ZIP), erase, reject."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from leadrelay.compliance import dsar
from leadrelay.compliance.models import DsarRequest
from leadrelay.core.clock import utcnow
from leadrelay.core.schemas import Input
from leadrelay.identity.deps import SessionDep, require
from leadrelay.identity.permissions import Permission
from leadrelay.identity.service import Principal, get_tenant
from leadrelay.outreach.api import keys_of

router = APIRouter(prefix="/v1/dsar", tags=["dsar"])

CanManageDsar = Annotated[Principal, Depends(require(Permission.DSAR_MANAGE))]


class DsarIn(Input):
    kind: dsar.DsarKind
    subject_kind: dsar.SubjectKind
    subject: str = Field(min_length=1, max_length=320)
    note: str | None = Field(default=None, max_length=2000)
    default_region: str | None = Field(
        default=None, min_length=2, max_length=2, description="for numbers without +country"
    )


class EraseIn(Input):
    confirmation: str = Field(
        max_length=400, description='"erase <subject>", the subject exactly as the request shows'
    )


class RejectIn(Input):
    reason: str = Field(min_length=3, max_length=2000)


class DsarOut(BaseModel):
    id: uuid.UUID
    kind: str
    status: str
    subject_kind: str
    subject: str | None
    subject_hash: str
    requested_by: str
    requested_at: datetime
    due_at: datetime
    completed_at: datetime | None
    age_days: int
    overdue: bool
    result: dict[str, Any] | None
    note: str | None
    confirmation: str | None = Field(description="what to type to confirm an open erasure")

    @classmethod
    def of(cls, row: DsarRequest, now: datetime) -> DsarOut:
        open_erasure = (
            row.kind == dsar.DsarKind.ERASURE.value and row.status == dsar.DsarStatus.OPEN.value
        )
        return cls(
            id=row.id,
            kind=row.kind,
            status=row.status,
            subject_kind=row.subject_kind,
            subject=row.subject,
            subject_hash=row.subject_hash,
            requested_by=row.requested_by,
            requested_at=row.requested_at,
            due_at=row.due_at,
            completed_at=row.completed_at,
            age_days=dsar.age_days(row, now),
            overdue=dsar.is_overdue(row, now),
            result=row.result,
            note=row.note,
            confirmation=dsar.confirmation_phrase(row) if open_erasure else None,
        )


class PurgeOut(BaseModel):
    request: DsarOut
    deleted: dict[str, int]
    suppressed: dict[str, int]
    requests_cleared: int
    total: int


async def _region(session: SessionDep, tenant_id: uuid.UUID, given: str | None) -> str | None:
    if given:
        return given.upper()
    region = ((await get_tenant(session, tenant_id)).settings or {}).get("default_country")
    return str(region).upper() if region else None


@router.post("", status_code=201)
async def open_dsar(
    request: Request, session: SessionDep, actor: CanManageDsar, body: DsarIn
) -> DsarOut:
    now = utcnow()
    row = await dsar.open_request(
        session,
        actor,
        keys=keys_of(request),
        kind=body.kind,
        subject_kind=body.subject_kind,
        subject=body.subject,
        default_region=await _region(session, actor.tenant_id, body.default_region),
        note=body.note,
        now=now,
    )
    return DsarOut.of(row, now)


@router.get("")
async def list_dsars(
    session: SessionDep,
    _: CanManageDsar,
    status: Annotated[dsar.DsarStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[DsarOut]:
    now = utcnow()
    return [
        DsarOut.of(r, now) for r in await dsar.list_requests(session, status=status, limit=limit)
    ]


@router.get("/{dsar_id}")
async def get_dsar(session: SessionDep, _: CanManageDsar, dsar_id: uuid.UUID) -> DsarOut:
    return DsarOut.of(await dsar.access_request(session, dsar_id), utcnow())


@router.get("/{dsar_id}/export.zip", response_class=Response)
async def export_dsar(
    request: Request, session: SessionDep, actor: CanManageDsar, dsar_id: uuid.UUID
) -> Response:
    """The ZIP of everything held about the person (JSON and CSV per table, a manifest)."""
    export = await dsar.export_request(session, actor, dsar_id, keys=keys_of(request), now=utcnow())
    return Response(
        export.content,
        media_type="application/zip",
        headers={
            "content-disposition": f'attachment; filename="{export.filename}"',
            "x-content-sha256": export.sha256,
        },
    )


@router.post("/{dsar_id}/erase")
async def erase_dsar(
    request: Request,
    session: SessionDep,
    actor: CanManageDsar,
    dsar_id: uuid.UUID,
    body: EraseIn,
) -> PurgeOut:
    """Erase the person in this one transaction; the answer is the purge summary."""
    now = utcnow()
    summary = await dsar.erase_request(
        session,
        actor,
        dsar_id,
        keys=keys_of(request),
        confirmation=body.confirmation,
        now=now,
    )
    row = await dsar.access_request(session, dsar_id)
    return PurgeOut(
        request=DsarOut.of(row, now),
        deleted=summary.deleted,
        suppressed=summary.suppressed,
        requests_cleared=summary.requests_cleared,
        total=summary.total,
    )


@router.post("/{dsar_id}/reject")
async def reject_dsar(
    session: SessionDep, actor: CanManageDsar, dsar_id: uuid.UUID, body: RejectIn
) -> DsarOut:
    now = utcnow()
    row = await dsar.reject_request(session, actor, dsar_id, reason=body.reason, now=now)
    return DsarOut.of(row, now)
