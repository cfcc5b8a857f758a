from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from leadrelay.capture import intake, service, sources
from leadrelay.capture.cleaning import clean_lead
from leadrelay.capture.models import LeadStatus, Source
from leadrelay.capture.schemas import (
    BatchResult,
    CapturePolicyIn,
    CapturePolicyOut,
    CaptureResult,
    ExternalIdOut,
    LeadBatchIn,
    LeadDetail,
    LeadIn,
    LeadOut,
    Observation,
    SourceCreate,
    SourceOut,
    SourceUpdate,
)
from leadrelay.capture.verification import thresholds
from leadrelay.compliance.audit import record
from leadrelay.core import idempotency
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import PROBLEM_JSON, ValidationFailed, problem_body
from leadrelay.identity.deps import (
    CanManageSources,
    CanReadLeads,
    CanReadSources,
    CanWriteLeads,
    SessionDep,
)
from leadrelay.identity.service import Principal, get_tenant

router = APIRouter(prefix="/v1", tags=["capture"])


@router.post("/sources", status_code=status.HTTP_201_CREATED)
async def create_source(
    body: SourceCreate, session: SessionDep, actor: CanManageSources
) -> SourceOut:
    source = await sources.create_source(
        session,
        actor,
        name=body.name,
        kind=body.kind,
        legal_basis=body.legal_basis,
        assessment=body.assessment,
        default_country=body.default_country,
        is_personal_profile=body.is_personal_profile,
        now=utcnow(),
    )
    return SourceOut.model_validate(source)


@router.get("/sources")
async def list_sources(session: SessionDep, _: CanReadSources) -> list[SourceOut]:
    return [SourceOut.model_validate(s) for s in await sources.list_sources(session)]


@router.get("/sources/{source_id}")
async def get_source(source_id: uuid.UUID, session: SessionDep, actor: CanReadSources) -> SourceOut:
    return SourceOut.model_validate(await sources.access_source(session, actor, source_id))


@router.patch("/sources/{source_id}")
async def update_source(
    source_id: uuid.UUID, body: SourceUpdate, session: SessionDep, actor: CanManageSources
) -> SourceOut:
    source = await sources.update_source(
        session,
        actor,
        source_id,
        status=body.status,
        assessment=body.assessment,
        default_country=body.default_country,
        now=utcnow(),
    )
    return SourceOut.model_validate(source)


async def _accepting_source(session: SessionDep, name: str) -> Source:
    return sources.check_source_accepts(await sources.get_source_by_name(session, name), name=name)


async def _policy(session: SessionDep, actor: Principal) -> intake.CapturePolicy:
    tenant = await get_tenant(session, actor.tenant_id)
    return intake.CapturePolicy.from_settings(tenant.settings)


def _result(result: intake.RowResult) -> CaptureResult:
    return CaptureResult.model_validate(
        {
            "index": result.index,
            "status": result.status.value,
            "lead_id": result.lead_id,
            "errors": result.errors,
            "lead": result.lead,
            "dropped_fields": result.dropped_fields,
        }
    )


def _policy_out(settings: dict[str, Any]) -> CapturePolicyOut:
    policy = intake.CapturePolicy.from_settings(settings)
    allowed = policy.allowed_fields
    return CapturePolicyOut(
        business_email_policy=policy.business_email.value,
        verification_thresholds=thresholds(settings),
        allowed_fields=None
        if allowed is None
        else [name for name in intake.MINIMIZABLE_FIELDS if name in allowed],
    )


@router.get("/capture/policy")
async def get_capture_policy(session: SessionDep, actor: CanReadSources) -> CapturePolicyOut:
    """The tenant's capture policy: business-address rule and verification thresholds."""
    return _policy_out((await get_tenant(session, actor.tenant_id)).settings)


@router.patch("/capture/policy")
async def update_capture_policy(
    body: CapturePolicyIn, session: SessionDep, actor: CanManageSources
) -> CapturePolicyOut:
    """`allowed_fields` (data minimization) is set by a list, removed by null, and left as it
    is when absent; it must keep a way to reach the person (e-mail or phone)."""
    tenant = await get_tenant(session, actor.tenant_id)
    settings = dict(tenant.settings)
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"allowed_fields"})
    settings.update(changes)
    if "allowed_fields" in body.model_fields_set:
        stored = settings.get("capture")
        capture = dict(stored) if isinstance(stored, dict) else {}
        if body.allowed_fields is None:
            capture.pop("allowed_fields", None)
        else:
            if not {"email", "phone"} & set(body.allowed_fields):
                raise ValidationFailed(
                    "The allowlist must keep a way to reach the person.",
                    errors=[{"field": "allowed_fields", "reason": "needs email or phone"}],
                )
            chosen = set(body.allowed_fields)
            capture["allowed_fields"] = [n for n in intake.MINIMIZABLE_FIELDS if n in chosen]
        settings["capture"] = capture
        changes["allowed_fields"] = capture.get("allowed_fields")
    tenant.settings = settings
    await record(
        session,
        actor.tenant_id,
        actor.audit("capture.policy_updated", target_type="tenant", target_id=tenant.id, **changes),
        now=utcnow(),
    )
    return _policy_out(settings)


@router.post(
    "/leads",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": CaptureResult, "description": "An exact duplicate of an existing lead"},
        422: {"description": "Rejected (unknown or unvetted source, no valid contact…)"},
    },
)
async def capture_lead(
    body: LeadIn,
    request: Request,
    session: SessionDep,
    actor: CanWriteLeads,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Capture one lead. Normalized and matched at once (202 with its id, or 200 with the
    existing lead's id for an exact duplicate); verification and fuzzy matching follow as
    jobs. A rejected lead is answered 422 with the reasons, and the rejection is audited."""
    if idempotency_key is not None:
        fingerprint = idempotency.request_hash("POST", "/v1/leads", await request.body())
        replay = await idempotency.reserve(session, actor.tenant_id, idempotency_key, fingerprint)
        if replay is not None:
            media = PROBLEM_JSON if replay.status_code >= 400 else "application/json"
            return JSONResponse(replay.response, replay.status_code, media_type=media)
    source = await _accepting_source(session, body.source)
    (result,) = await intake.ingest(
        session,
        source,
        [body.fields()],
        normalize=clean_lead,
        policy=await _policy(session, actor),
        now=utcnow(),
        actor_type=actor.kind,
        actor_id=str(actor.id) if actor.id else None,
    )
    payload: dict[str, Any] = _result(result).model_dump(mode="json")
    if result.status == intake.RowStatus.REJECTED:
        code, media = 422, PROBLEM_JSON
        payload = problem_body(
            status=422,
            code="lead-rejected",
            title="Lead rejected",
            detail="the lead cannot be captured: " + ", ".join(e["reason"] for e in result.errors),
            instance="/v1/leads",
            errors=[{"field": e["field"], "message": e["reason"]} for e in result.errors],
        )
    else:
        code, media = (
            (202 if result.status == intake.RowStatus.ACCEPTED else 200),
            "application/json",
        )
    if idempotency_key is not None:
        await idempotency.remember(session, actor.tenant_id, idempotency_key, code, payload)
    # Returned, not raised: the transaction commits, so a rejection is audited too.
    return JSONResponse(payload, code, media_type=media)


@router.post("/leads/batch")
async def capture_batch(
    body: LeadBatchIn, session: SessionDep, actor: CanWriteLeads
) -> BatchResult:
    """Up to 1,000 leads from one source; every row gets its own result, a bad row never
    fails the batch."""
    source = await _accepting_source(session, body.source)
    rows: list[dict[str, str | None]] = []
    invalid: dict[int, list[dict[str, str]]] = {}
    for index, raw in enumerate(body.leads):
        try:
            rows.append(LeadIn.model_validate({**raw, "source": body.source}).fields())
        except ValidationError as error:
            invalid[index] = [
                {"field": ".".join(str(p) for p in e["loc"]), "reason": e["type"]}
                for e in error.errors()
            ]
            rows.append({})
    results = await intake.ingest(
        session,
        source,
        rows,
        normalize=clean_lead,
        policy=await _policy(session, actor),
        now=utcnow(),
        actor_type=actor.kind,
        actor_id=str(actor.id) if actor.id else None,
    )
    for index, errors in invalid.items():
        results[index].status, results[index].lead_id = intake.RowStatus.REJECTED, None
        results[index].errors, results[index].lead = errors, {}
    counts = {s: sum(1 for r in results if r.status == s) for s in intake.RowStatus}
    return BatchResult(
        accepted=counts[intake.RowStatus.ACCEPTED],
        duplicate=counts[intake.RowStatus.DUPLICATE],
        rejected=counts[intake.RowStatus.REJECTED],
        results=[_result(r) for r in results],
    )


@router.get("/leads")
async def list_leads(
    session: SessionDep,
    _: CanReadLeads,
    lead_status: Annotated[LeadStatus | None, Query(alias="status")] = None,
    source_id: uuid.UUID | None = None,
    flag: Annotated[str | None, Query(max_length=40)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    min_score: Annotated[int | None, Query(ge=0, le=100)] = None,
    max_score: Annotated[int | None, Query(ge=0, le=100)] = None,
    owner: Annotated[uuid.UUID | None, Query(description="rep id")] = None,
    unassigned: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: uuid.UUID | None = None,
) -> list[LeadOut]:
    """Newest first. Scores are the active ICP version's; `owner` is the assigned rep."""
    filters = service.LeadFilter(
        status=lead_status,
        source_id=source_id,
        flag=flag,
        q=q,
        min_score=min_score,
        max_score=max_score,
        owner=owner,
        unassigned=unassigned,
    )
    leads = await service.list_leads(session, filters, limit=limit, after=after)
    return [LeadOut.model_validate(lead) for lead in leads]


@router.get("/leads/{lead_id}")
async def get_lead(lead_id: uuid.UUID, session: SessionDep, actor: CanReadLeads) -> LeadDetail:
    record = await service.access_lead(session, actor, lead_id)
    return LeadDetail(
        **LeadOut.model_validate(record.lead).model_dump(),
        provenance=[Observation.model_validate(o) for o in record.provenance],
        external_ids=[ExternalIdOut.model_validate(e) for e in record.external_ids],
        duplicates=record.merged,
    )
