from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from leadrelay.compliance import audit
from leadrelay.core.db import Database
from leadrelay.core.schemas import Input
from leadrelay.identity.deps import CanExportAudit, CanReadAudit, SessionDep

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    occurred_at: datetime
    actor_type: str
    actor_id: str | None
    action: str
    target_type: str | None
    target_id: str | None
    correlation_id: str | None
    request_id: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


class ChainVerification(BaseModel):
    ok: bool
    checked: int
    first_bad_seq: int | None
    reason: str | None


class AuditQuery(Input):
    action: str | None = None
    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    correlation_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def to_filter(self) -> audit.AuditFilter:
        return audit.AuditFilter(**self.model_dump(exclude={"limit", "before_seq"}))


class AuditPageQuery(AuditQuery):
    # In the one query model: beside it, `extra="forbid"` would refuse them as unknown.
    limit: int = Field(default=100, ge=1, le=1000)
    before_seq: int | None = Field(default=None, ge=1)


@router.get("")
async def list_audit_events(
    session: SessionDep, _: CanReadAudit, query: Annotated[AuditPageQuery, Query()]
) -> list[AuditEventOut]:
    rows = await audit.list_events(
        session, query.to_filter(), limit=query.limit, before_seq=query.before_seq
    )
    return [AuditEventOut.model_validate(r) for r in rows]


@router.get("/export.csv", response_class=StreamingResponse)
async def export_audit_csv(
    request: Request, actor: CanExportAudit, filters: Annotated[AuditQuery, Query()]
) -> StreamingResponse:
    """Streams every matching row (bounded memory) from its own tenant-bound transaction."""
    db: Database = request.app.state.db

    async def rows() -> AsyncIterator[str]:
        async with db.session(actor.tenant_id) as session:
            async for chunk in audit.export_csv(session, filters.to_filter()):
                yield chunk

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="audit.csv"'},
    )


@router.get("/verify")
async def verify_audit_chain(session: SessionDep, actor: CanReadAudit) -> ChainVerification:
    report = await audit.verify_chain(session, actor.tenant_id)
    return ChainVerification(
        ok=report.ok,
        checked=report.checked,
        first_bad_seq=report.first_bad_seq,
        reason=report.reason,
    )
