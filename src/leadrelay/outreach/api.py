"""Outreach routes: suppressions (opt-outs and their lifting), do-not-call lists, consent
records."""

from __future__ import annotations

import codecs
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from leadrelay.capture.models import Lead
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import NotFound
from leadrelay.core.schemas import Input
from leadrelay.core.security import secret_keys
from leadrelay.identity.deps import CanManageSuppressions, CanReadOutreach, SessionDep
from leadrelay.identity.service import get_tenant
from leadrelay.outreach import suppression
from leadrelay.outreach.models import ConsentState, DncEntry, Suppression, SuppressionReason

router = APIRouter(prefix="/v1", tags=["outreach"])

DNC_UPLOAD_PATH = "/v1/dnc/import"
DNC_UPLOAD_LIMIT = 200 * 1024 * 1024  # a national registry extract, streamed to disk
Channel = Literal["email", "sms", "whatsapp", "voice"]


def keys_of(request: Request) -> str:
    """The secret keys addresses are hashed with, read once per process."""
    state = request.app.state
    if not hasattr(state, "secret_keys"):
        state.secret_keys = secret_keys(state.settings)
    keys: str = state.secret_keys
    return keys


async def _region(session: SessionDep, tenant_id: uuid.UUID, given: str | None) -> str | None:
    if given:
        return given.upper()
    settings = (await get_tenant(session, tenant_id)).settings or {}
    region = settings.get("default_country")
    return str(region) if region else None


class SuppressionIn(Input):
    kind: Literal["email", "phone"]
    address: str = Field(min_length=3, max_length=320)
    reason: SuppressionReason = SuppressionReason.OPTED_OUT
    note: str | None = Field(default=None, max_length=1000)
    default_region: str | None = Field(
        default=None, min_length=2, max_length=2, description="for numbers without +country"
    )


class SuppressionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    address_kind: str
    reason: str
    source: str
    note: str | None
    created_by: str
    created_at: datetime


class SuppressionCheck(BaseModel):
    suppressed: bool
    reasons: list[str]
    dnc_lists: list[str]


class DncImportOut(BaseModel):
    list_name: str
    rows: int
    added: int
    already_listed: int
    rejected: list[dict[str, object]]


class DncListOut(BaseModel):
    list_name: str
    numbers: int


class ConsentIn(Input):
    channel: Channel
    state: ConsentState
    purpose: str = Field(min_length=1, max_length=200)
    method: str = Field(min_length=1, max_length=200, description="web form, reply STOP, call…")
    evidence: str | None = Field(default=None, max_length=5000)


class ConsentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    lead_id: uuid.UUID
    channel: str
    state: str
    purpose: str
    method: str
    evidence: str | None
    recorded_by: str
    recorded_at: datetime


@router.get("/suppressions")
async def list_suppressions(
    session: SessionDep,
    _: CanReadOutreach,
    kind: Literal["email", "phone"] | None = None,
    reason: SuppressionReason | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[SuppressionOut]:
    """Newest first. Addresses are kept only as keyed hashes: check one with `/check`."""
    query = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id)
    if kind:
        query = query.where(Suppression.address_kind == kind)
    if reason:
        query = query.where(Suppression.reason == reason)
    rows = await session.scalars(query.limit(limit).offset(offset))
    return [SuppressionOut.model_validate(r) for r in rows]


@router.get("/suppressions/check")
async def check_address(
    request: Request,
    session: SessionDep,
    actor: CanReadOutreach,
    kind: Literal["email", "phone"],
    address: Annotated[str, Query(min_length=3, max_length=320)],
    default_region: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
) -> SuppressionCheck:
    region = await _region(session, actor.tenant_id, default_region)
    normalized = suppression.normalized_address(kind, address, default_region=region)
    keys = keys_of(request)
    email, phone = (normalized, None) if kind == "email" else (None, normalized)
    reasons = await suppression.suppression_reasons(session, keys, email=email, phone=phone)
    lists = await suppression.dnc_lists(session, keys, phone)
    return SuppressionCheck(suppressed=bool(reasons), reasons=reasons, dnc_lists=lists)


@router.post("/suppressions", status_code=status.HTTP_201_CREATED)
async def add_suppression(
    body: SuppressionIn, request: Request, session: SessionDep, actor: CanManageSuppressions
) -> SuppressionOut:
    """Record an opt-out (or a bounce, a complaint): it holds before the next send and until
    the person opts back in. Idempotent."""
    region = await _region(session, actor.tenant_id, body.default_region)
    normalized = suppression.normalized_address(body.kind, body.address, default_region=region)
    row = await suppression.suppress(
        session,
        actor,
        keys=keys_of(request),
        kind=body.kind,
        normalized=normalized,
        reason=body.reason,
        source="api",
        note=body.note,
        now=utcnow(),
    )
    return SuppressionOut.model_validate(row)


@router.delete("/suppressions/{suppression_id}", status_code=status.HTTP_204_NO_CONTENT)
async def lift_suppression(
    suppression_id: uuid.UUID, session: SessionDep, actor: CanManageSuppressions
) -> Response:
    """The person opted back in; audited."""
    await suppression.lift(session, actor, suppression_id, now=utcnow())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/dnc")
async def dnc_lists(session: SessionDep, _: CanReadOutreach) -> list[DncListOut]:
    rows = await session.execute(
        select(DncEntry.list_name, func.count())
        .group_by(DncEntry.list_name)
        .order_by(DncEntry.list_name)
    )
    return [DncListOut(list_name=name, numbers=count) for name, count in rows]


@router.post("/dnc/import")
async def import_dnc(
    request: Request,
    session: SessionDep,
    actor: CanManageSuppressions,
    list_name: Annotated[str, Form(min_length=1, max_length=100)],
    file: Annotated[UploadFile, File(description="one number per line, or CSV with `phone`")],
    default_region: Annotated[str | None, Form(min_length=2, max_length=2)] = None,
) -> DncImportOut:
    """A do-not-call registry file (e.g. a national list's CSV), streamed; every rejected line
    is reported with its number and reason."""
    region = await _region(session, actor.tenant_id, default_region)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dnc.csv"
        with path.open("wb") as handle:
            while block := await file.read(1 << 20):
                handle.write(block)
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        with path.open("rb") as raw:
            lines = (decoder.decode(line) for line in raw)
            report = await suppression.import_dnc(
                session,
                actor,
                keys=keys_of(request),
                list_name=list_name.strip(),
                lines=lines,
                default_region=region,
                now=utcnow(),
            )
    return DncImportOut(
        list_name=report.list_name,
        rows=report.rows,
        added=report.added,
        already_listed=report.already_listed,
        rejected=report.rejected,
    )


async def _lead(session: SessionDep, lead_id: uuid.UUID) -> Lead:
    lead = await session.get(Lead, lead_id)
    if lead is None:
        raise NotFound("The lead does not exist.")
    return lead


@router.get("/leads/{lead_id}/consents")
async def list_consents(
    lead_id: uuid.UUID, session: SessionDep, _: CanReadOutreach
) -> list[ConsentOut]:
    """Every consent given or withdrawn, newest first: when, how, for what, on which channel."""
    await _lead(session, lead_id)
    return [ConsentOut.model_validate(c) for c in await suppression.consents_of(session, lead_id)]


@router.post("/leads/{lead_id}/consents", status_code=status.HTTP_201_CREATED)
async def record_consent(
    lead_id: uuid.UUID, body: ConsentIn, session: SessionDep, actor: CanManageSuppressions
) -> ConsentOut:
    await _lead(session, lead_id)
    row = await suppression.record_consent(
        session,
        actor,
        lead_id=lead_id,
        channel=body.channel,
        state=body.state,
        purpose=body.purpose,
        method=body.method,
        evidence=body.evidence,
        now=utcnow(),
    )
    return ConsentOut.model_validate(row)
