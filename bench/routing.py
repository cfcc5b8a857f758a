"""Routing: decisions/s with the full trace persisted, beside a plain INSERT of the same
assignment rows in the same run; then the simulator's latency over HTTP.

Setup (not timed): one tenant, three teams (round robin, weighted, least loaded) of 7-10 reps
with working hours in several time zones, territories, skills, one rep on time off, one
inactive, a few with a small capacity; five ordered rules on country and score; N leads
(COPY, as the owner) with an active ICP version's score on ~90% of them, ~10% from countries
no rule covers (the work-queue path). Every decision is taken at one fixed instant, Tuesday
2026-11-24 15:00 UTC, so that the mix of reps inside and outside their hours — and with it
the size of the traces — is the same on every run whatever the wall clock says.

1. Routing: `service.route_leads` over every lead, 500 leads per transaction (advisory lock,
   facts and scores, setup and counters, engine, assignments with trace, rep/team counters,
   outbox events, audit chain, commit) — what a routing job does.
2. Raw limit: the rows step 1 wrote, read back, inserted again 500 per transaction into
   `routing_raw` (the same columns, no indexes, no foreign keys, no RLS) by the service's own
   unnest INSERT statement, with the traces re-serialised on the client exactly as the service
   does (`Jsonb`): the same rows and bytes, none of the routing.
3. Simulator: the app under uvicorn on loopback (bench.intake's server), 100 warm-up then
   2,000 sequential `POST /v1/routing/simulate` with hypothetical facts on one keep-alive
   connection, beside the app's own no-op route through the same client.

    .venv/bin/python -m bench.routing [--leads 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

from bench.common import (
    Cluster,
    CpuMeter,
    Figure,
    cleanup_if_cut_short,
    cluster,
    heading,
    percentile,
    postgres_pids,
    rate,
    start_watchdog,
    table,
)
from bench.intake import NOOP_PATH, HttpConnection, start_server, wait_until_serving
from leadrelay.capture.models import LegalBasis, Source, SourceKind, SourceStatus
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.runtime import settle_process
from leadrelay.identity.models import Role
from leadrelay.identity.service import create_api_key, create_tenant, system_principal
from leadrelay.routing import engine, service
from leadrelay.routing.models import Rep, RoutingRuleRow, Team, TimeOff
from leadrelay.scoring.models import IcpVersion, VersionStatus

CHUNK = 500  # leads per routing transaction, and rows per raw INSERT transaction
WARMUP_REQUESTS = 100
SIMULATE_REQUESTS = 2_000
LATENCY_TARGET_MS = 20.0
# Every decision is taken at this instant (a Tuesday): see the module docstring.
AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)

COVERED: tuple[str, ...] = ("DE", "AT", "CH", "GB", "IE", "FR", "BE", "NL", "ES", "IT", "SE")
COVERED += ("US", "CA", "MX", "BR", "AR", "CL")
UNCOVERED = ("JP", "IN", "ZA", "AU", "SG", "NG", "KR")  # no rule names them: the queue
UNCOVERED_SHARE = 0.10
UNSCORED_SHARE = 0.10

# The raw limit's statement is the service's own (the same unnest of nine arrays), pointed at
# the plain table, so the comparison is the same statement shape.
RAW_INSERT = service._INSERT_ASSIGNMENTS.replace(
    "INSERT INTO lead_assignments", "INSERT INTO routing_raw", 1
)
assert RAW_INSERT != service._INSERT_ASSIGNMENTS


def weekdays(*intervals: tuple[str, str]) -> dict[str, list[list[str]]]:
    return {day: [list(i) for i in intervals] for day in ("mon", "tue", "wed", "thu", "fri")}


OFFICE = weekdays(("09:00", "17:00"))
LONG = weekdays(("08:00", "18:00"))
SPLIT = weekdays(("09:00", "13:00"), ("14:00", "18:00"))


@dataclass(frozen=True, slots=True)
class RepPlan:
    name: str
    timezone: str = "UTC"
    hours: dict[str, list[list[str]]] | None = None
    territories: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()
    capacity: int = 5_000
    weight: int = 1
    active: bool = True
    time_off: bool = False


@dataclass(frozen=True, slots=True)
class TeamPlan:
    name: str
    strategy: engine.Strategy
    reps: tuple[RepPlan, ...]
    required_skills: tuple[str, ...] = ()
    sla_minutes: int | None = None
    fallback: str | None = None  # another team's name


TEAMS = (
    TeamPlan(
        "EMEA",
        engine.Strategy.ROUND_ROBIN,
        (
            RepPlan("Anna", "Europe/Berlin", LONG, ("DE", "AT", "CH")),
            RepPlan("Ben", "Europe/London", OFFICE, ("GB", "IE")),
            RepPlan("Chloé", "Europe/Paris", SPLIT, ("FR", "BE")),
            RepPlan("David", territories=("*",)),
            RepPlan("Eva", "Europe/Madrid", OFFICE, ("NL", "SE", "ES", "IT")),
            RepPlan("Femi", "Europe/London", LONG, ("*",), capacity=150),
            RepPlan("Greta", "Europe/Zurich", OFFICE, ("DE", "AT", "CH"), time_off=True),
            RepPlan("Hugo", territories=("GB", "IE", "FR")),
            RepPlan("Ines", "Europe/Lisbon", SPLIT, ("*",)),
            RepPlan("Jonas", "Europe/Berlin", OFFICE, ("DE",), active=False),
        ),
        sla_minutes=60,
    ),
    TeamPlan(
        "Americas",
        engine.Strategy.WEIGHTED,
        (
            RepPlan("Kim", "America/New_York", OFFICE, ("US", "CA"), weight=3),
            RepPlan("Luis", "America/Mexico_City", OFFICE, ("MX", "US"), weight=2),
            RepPlan("Maya", "America/Los_Angeles", LONG, ("US",), weight=2),
            RepPlan("Noah", "America/Chicago", OFFICE, ("US", "CA")),
            RepPlan("Olivia", "America/Toronto", OFFICE, ("CA",), capacity=150),
            RepPlan("Pedro", "America/Sao_Paulo", OFFICE, ("BR",), weight=2),
            RepPlan("Quinn", "America/Argentina/Buenos_Aires", SPLIT, ("AR", "CL")),
            RepPlan("Rosa", "America/Santiago", OFFICE, ("CL", "AR", "BR")),
        ),
        sla_minutes=30,
        fallback="EMEA",
    ),
    TeamPlan(
        "Enterprise",
        engine.Strategy.LEAST_LOADED,
        (
            RepPlan("Sven", "Europe/Stockholm", OFFICE, ("*",), ("enterprise",)),
            RepPlan("Taro", "Asia/Tokyo", OFFICE, ("*",), ("enterprise",)),
            RepPlan("Uma", "Asia/Singapore", OFFICE, ("*",), ("enterprise",)),
            RepPlan("Victor", "America/New_York", LONG, ("US", "CA"), ("enterprise",)),
            RepPlan("Wendy", "Australia/Sydney", OFFICE, ("*",), ("enterprise",)),
            RepPlan("Xavier", territories=("*",), skills=("enterprise",), capacity=150),
            RepPlan("Yara", "Europe/London", OFFICE, ("*",)),  # lacks the team's skill
        ),
        required_skills=("enterprise",),
        sla_minutes=15,
        fallback="EMEA",
    ),
)


def _in(fact: str, values: Sequence[str]) -> dict[str, Any]:
    return {"fact": fact, "op": "in", "value": list(values)}


# (name, conditions, team): five ordered rules on score and country.
RULES: tuple[tuple[str, list[dict[str, Any]], str], ...] = (
    (
        "Enterprise: score 80+",
        [{"fact": "score", "op": "gte", "value": 80}, _in("country", COVERED)],
        "Enterprise",
    ),
    ("DACH", [_in("country", ("DE", "AT", "CH"))], "EMEA"),
    ("Rest of Europe", [_in("country", ("GB", "IE", "FR", "BE", "NL", "ES", "IT", "SE"))], "EMEA"),
    (
        "North America, scored 20+",
        [_in("country", ("US", "CA", "MX")), {"fact": "score", "op": "gte", "value": 20}],
        "Americas",
    ),
    ("The Americas", [_in("country", ("US", "CA", "MX", "BR", "AR", "CL"))], "Americas"),
)


@dataclass
class Bench:
    tenant_id: uuid.UUID
    lead_ids: list[uuid.UUID]
    token: str
    reps: int
    setup_seconds: float


async def _setup(c: Cluster, db: Database, leads: int) -> Bench:
    started = time.perf_counter()
    now = utcnow()
    async with db.session() as session:
        tenant = await create_tenant(
            session, name="Bench routing", slug=f"bench-routing-{uuid.uuid4().hex[:8]}", now=now
        )
    tenant_id = tenant.id
    reps = 0
    async with db.session(tenant_id) as session:
        source = Source(
            tenant_id=tenant_id,
            name="Bench",
            kind=SourceKind.OFFICIAL_API,
            legal_basis=LegalBasis.CONSENT,
            status=SourceStatus.VETTED,
        )
        version = IcpVersion(tenant_id=tenant_id, number=1, status=VersionStatus.ACTIVE)
        session.add_all([source, version])
        teams: dict[str, Team] = {}
        for plan in TEAMS:
            team = Team(
                tenant_id=tenant_id,
                name=plan.name,
                strategy=plan.strategy.value,
                required_skills=list(plan.required_skills),
                sla_minutes=plan.sla_minutes,
            )
            session.add(team)
            teams[plan.name] = team
        await session.flush()
        for plan in TEAMS:
            if plan.fallback:
                teams[plan.name].fallback_team_id = teams[plan.fallback].id
            for r in plan.reps:
                rep = Rep(
                    tenant_id=tenant_id,
                    team_id=teams[plan.name].id,
                    name=r.name,
                    timezone=r.timezone,
                    working_hours=r.hours,
                    territories=list(r.territories),
                    skills=list(r.skills),
                    capacity=r.capacity,
                    weight=r.weight,
                    active=r.active,
                )
                session.add(rep)
                reps += 1
                if r.time_off:
                    await session.flush()
                    session.add(
                        TimeOff(
                            tenant_id=tenant_id,
                            rep_id=rep.id,
                            starts_at=AT - timedelta(days=3),
                            ends_at=AT + timedelta(days=4),
                            note="holiday",
                        )
                    )
        for position, (name, when, team_name) in enumerate(RULES, start=1):
            session.add(
                RoutingRuleRow(
                    tenant_id=tenant_id,
                    name=name,
                    position=position,
                    when=when,
                    team_id=teams[team_name].id,
                )
            )
        await session.flush()
        # The checks the API runs when a rule or team is saved: the setup must be valid.
        setup = await service.load_setup(session, now=AT)
        problems = engine.check_routing(setup.rules, setup.teams)
        assert not problems, problems
        issued = await create_api_key(
            session, system_principal(tenant_id), name="bench", role=Role.MANAGER, now=now
        )
        source_id, version_id = source.id, version.id

    rng = random.Random(23)
    lead_ids = [uuid.uuid4() for _ in range(leads)]
    async with await psycopg.AsyncConnection.connect(c.urls.owner) as connection:
        async with connection.cursor() as cursor:
            statement = (
                "COPY leads (id, tenant_id, source_id, full_name, email, country, company) "
                "FROM STDIN"
            )
            scores: list[tuple[uuid.UUID, int]] = []
            async with cursor.copy(statement) as copy:
                for n, lead_id in enumerate(lead_ids):
                    uncovered = rng.random() < UNCOVERED_SHARE
                    country = rng.choice(UNCOVERED if uncovered else COVERED)
                    await copy.write_row(
                        (
                            lead_id,
                            tenant_id,
                            source_id,
                            f"Lead {n}",
                            f"lead{n}@company{n % 997}.example",
                            country,
                            f"Company {n % 997}",
                        )
                    )
                    if rng.random() >= UNSCORED_SHARE:
                        scores.append((lead_id, rng.randint(0, 100)))
            statement = (
                "COPY lead_scores (tenant_id, lead_id, version_id, score, total, qualified, "
                "breakdown, matched, scored_at) FROM STDIN"
            )
            async with cursor.copy(statement) as copy:
                for lead_id, score in scores:
                    await copy.write_row(
                        (tenant_id, lead_id, version_id, score, 100, score >= 60, "[]", "[]", now)
                    )
        await connection.execute("ANALYZE leads")
        await connection.execute("ANALYZE lead_scores")
        await connection.commit()
    return Bench(tenant_id, lead_ids, issued.token, reps, time.perf_counter() - started)


# --- routing and its raw limit -------------------------------------------------------------


@dataclass
class Timed:
    name: str
    rows: int
    seconds: float
    cpu: str
    foreign_load: float
    io_stall: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def row(self) -> list[str]:
        return [
            self.name,
            f"{self.rows:,}",
            f"{self.seconds:.2f}",
            rate(self.rate),
            f"{self.seconds / max(1, -(-self.rows // CHUNK)) * 1000:.1f}",
            self.cpu,
            f"{self.io_stall:.0%}",
        ]


def _timed(name: str, rows: int, seconds: float, meter: CpuMeter) -> Timed:
    return Timed(
        name,
        rows,
        seconds,
        meter.describe(seconds),
        meter.used.get("foreign", 0.0) / seconds if seconds else 0.0,
        meter.io_stalled / seconds if seconds else 0.0,
    )


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


async def _route(c: Cluster, db: Database, bench: Bench) -> tuple[Timed, Counter[str]]:
    # A worker has opened its connection and run its start-up (task modules imported, heap
    # settled) before its first job: neither is part of routing.
    settle_process()
    async with db.session(bench.tenant_id) as session:
        await service.load_setup(session, now=AT)
    meter = CpuMeter({"bench": [os.getpid()], "postgres": postgres_pids(c)})
    outcomes: Counter[str] = Counter()
    routed = 0
    meter.start()
    started = time.perf_counter()
    for chunk in _chunks(bench.lead_ids):
        async with db.session(bench.tenant_id) as session:
            done = await service.route_leads(session, bench.tenant_id, chunk, now=AT)
        routed += len(done)
        for r in done:
            outcomes[r.decision.reason or str(r.decision.outcome)] += 1
    seconds = time.perf_counter() - started
    meter.stop()
    name = "route_leads: decide + assignments with trace + counters, events, audit"
    return _timed(name, routed, seconds, meter), outcomes


@dataclass
class Written:
    columns: list[list[list[Any]]]  # per chunk: the nine unnest arrays
    decided_at: datetime
    rows: int
    trace_bytes: float  # mean size of a trace as JSON text
    trace_steps: float


async def _read_back(c: Cluster, bench: Bench) -> Written:
    """The rows route_leads wrote, in routing order, as the service's nine arrays."""
    order = {lead_id: n for n, lead_id in enumerate(bench.lead_ids)}
    async with await psycopg.AsyncConnection.connect(c.urls.owner) as connection:
        cursor = await connection.execute(
            "SELECT id, lead_id, status, team_id, rep_id, rule_id, reason, trace, sla_due_at, "
            "decided_at, octet_length(trace::text), jsonb_array_length(trace) "
            "FROM lead_assignments WHERE tenant_id = %s",
            (bench.tenant_id,),
        )
        rows = await cursor.fetchall()
    rows.sort(key=lambda row: order[row[1]])
    columns: list[list[list[Any]]] = []
    for chunk in _chunks(rows):
        arrays: list[list[Any]] = [[] for _ in range(9)]
        for row in chunk:
            values = (*row[:7], Jsonb(row[7]), row[8])  # serialised again, as the service does
            for array, value in zip(arrays, values, strict=True):
                array.append(value)
        columns.append(arrays)
    count = max(1, len(rows))
    return Written(
        columns,
        rows[0][9] if rows else AT,
        len(rows),
        sum(row[10] for row in rows) / count,
        sum(row[11] for row in rows) / count,
    )


async def _raw_insert(c: Cluster, bench: Bench, written: Written) -> Timed:
    async with await psycopg.AsyncConnection.connect(c.urls.owner) as connection:
        # An ordinary (WAL-logged) table, like the real one: both sides are durable writes.
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS routing_raw (LIKE lead_assignments INCLUDING DEFAULTS)"
        )
        await connection.execute("TRUNCATE routing_raw")
        await connection.commit()
        meter = CpuMeter({"bench": [os.getpid()], "postgres": postgres_pids(c)})
        inserted = 0
        meter.start()
        started = time.perf_counter()
        for arrays in written.columns:
            async with connection.cursor() as cursor:
                await cursor.execute(RAW_INSERT, (bench.tenant_id, written.decided_at, *arrays))
                inserted += cursor.rowcount
            await connection.commit()
        seconds = time.perf_counter() - started
        meter.stop()
    return _timed("plain INSERT of the same rows (same unnest statement)", inserted, seconds, meter)


COPY_COLUMNS = "tenant_id, decided_at, id, lead_id, status, team_id, rep_id, rule_id, reason, trace"


async def _raw_copy(c: Cluster, bench: Bench, written: Written) -> Timed:
    """Context, not the figure's raw limit: the same rows by COPY, 500 per transaction. The
    gap to the unnest INSERT is mostly the client escaping each trace into a text-format
    jsonb[] array literal (psycopg's array dumper), which the service's statement pays too."""
    statement = f"COPY routing_raw ({COPY_COLUMNS}, sla_due_at) FROM STDIN"
    async with await psycopg.AsyncConnection.connect(c.urls.owner) as connection:
        await connection.execute("TRUNCATE routing_raw")
        await connection.commit()
        meter = CpuMeter({"bench": [os.getpid()], "postgres": postgres_pids(c)})
        copied = 0
        meter.start()
        started = time.perf_counter()
        for arrays in written.columns:
            async with connection.cursor() as cursor, cursor.copy(statement) as copy:
                for row in zip(*arrays, strict=True):
                    await copy.write_row((bench.tenant_id, written.decided_at, *row))
                    copied += 1
            await connection.commit()
        seconds = time.perf_counter() - started
        meter.stop()
    return _timed("(context) COPY of the same rows", copied, seconds, meter)


# --- the simulator over HTTP ---------------------------------------------------------------


@dataclass
class Latencies:
    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    cpu: str = ""
    foreign_load: float = 0.0
    io_stall: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000

    def row(self, ok: int) -> list[str]:
        other = sum(n for status, n in self.statuses.items() if status != ok)
        return [
            self.name,
            f"{len(self.latencies):,}",
            f"{self.seconds:.2f}",
            rate(self.rate),
            f"{self.ms(0.50):.2f}",
            f"{self.ms(0.99):.2f}",
            f"{max(self.latencies, default=0.0) * 1000:.2f}",
            f"{other:,}",
            self.cpu,
        ]


def _simulate_request(port: int, token: str, rng: random.Random) -> bytes:
    uncovered = rng.random() < UNCOVERED_SHARE
    facts: dict[str, Any] = {
        "country": rng.choice(UNCOVERED if uncovered else COVERED),
        "email": f"someone{rng.randrange(10**6)}@example.com",
    }
    if rng.random() >= UNSCORED_SHARE:
        facts["score"] = rng.randint(0, 100)
    body = json.dumps({"facts": facts, "at": AT.isoformat()}, separators=(",", ":")).encode()
    return _post(port, "/v1/routing/simulate", token, body)


def _post(port: int, path: str, token: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


async def _sequential(
    name: str, port: int, requests: Sequence[bytes], meter: CpuMeter
) -> Latencies:
    """One keep-alive connection, one request at a time; latency from send to full answer."""
    phase = Latencies(name)
    connection = await HttpConnection.open(port)
    now = time.perf_counter
    meter.start()
    started = now()
    try:
        for request in requests:
            sent = now()
            status = await connection.request(request)
            phase.latencies.append(now() - sent)
            phase.statuses[status] += 1
            if connection.closed:
                connection = await HttpConnection.open(port)
    finally:
        connection.close()
    phase.seconds = now() - started
    meter.stop()
    phase.cpu = meter.describe(phase.seconds)
    phase.foreign_load = meter.used.get("foreign", 0.0) / phase.seconds
    phase.io_stall = meter.io_stalled / phase.seconds
    return phase


def _sample(port: int, token: str) -> str:
    """One simulator answer read in full, to show what each request returns."""
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/routing/simulate",
        json={"facts": {"country": "DE", "score": 42}, "at": AT.isoformat()},
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    )
    if response.status_code != 200:
        raise RuntimeError(f"simulate answered {response.status_code}: {response.text[:300]}")
    answer = response.json()
    return (
        f"sample answer (DE, score 42): {answer['outcome']}, {len(answer['trace'])} trace steps, "
        f"{len(response.content):,} bytes"
    )


async def _simulator(
    c: Cluster, bench: Bench, port: int, pid: int
) -> tuple[str, Latencies, Latencies]:
    rng = random.Random(5)
    sample = await asyncio.to_thread(_sample, port, bench.token)
    meter = CpuMeter({"server": [pid], "client": [os.getpid()], "postgres": postgres_pids(c)})
    warm = [_simulate_request(port, bench.token, rng) for _ in range(WARMUP_REQUESTS)]
    await _sequential("simulate warm-up", port, warm, meter)
    meter.groups["postgres"] = postgres_pids(c)
    measured = [_simulate_request(port, bench.token, rng) for _ in range(SIMULATE_REQUESTS)]
    simulate = await _sequential("simulate (hypothetical facts)", port, measured, meter)
    noop_body = json.dumps({"facts": {"country": "DE", "score": 42}}).encode()
    noop = [_post(port, NOOP_PATH, bench.token, noop_body)] * SIMULATE_REQUESTS
    await _sequential("no-op warm-up", port, noop[:WARMUP_REQUESTS], meter)
    floor = await _sequential("app no-op route (same middleware, no work)", port, noop, meter)
    return sample, simulate, floor


# --- the benchmark -------------------------------------------------------------------------


async def _measure(
    c: Cluster, leads: int
) -> tuple[Bench, Timed, Counter[str], Written, Timed, Timed]:
    db = Database(c.urls, pool_size=1)
    try:
        bench = await _setup(c, db, leads)
        routing, outcomes = await _route(c, db, bench)
    finally:
        await db.dispose()
    written = await _read_back(c, bench)
    raw = await _raw_insert(c, bench, written)
    copied = await _raw_copy(c, bench, written)
    return bench, routing, outcomes, written, raw, copied


def _runner() -> asyncio.Runner:
    try:
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        return asyncio.Runner()


def run(c: Cluster, *, leads: int = 20_000) -> list[Figure]:
    heading(f"routing: {leads:,} leads routed with their trace, beside a plain INSERT")
    with _runner() as runner:
        bench, routing, outcomes, written, raw, copied = runner.run(_measure(c, leads))
        print(
            f"setup {bench.setup_seconds:.1f}s: {len(TEAMS)} teams "
            f"({', '.join(f'{t.name} {t.strategy.value}' for t in TEAMS)}), {bench.reps} reps, "
            f"{len(RULES)} rules, {leads:,} leads; decided at {AT:%a %Y-%m-%d %H:%M} UTC; "
            f"{CHUNK} leads per transaction; {c.durability}"
        )
        print(
            table(
                ["path", "rows", "seconds", "rows/s", "ms/chunk", "CPU cores", "io stall"],
                [routing.row(), raw.row(), copied.row()],
            )
        )
        shown = ", ".join(f"{name} {n:,}" for name, n in outcomes.most_common())
        print(f"outcomes: {shown}")
        print(
            f"trace per assignment: {written.trace_steps:.1f} steps, "
            f"{written.trace_bytes:,.0f} bytes of JSON on average "
            f"({written.rows:,} rows read back and inserted again)"
        )

        heading("routing simulator: POST /v1/routing/simulate over HTTP, sequential")
        server = start_server(c)
        with cleanup_if_cut_short(server.stop):
            try:
                runner.run(wait_until_serving(server))
                sample, simulate, floor = runner.run(
                    _simulator(c, bench, server.port, server.process.pid)
                )
            finally:
                server.stop()
    print(
        f"one uvicorn process (loop={server.loop}, http=httptools), one keep-alive connection, "
        f"one request at a time; {WARMUP_REQUESTS} warm-up requests first; the simulator "
        f"reads the live counters of the {written.rows:,} assignments just written"
    )
    print(sample)
    print(
        table(
            [
                "phase",
                "requests",
                "seconds",
                "req/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "not 200/202",
                "CPU cores",
            ],
            [simulate.row(200), floor.row(202)],
        )
    )
    p99 = simulate.ms(0.99)
    met = "yes" if p99 < LATENCY_TARGET_MS else "NO"
    print(f"simulator p99 {p99:.2f} ms; target p99 < {LATENCY_TARGET_MS:.0f} ms: met? {met}")

    routing_notes = [
        f"{routing.rate / raw.rate:.0%} of the plain INSERT",
        f"trace {written.trace_bytes:,.0f} bytes",
        f"queued {sum(n for k, n in outcomes.items() if k != 'assigned'):,}",
        f"the same rows by COPY: {rate(copied.rate)} rows/s",
    ]
    simulate_notes = [
        f"p50 {simulate.ms(0.5):.1f} ms",
        f"p99 {p99:.1f} ms (target < {LATENCY_TARGET_MS:.0f} ms: {met})",
        f"max {max(simulate.latencies, default=0.0) * 1000:.1f} ms",
        f"reading {written.rows:,} live assignments",
    ]
    if sum(n for s, n in simulate.statuses.items() if s != 200):
        simulate_notes.append(f"statuses {dict(simulate.statuses)}")
    return [
        Figure(
            "routing decisions (trace persisted)",
            routing.rate,
            "plain INSERT of the same rows",
            raw.rate,
            "rows/s",
            target_ratio=0.30,
            notes=routing_notes,
            foreign_load=max(routing.foreign_load, raw.foreign_load),
            io_stall=max(routing.io_stall, raw.io_stall),
        ),
        Figure(
            "routing simulator, 1 connection",
            simulate.rate,
            "app no-op route, same client",
            floor.rate,
            "req/s",
            notes=simulate_notes,
            foreign_load=max(simulate.foreign_load, floor.foreign_load),
            io_stall=max(simulate.io_stall, floor.io_stall),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--leads", type=int, default=20_000)
    args = parser.parse_args()
    start_watchdog(170)
    with cluster() as c:
        run(c, leads=args.leads)


if __name__ == "__main__":
    main()
