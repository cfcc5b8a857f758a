"""Reports: the manager funnel (`GET /v1/reports/funnel`), as JSON or as a CSV download — the
figures the console's funnel page charts."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from leadrelay.compliance.audit import neutralize_cell
from leadrelay.core.errors import ValidationFailed
from leadrelay.identity.deps import CanReadOutreach, SessionDep
from leadrelay.telemetry.funnel import (
    STAGES,
    DryRun,
    FunnelFilters,
    FunnelReport,
    Granularity,
    GroupBy,
    funnel_report,
)

router = APIRouter(prefix="/v1/reports", tags=["reports"])

COHORT_NOTE = (
    "Cohort view: the leads created in [from, to) and every stage they have reached so far, "
    "whenever they reached it."
)
DRY_RUN_NOTES = {
    DryRun.INCLUDE: "sent, delivered and replied include dry-run messages (recorded, not sent)",
    DryRun.EXCLUDE: "sent, delivered and replied count live messages only",
    DryRun.ONLY: "sent, delivered and replied count dry-run messages only (recorded, not sent)",
}
CSV_COLUMNS = (
    "group_by",
    "group_key",
    "group",
    "stage",
    "count",
    "converted",
    "rate_from_previous",
    "rate_from_ingested",
    "median_hours",
    "p90_hours",
    "dry_run",
    "from",
    "to",
    "hours_from",
    "hours_exact",
)


class StageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    stage: str
    label: str
    count: int
    converted: int | None
    rate_from_previous: float | None
    rate_from_ingested: float | None
    median_hours: float | None = Field(
        description="Median hours from the previous stage; approximate when the row's "
        "`hours_exact` is false"
    )
    p90_hours: float | None
    hours_from: int | None = Field(
        description="How many leads the median and p90 come from (sampled ones when the "
        "row's `hours_exact` is false)"
    )


class RowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str | None
    label: str
    stages: list[StageOut]
    hours_sampled: int = Field(description="The leads the hours between stages come from")
    hours_exact: bool = Field(
        description="False: median and p90 ≈, from a deterministic sample of the row's leads"
    )


class PointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    period: datetime
    counts: dict[str, int]


class FunnelOut(BaseModel):
    stages: list[str]
    cohort: str
    filters: dict[str, str | None]
    dry_run: DryRun
    dry_run_note: str
    hours_exact: bool
    hours_note: str
    total: RowOut
    groups: list[RowOut]
    series: list[PointOut]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def check_funnel_filters(
    *,
    since: datetime | None,
    until: datetime | None,
    source: uuid.UUID | None,
    campaign: uuid.UUID | None,
    rep: uuid.UUID | None,
    group_by: GroupBy,
    dry_run: DryRun,
    granularity: Granularity | None,
) -> FunnelFilters:
    """The filters as the service takes them (naive times are UTC); an empty period is a 422
    naming `to`."""
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and until <= since:
        raise ValidationFailed(
            "'to' must be after 'from'.",
            errors=[
                {
                    "field": "to",
                    "location": "query",
                    "message": "must be after 'from'",
                    "type": "value_error",
                }
            ],
        )
    return FunnelFilters(
        since=since,
        until=until,
        source_id=source,
        campaign_id=campaign,
        rep_id=rep,
        group_by=group_by,
        dry_run=dry_run,
        granularity=granularity,
    )


def as_json(report: FunnelReport) -> FunnelOut:
    f = report.filters
    return FunnelOut(
        stages=list(STAGES),
        cohort=COHORT_NOTE,
        filters={
            "from": _iso(f.since),
            "to": _iso(f.until),
            "source": None if f.source_id is None else str(f.source_id),
            "campaign": None if f.campaign_id is None else str(f.campaign_id),
            "rep": None if f.rep_id is None else str(f.rep_id),
            "group_by": f.group_by.value,
            "granularity": None if f.granularity is None else f.granularity.value,
        },
        dry_run=f.dry_run,
        dry_run_note=DRY_RUN_NOTES[f.dry_run],
        hours_exact=report.hours_exact,
        hours_note=report.hours_note,
        total=RowOut.model_validate(report.total),
        groups=[RowOut.model_validate(g) for g in report.groups],
        series=[PointOut.model_validate(p) for p in report.series],
    )


def _cell(value: object) -> str:
    if value is None:
        return ""
    return neutralize_cell(str(value))


def as_csv(report: FunnelReport) -> str:
    """One row per group and stage, the total first; every cell neutralized against formula
    injection (group labels are names users typed)."""
    f = report.filters
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in [report.total, *report.groups]:
        for figure in row.stages:
            writer.writerow(
                [
                    _cell(value)
                    for value in (
                        "none" if row is report.total else f.group_by.value,
                        row.key,
                        row.label,
                        figure.stage,
                        figure.count,
                        figure.converted,
                        figure.rate_from_previous,
                        figure.rate_from_ingested,
                        figure.median_hours,
                        figure.p90_hours,
                        f.dry_run.value,
                        _iso(f.since),
                        _iso(f.until),
                        figure.hours_from,
                        row.hours_exact,
                    )
                ]
            )
    return buffer.getvalue()


def csv_filename(report: FunnelReport) -> str:
    f = report.filters
    parts = ["funnel", f.group_by.value]
    if f.since is not None:
        parts.append(f.since.strftime("from-%Y%m%d"))
    if f.until is not None:
        parts.append(f.until.strftime("to-%Y%m%d"))
    return "-".join(parts) + ".csv"


def csv_response(report: FunnelReport) -> Response:
    return Response(
        as_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{csv_filename(report)}"'},
    )


@router.get(
    "/funnel",
    response_model=FunnelOut,
    responses={200: {"content": {"text/csv": {}}}},
)
async def get_funnel(
    session: SessionDep,
    _: CanReadOutreach,
    since: Annotated[
        datetime | None,
        Query(alias="from", description="leads created at or after (UTC when no offset)"),
    ] = None,
    until: Annotated[
        datetime | None, Query(alias="to", description="leads created before (exclusive)")
    ] = None,
    source: Annotated[uuid.UUID | None, Query(description="a source's id")] = None,
    campaign: Annotated[uuid.UUID | None, Query(description="a campaign's id")] = None,
    rep: Annotated[uuid.UUID | None, Query(description="the current assignment's rep")] = None,
    group_by: GroupBy = GroupBy.NONE,
    dry_run: Annotated[
        DryRun, Query(description="whether sent/delivered/replied count dry-run messages")
    ] = DryRun.INCLUDE,
    granularity: Annotated[
        Granularity | None, Query(description="add a series of cohorts by creation period")
    ] = None,
    format: Literal["json", "csv"] = "json",
) -> Response | FunnelOut:
    """Leads that reached each stage (ingested → verified → qualified → assigned → drafted →
    approved → sent → delivered → replied → won), step conversion rates and median/p90 hours
    between stages; grouped by source, campaign or rep. Cohort view: the leads created in
    [from, to) and everything they reached since. Counts and rates are exact; the hours of a
    cohort above 20,000 leads come from a deterministic sample of about 20,000 of them
    (`hours_exact`, `hours_note`, and per stage `hours_from`)."""
    filters = check_funnel_filters(
        since=since,
        until=until,
        source=source,
        campaign=campaign,
        rep=rep,
        group_by=group_by,
        dry_run=dry_run,
        granularity=granularity,
    )
    report = await funnel_report(session, filters)
    if format == "csv":
        return csv_response(report)
    return as_json(report)
