"""The manager funnel in the console: leads that reached each stage (a bar chart), step
conversion rates and hours between stages, by source, campaign or rep, for a period of lead
creation; filters in the query string (shareable), and the same figures as a CSV download.

The figures are `telemetry.funnel`'s, as `GET /v1/reports/funnel` returns them. The period's
end date is inclusive here (people pick days); the API's `to` is an exclusive instant.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from leadrelay.capture.models import Source
from leadrelay.console.auth import Console, ViewOutreach
from leadrelay.console.rendering import Notice, render
from leadrelay.outreach.models import Campaign
from leadrelay.routing.models import Rep
from leadrelay.telemetry.funnel import (
    STAGE_LABELS,
    DryRun,
    FunnelFilters,
    FunnelReport,
    Granularity,
    GroupBy,
    funnel_report,
)
from leadrelay.telemetry.reports_api import DRY_RUN_NOTES, csv_response

router = APIRouter(prefix="/console/funnel")
E = TypeVar("E", GroupBy, DryRun, Granularity)

GROUP_LABELS = {
    GroupBy.NONE.value: "No grouping",
    GroupBy.SOURCE.value: "Source",
    GroupBy.CAMPAIGN.value: "Campaign",
    GroupBy.REP.value: "Rep",
}
DRY_RUN_LABELS = {
    DryRun.INCLUDE.value: "Dry-run and live",
    DryRun.EXCLUDE.value: "Live only",
    DryRun.ONLY.value: "Dry-run only",
}
BAR_COLOR = "#1d5fc7"
SERIES_COLORS = {"ingested": "#98a2b3", "qualified": "#1d5fc7", "sent": "#0f8a5f", "won": "#e59a1a"}


@dataclass(frozen=True, slots=True)
class FunnelQuery:
    """The filter form as typed (kept for re-display); what cannot be read is ignored with a
    notice."""

    start: str = ""  # YYYY-MM-DD, inclusive
    end: str = ""  # YYYY-MM-DD, inclusive
    source: str = ""
    campaign: str = ""
    rep: str = ""
    group_by: str = ""
    dry_run: str = ""
    granularity: str = ""

    def filters(self) -> tuple[FunnelFilters, list[Notice]]:
        notices: list[Notice] = []

        def day(value: str, name: str) -> date | None:
            if not value:
                return None
            try:
                return date.fromisoformat(value)
            except ValueError:
                notices.append(Notice("warning", f"Ignored the {name} date {value!r}."))
                return None

        def ident(value: str, name: str) -> uuid.UUID | None:
            if not value:
                return None
            try:
                return uuid.UUID(value)
            except ValueError:
                notices.append(Notice("warning", f"Ignored the unknown {name}."))
                return None

        def choice(value: str, kind: type[E], default: E | None, name: str) -> E | None:
            if not value:
                return default
            try:
                return kind(value)
            except ValueError:
                notices.append(Notice("warning", f"Ignored the unknown {name} {value!r}."))
                return default

        start, end = day(self.start, "start"), day(self.end, "end")
        if start and end and end < start:
            notices.append(Notice("warning", "The end is before the start: ignored the end."))
            end = None
        since = datetime.combine(start, time(), UTC) if start else None
        until = datetime.combine(end + timedelta(days=1), time(), UTC) if end else None
        group_by = choice(self.group_by, GroupBy, GroupBy.NONE, "grouping") or GroupBy.NONE
        dry_run = choice(self.dry_run, DryRun, DryRun.INCLUDE, "dry-run choice") or DryRun.INCLUDE
        return (
            FunnelFilters(
                since=since,
                until=until,
                source_id=ident(self.source, "source"),
                campaign_id=ident(self.campaign, "campaign"),
                rep_id=ident(self.rep, "rep"),
                group_by=group_by,
                dry_run=dry_run,
                granularity=choice(self.granularity, Granularity, None, "period"),
            ),
            notices,
        )

    @property
    def params(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value}

    def url(self, **extra: str) -> str:
        return "/console/funnel?" + urlencode({**self.params, **extra})


def funnel_chart(report: FunnelReport) -> dict[str, Any]:
    """A Chart.js configuration (plain JSON: no inline script): leads per stage."""
    axis = {"grid": {"color": "#e3e8f0"}, "ticks": {"color": "#69758a"}}
    return {
        "type": "bar",
        "data": {
            "labels": [figure.label for figure in report.total.stages],
            "datasets": [
                {
                    "label": "Leads",
                    "data": [figure.count for figure in report.total.stages],
                    "backgroundColor": BAR_COLOR,
                    "borderRadius": 3,
                    "maxBarThickness": 56,
                }
            ],
        },
        "options": {
            "animation": False,
            "maintainAspectRatio": False,
            "plugins": {"legend": {"display": False}},
            "scales": {
                "x": axis,
                "y": {
                    **axis,
                    "beginAtZero": True,
                    "ticks": {"color": "#69758a", "precision": 0},
                    "title": {"display": True, "text": "Leads"},
                },
            },
        },
    }


def series_chart(report: FunnelReport) -> dict[str, Any] | None:
    if not report.series:
        return None
    return {
        "type": "line",
        "data": {
            "labels": [point.period.strftime("%Y-%m-%d") for point in report.series],
            "datasets": [
                {
                    "label": STAGE_LABELS[stage],
                    "data": [point.counts[stage] for point in report.series],
                    "borderColor": color,
                    "backgroundColor": color,
                    "tension": 0.2,
                }
                for stage, color in SERIES_COLORS.items()
            ],
        },
        "options": {
            "animation": False,
            "maintainAspectRatio": False,
            "plugins": {"legend": {"position": "bottom"}},
            "scales": {"y": {"beginAtZero": True, "ticks": {"precision": 0}}},
        },
    }


async def _choices(console: Console) -> dict[str, list[tuple[str, str]]]:
    session = console.session
    return {
        "sources": [
            (str(i), n)
            for i, n in await session.execute(select(Source.id, Source.name).order_by(Source.name))
        ],
        "campaigns": [
            (str(i), n)
            for i, n in await session.execute(
                select(Campaign.id, Campaign.name).order_by(Campaign.name)
            )
        ],
        "reps": [
            (str(i), n)
            for i, n in await session.execute(select(Rep.id, Rep.name).order_by(Rep.name))
        ],
    }


@router.get("")
async def funnel_page(
    request: Request,
    console: ViewOutreach,
    start: Annotated[str, Query(max_length=10)] = "",
    end: Annotated[str, Query(max_length=10)] = "",
    source: Annotated[str, Query(max_length=36)] = "",
    campaign: Annotated[str, Query(max_length=36)] = "",
    rep: Annotated[str, Query(max_length=36)] = "",
    group_by: Annotated[str, Query(max_length=20)] = "",
    dry_run: Annotated[str, Query(max_length=10)] = "",
    granularity: Annotated[str, Query(max_length=10)] = "",
    format: Annotated[str, Query(max_length=10)] = "",
) -> Response:
    query = FunnelQuery(
        *(v.strip() for v in (start, end, source, campaign, rep, group_by, dry_run, granularity))
    )
    filters, notices = query.filters()
    report = await funnel_report(console.session, filters)
    if format == "csv":
        return csv_response(report)
    context: dict[str, Any] = {
        "query": query,
        "report": report,
        "filter_notices": notices,
        "chart": funnel_chart(report),
        "series_chart": series_chart(report),
        "csv_url": query.url(format="csv"),
        "group_labels": GROUP_LABELS,
        "dry_run_labels": DRY_RUN_LABELS,
        "dry_run_note": DRY_RUN_NOTES[filters.dry_run],
        "granularities": [g.value for g in Granularity],
        **await _choices(console),
    }
    return render(request, "funnel/page.html", context)
