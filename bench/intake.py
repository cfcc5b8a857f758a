"""Signed-webhook intake: requests/s through the whole app beside a bare ASGI endpoint.

One uvicorn process (uvloop, httptools, no access log) serves a tiny dispatcher: `/bare` goes to
a raw ASGI callable that reads the body and answers 202; every other path goes to the LeadRelay
app. The load generator runs in this process (so it does not share the server's GIL) and speaks
HTTP/1.1 over K keep-alive connections, one request in flight per connection. Intake and bare get
the same client, the same concurrency and the same ~300-byte signed lead body; each intake
request carries a unique webhook-id, so every one must be verified, stored and answered 202.

    .venv/bin/python -m bench.intake            # its own throwaway cluster
    .venv/bin/python -m bench.intake --serve    # (internal) the server process
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import psycopg
from fastapi import Request
from fastapi.responses import Response
from typing_extensions import override

from bench.common import (
    PROJECT_ROOT,
    Cluster,
    CpuMeter,
    Figure,
    cleanup_if_cut_short,
    cluster,
    free_port,
    heading,
    percentile,
    postgres_pids,
    rate,
    start_watchdog,
    table,
)

CONNECTIONS = 16
WARMUP_SECONDS = 5.0
MEASURE_SECONDS = 10.0
BARE_WARMUP_SECONDS = 2.0
WARMUP_POOL = 20_000  # signed requests built for the intake warm-up (it stops early if used up)
MAX_POOL = 300_000
SERVER_CONFIG_ENV = "LEADRELAY_BENCH_INTAKE_SERVER"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# --- the server process --------------------------------------------------------------------

BARE_BODY = json.dumps({"id": str(uuid.UUID(int=0)), "status": "accepted"}).encode()
BARE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BARE_BODY)).encode()),
]


async def bare_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """The floor: read the whole body, answer 202 with a small JSON, nothing else."""
    more_body = True
    while more_body:
        message = await receive()
        more_body = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 202, "headers": BARE_HEADERS})
    await send({"type": "http.response.body", "body": BARE_BODY})


NOOP_PATH = "/bench/noop"


def with_noop_route(app: Any) -> Any:
    """The framework's own floor: a route of the same FastAPI app, behind the same middleware,
    that reads the body and answers 202 with nothing else (no signature, no database)."""

    async def noop(request: Request) -> Response:
        await request.body()
        return Response(BARE_BODY, 202, media_type="application/json")

    app.add_api_route(NOOP_PATH, noop, methods=["POST"], include_in_schema=False)
    return app


def dispatcher(app: ASGIApp) -> ASGIApp:
    """`/bare` to the bare endpoint, everything else (lifespan included) to `app`."""

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/bare":
            await bare_endpoint(scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch


def event_loop_name() -> str:
    """uvicorn's loop: uvloop when installed (it is, with uvicorn[standard])."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


SERVER_LIFETIME = 170.0  # the server ends itself even if its parent died without stopping it


def serve() -> None:
    import uvicorn

    from leadrelay.app import create_app
    from leadrelay.core.settings import Settings

    config = json.loads(os.environ[SERVER_CONFIG_ENV])
    lifetime = threading.Timer(SERVER_LIFETIME, os._exit, args=(3,))
    lifetime.daemon = True
    lifetime.start()
    settings = Settings(
        env="test",
        database_url=config["owner_url"],
        database_app_url=config["app_url"],
        data_dir=Path(config["data_dir"]),
        log_level="WARNING",
        **config.get("settings", {}),
    )
    server = functools.partial(
        uvicorn.run,
        dispatcher(with_noop_route(create_app(settings))),
        host="127.0.0.1",
        port=int(config["port"]),
        loop=event_loop_name(),
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )
    if not config.get("profile"):
        server()
        return
    import cProfile

    with cProfile.Profile() as profile:
        server()
    profile.dump_stats(config["profile"])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    loop: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(
    c: Cluster, *, profile: Path | None = None, settings: dict[str, str] | None = None
) -> ServerProcess:
    """The app under uvicorn in its own process; `settings` are extra Settings fields (a
    webhook's signing key …)."""
    port = free_port()
    config = {
        "owner_url": c.urls.owner,
        "app_url": c.urls.app,
        "data_dir": str(c.settings().data_dir),
        "port": port,
        "profile": str(profile) if profile else "",
        "settings": settings or {},
    }
    env = {**os.environ, SERVER_CONFIG_ENV: json.dumps(config)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.intake", "--serve"], cwd=PROJECT_ROOT, env=env
    )
    return ServerProcess(process, port, event_loop_name())


async def wait_until_serving(server: ServerProcess, *, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    probe = f"GET /bare HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"the intake server exited ({server.process.returncode})")
        try:
            connection = await HttpConnection.open(server.port)
        except OSError:
            connection = None
        if connection is not None:
            try:
                if await connection.request(probe) == 202:
                    return
            finally:
                connection.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the intake server did not answer on port {server.port}")
        await asyncio.sleep(0.1)


# --- the load generator --------------------------------------------------------------------


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request in flight; reads the status line and
    Content-Length, skips the body. Far cheaper per request than a general client."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    @classmethod
    async def open(cls, port: int) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, "127.0.0.1", port)
        return protocol

    @override
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    @override
    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            self._parse()

    def _parse(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        start = head.find(b"\r\ncontent-length:")
        if start < 0:
            self._fail(ConnectionError("response without Content-Length"))
            return
        stop = head.find(b"\r\n", start + 2)
        length = int(head[start + 17 : stop if stop >= 0 else end])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        del self.buffer[:total]
        if b"\r\nconnection: close" in head:
            self.closed = True
        assert self.waiter is not None
        self.waiter.set_result(int(head[9:12]))

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    @override
    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"connection lost: {exc}"))

    def request(self, data: bytes) -> asyncio.Future[int]:
        """Send one request; the future resolves to the response's status code."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        if self.closed:
            self.waiter.set_exception(ConnectionError("connection closed"))
        else:
            self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


@dataclass
class Phase:
    name: str
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    cpu: str = ""
    foreign_load: float = 0.0  # cores used by other processes during the phase
    io_stall: float = 0.0  # share of the phase during which some task waited for the disk

    @property
    def completed(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def row(self) -> list[str]:
        other = sum(n for status, n in self.statuses.items() if status != 202) + self.errors
        return [
            self.name,
            f"{self.completed:,}",
            f"{self.seconds:.2f}",
            rate(self.rate),
            f"{percentile(self.latencies, 0.50) * 1000:.2f}",
            f"{percentile(self.latencies, 0.99) * 1000:.2f}",
            f"{other:,}",
            self.cpu,
            f"{self.io_stall:.0%}",
        ]


async def run_phase(
    name: str,
    port: int,
    requests: Sequence[bytes],
    *,
    seconds: float,
    cycle: bool,
    meter: CpuMeter,
    connections: int = CONNECTIONS,
) -> Phase:
    """K workers send `requests` in order (cycling through them when `cycle`) until `seconds`
    have passed, or the requests run out. Time runs from the first send to the last answer."""
    phase = Phase(name, 0.0)
    next_index = 0
    opened = [await HttpConnection.open(port) for _ in range(connections)]
    now = time.perf_counter
    deadline = float("inf")  # set when the clock starts, below

    async def worker(connection: HttpConnection) -> None:
        nonlocal next_index
        latencies, statuses = phase.latencies, phase.statuses
        while now() < deadline:
            index = next_index
            if index >= len(requests):
                if not cycle:
                    break
                index %= len(requests)
            next_index += 1
            sent = now()
            try:
                status = await connection.request(requests[index])
            except ConnectionError:
                phase.errors += 1
                connection.close()
                connection = await HttpConnection.open(port)
                continue
            latencies.append(now() - sent)
            statuses[status] += 1
            if connection.closed:
                connection = await HttpConnection.open(port)
        connection.close()

    meter.start()
    started = now()
    deadline = started + seconds
    tasks = [asyncio.create_task(worker(connection)) for connection in opened]
    done, pending = await asyncio.wait(tasks, timeout=seconds + 30)
    phase.seconds = now() - started
    meter.stop()
    phase.cpu = meter.describe(phase.seconds)
    if phase.seconds:
        phase.foreign_load = meter.used.get("foreign", 0.0) / phase.seconds
        phase.io_stall = meter.io_stalled / phase.seconds
    for task in pending:
        task.cancel()
    for task in done:
        task.result()
    if pending:
        raise RuntimeError(f"{name}: {len(pending)} connections still waiting after {seconds}s+30s")
    return phase


# --- requests ------------------------------------------------------------------------------


def lead_body(index: int) -> bytes:
    """A ~300-byte lead as a form provider would post it."""
    lead = {
        "type": "lead.created",
        "source": "bench-form",
        "lead": {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": f"ada.{index:08d}@example.test",
            "phone": f"+1555{index % 10_000_000:07d}",
            "company": "Analytical Engines Ltd",
            "message": "Interested in a demo next week; afternoons are best.",
            "campaign": "spring-newsletter",
        },
        "submitted_at": "2026-11-23T10:15:00Z",
    }
    return json.dumps(lead, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Target:
    port: int
    endpoint_id: uuid.UUID
    tenant_id: uuid.UUID
    secret: str


def build_requests(target: Target, path: str, count: int, *, first: int, run: str) -> list[bytes]:
    """`count` signed POSTs, each with its own webhook-id, timestamped now."""
    from leadrelay.core.signatures import sign_standard_webhook

    timestamp = int(time.time())
    built = []
    for index in range(first, first + count):
        body = lead_body(index)
        msg_id = f"msg_{run}_{index:08d}"
        signature = sign_standard_webhook(
            secret=target.secret, msg_id=msg_id, timestamp=timestamp, payload=body
        )
        head = (
            f"POST {path} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{target.port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"webhook-id: {msg_id}\r\n"
            f"webhook-timestamp: {timestamp}\r\n"
            f"webhook-signature: {signature}\r\n"
            "\r\n"
        )
        built.append(head.encode() + body)
    return built


async def create_target(c: Cluster, port: int) -> Target:
    """A tenant and a signed inbound endpoint, made through the services as the app would."""
    from leadrelay.app import secret_box_for
    from leadrelay.core.clock import utcnow
    from leadrelay.core.db import Database
    from leadrelay.identity.service import create_tenant, system_principal
    from leadrelay.inbound.service import create_endpoint

    settings = c.settings()
    db = Database(c.urls, pool_size=1)
    try:
        async with db.session() as session:
            slug = f"bench-intake-{secrets.token_hex(4)}"
            tenant = await create_tenant(session, name="Bench intake", slug=slug, now=utcnow())
        async with db.session(tenant.id) as session:
            endpoint, secret = await create_endpoint(
                session,
                system_principal(tenant.id),
                secret_box_for(settings),
                name="bench",
                now=utcnow(),
            )
    finally:
        await db.dispose()
    return Target(port, endpoint.id, tenant.id, secret)


@dataclass(frozen=True, slots=True)
class Stored:
    messages: int  # inbound_messages rows for the endpoint
    covered: int  # of those, how many some inbound.process job names
    jobs: int  # inbound.process jobs for the tenant (one per stored batch, or per message)


def stored_counts(c: Cluster, target: Target) -> Stored:
    """What the database holds for the endpoint, read as the owner (no RLS)."""
    with psycopg.connect(c.urls.owner, autocommit=True) as connection:
        row = connection.execute(
            """
            WITH jobs AS (
                SELECT args FROM procrastinate_jobs
                WHERE task_name = 'inbound.process' AND args->>'tenant_id' = %(tenant)s
            ), named AS (  -- a job names one message, or a batch of them
                SELECT jsonb_array_elements_text(args->'message_ids') AS id
                FROM jobs WHERE args ? 'message_ids'
                UNION ALL
                SELECT args->>'message_id' FROM jobs WHERE args ? 'message_id'
            )
            SELECT
                (SELECT count(*) FROM inbound_messages WHERE endpoint_id = %(endpoint)s),
                (SELECT count(*) FROM inbound_messages m
                 WHERE m.endpoint_id = %(endpoint)s
                   AND m.id::text IN (SELECT id FROM named)),
                (SELECT count(*) FROM jobs)
            """,
            {"tenant": str(target.tenant_id), "endpoint": target.endpoint_id},
        ).fetchone()
    assert row is not None
    return Stored(*row)


# --- the benchmark -------------------------------------------------------------------------


async def _measure(c: Cluster, server: ServerProcess) -> tuple[list[Phase], Target]:
    target = await create_target(c, server.port)
    await wait_until_serving(server)
    meter = CpuMeter(
        {
            "server": [server.process.pid],
            "client": [os.getpid()],
            "postgres": postgres_pids(c),
        }
    )
    path = f"/v1/inbound/{target.endpoint_id}"
    run = secrets.token_hex(4)

    warm_pool = build_requests(target, path, WARMUP_POOL, first=0, run=run)
    warm = await run_phase(
        "intake warm-up", server.port, warm_pool, seconds=WARMUP_SECONDS, cycle=False, meter=meter
    )
    # The measured pool holds twice what the warm-up rate would need, so it should not run out;
    # if it does, the phase ends early and its rate is still requests over elapsed time.
    meter.groups["postgres"] = postgres_pids(c)  # backends opened during the warm-up
    size = min(MAX_POOL, max(2_000, int(warm.rate * MEASURE_SECONDS * 2)))
    pool = build_requests(target, path, size, first=WARMUP_POOL, run=run)
    intake = await run_phase(
        "intake", server.port, pool, seconds=MEASURE_SECONDS, cycle=False, meter=meter
    )
    if intake.completed >= len(pool):
        intake.name += " (pool used up)"

    noop_pool = build_requests(target, NOOP_PATH, 1_000, first=0, run=run + "-noop")
    await run_phase(
        "framework warm-up",
        server.port,
        noop_pool,
        seconds=BARE_WARMUP_SECONDS,
        cycle=True,
        meter=meter,
    )
    framework = await run_phase(
        "framework no-op",
        server.port,
        noop_pool,
        seconds=MEASURE_SECONDS,
        cycle=True,
        meter=meter,
    )

    bare_pool = build_requests(target, "/bare", 1_000, first=0, run=run + "-bare")
    await run_phase(
        "bare warm-up",
        server.port,
        bare_pool,
        seconds=BARE_WARMUP_SECONDS,
        cycle=True,
        meter=meter,
    )
    bare = await run_phase(
        "bare", server.port, bare_pool, seconds=MEASURE_SECONDS, cycle=True, meter=meter
    )
    return [warm, intake, framework, bare], target


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        return asyncio.Runner()


def run(c: Cluster, *, profile: Path | None = None) -> list[Figure]:
    """Measure; with `profile`, the server runs under cProfile and its stats land there."""
    heading("intake: signed webhook → 202, beside a bare ASGI endpoint")
    server = start_server(c, profile=profile)
    with cleanup_if_cut_short(server.stop):
        try:
            with _event_loop_runner() as runner:
                phases, target = runner.run(_measure(c, server))
        finally:
            server.stop()
    warm, intake, framework, bare = phases
    # Counted once the server has shut down, i.e. once every request's transaction has ended.
    stored = stored_counts(c, target)
    accepted = warm.statuses[202] + intake.statuses[202]
    not_accepted = warm.completed + intake.completed - accepted + warm.errors + intake.errors

    print(
        f"one uvicorn process (loop={server.loop}, http=httptools, access log off), "
        f"{CONNECTIONS} keep-alive connections, one request in flight each; "
        f"body {len(lead_body(0))} bytes; {c.durability}"
    )
    print(
        table(
            [
                "phase",
                "requests",
                "seconds",
                "req/s",
                "p50 ms",
                "p99 ms",
                "not 202",
                "CPU cores",
                "io stall",
            ],
            [phase.row() for phase in phases],
        )
    )
    statuses = dict(sorted((intake.statuses + warm.statuses).items()))
    errors = warm.errors + intake.errors
    print(f"intake statuses (warm-up + measured): {statuses}, connection errors: {errors}")
    complete = stored.messages == accepted and stored.covered == accepted
    print(
        f"202 answers: {accepted:,} · stored inbound_messages: {stored.messages:,} · "
        f"of those named by an inbound.process job: {stored.covered:,} "
        f"({stored.jobs:,} jobs, {stored.covered / max(stored.jobs, 1):.1f} messages each) → "
        + ("nothing lost" if complete else "MISMATCH")
    )

    notes = [f"p50 {percentile(intake.latencies, 0.5) * 1000:.1f} ms"]
    notes.append(
        f"the app's own no-op route (same middleware, no work): {rate(framework.rate)} req/s, "
        f"intake is {intake.rate / framework.rate:.0%} of it"
    )
    notes.append(f"p99 {percentile(intake.latencies, 0.99) * 1000:.1f} ms")
    if not_accepted:
        notes.append(f"{not_accepted} not 202")
    notes.append(
        f"{stored.messages:,} stored / {accepted:,} accepted"
        + ("" if complete else f", only {stored.covered:,} with a job: MISMATCH")
    )
    return [
        Figure(
            name="signed-webhook intake",
            value=intake.rate,
            raw_name="bare ASGI endpoint, same server",
            raw_value=bare.rate,
            unit="req/s",
            notes=notes,
            foreign_load=max(intake.foreign_load, bare.foreign_load),
            io_stall=max(intake.io_stall, bare.io_stall),
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", action="store_true", help="(internal) run the server")
    parser.add_argument(
        "--profile", action="store_true", help="run the server under cProfile; print its top 30"
    )
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    start_watchdog(150)
    with cluster() as c:
        stats_path = c.data_dir / "intake-server.prof" if args.profile else None
        run(c, profile=stats_path)
        if stats_path is not None:
            import pstats

            heading("intake server profile (cProfile; skews absolute figures)")
            pstats.Stats(str(stats_path)).sort_stats("tottime").print_stats(30)
            pstats.Stats(str(stats_path)).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
