"""Scoring routes: ICP versions (draft, edit, activate), a lead's score with its breakdown, a
dry scorer for trying rules on any facts, and quality measured on CRM outcomes."""

from __future__ import annotations

import tempfile
import uuid
from collections import Counter
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Request, UploadFile, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from leadrelay.capture import service as capture_service
from leadrelay.capture.facts import lead_facts
from leadrelay.compliance.audit import append_events
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import NotFound, ValidationFailed
from leadrelay.core.jobs import defer
from leadrelay.core.jobs_models import JobRun
from leadrelay.core.schemas import Input
from leadrelay.crm.outcome_csv import OutcomeCsvRefused, parse_outcomes_csv
from leadrelay.crm.outcomes import OutcomeLabel, OutcomeRecord
from leadrelay.identity.deps import CanManageScoring, CanReadLeads, CanReadScoring, SessionDep
from leadrelay.scoring import icp, outcomes, service
from leadrelay.scoring.models import IcpVersion, LeadScore

router = APIRouter(prefix="/v1", tags=["scoring"])
OUTCOMES_UPLOAD_PATH = "/v1/outcomes/import"
OUTCOMES_UPLOAD_LIMIT = 50 * 1024 * 1024  # a CRM export of a few hundred thousand deals


class VersionIn(icp.RuleSetBody):
    note: str = Field(default="", max_length=2000)


class VersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    number: int
    status: str
    rules: list[dict[str, Any]]
    threshold: int
    note: str
    based_on_id: uuid.UUID | None
    suggestion: dict[str, Any] | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None
    activated_by: str | None


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    status: str
    total: int
    done: int
    data: dict[str, Any]
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class ActivationOut(BaseModel):
    version: VersionOut
    run: RunOut


class ScoreOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    lead_id: uuid.UUID
    version_id: uuid.UUID
    score: int
    total: int
    qualified: bool
    breakdown: list[dict[str, Any]]
    scored_at: datetime


class TryIn(Input):
    """Score a real lead (`lead_id`) or hypothetical `facts` with a version (default: the
    active one) or with the `rules` given here. Writes nothing."""

    lead_id: uuid.UUID | None = None
    facts: dict[str, Any] | None = None
    version_id: uuid.UUID | None = None
    rules: icp.RuleSetBody | None = None


class TryOut(BaseModel):
    score: int
    total: int
    qualified: bool
    breakdown: list[dict[str, Any]]
    facts: dict[str, Any]


def _version(version: IcpVersion) -> VersionOut:
    return VersionOut.model_validate(version)


@router.get("/scoring/versions")
async def list_versions(session: SessionDep, _: CanReadScoring) -> list[VersionOut]:
    return [_version(v) for v in await service.list_versions(session)]


@router.post("/scoring/versions", status_code=status.HTTP_201_CREATED)
async def create_version(
    body: VersionIn, session: SessionDep, actor: CanManageScoring
) -> VersionOut:
    """A new draft. Invalid rules are refused with each rule and reason (422)."""
    rules = icp.RuleSetBody(rules=body.rules, threshold=body.threshold)
    draft = await service.create_draft(session, actor, rules, now=utcnow(), note=body.note)
    return _version(draft)


@router.get("/scoring/versions/{version_id}")
async def get_version(version_id: uuid.UUID, session: SessionDep, _: CanReadScoring) -> VersionOut:
    return _version(await service.get_version(session, version_id))


@router.put("/scoring/versions/{version_id}")
async def update_version(
    version_id: uuid.UUID, body: VersionIn, session: SessionDep, actor: CanManageScoring
) -> VersionOut:
    """Replace a draft's rules; an active or retired version answers 409."""
    rules = icp.RuleSetBody(rules=body.rules, threshold=body.threshold)
    version = await service.update_draft(
        session, actor, version_id, rules, now=utcnow(), note=body.note
    )
    return _version(version)


@router.post("/scoring/versions/{version_id}/activate", status_code=status.HTTP_202_ACCEPTED)
async def activate_version(
    version_id: uuid.UUID, session: SessionDep, actor: CanManageScoring
) -> ActivationOut:
    """Activate a draft; every open lead is rescored by a job (follow `run`)."""
    version, run = await service.activate(session, actor, version_id, now=utcnow())
    return ActivationOut(version=_version(version), run=RunOut.model_validate(run))


@router.get("/scoring/versions/{version_id}/quality")
async def version_quality(
    version_id: uuid.UUID, session: SessionDep, _: CanReadScoring
) -> dict[str, Any]:
    """AUC, precision and recall at the threshold, lift by decile and calibration, on the
    leads this version scored that have a CRM outcome (won = positive)."""
    version = await service.get_version(session, version_id)
    report = await service.quality_of(session, version)
    return {"version_id": str(version.id), "number": version.number, **asdict(report)}


@router.post("/scoring/versions/{version_id}/suggest", status_code=status.HTTP_201_CREATED)
async def suggest_version(
    version_id: uuid.UUID, session: SessionDep, actor: CanManageScoring
) -> VersionOut:
    """Fit points on this version's outcomes (logistic regression) and save them as a new
    draft with the backtest of both; nothing is activated."""
    version = await service.get_version(session, version_id)
    try:
        draft = await service.suggest(session, actor, version, now=utcnow())
    except ValueError as error:  # not enough outcomes, one class only
        raise ValidationFailed(
            str(error), errors=[{"field": "outcomes", "reason": str(error)}]
        ) from error
    return _version(draft)


@router.post("/scoring/try")
async def try_rules(body: TryIn, session: SessionDep, actor: CanReadScoring) -> TryOut:
    if (body.lead_id is None) == (body.facts is None):
        raise ValidationFailed(
            "Give exactly one of lead_id or facts.",
            errors=[{"field": "lead_id", "reason": "exactly one of lead_id, facts"}],
        )
    if body.rules is not None:
        rules = service.checked(body.rules)
    elif body.version_id is not None:
        rules = service.body_of(await service.get_version(session, body.version_id))
    else:
        active = await service.active_version(session)
        if active is None:
            raise NotFound("No ICP version is active: give rules or a version_id.")
        rules = service.body_of(active)
    if body.lead_id is not None:
        await capture_service.access_lead(session, actor, body.lead_id)
        facts = (await lead_facts(session, [body.lead_id], now=utcnow())).get(body.lead_id)
        if facts is None:
            raise NotFound("The lead is merged into another one; score the survivor.")
    else:
        facts = dict(body.facts or {})
    result = icp.score(rules, facts)
    return TryOut(
        score=result.score,
        total=result.total,
        qualified=result.qualified,
        breakdown=result.breakdown,
        facts={k: v for k, v in facts.items() if k not in ("email", "phone_e164", "full_name")},
    )


@router.get("/leads/{lead_id}/score")
async def lead_score(lead_id: uuid.UUID, session: SessionDep, actor: CanReadLeads) -> ScoreOut:
    """The lead's score by the active version, with the breakdown of every point."""
    await capture_service.access_lead(session, actor, lead_id)
    found: LeadScore | None = await service.score_of(session, lead_id)
    if found is None:
        raise NotFound("The lead has no score from the active version yet.")
    return ScoreOut.model_validate(found)


@router.get("/runs/{run_id}")
async def get_run(run_id: uuid.UUID, session: SessionDep, _: CanReadScoring) -> RunOut:
    """Progress of a long run (rescoring after an activation)."""
    run = await session.get(JobRun, run_id)
    if run is None:
        raise NotFound("The run does not exist.")
    return RunOut.model_validate(run)


# --- outcomes --------------------------------------------------------------------------------


class OutcomeIn(Input):
    external_id: str = Field(min_length=1, max_length=200)
    outcome: OutcomeLabel
    closed_at: AwareDatetime
    amount: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=2)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    lead_id: uuid.UUID | None = None
    email: str | None = Field(default=None, max_length=320)


class OutcomesIn(Input):
    outcomes: list[OutcomeIn] = Field(min_length=1, max_length=1000)


class OutcomeResultOut(BaseModel):
    external_id: str
    status: str
    lead_id: uuid.UUID | None
    errors: list[dict[str, str]] = Field(default_factory=list)


class ImportOut(BaseModel):
    rows: int
    recorded: int
    updated: int
    unmatched: int
    rejected: int
    results: list[dict[str, Any]]


@router.post("/outcomes")
async def post_outcomes(
    body: OutcomesIn, session: SessionDep, actor: CanManageScoring
) -> list[OutcomeResultOut]:
    """Outcomes from any system (a CRM webhook, a script): idempotent per `external_id`."""
    records = []
    for item in body.outcomes:
        if item.lead_id is None and not item.email:
            raise ValidationFailed(
                "Each outcome needs a lead_id or an email.",
                errors=[{"field": f"outcomes ({item.external_id}).lead_id", "reason": "missing"}],
            )
        records.append(
            OutcomeRecord(
                source="webhook",
                external_id=item.external_id,
                label=item.outcome,
                closed_at=item.closed_at,
                amount=item.amount,
                currency=item.currency,
                emails=(item.email.strip().lower(),) if item.email else (),
                lead_id=item.lead_id,
            )
        )
    results = await outcomes.record_outcomes(
        session,
        actor.tenant_id,
        records,
        now=utcnow(),
        actor_type=actor.kind,
        actor_id=str(actor.id) if actor.id else None,
    )
    return [OutcomeResultOut(**asdict(r)) for r in results]


@router.post("/outcomes/import")
async def import_outcomes(
    session: SessionDep,
    actor: CanManageScoring,
    file: Annotated[UploadFile, File(description="CSV: outcome, closed_at, lead_id or email…")],
) -> ImportOut:
    """A CSV of outcomes, with a result for every row (line numbers count the header as 1)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "outcomes.csv"
        with path.open("wb") as handle:
            while block := await file.read(1 << 20):
                handle.write(block)
        try:
            rows = list(parse_outcomes_csv(path))
        except OutcomeCsvRefused as error:
            raise ValidationFailed(
                str(error), errors=[{"field": c, "reason": "missing"} for c in error.columns]
            ) from error
    good = [(line, record) for line, record, errors in rows if record is not None and not errors]
    stored: dict[str, outcomes.OutcomeResult] = {}
    for start in range(0, len(good), 1000):
        chunk = [record for _, record in good[start : start + 1000]]
        for result in await outcomes.record_outcomes(
            session,
            actor.tenant_id,
            chunk,
            now=utcnow(),
            actor_type=actor.kind,
            actor_id=str(actor.id) if actor.id else None,
        ):
            stored[result.external_id] = result
    report: list[dict[str, Any]] = []
    for line, record, errors in rows:
        if record is None or errors:
            report.append({"line": line, "status": "rejected", "errors": errors})
            continue
        result = stored[record.external_id]
        report.append(
            {
                "line": line,
                "status": result.status if result.lead_id else "unmatched",
                "external_id": record.external_id,
                "lead_id": str(result.lead_id) if result.lead_id else None,
            }
        )
    count = Counter(item["status"] for item in report)
    return ImportOut(
        rows=len(report),
        recorded=count["recorded"],
        updated=count["updated"],
        unmatched=count["unmatched"],
        rejected=count["rejected"],
        results=report,
    )


class HubSpotIn(Input):
    access_token: str = Field(min_length=10, max_length=500)
    base_url: str = Field(default="https://api.hubapi.com", pattern=r"^https?://", max_length=300)
    # Custom deal stages and what they mean, e.g. {"1234567": "disqualified"}.
    stage_labels: dict[str, OutcomeLabel] = Field(default_factory=dict, max_length=100)


class CrmOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    base_url: str
    stage_labels: dict[str, str]
    synced_until: datetime | None
    last_sync_at: datetime | None
    last_error: str | None


@router.put("/crm/hubspot")
async def connect_hubspot(
    body: HubSpotIn, request: Request, session: SessionDep, actor: CanManageScoring
) -> CrmOut:
    """Store the private-app token (encrypted) and the stage meanings. The token is never
    shown again."""
    connection = await outcomes.save_connection(
        session,
        actor.tenant_id,
        request.app.state.secret_box,
        access_token=body.access_token,
        base_url=body.base_url,
        stage_labels={k: v.value for k, v in body.stage_labels.items()},
    )
    await append_events(
        session,
        actor.tenant_id,
        [actor.audit("crm.connected", target_type="crm_connection", target_id=connection.id)],
        now=utcnow(),
    )
    return CrmOut.model_validate(connection)


@router.get("/crm/hubspot")
async def hubspot_status(session: SessionDep, _: CanReadScoring) -> CrmOut:
    connection = await outcomes.get_connection(session)
    if connection is None:
        raise NotFound("HubSpot is not connected.")
    return CrmOut.model_validate(connection)


@router.post("/crm/hubspot/sync", status_code=status.HTTP_202_ACCEPTED)
async def sync_hubspot(session: SessionDep, actor: CanManageScoring) -> dict[str, str]:
    """Fetch deals closed or changed since the last sync, as a job."""
    if await outcomes.get_connection(session) is None:
        raise NotFound("HubSpot is not connected.")
    await defer(session, outcomes.SYNC_TASK, tenant_id=str(actor.tenant_id))
    return {"status": "queued"}
