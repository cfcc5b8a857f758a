"""Funnel: the manager dashboard's query (`telemetry.funnel`) over 1,000,000 messages, beside a
bare `SELECT count(*) FROM messages` over the same rows in the same run.

Setup (not timed): one tenant with two sources, five reps, three campaigns and an active ICP
version; N/4 leads spread over 180 days (COPY, as the owner), of which ~80% verified, ~60%
qualified, ~55% assigned, ~50% drafted (one draft, revision and approval each for ~90% of
them), ~40% in a campaign and ~2% won; N messages (four per lead on average, among the
drafted leads): ~85% sent (a third of them live, the rest dry-run), of which ~70% delivered
and ~8% replied, the others blocked or failed. Then ANALYZE, as autovacuum would.

Measured as the app role (row-level security on, the tenant set, as a request runs it): the
whole-history funnel (no filter), by source, by rep with a weekly series, and the last 30 days
by campaign — each the two statements `funnel_report` runs (the counts, then the hours between
stages, from a deterministic sample of about 20,000 leads when the cohort is larger); 3
warm-up runs then N timed runs, p50 and p99. The raw limit: a bare `SELECT count(*) FROM
messages` under the same role and tenant — one pass over the same rows, none of the funnel's
work. Afterwards the headline's sampled medians and p90s are set beside the exact ones (every
lead sorted, once).

    .venv/bin/python -m bench.funnel [--messages 1000000] [--runs 15]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from bench.common import Cluster, Figure, cluster, heading, percentile, start_watchdog, table
from leadrelay.telemetry.funnel import (
    STAGES,
    FunnelFilters,
    Granularity,
    GroupBy,
    counts_statement,
    funnel_session_settings,
    hours_included,
    hours_statement,
)

TARGET_MS = 200.0
WARMUP = 3
NOW = datetime(2026, 12, 1, tzinfo=UTC)
DAYS = 180
SHA = "0" * 64


@dataclass(frozen=True, slots=True)
class Setup:
    tenant_id: uuid.UUID
    leads: int
    messages: int
    seconds: float
    campaign_id: uuid.UUID


def _copy(
    cursor: psycopg.Cursor[tuple[object, ...]], statement: str, rows: list[tuple[object, ...]]
) -> None:
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _setup(c: Cluster, messages: int, seed: int = 7) -> Setup:
    started = time.perf_counter()
    rng = random.Random(seed)
    tenant_id = uuid.uuid4()
    leads = messages // 4
    with psycopg.connect(c.urls.owner) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tenants (id, name, slug) VALUES (%s, 'Bench funnel', %s)",
            (tenant_id, f"bench-funnel-{tenant_id.hex[:8]}"),
        )
        sources = [uuid.uuid4(), uuid.uuid4()]
        for n, source_id in enumerate(sources):
            cursor.execute(
                "INSERT INTO sources (id, tenant_id, name, kind, legal_basis, status) "
                "VALUES (%s, %s, %s, 'official_api', 'consent', 'vetted')",
                (source_id, tenant_id, f"Source {n}"),
            )
        team = uuid.uuid4()
        cursor.execute(
            "INSERT INTO teams (id, tenant_id, name) VALUES (%s, %s, 'Sales')", (team, tenant_id)
        )
        reps = [uuid.uuid4() for _ in range(5)]
        for n, rep in enumerate(reps):
            cursor.execute(
                "INSERT INTO reps (id, tenant_id, team_id, name) VALUES (%s, %s, %s, %s)",
                (rep, tenant_id, team, f"Rep {n}"),
            )
        campaigns = [uuid.uuid4() for _ in range(3)]
        for n, campaign in enumerate(campaigns):
            cursor.execute(
                "INSERT INTO campaigns (id, tenant_id, name, status, audience, steps, send_time, "
                "timezone, created_by) VALUES (%s, %s, %s, 'active', '{}', '[]', '10:00', 'UTC', "
                "'bench')",
                (campaign, tenant_id, f"Campaign {n}"),
            )
        version = uuid.uuid4()
        cursor.execute(
            "INSERT INTO icp_versions (id, tenant_id, number, status) VALUES (%s, %s, 1, 'active')",
            (version, tenant_id),
        )

        lead_rows: list[tuple[object, ...]] = []
        score_rows: list[tuple[object, ...]] = []
        assignment_rows: list[tuple[object, ...]] = []
        draft_rows: list[tuple[object, ...]] = []
        revision_rows: list[tuple[object, ...]] = []
        approval_rows: list[tuple[object, ...]] = []
        member_rows: list[tuple[object, ...]] = []
        outcome_rows: list[tuple[object, ...]] = []
        drafted: list[tuple[uuid.UUID, uuid.UUID, datetime]] = []
        for n in range(leads):
            lead_id = uuid.uuid4()
            created = NOW - timedelta(seconds=rng.randrange(DAYS * 86400))
            verified = rng.random() < 0.8
            checked = (created + timedelta(minutes=rng.randrange(1, 120))).isoformat()
            verification = (
                f'{{"email": {{"verified": {"true" if verified else "false"}, '
                f'"checked_at": "{checked}"}}}}'
            )
            lead_rows.append(
                (lead_id, tenant_id, sources[n % 2], f"Lead {n}", created, verification)
            )
            step = created + timedelta(hours=rng.randrange(1, 48))
            if rng.random() < 0.9:
                qualified = rng.random() < 0.67
                score_rows.append(
                    (
                        tenant_id,
                        lead_id,
                        version,
                        80 if qualified else 30,
                        100,
                        qualified,
                        "[]",
                        "[]",
                        step,
                        step if qualified else None,
                    )
                )
                if not qualified:
                    continue
                if rng.random() < 0.92:
                    step += timedelta(minutes=rng.randrange(1, 600))
                    assignment_rows.append(
                        (tenant_id, lead_id, "assigned", team, rng.choice(reps), "[]", step)
                    )
                    if rng.random() < 0.92:
                        step += timedelta(hours=rng.randrange(1, 72))
                        draft_id, revision_id = uuid.uuid4(), uuid.uuid4()
                        draft_rows.append(
                            (
                                draft_id,
                                tenant_id,
                                lead_id,
                                "email",
                                "builtin:intro",
                                "friendly",
                                "short",
                                "call",
                                "template",
                                "approved",
                                "user",
                                "bench",
                                step,
                            )
                        )
                        revision_rows.append(
                            (
                                revision_id,
                                tenant_id,
                                draft_id,
                                1,
                                "Hello",
                                SHA,
                                "[]",
                                "[]",
                                "[]",
                                "user",
                                "bench",
                            )
                        )
                        if rng.random() < 0.9:
                            step += timedelta(hours=rng.randrange(1, 24))
                            approval_rows.append(
                                (
                                    tenant_id,
                                    draft_id,
                                    revision_id,
                                    SHA,
                                    "approved",
                                    "user",
                                    "bench",
                                    step,
                                )
                            )
                            drafted.append((lead_id, draft_id, step))
                        if rng.random() < 0.8:
                            member_rows.append(
                                (tenant_id, rng.choice(campaigns), lead_id, step, "active", step)
                            )
                        if rng.random() < 0.06:
                            outcome_rows.append(
                                (
                                    tenant_id,
                                    lead_id,
                                    "csv",
                                    str(lead_id),
                                    "won",
                                    step + timedelta(days=rng.randrange(1, 30)),
                                )
                            )
        _copy(
            cursor,
            "COPY leads (id, tenant_id, source_id, full_name, created_at, verification) FROM STDIN",
            lead_rows,
        )
        _copy(
            cursor,
            "COPY lead_scores (tenant_id, lead_id, version_id, score, total, qualified, breakdown, "
            "matched, scored_at, qualified_at) FROM STDIN",
            score_rows,
        )
        _copy(
            cursor,
            "COPY lead_assignments (tenant_id, lead_id, status, team_id, rep_id, trace, "
            "decided_at) FROM STDIN",
            assignment_rows,
        )
        _copy(
            cursor,
            "COPY drafts (id, tenant_id, lead_id, channel, template, tone, length, cta, origin, "
            "status, created_by_type, created_by, created_at) FROM STDIN",
            draft_rows,
        )
        _copy(
            cursor,
            "COPY draft_revisions (id, tenant_id, draft_id, number, body, content_sha256, "
            "sentences, gaps, compliance, author_type, author) FROM STDIN",
            revision_rows,
        )
        _copy(
            cursor,
            "COPY approvals (tenant_id, draft_id, revision_id, content_sha256, decision, "
            "reviewer_type, reviewer, decided_at) FROM STDIN",
            approval_rows,
        )
        _copy(
            cursor,
            "COPY campaign_members (tenant_id, campaign_id, lead_id, due_at, state, joined_at) "
            "FROM STDIN",
            member_rows,
        )
        _copy(
            cursor,
            "COPY lead_outcomes (tenant_id, lead_id, source, external_id, label, closed_at) "
            "FROM STDIN",
            outcome_rows,
        )
        del lead_rows, score_rows, assignment_rows, draft_rows, revision_rows, approval_rows
        statement = (
            "COPY messages (tenant_id, lead_id, draft_id, kind, channel, provider, dry_run, "
            "idempotency_key, status, recipient, body, content_sha256, policy_trace, created_by, "
            "created_at, sent_at, delivered_at, replied_at) FROM STDIN"
        )
        with cursor.copy(statement) as copy:
            for n in range(messages):
                lead_id, draft_id, approved = drafted[n % len(drafted)]
                at = approved + timedelta(hours=1 + 24 * (n // len(drafted)))
                roll = rng.random()
                status = "sent" if roll < 0.85 else ("blocked" if roll < 0.95 else "failed")
                sent = status == "sent"
                delivered = at + timedelta(minutes=2) if sent and rng.random() < 0.7 else None
                replied = (
                    at + timedelta(hours=rng.randrange(1, 96))
                    if delivered and rng.random() < 0.11
                    else None
                )
                copy.write_row(
                    (
                        tenant_id,
                        lead_id,
                        draft_id,
                        "one_to_one",
                        "email",
                        "dryrun",
                        rng.random() < 0.67,
                        f"bench-{n}",
                        status,
                        f"lead{n % 997}@example.com",
                        "Hello",
                        SHA,
                        "[]",
                        "bench",
                        at,
                        at if sent else None,
                        delivered,
                        replied,
                    )
                )
        connection.commit()
        connection.autocommit = True
        for name in (
            "leads",
            "lead_scores",
            "lead_assignments",
            "drafts",
            "approvals",
            "campaign_members",
            "lead_outcomes",
            "messages",
            "lead_funnel",  # its triggers rewrote each lead's row once per stage written
        ):
            cursor.execute(f"VACUUM ANALYZE {name}")
    return Setup(tenant_id, leads, messages, time.perf_counter() - started, campaigns[0])


@dataclass(frozen=True, slots=True)
class Timing:
    name: str
    samples: list[float]  # ms
    rows: int

    def row(self) -> list[str]:
        return [
            self.name,
            f"{percentile(self.samples, 0.5):.1f}",
            f"{percentile(self.samples, 0.99):.1f}",
            f"{min(self.samples):.1f}",
            str(self.rows),
        ]


def _time(
    c: Cluster,
    setup: Setup,
    name: str,
    run: Callable[[psycopg.Cursor[tuple[object, ...]]], int],
    runs: int,
) -> Timing:
    """As the app role, in one transaction per run with the tenant set (RLS on)."""
    samples: list[float] = []
    rows = 0
    with psycopg.connect(c.urls.app) as connection, connection.cursor() as cursor:
        for n in range(WARMUP + runs):
            cursor.execute("SELECT set_config('app.tenant_id', %s, true)", (str(setup.tenant_id),))
            started = time.perf_counter()
            rows = run(cursor)
            elapsed = (time.perf_counter() - started) * 1000
            connection.rollback()
            if n >= WARMUP:
                samples.append(elapsed)
    return Timing(name, samples, rows)


def _psycopg(sql: str, params: dict[str, object]) -> str:
    """SQLAlchemy's :name binds, as psycopg's %(name)s."""
    for key in params:
        sql = sql.replace(f":{key}", f"%({key})s")
    return sql


def _report(
    cursor: psycopg.Cursor[tuple[object, ...]], filters: FunnelFilters, *, exact: bool = False
) -> list[dict[str, object]]:
    """What `telemetry.funnel.funnel_report` runs, in its order: the settings, the counts,
    then the hours (from the sample when the cohort is larger; from every lead with `exact`)
    unless the counts carried them. Rows as dicts."""
    cursor.execute(funnel_session_settings())
    sql, params = counts_statement(filters)
    cursor.execute(_psycopg(sql, params), params)
    names = [column.name for column in cursor.description or ()]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    cohort = next(int(str(r["n_ingested"])) for r in rows if r["part"] == "total")
    if cohort and not hours_included(filters):
        sql, params = hours_statement(filters, 0 if exact else cohort)
        cursor.execute(_psycopg(sql, params), params)
        names = [column.name for column in cursor.description or ()]
        rows += [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return rows


def _funnel(filters: FunnelFilters) -> Callable[[psycopg.Cursor[tuple[object, ...]]], int]:
    def run(cursor: psycopg.Cursor[tuple[object, ...]]) -> int:
        return len(_report(cursor, filters))

    return run


def _accuracy(c: Cluster, setup: Setup) -> str:
    """The headline's sampled hours beside the exact ones (every lead sorted), once."""
    with psycopg.connect(c.urls.app) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT set_config('app.tenant_id', %s, true)", (str(setup.tenant_id),))
        sampled = next(r for r in _report(cursor, FunnelFilters()) if "sampled" in r)
        exact = next(r for r in _report(cursor, FunnelFilters(), exact=True) if "sampled" in r)
        connection.rollback()
    errors: list[float] = []
    for stage in STAGES[1:]:
        approximate, truth = sampled[f"h_{stage}"], exact[f"h_{stage}"]
        if not isinstance(approximate, list) or not isinstance(truth, list):
            continue
        for guess, value in zip(approximate, truth, strict=True):
            if guess is not None and value:
                errors.append(abs(float(guess) - float(value)) / float(value))
    if not errors:
        return "hours: nothing to compare"
    return (
        f"hours from a sample of {sampled['sampled']:,} of {exact['sampled']:,} leads: median "
        f"and p90 of {len(errors) // 2} steps within {max(errors):.1%} of the exact values "
        f"(mean {sum(errors) / len(errors):.1%})"
    )


def _raw(cursor: psycopg.Cursor[tuple[object, ...]]) -> int:
    cursor.execute("SELECT count(*) FROM messages")
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def run(c: Cluster, *, messages: int = 1_000_000, runs: int = 15) -> list[Figure]:
    heading(f"funnel: the dashboard query over {messages:,} messages, beside count(*)")
    setup = _setup(c, messages)
    print(
        f"setup {setup.seconds:.1f}s: {setup.leads:,} leads over {DAYS} days, "
        f"{setup.messages:,} messages; {WARMUP} warm-up + {runs} timed runs each, as the app "
        "role with RLS on"
    )
    raw = _time(c, setup, "raw: SELECT count(*) FROM messages", _raw, runs)
    timings = [
        _time(c, setup, "funnel, all history", _funnel(FunnelFilters()), runs),
        _time(c, setup, "funnel by source", _funnel(FunnelFilters(group_by=GroupBy.SOURCE)), runs),
        _time(
            c,
            setup,
            "funnel by rep + weekly series",
            _funnel(FunnelFilters(group_by=GroupBy.REP, granularity=Granularity.WEEK)),
            runs,
        ),
        _time(
            c,
            setup,
            "funnel, last 30 days by campaign",
            _funnel(FunnelFilters(since=NOW - timedelta(days=30), group_by=GroupBy.CAMPAIGN)),
            runs,
        ),
    ]
    print(
        table(
            ["query", "p50 ms", "p99 ms", "min ms", "rows"],
            [raw.row()] + [t.row() for t in timings],
        )
    )
    headline = timings[0]
    p50, p99 = percentile(headline.samples, 0.5), percentile(headline.samples, 0.99)
    raw_p50 = percentile(raw.samples, 0.5)
    worst = max(percentile(t.samples, 0.5) for t in timings)
    notes = [
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms at {messages:,} messages "
        f"(target < {TARGET_MS:.0f} ms: "
        f"{'met' if p50 < TARGET_MS else 'NOT met'}); raw count(*) p50 {raw_p50:.0f} ms; "
        f"slowest variant p50 {worst:.0f} ms"
    ]
    print(notes[0])
    notes.append(_accuracy(c, setup))
    print(notes[1])
    return [
        Figure(
            "funnel query (all history, 1 connection)",
            1000 / p50,
            "bare count(*) of the messages",
            1000 / raw_p50,
            "queries/s",
            notes=notes,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    start_watchdog(600)
    with cluster() as c:
        run(c, messages=args.messages, runs=args.runs)


if __name__ == "__main__":
    main()
