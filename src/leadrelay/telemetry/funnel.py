"""The manager funnel: how many leads reached each stage, from ingestion to a won deal, by
source, campaign or rep, with step conversion rates and the time each step took.

The view is a *cohort*: the leads created in [`since`, `until`) and what has become of them so
far, whenever that happened. A lead reached a stage when the row that stands for it exists:

- ingested: the lead (merged duplicates are left out: they live on in the lead they joined);
- verified: its verification says the e-mail or the phone is verified (`capture.verification`),
  at the earliest such check;
- qualified: any ICP version scored it at or above that version's threshold (`lead_scores.
  qualified`), when `lead.qualified` was emitted (or scored);
- assigned: a rep got it (`lead_assignments` with a rep, current or since reassigned), first;
- drafted: a draft was written for it; approved: a reviewer approved one of its drafts;
- sent: a message to it was handed to the channel (status `sent`; dry-run messages count unless
  `dry_run` excludes them — the demo runs in dry-run); delivered / replied: a provider reported
  one of those messages delivered / answered (`messages.delivered_at`, `replied_at`);
- won: a CRM outcome labelled won.

Stages are not gates (verification does not hold a lead back), so a later stage may count
leads an earlier one does not. Each step therefore also says how many of the previous stage's
leads reached it (`converted`), the rate that makes (≤ 100 %), and the median and p90 hours it
took those leads (0 when the later stage came first).

By campaign, a lead in two campaigns counts in both (the total counts it once); leads in none
form the group without a key. By rep, the key is the rep of the current assignment.

The figures come from `lead_funnel`, one row per lead holding when it first reached each
stage, kept by triggers on the stage tables (migration 0019), in two statements. The counts:
one pass over the cohort's rows (in parallel when there is no grouping; total, groups and
series together through GROUPING SETS when there is), every count exact. The hours between
stages: a median and a p90 sort every step's durations, most of the cost at scale, so a
cohort of more than `SAMPLE_LEADS` leads has them computed from a deterministic sample of
about that many (a hash of the lead id below a threshold, read through its own index), and
says so (`FunnelRow.hours_exact`, `hours_sampled`, per stage `hours_from`); a smaller cohort
from every lead, exactly as before. The caller's session is bound to the tenant, so
row-level security keeps every other tenant's rows out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from itertools import pairwise
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

STAGES: tuple[str, ...] = (
    "ingested",
    "verified",
    "qualified",
    "assigned",
    "drafted",
    "approved",
    "sent",
    "delivered",
    "replied",
    "won",
)
STAGE_LABELS: dict[str, str] = {
    "ingested": "Ingested",
    "verified": "Verified",
    "qualified": "Qualified",
    "assigned": "Assigned",
    "drafted": "Drafted",
    "approved": "Approved",
    "sent": "Sent",
    "delivered": "Delivered",
    "replied": "Replied",
    "won": "Won",
}


class GroupBy(StrEnum):
    NONE = "none"
    SOURCE = "source"
    CAMPAIGN = "campaign"
    REP = "rep"


class DryRun(StrEnum):
    INCLUDE = "include"  # dry-run and live messages alike (the default: the demo is dry-run)
    EXCLUDE = "exclude"  # live messages only
    ONLY = "only"  # dry-run messages only


class Granularity(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class FunnelFilters:
    since: datetime | None = None  # leads created at or after (aware)
    until: datetime | None = None  # … and before
    source_id: uuid.UUID | None = None
    campaign_id: uuid.UUID | None = None
    rep_id: uuid.UUID | None = None
    group_by: GroupBy = GroupBy.NONE
    dry_run: DryRun = DryRun.INCLUDE
    granularity: Granularity | None = None  # a series of cohorts by creation period

    def __post_init__(self) -> None:
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("funnel bounds must be timezone-aware")


@dataclass(frozen=True, slots=True)
class StageFigure:
    stage: str
    label: str
    count: int
    # Of the previous stage's leads, how many reached this one, and the rate (None at the top
    # or when the previous stage is empty).
    converted: int | None
    rate_from_previous: float | None
    rate_from_ingested: float | None
    median_hours: float | None  # from the previous stage's time to this one's
    p90_hours: float | None
    # How many leads the median and p90 come from: those of the row's leads that made the
    # step, or of its sampled leads when `FunnelRow.hours_exact` is false (None at the top).
    hours_from: int | None = None


@dataclass(frozen=True, slots=True)
class FunnelRow:
    key: str | None  # the group's id (None: all leads, or the group without a key)
    label: str
    stages: list[StageFigure]
    # The leads the hours between stages come from: all the row's leads (exact), or the
    # row's share of the cohort's deterministic sample (median and p90 then approximate).
    hours_sampled: int = 0
    hours_exact: bool = True

    def count(self, stage: str) -> int:
        return next(figure.count for figure in self.stages if figure.stage == stage)


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    period: datetime  # the period's start, UTC
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class FunnelReport:
    filters: FunnelFilters
    total: FunnelRow
    groups: list[FunnelRow] = field(default_factory=list)
    series: list[SeriesPoint] = field(default_factory=list)

    @property
    def hours_exact(self) -> bool:
        return self.total.hours_exact and all(group.hours_exact for group in self.groups)

    @property
    def hours_note(self) -> str:
        """What the median and p90 hours are computed from, in words."""
        if self.hours_exact:
            return "Median and p90 hours are exact: computed from every lead in the cohort."
        return (
            f"Median and p90 hours ≈: computed from a deterministic sample of "
            f"{self.total.hours_sampled:,} of the cohort's {self.total.count('ingested'):,} "
            "leads (each step says from how many); counts and rates are exact."
        )


# --- the statements ----------------------------------------------------------------------------

# The hours between stages come from every lead of a cohort of up to this many; from a larger
# cohort, from a deterministic sample of about this many: the leads whose `sample_key` (a hash
# of the lead id, migration 0021) falls below the fraction of its range that leaves that many.
# The same leads every time, so a figure does not move between two looks at the same data.
# Counts and rates are always exact. A sampled median or p90 is off the exact one by about
# sqrt(q(1-q)/n) in rank — n the sampled leads that made the step (`hours_from`): ±0.35
# percentile points for a median from 20,000, ±1.6 from 1,000 — and what a point is worth in
# hours depends on how the durations spread (tests/telemetry/test_funnel.py checks the
# ranks against the exact figures; bench.funnel prints the errors in hours at 1M).
SAMPLE_LEADS = 20_000

_BY_MESSAGE = frozenset({"sent", "delivered", "replied"})  # kept live and dry-run apart

_GROUP_KEY = {
    GroupBy.SOURCE: "f.source_id",
    GroupBy.REP: "f.rep_id",
    GroupBy.CAMPAIGN: "cm.campaign_id",
}
_GROUP_LABEL = {
    GroupBy.SOURCE: "(SELECT s.name FROM sources s WHERE s.id = f.source_id)",
    GroupBy.REP: "(SELECT r.name FROM reps r WHERE r.id = f.rep_id)",
    GroupBy.CAMPAIGN: "(SELECT k.name FROM campaigns k WHERE k.id = cm.campaign_id)",
}
_NO_KEY_LABEL = {
    GroupBy.SOURCE: "(no source)",
    GroupBy.REP: "Unassigned",
    GroupBy.CAMPAIGN: "(no campaign)",
}
# Fixed fragments (the enum's own values), so that the expression is the same text wherever
# the grouping names it.
_PERIOD = {
    Granularity.DAY: "date_trunc('day', f.created_at, 'UTC')",
    Granularity.WEEK: "date_trunc('week', f.created_at, 'UTC')",
    Granularity.MONTH: "date_trunc('month', f.created_at, 'UTC')",
}
_CAMPAIGNS = "LEFT JOIN campaign_members cm ON cm.lead_id = f.lead_id"


def _time(stage: str, dry_run: DryRun) -> str:
    """When the lead reached `stage` (NULL: not yet)."""
    if stage == "ingested":
        return "f.created_at"
    if stage not in _BY_MESSAGE:
        return f"f.{stage}_at"
    return {
        DryRun.INCLUDE: f"least(f.{stage}_live_at, f.{stage}_dry_at)",
        DryRun.EXCLUDE: f"f.{stage}_live_at",
        DryRun.ONLY: f"f.{stage}_dry_at",
    }[dry_run]


def _reached(stage: str, dry_run: DryRun) -> str:
    """Whether the lead reached `stage`: `_time(...) IS NOT NULL`, without calling least()."""
    if stage in _BY_MESSAGE and dry_run is DryRun.INCLUDE:
        return f"(f.{stage}_live_at IS NOT NULL OR f.{stage}_dry_at IS NOT NULL)"
    return f"{_time(stage, dry_run)} IS NOT NULL"


def _both(previous: str, stage: str, dry_run: DryRun) -> str:
    if previous == "ingested":  # every lead of the cohort was ingested
        return _reached(stage, dry_run)
    return f"{_reached(previous, dry_run)} AND {_reached(stage, dry_run)}"


def _counts(dry_run: DryRun) -> str:
    """Per stage the leads that reached it (`n_`); per step those that reached both ends
    (`c_`)."""
    columns = ["count(*) AS n_ingested"]
    columns += [
        f"count(*) FILTER (WHERE {_reached(stage, dry_run)}) AS n_{stage}" for stage in STAGES[1:]
    ]
    columns += [
        f"count(*) FILTER (WHERE {_both(previous, stage, dry_run)}) AS c_{stage}"
        for previous, stage in pairwise(STAGES)
    ]
    return ",\n       ".join(columns)


def _hours(dry_run: DryRun, *, sampled: str | None = None) -> str:
    """Per step the median and p90 hours between its ends (`h_`, 0 when the later stage came
    first) and how many leads they come from (`s_`); `sampled`: the leads read — or, given
    the condition that picks them, the leads it picks."""
    picked = "" if sampled is None else f" AND {sampled}"
    columns = [
        "count(*) AS sampled"
        if sampled is None
        else f"count(*) FILTER (WHERE {sampled}) AS sampled"
    ]
    for previous, stage in pairwise(STAGES):
        both = _both(previous, stage, dry_run) + picked
        hours = (
            f"greatest(0, date_part('epoch', {_time(stage, dry_run)} - "
            f"{_time(previous, dry_run)})) / 3600"
        )
        # FILTER, not a CASE yielding NULL: only the leads that made the step are sorted.
        columns.append(
            f"percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY {hours}) "
            f"FILTER (WHERE {both}) AS h_{stage}"
        )
        columns.append(f"count(*) FILTER (WHERE {both}) AS s_{stage}")
    return ",\n       ".join(columns)


def _cohort(filters: FunnelFilters) -> tuple[list[str], dict[str, Any]]:
    params: dict[str, Any] = {}
    cohort: list[str] = ["NOT f.merged"]
    if filters.since is not None:
        cohort.append("f.created_at >= :since")
        params["since"] = filters.since
    if filters.until is not None:
        cohort.append("f.created_at < :until")
        params["until"] = filters.until
    if filters.source_id is not None:
        cohort.append("f.source_id = :source_id")
        params["source_id"] = filters.source_id
    if filters.campaign_id is not None:
        cohort.append(
            "EXISTS (SELECT 1 FROM campaign_members k "
            "WHERE k.lead_id = f.lead_id AND k.campaign_id = :campaign_id)"
        )
        params["campaign_id"] = filters.campaign_id
    if filters.rep_id is not None:
        cohort.append("f.rep_id = :rep_id")  # the current assignee
        params["rep_id"] = filters.rep_id
    return cohort, params


def _select(
    columns: str,
    cohort: list[str],
    *,
    key: str | None = None,
    label: str | None = None,
    period: str | None = None,
    rows: str = "lead_funnel f",
    total: bool = True,
) -> str:
    """One aggregate over the cohort's rows: the total, and with `key` or `period` also per
    group or period (GROUPING SETS: one pass for all); without `total`, the groups alone.
    Rows: `part` ('total', 'group', 'series'), `key` (text), `label`, `period`, `columns`."""
    dimensions = [d for d in (key, period) if d is not None]
    if not total:
        part, group_by = "'group'", f"GROUP BY {key}"
    elif dimensions:
        whens = []
        if key is not None:  # GROUPING(x) is 0 in the rows grouped by x
            whens.append(f"WHEN GROUPING({key}) = 0 THEN 'group'")
        if period is not None:
            whens.append(f"WHEN GROUPING({period}) = 0 THEN 'series'")
        part = f"CASE {' '.join(whens)} ELSE 'total' END"
        group_by = "GROUP BY GROUPING SETS ((), " + ", ".join(f"({d})" for d in dimensions) + ")"
    else:
        part, group_by = "'total'", ""
    return "\n".join(
        (
            f"SELECT {part} AS part, {key or 'NULL'}::text AS key, {label or 'NULL'} AS label,",
            f"       {period or 'NULL::timestamptz'} AS period,",
            f"       {columns}",
            f"FROM {rows}",
            f"WHERE {' AND '.join(cohort) or 'true'}",
            group_by,
        )
    )


def counts_statement(filters: FunnelFilters) -> tuple[str, dict[str, Any]]:
    """The counts: one `total` row, one per `group`, one per `series` period (its start, UTC);
    by campaign, the hours between stages too (`hours_included`). Only fixed fragments are
    composed; values are bound."""
    cohort, params = _cohort(filters)
    counts = _counts(filters.dry_run)
    period = None if filters.granularity is None else _PERIOD[filters.granularity]
    if filters.group_by is GroupBy.NONE:
        return _select(counts, cohort, period=period), params
    key, label = _GROUP_KEY[filters.group_by], _GROUP_LABEL[filters.group_by]
    if filters.group_by is not GroupBy.CAMPAIGN:
        return _select(counts, cohort, key=key, label=label, period=period), params
    params["sample_leads"] = SAMPLE_LEADS
    hours = _hours(filters.dry_run, sampled="f.sample_key < sample.below")
    return _by_campaign(f"{counts},\n       {hours}", cohort, label=label, period=period), params


def hours_included(filters: FunnelFilters) -> bool:
    """Whether `counts_statement`'s rows carry the hours too (`hours_statement` is then not
    needed): by campaign, where the cohort is read into a CTE and joined to the campaigns,
    once for both."""
    return filters.group_by is GroupBy.CAMPAIGN


def _by_campaign(
    columns: str, cohort: list[str], *, label: str | None = None, period: str | None = None
) -> str:
    """A lead in two campaigns counts in both groups but once in the total: the total (and
    the series) from the cohort's leads, the groups from them joined to their campaigns —
    the cohort read once, into a CTE that both use, with the sample's bound (as
    `sample_threshold` computes it, from the cohort's size)."""
    total = _select(columns, [], period=period, rows="f CROSS JOIN sample")
    groups = _select(
        columns, [], key=_GROUP_KEY[GroupBy.CAMPAIGN], label=label,
        rows=f"f CROSS JOIN sample {_CAMPAIGNS}", total=False,
    )  # fmt: skip
    cohort_rows = (
        "WITH f AS MATERIALIZED (SELECT f.* FROM lead_funnel f",
        "WHERE",
        " AND ".join(cohort),
    )
    return "\n".join((" ".join(cohort_rows) + "),", _SAMPLE, total, "UNION ALL", groups))


# `sample_threshold` in SQL, over the cohort's CTE: 2^31 (above every key) when all are read.
_SAMPLE = (
    "sample AS (SELECT CASE WHEN count(*) > :sample_leads "
    "THEN -2147483648 + (CAST(:sample_leads AS bigint) * 4294967296) / count(*) "
    "ELSE 2147483648 END AS below FROM f)"
)


def sample_threshold(cohort_size: int) -> int | None:
    """The `sample_key` bound that leaves about `SAMPLE_LEADS` of `cohort_size` leads (the
    key is a 32-bit hash, signed); None when every lead is read."""
    if cohort_size <= SAMPLE_LEADS:
        return None
    return -(2**31) + (SAMPLE_LEADS * 2**32) // cohort_size


def hours_statement(filters: FunnelFilters, cohort_size: int) -> tuple[str, dict[str, Any]]:
    """The hours between stages for the total and each group (series have none), from every
    lead of the cohort or from its sample (`sample_threshold`): through the index on
    (tenant_id, sample_key) only the sampled rows are read."""
    cohort, params = _cohort(filters)
    below = sample_threshold(cohort_size)
    if below is not None:
        cohort.append("f.sample_key < :below")
        params["below"] = below
    hours = _hours(filters.dry_run)
    if filters.group_by is GroupBy.NONE:
        return _select(hours, cohort), params
    if hours_included(filters):
        raise ValueError("by campaign, the counts statement carries the hours")
    return _select(hours, cohort, key=_GROUP_KEY[filters.group_by]), params


def funnel_session_settings() -> str:
    """Settings for this transaction only. JIT compilation costs more than the query saves at
    this size (PostgreSQL turns it on from the row estimates: hundreds of ms to compile);
    more memory lets the aggregates and sorts stay in RAM. A sequential scan would evaluate
    the row-level-security condition (a `current_setting` call) on every row — more than the
    funnel's own work — where a scan of the tenant's index evaluates it once: sequential
    scans are off, and random reads (all in memory here) priced as such, so that the sample
    is read through its index."""
    return (
        "SET LOCAL jit = off; SET LOCAL work_mem = '64MB'; SET LOCAL enable_seqscan = off; "
        "SET LOCAL random_page_cost = 4"
    )


# --- reading it -------------------------------------------------------------------------------


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _hours_at(value: Any, index: int) -> float | None:
    if value is None or value[index] is None:
        return None
    return round(float(value[index]), 2)


def _row(counts: Any, hours: Any, key: str | None, label: str) -> FunnelRow:
    ingested = int(counts.n_ingested)
    figures: list[StageFigure] = []
    previous_count: int | None = None
    for stage in STAGES:
        count = int(getattr(counts, f"n_{stage}"))
        if previous_count is None:
            figures.append(
                StageFigure(
                    stage,
                    STAGE_LABELS[stage],
                    count,
                    None,
                    None,
                    _rate(count, ingested),
                    None,
                    None,
                )
            )
        else:
            converted = int(getattr(counts, f"c_{stage}"))
            span = None if hours is None else getattr(hours, f"h_{stage}")
            figures.append(
                StageFigure(
                    stage,
                    STAGE_LABELS[stage],
                    count,
                    converted,
                    _rate(converted, previous_count),
                    _rate(count, ingested),
                    _hours_at(span, 0),
                    _hours_at(span, 1),
                    0 if hours is None else int(getattr(hours, f"s_{stage}")),
                )
            )
        previous_count = count
    sampled = 0 if hours is None else int(hours.sampled)
    return FunnelRow(key, label, figures, sampled, sampled == ingested)


async def funnel_report(session: AsyncSession, filters: FunnelFilters) -> FunnelReport:
    """The funnel of the session's tenant (RLS): the counts, then the hours between stages
    (exact, or from the sample when the cohort is larger than `SAMPLE_LEADS`)."""
    for setting in funnel_session_settings().split("; "):
        await session.execute(text(setting))
    sql, params = counts_statement(filters)
    rows = (await session.execute(text(sql), params)).all()
    total = next(r for r in rows if r.part == "total")
    hours: dict[tuple[str, str | None], Any] = {}
    if hours_included(filters):
        hours = {(r.part, r.key): r for r in rows}
    elif total.n_ingested:
        sql, params = hours_statement(filters, int(total.n_ingested))
        hours = {(r.part, r.key): r for r in (await session.execute(text(sql), params)).all()}
    groups = [
        _row(
            r,
            hours.get(("group", r.key)),
            r.key,
            r.label or (_NO_KEY_LABEL[filters.group_by] if r.key is None else r.key),
        )
        for r in rows
        if r.part == "group"
    ]
    # Largest group first; the group without a key last.
    groups.sort(key=lambda g: (g.key is None, -g.count("ingested"), g.label))
    series = sorted(
        (
            SeriesPoint(r.period, {stage: int(getattr(r, f"n_{stage}")) for stage in STAGES})
            for r in rows
            if r.part == "series"
        ),
        key=lambda point: point.period,
    )
    return FunnelReport(
        filters, _row(total, hours.get(("total", None)), None, "All leads"), groups, series
    )
