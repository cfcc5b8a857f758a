"""The manager funnel on the real database: leads seeded through the tables each stage reads,
exact counts per stage, the groupings, rates and times between stages, the dry-run filter,
the CSV, another tenant's rows never counted, and bad parameters refused field by field; and
the hours of a cohort too large to sort, read from a sample, against the exact figures."""

from __future__ import annotations

import bisect
import csv
import io
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.core.db import Database
from leadrelay.identity.models import Role
from leadrelay.telemetry import funnel
from leadrelay.telemetry.funnel import (
    STAGES,
    DryRun,
    FunnelFilters,
    Granularity,
    GroupBy,
    funnel_report,
)
from tests.factories import TenantCtx, TenantFactory

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday
URL = "/v1/reports/funnel"


@dataclass
class Seeder:
    """Rows written straight into the tables each stage reads, in the tenant's transaction."""

    session: AsyncSession
    tenant_id: uuid.UUID
    sources: dict[str, uuid.UUID] = field(default_factory=dict)
    reps: dict[str, uuid.UUID] = field(default_factory=dict)
    campaigns: dict[str, uuid.UUID] = field(default_factory=dict)
    version_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None

    async def _insert(self, sql: str, **values: Any) -> Any:
        row = await self.session.execute(
            text(sql + " RETURNING id"), {"tenant": self.tenant_id, **values}
        )
        return row.scalar_one()

    async def source(self, name: str) -> uuid.UUID:
        if name not in self.sources:
            self.sources[name] = await self._insert(
                "INSERT INTO sources (tenant_id, name, kind, legal_basis, status) "
                "VALUES (:tenant, :name, 'official_api', 'consent', 'vetted')",
                name=name,
            )
        return self.sources[name]

    async def rep(self, name: str) -> uuid.UUID:
        if self.team_id is None:
            self.team_id = await self._insert(
                "INSERT INTO teams (tenant_id, name) VALUES (:tenant, 'Sales')"
            )
        if name not in self.reps:
            self.reps[name] = await self._insert(
                "INSERT INTO reps (tenant_id, team_id, name) VALUES (:tenant, :team, :name)",
                team=self.team_id,
                name=name,
            )
        return self.reps[name]

    async def campaign(self, name: str) -> uuid.UUID:
        if name not in self.campaigns:
            self.campaigns[name] = await self._insert(
                "INSERT INTO campaigns (tenant_id, name, status, audience, steps, send_time, "
                "timezone, created_by) VALUES (:tenant, :name, 'active', '{}', '[]', '10:00', "
                "'UTC', 'test')",
                name=name,
            )
        return self.campaigns[name]

    async def lead(
        self,
        *,
        source: str = "Web form",
        at: datetime = T0,
        verified: datetime | None = None,
        qualified: datetime | None = None,
        scored_below: bool = False,
        rep: str | None = None,
        assigned: datetime | None = None,
        reassigned_from: str | None = None,
        drafted: datetime | None = None,
        approved: datetime | None = None,
        sent: datetime | None = None,
        dry_run: bool = True,
        delivered: datetime | None = None,
        replied: datetime | None = None,
        won: datetime | None = None,
        campaigns: tuple[str, ...] = (),
        merged: bool = False,
    ) -> uuid.UUID:
        verification: dict[str, Any] = {}
        if verified is not None:
            verification["email"] = {"verified": True, "checked_at": verified.isoformat()}
            verification["phone"] = {"verified": False, "checked_at": at.isoformat()}
        lead_id = await self._insert(
            "INSERT INTO leads (tenant_id, source_id, full_name, created_at, verification, "
            "status) VALUES (:tenant, :source, 'Lead', :at, CAST(:verification AS jsonb), "
            ":status)",
            source=await self.source(source),
            at=at,
            verification=json.dumps(verification),
            status="merged" if merged else "new",
        )
        if qualified is not None or scored_below:
            if self.version_id is None:
                self.version_id = await self._insert(
                    "INSERT INTO icp_versions (tenant_id, number, status) "
                    "VALUES (:tenant, 1, 'active')"
                )
            await self._insert(
                "INSERT INTO lead_scores (tenant_id, lead_id, version_id, score, total, "
                "qualified, breakdown, matched, scored_at, qualified_at) VALUES (:tenant, :lead, "
                ":version, :score, 100, :qualified, '[]', '[]', :scored, :qualified_at)",
                lead=lead_id,
                version=self.version_id,
                score=20 if qualified is None else 80,
                qualified=qualified is not None,
                scored=qualified or at,
                qualified_at=qualified,
            )
        if reassigned_from is not None:
            await self._assignment(lead_id, reassigned_from, "reassigned", assigned or at)
        if rep is not None:
            decided = assigned or at
            if reassigned_from is not None:
                decided += timedelta(hours=5)
            await self._assignment(lead_id, rep, "assigned", decided)
        draft_id = None
        if drafted is not None:
            draft_id = await self._insert(
                "INSERT INTO drafts (tenant_id, lead_id, channel, template, tone, length, cta, "
                "origin, status, created_by_type, created_by, created_at) VALUES (:tenant, "
                ":lead, 'email', 'builtin:intro', 'friendly', 'short', 'call', 'template', "
                ":status, 'user', 'test', :at)",
                lead=lead_id,
                status="approved" if approved else "pending",
                at=drafted,
            )
            if approved is not None:
                revision = await self._insert(
                    "INSERT INTO draft_revisions (tenant_id, draft_id, number, body, "
                    "content_sha256, sentences, gaps, compliance, author_type, author) VALUES "
                    "(:tenant, :draft, 1, 'Hello', :sha, '[]', '[]', '[]', 'user', 'test')",
                    draft=draft_id,
                    sha="0" * 64,
                )
                await self._insert(
                    "INSERT INTO approvals (tenant_id, draft_id, revision_id, content_sha256, "
                    "decision, reviewer_type, reviewer, decided_at) VALUES (:tenant, :draft, "
                    ":revision, :sha, 'approved', 'user', 'test', :at)",
                    draft=draft_id,
                    revision=revision,
                    sha="0" * 64,
                    at=approved,
                )
        if sent is not None:
            await self.message(
                lead_id, draft_id, sent, dry_run=dry_run, delivered=delivered, replied=replied
            )
        if won is not None:
            await self._insert(
                "INSERT INTO lead_outcomes (tenant_id, lead_id, source, external_id, label, "
                "closed_at) VALUES (:tenant, :lead, 'csv', :external, 'won', :at)",
                lead=lead_id,
                external=str(lead_id),
                at=won,
            )
        for name in campaigns:
            await self._insert(
                "INSERT INTO campaign_members (tenant_id, campaign_id, lead_id, due_at, state, "
                "joined_at) VALUES (:tenant, :campaign, :lead, :at, 'active', :at)",
                campaign=await self.campaign(name),
                lead=lead_id,
                at=at,
            )
        return lead_id

    async def _assignment(self, lead_id: uuid.UUID, rep: str, status: str, at: datetime) -> None:
        await self._insert(
            "INSERT INTO lead_assignments (tenant_id, lead_id, status, team_id, rep_id, trace, "
            "decided_at) VALUES (:tenant, :lead, :status, :team, :rep, '[]', :at)",
            lead=lead_id,
            status=status,
            rep=await self.rep(rep),
            team=self.team_id,
            at=at,
        )

    async def message(
        self,
        lead_id: uuid.UUID,
        draft_id: uuid.UUID | None,
        at: datetime,
        *,
        status: str = "sent",
        dry_run: bool = True,
        delivered: datetime | None = None,
        replied: datetime | None = None,
    ) -> uuid.UUID:
        return await self._insert(
            "INSERT INTO messages (tenant_id, lead_id, draft_id, kind, channel, provider, "
            "dry_run, idempotency_key, status, recipient, body, content_sha256, policy_trace, "
            "created_by, created_at, sent_at, delivered_at, replied_at) VALUES (:tenant, :lead, "
            ":draft, 'one_to_one', 'email', 'dryrun', :dry_run, :key, :status, 'x@example.com', "
            "'Hello', :sha, '[]', 'test', :at, :sent_at, :delivered, :replied)",
            lead=lead_id,
            draft=draft_id,
            dry_run=dry_run,
            key=uuid.uuid4().hex,
            status=status,
            sha="0" * 64,
            at=at,
            sent_at=at if status == "sent" else None,
            delivered=delivered,
            replied=replied,
        )


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


async def seed_pipeline(db: Database, tenant: TenantCtx) -> dict[str, uuid.UUID]:
    """Six leads (plus one merged duplicate) walked to different depths:

    | lead | source | campaign | rep | reached                                   |
    | a    | Web    | Spring   | Ann | every stage, live (not dry-run) messages  |
    | b    | Web    | Spring   | Ann | … replied (dry-run)                       |
    | c    | Web    | —        | Bob | … delivered (dry-run), reassigned from Ann|
    | d    | Expo   | Spring, Fall | Bob | … approved                            |
    | e    | Expo   | —        | —   | verified, then scored below the threshold |
    | f    | Expo   | Fall     | —   | ingested only, a week later               |
    """
    async with db.session(tenant.id) as session:
        seed = Seeder(session, tenant.id)
        ids = {
            "a": await seed.lead(
                source="Web",
                verified=h(1),
                qualified=h(2),
                rep="Ann",
                assigned=h(3),
                drafted=h(4),
                approved=h(6),
                sent=h(7),
                dry_run=False,
                delivered=h(7.5),
                replied=h(10),
                won=h(100),
                campaigns=("Spring",),
            ),
            "b": await seed.lead(
                source="Web",
                verified=h(1),
                qualified=h(3),
                rep="Ann",
                assigned=h(4),
                drafted=h(5),
                approved=h(9),
                sent=h(10),
                delivered=h(11),
                replied=h(30),
                campaigns=("Spring",),
            ),
            "c": await seed.lead(
                source="Web",
                verified=h(2),
                qualified=h(4),
                rep="Bob",
                reassigned_from="Ann",
                assigned=h(5),
                drafted=h(8),
                approved=h(10),
                sent=h(12),
                delivered=h(13),
            ),
            "d": await seed.lead(
                source="Expo",
                verified=h(1),
                qualified=h(5),
                rep="Bob",
                assigned=h(6),
                drafted=h(7),
                approved=h(8),
                campaigns=("Spring", "Fall"),
            ),
            "e": await seed.lead(source="Expo", verified=h(3), scored_below=True),
            "f": await seed.lead(source="Expo", at=h(24 * 7), campaigns=("Fall",)),
        }
        await seed.lead(source="Web", at=h(1), merged=True, verified=h(1), qualified=h(2))
        # A blocked message is not a sent one; a failed one neither.
        await seed.message(ids["d"], None, h(9), status="blocked")
        await seed.message(ids["e"], None, h(9), status="failed")
        ids.update({f"source:{k}": v for k, v in seed.sources.items()})
        ids.update({f"rep:{k}": v for k, v in seed.reps.items()})
        ids.update({f"campaign:{k}": v for k, v in seed.campaigns.items()})
    return ids


def counts(row: Any) -> dict[str, int]:
    return {figure.stage: figure.count for figure in row.stages}


def figure(row: Any, stage: str) -> Any:
    return next(f for f in row.stages if f.stage == stage)


EVERYTHING = dict(zip(STAGES, [6, 5, 4, 4, 4, 4, 3, 3, 2, 1], strict=True))


@pytest.fixture
async def pipeline(tenants: TenantFactory, db: Database) -> tuple[TenantCtx, dict[str, uuid.UUID]]:
    tenant = await tenants.create("Funnel Co")
    return tenant, await seed_pipeline(db, tenant)


async def report(db: Database, tenant: TenantCtx, **given: Any) -> Any:
    async with db.session(tenant.id) as session:
        return await funnel_report(session, FunnelFilters(**given))


class TestFunnelReport:
    async def test_counts_every_stage_once_per_lead(
        self, db: Database, pipeline: tuple[TenantCtx, dict[str, uuid.UUID]]
    ) -> None:
        tenant, _ = pipeline
        result = await report(db, tenant)
        assert counts(result.total) == EVERYTHING
        assert result.groups == []
        assert result.series == []

    async def test_step_conversion_rates_and_hours_between_stages(
        self, db: Database, pipeline: tuple[TenantCtx, dict[str, uuid.UUID]]
    ) -> None:
        tenant, _ = pipeline
        total = (await report(db, tenant)).total
        ingested = figure(total, "ingested")
        assert (ingested.converted, ingested.rate_from_previous) == (None, None)
        assert ingested.rate_from_ingested == 1.0
        verified = figure(total, "verified")
        assert (verified.converted, verified.rate_from_previous) == (5, round(5 / 6, 4))
        # Verified 1, 1, 2, 1 h after ingestion for a, b, c, d and 3 h for e.
        assert verified.median_hours == 1.0
        assert verified.p90_hours == pytest.approx(2.6)
        qualified = figure(total, "qualified")
        assert (qualified.converted, qualified.rate_from_previous) == (4, 0.8)
        # a 1 h, b 2 h, c 2 h, d 4 h after verification.
        assert qualified.median_hours == 2.0
        sent = figure(total, "sent")
        # Of the four approved leads, three were sent: a after 1 h, b after 1 h, c after 2 h.
        assert (sent.count, sent.converted, sent.rate_from_previous) == (3, 3, 0.75)
        assert sent.median_hours == 1.0
        assert sent.rate_from_ingested == 0.5
        replied = figure(total, "replied")
        # a replied 2.5 h after delivery, b 19 h after: the median is between.
        assert replied.median_hours == pytest.approx(10.75)
        won = figure(total, "won")
        assert (won.count, won.converted, won.rate_from_previous) == (1, 1, 0.5)
        assert won.median_hours == 90.0

    async def test_reassigned_lead_counts_from_its_first_rep(
        self, db: Database, pipeline: tuple[TenantCtx, dict[str, uuid.UUID]]
    ) -> None:
        tenant, _ = pipeline
        assigned = figure((await report(db, tenant)).total, "assigned")
        # Assigned after qualification: a 1 h, b 1 h, c 1 h (to Ann, before Bob), d 1 h.
        assert assigned.median_hours == 1.0
        assert assigned.p90_hours == 1.0

    async def test_groups_by_source(
        self, db: Database, pipeline: tuple[TenantCtx, dict[str, uuid.UUID]]
    ) -> None:
        tenant, ids = pipeline
        result = await report(db, tenant, group_by=GroupBy.SOURCE)
        assert [(g.label, g.key) for g in result.groups] == [
            ("Expo", str(ids["source:Expo"])),
            ("Web", str(ids["source:Web"])),
        ]
        web, expo = result.groups[1], result.groups[0]
        assert counts(web) == dict(zip(STAGES, [3, 3, 3, 3, 3, 3, 3, 3, 2, 1], strict=True))
        assert counts(expo) == dict(zip(STAGES, [3, 2, 1, 1, 1, 1, 0, 0, 0, 0], strict=True))
        assert figure(expo, "sent").rate_from_previous == 0.0
        assert counts(result.total) == EVERYTHING

    async def test_groups_by_current_rep_with_unassigned_last(
        self, db: Database, pipeline: tuple[TenantCtx, dict[str, uuid.UUID]]
    ) -> None:
        tenant, ids = pipeline
        result = await report(db, tenant, group_by=GroupBy.REP)
        assert [(g.label, g.key, g.count("ingested")) for g in result.groups] == [
            ("Ann", str(ids["rep:Ann"]), 2),
            ("Bob", str(ids["rep:Bob"]), 2),
            ("Unassigned", None, 2),
        ]
        bob = result.groups[1]
        assert counts(bob)["sent"] == 1  # c; d was only approved

    async def test_groups_by_campaign_counting_a_lead_in_each_of_its_campaigns(
        self, db: Database, pipeline: tuple[TenantCtx, dict[str, uuid.UUID]]
    ) -> None:
        tenant, ids = pipeline
        result = await report(db, tenant, group_by=GroupBy.CAMPAIGN)
        assert [(g.label, g.key, g.count("ingested")) for g in result.groups] == [
            ("Spring", str(ids["campaign:Spring"]), 3),
            ("Fall", str(ids["campaign:Fall"]), 2),
            ("(no campaign)", None, 2),
        ]
        assert counts(result.total)["ingested"] == 6  # d, in two campaigns, once

    async def test_filters_narrow_the_cohort(
        self, db: Database, pipeline: tuple[TenantCtx, dict[str, uuid.UUID]]
    ) -> None:
        tenant, ids = pipeline
        by_source = await report(db, tenant, source_id=ids["source:Web"])
        assert counts(by_source.total)["ingested"] == 3
        by_campaign = await report(db, tenant, campaign_id=ids["campaign:Fall"])
        assert counts(by_campaign.total) == dict(
            zip(STAGES, [2, 1, 1, 1, 1, 1, 0, 0, 0, 0], strict=True)
        )
        by_rep = await report(db, tenant, rep_id=ids["rep:Ann"])
        assert counts(by_rep.total)["won"] == 1
        assert counts(by_rep.total)["ingested"] == 2  # c moved on to Bob
        first_week = await report(db, tenant, since=T0, until=h(24 * 7))
        assert counts(first_week.total)["ingested"] == 5
        later = await report(db, tenant, since=h(24 * 7))
        assert counts(later.total) == dict(zip(STAGES, [1] + [0] * 9, strict=True))

    async def test_dry_run_filter_splits_the_message_stages(
        self, db: Database, pipeline: tuple[TenantCtx, dict[str, uuid.UUID]]
    ) -> None:
        tenant, _ = pipeline
        live = await report(db, tenant, dry_run=DryRun.EXCLUDE)
        assert [counts(live.total)[s] for s in ("approved", "sent", "delivered", "replied")] == [
            4,
            1,
            1,
            1,
        ]
        dry = await report(db, tenant, dry_run=DryRun.ONLY)
        assert [counts(dry.total)[s] for s in ("sent", "delivered", "replied", "won")] == [
            2,
            2,
            1,
            1,
        ]

    async def test_series_by_week_of_creation(
        self, db: Database, pipeline: tuple[TenantCtx, dict[str, uuid.UUID]]
    ) -> None:
        tenant, _ = pipeline
        result = await report(db, tenant, granularity=Granularity.WEEK)
        assert [(p.period, p.counts["ingested"], p.counts["sent"]) for p in result.series] == [
            (T0.replace(hour=0), 5, 3),
            (T0.replace(hour=0) + timedelta(days=7), 1, 0),
        ]

    async def test_another_tenants_rows_are_never_counted(
        self,
        db: Database,
        tenants: TenantFactory,
        pipeline: tuple[TenantCtx, dict[str, uuid.UUID]],
    ) -> None:
        tenant, _ = pipeline
        other = await tenants.create("Other Co")
        await seed_pipeline(db, other)
        assert counts((await report(db, tenant)).total) == EVERYTHING
        empty = await tenants.create("Empty Co")
        result = await report(db, empty, group_by=GroupBy.SOURCE)
        assert counts(result.total) == dict.fromkeys(STAGES, 0)
        assert result.groups == []
        assert figure(result.total, "verified").rate_from_previous is None


# --- the sampled hours of a large cohort ---------------------------------------------------------

# The sample's size for these tests (the app's is 20,000): a cohort four times as large is
# sampled, and what the sample says is compared with the exact figures of the same cohort.
SAMPLE = 2_000
LARGE = 6_000
# Stated tolerance, in rank: the sampled median lies between the exact 44th and 56th
# percentiles, the sampled p90 between the 86th and 94th. With ~1,000 sampled leads on a step
# the rank's standard error is 1.6 (median) and 0.9 (p90) points: beyond 3.5 sigma, whatever
# the shape of the distribution (the sample follows the lead ids, new in every run). In value
# that is within 2-7 % here; at the app's 20,000 a step's rank error is ~0.35 points.
MEDIAN_RANKS = (0.44, 0.56)
P90_RANKS = (0.86, 0.94)


async def seed_large_cohort(db: Database, tenant: TenantCtx) -> uuid.UUID:
    """`LARGE` leads, one a minute, their rollup rows given times directly: verified 1 to
    100 h after ingestion (each value equally often); every other one qualified 0 to 130 h
    later (skewed: most soon), then assigned up to ~10 h after that. Returns the source's
    id."""
    async with db.session(tenant.id) as session:
        source = await Seeder(session, tenant.id).source("Bulk")
        await session.execute(
            text(
                "INSERT INTO leads (tenant_id, source_id, full_name, created_at) "
                "SELECT :tenant, :source, 'Lead ' || i, :t0 + make_interval(mins => i) "
                "FROM generate_series(1, :n) AS i"
            ),
            {"tenant": tenant.id, "source": source, "t0": T0, "n": LARGE},
        )
        # The trigger made each lead's rollup row; the minute number is the lead's number.
        await session.execute(
            text(
                "WITH n AS (SELECT lead_id, "
                "  round(date_part('epoch', created_at - :t0) / 60)::int AS i FROM lead_funnel) "
                "UPDATE lead_funnel f SET "
                "  verified_at = f.created_at + make_interval(hours => 1 + n.i % 100), "
                "  qualified_at = CASE WHEN n.i % 2 = 0 THEN f.created_at "
                "    + make_interval(hours => 1 + n.i % 100) "
                "    + make_interval(secs => power((n.i * 7919 % 1000) / 1000.0, 2) * 468000) "
                "    END, "
                "  assigned_at = CASE WHEN n.i % 2 = 0 THEN f.created_at + interval '300 hours' "
                "    + make_interval(secs => (n.i * 31 % 997) * 35) END "
                "FROM n WHERE f.lead_id = n.lead_id"
            ),
            {"t0": T0},
        )
    return source


@pytest.fixture
async def large(tenants: TenantFactory, db: Database) -> tuple[TenantCtx, uuid.UUID]:
    tenant = await tenants.create("Big Co")
    return tenant, await seed_large_cohort(db, tenant)


_STEP_HOURS = {
    "verified": "verified_at - created_at",
    "qualified": "qualified_at - verified_at",
    "assigned": "assigned_at - qualified_at",
}


async def exact_hours(db: Database, tenant: TenantCtx, stage: str) -> list[float]:
    """Every lead's hours on the step to `stage`, sorted."""
    async with db.session(tenant.id) as session:
        rows = await session.scalars(
            text(
                f"SELECT date_part('epoch', {_STEP_HOURS[stage]}) / 3600 FROM lead_funnel "
                f"WHERE {_STEP_HOURS[stage].replace(' - ', ' IS NOT NULL AND ')} IS NOT NULL"
            )
        )
        return sorted(float(hours) for hours in rows)


def rank(value: float | None, population: list[float]) -> float:
    """The share of the population at or below `value`."""
    assert value is not None
    return bisect.bisect_right(population, value) / len(population)


class TestSampledHours:
    def test_the_threshold_leaves_about_the_sample_of_a_larger_cohort(self) -> None:
        assert funnel.sample_threshold(funnel.SAMPLE_LEADS) is None
        below = funnel.sample_threshold(4 * funnel.SAMPLE_LEADS)
        assert below is not None
        assert (below + 2**31) / 2**32 == pytest.approx(0.25)

    async def test_a_cohort_within_the_sample_size_is_exact(
        self, db: Database, large: tuple[TenantCtx, uuid.UUID]
    ) -> None:
        tenant, _ = large
        total = (await report(db, tenant)).total
        assert (total.hours_exact, total.hours_sampled) == (True, LARGE)
        verified = figure(total, "verified")
        assert verified.hours_from == LARGE
        # 1 … 100 h, each 60 times: the median lies between 50 and 51.
        assert verified.median_hours == 50.5

    async def test_a_larger_cohort_reads_a_sample_and_says_so(
        self,
        db: Database,
        large: tuple[TenantCtx, uuid.UUID],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        tenant, _ = large
        exact = await report(db, tenant)
        monkeypatch.setattr(funnel, "SAMPLE_LEADS", SAMPLE)
        sampled = await report(db, tenant)
        assert counts(sampled.total) == counts(exact.total)  # counts and rates stay exact
        assert [f.rate_from_previous for f in sampled.total.stages] == [
            f.rate_from_previous for f in exact.total.stages
        ]
        total = sampled.total
        assert total.hours_exact is False
        assert not sampled.hours_exact
        assert 0.8 * SAMPLE < total.hours_sampled < 1.2 * SAMPLE
        assert "≈" in sampled.hours_note
        assert f"{total.hours_sampled:,} of the cohort's {LARGE:,}" in sampled.hours_note
        for stage in _STEP_HOURS:
            approximate, truth = figure(total, stage), figure(exact.total, stage)
            assert 0 < approximate.hours_from <= total.hours_sampled
            assert (
                approximate.hours_from
                < truth.hours_from
                == LARGE // (1 if stage == "verified" else 2)
            )
            population = await exact_hours(db, tenant, stage)
            low, high = MEDIAN_RANKS
            assert low <= rank(approximate.median_hours, population) <= high, stage
            low, high = P90_RANKS
            assert low <= rank(approximate.p90_hours, population) <= high, stage
        # The same leads every time: the figures do not move between two looks.
        again = await report(db, tenant)
        assert again.total == sampled.total

    async def test_groups_share_the_cohorts_sample(
        self,
        db: Database,
        large: tuple[TenantCtx, uuid.UUID],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        tenant, source = large
        monkeypatch.setattr(funnel, "SAMPLE_LEADS", SAMPLE)
        by_source = await report(db, tenant, group_by=GroupBy.SOURCE)
        (group,) = by_source.groups
        assert group.key == str(source)
        assert not group.hours_exact
        assert group.hours_sampled == by_source.total.hours_sampled
        verified = figure(by_source.total, "verified")
        assert figure(group, "verified").median_hours == verified.median_hours
        # By campaign the sample is drawn in the same statement as the counts: the same leads.
        by_campaign = await report(db, tenant, group_by=GroupBy.CAMPAIGN)
        (no_campaign,) = by_campaign.groups
        assert no_campaign.key is None
        assert by_campaign.total.hours_sampled == by_source.total.hours_sampled
        assert no_campaign.hours_sampled == by_source.total.hours_sampled
        assert figure(by_campaign.total, "verified") == verified

    async def test_the_api_says_the_hours_are_approximate(
        self,
        client: httpx.AsyncClient,
        large: tuple[TenantCtx, uuid.UUID],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        tenant, _ = large
        monkeypatch.setattr(funnel, "SAMPLE_LEADS", SAMPLE)
        headers = await tenant.headers(Role.MANAGER)
        body = (await client.get(URL, headers=headers)).json()
        assert body["hours_exact"] is False
        assert "sample" in body["hours_note"]
        assert body["total"]["hours_exact"] is False
        verified = body["total"]["stages"][1]
        assert 0 < verified["hours_from"] <= body["total"]["hours_sampled"] < LARGE
        csv_body = (await client.get(URL, params={"format": "csv"}, headers=headers)).text
        rows = list(csv.DictReader(io.StringIO(csv_body)))
        assert {r["hours_exact"] for r in rows} == {"False"}


class TestFunnelApi:
    async def test_json_matches_the_service(
        self, client: httpx.AsyncClient, pipeline: tuple[TenantCtx, dict[str, uuid.UUID]]
    ) -> None:
        tenant, ids = pipeline
        headers = await tenant.headers(Role.MANAGER)
        response = await client.get(
            URL, params={"group_by": "source", "granularity": "day"}, headers=headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["stages"] == list(STAGES)
        assert body["dry_run"] == "include"
        assert "dry-run" in body["dry_run_note"]
        assert {s["stage"]: s["count"] for s in body["total"]["stages"]} == EVERYTHING
        assert [g["label"] for g in body["groups"]] == ["Expo", "Web"]
        assert body["groups"][1]["key"] == str(ids["source:Web"])
        sent = body["total"]["stages"][6]
        assert sent == {
            "stage": "sent",
            "label": "Sent",
            "count": 3,
            "converted": 3,
            "rate_from_previous": 0.75,
            "rate_from_ingested": 0.5,
            "median_hours": 1.0,
            "p90_hours": 1.8,
            "hours_from": 3,
        }
        assert body["hours_exact"] is True
        assert body["total"]["hours_exact"] is True
        assert body["total"]["hours_sampled"] == 6
        assert "exact" in body["hours_note"]
        assert [(p["period"][:10], p["counts"]["ingested"]) for p in body["series"]] == [
            ("2026-11-02", 5),
            ("2026-11-09", 1),
        ]

    async def test_filters_by_query_parameters(
        self, client: httpx.AsyncClient, pipeline: tuple[TenantCtx, dict[str, uuid.UUID]]
    ) -> None:
        tenant, ids = pipeline
        headers = await tenant.headers(Role.MANAGER)
        params = {
            "from": "2026-11-01",
            "to": "2026-11-08T00:00:00Z",
            "campaign": str(ids["campaign:Spring"]),
            "dry_run": "exclude",
        }
        body = (await client.get(URL, params=params, headers=headers)).json()
        stages = {s["stage"]: s["count"] for s in body["total"]["stages"]}
        assert (stages["ingested"], stages["sent"], stages["won"]) == (3, 1, 1)
        assert body["filters"]["from"] == "2026-11-01T00:00:00Z"
        assert body["filters"]["campaign"] == str(ids["campaign:Spring"])

    async def test_csv_export_one_row_per_group_and_stage(
        self, client: httpx.AsyncClient, tenants: TenantFactory, db: Database
    ) -> None:
        tenant = await tenants.create()
        async with db.session(tenant.id) as session:
            seed = Seeder(session, tenant.id)
            await seed.lead(source='=HYPERLINK("http://evil")', verified=h(1))
            await seed.lead(source="Web", verified=h(2), qualified=h(3))
        headers = await tenant.headers(Role.MANAGER)
        response = await client.get(
            URL, params={"group_by": "source", "format": "csv"}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert len(rows) == 3 * len(STAGES)  # the total, then two sources
        assert rows[0]["group"] == "All leads"
        assert rows[0]["dry_run"] == "include"
        assert {r["group"] for r in rows[len(STAGES) :]} == {
            '\'=HYPERLINK("http://evil")',
            "Web",
        }
        verified = next(r for r in rows if r["group"] == "All leads" and r["stage"] == "verified")
        assert verified["count"] == "2"
        assert verified["rate_from_previous"] == "1.0"
        assert verified["median_hours"] == "1.5"
        assert (verified["hours_from"], verified["hours_exact"]) == ("2", "True")

    async def test_bad_parameters_are_422_with_the_field(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        headers = await tenant.headers(Role.MANAGER)
        cases = {
            "group_by": {"group_by": "country"},
            "dry_run": {"dry_run": "maybe"},
            "format": {"format": "xlsx"},
            "from": {"from": "yesterday"},
            "campaign": {"campaign": "not-a-uuid"},
            "granularity": {"granularity": "hour"},
        }
        for name, params in cases.items():
            response = await client.get(URL, params=params, headers=headers)
            assert response.status_code == 422, (name, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert [e["field"] for e in response.json()["errors"]] == [name], name
        backwards = await client.get(
            URL, params={"from": "2026-12-01", "to": "2026-11-01"}, headers=headers
        )
        assert backwards.status_code == 422
        assert [e["field"] for e in backwards.json()["errors"]] == ["to"]

    async def test_needs_a_key_with_the_outreach_read_permission(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        assert (await client.get(URL)).status_code == 401
        narrow = await tenant.api_key(Role.MANAGER, scopes=["leads:read"])
        refused = await client.get(URL, headers={"authorization": f"Bearer {narrow}"})
        assert refused.status_code == 403
        assert "outreach:read" in refused.json()["detail"]


class TestMetrics:
    async def test_scrape_counts_leads_and_messages_by_status(
        self, client: httpx.AsyncClient, db: Database, tenants: TenantFactory
    ) -> None:
        from leadrelay.telemetry.metrics import LEADS, MESSAGES, refresh_metrics

        await refresh_metrics(db, force=True)
        before_new = LEADS.labels(status="new")._value.get()
        before_sent = MESSAGES.labels(status="sent", dry_run="true")._value.get()
        tenant = await tenants.create()
        await seed_pipeline(db, tenant)  # 6 new leads, 1 merged; 2 dry-run sent, 1 live
        await refresh_metrics(db, force=True)
        assert LEADS.labels(status="new")._value.get() == before_new + 6
        assert MESSAGES.labels(status="sent", dry_run="true")._value.get() == before_sent + 2
        body = (await client.get("/metrics")).text
        assert 'leadrelay_leads{status="merged"}' in body
        assert 'leadrelay_messages{dry_run="false",status="sent"}' in body
