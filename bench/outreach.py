"""Outreach: sends/s through the policy guard and the SMTP channel to a local aiosmtpd sink,
beside bare `aiosmtplib.send` of the same messages to the same sink with the same concurrency,
in the same run.

Setup (not timed): one tenant with its sender identity, its outreach policy live (dry-run off,
the e-mail daily cap raised above the run, both with the typed confirmation, through
`service.set_outreach_policy`), a vetted legitimate-interest source, N leads (COPY, as the
owner), each at its own company domain (so the hourly domain throttle, left at its default,
passes, and the per-lead cooldown does too), and N approved e-mail drafts: each composed by
the drafting composer from the lead's values (default friendly template, compliance footer with
the unsubscribe placeholder) and written by COPY as draft, revision 1 and its approval. The sink
is an aiosmtpd `Controller` on 127.0.0.1 in a process of its own (a real relay is another
process; in ours it would share the GIL with what is measured) that accepts every message and
counts them. The process settings are a copy with dry_run off and smtp_host/port of the sink,
security "none".

1. Platform, per block of B drafts (default 100), the chunked send path every sender uses:
   `queueing.queue_drafts` in one transaction (the drafts and their revisions, leads and
   existing messages by idempotency key, the send guard's approvals for the chunk, consent,
   suppression and DNC hits, the advisory lock per tenant and channel, the counters, the
   guard's decision with its trace for each draft in order, one INSERT of the Message rows,
   the audit links, one `outreach.deliver` job row for the chunk), then
   `delivery.deliver_messages`, the body of that job: `begin_deliveries` (lock the messages,
   the approvals checked again, mark them `sending`) → commit → `hand_over_all` (render each
   MIME message; C asyncio workers, each on one SMTP connection to the sink that carries many
   messages) → `finish_deliveries` (mark them sent, the drafts too, the `message.sent` outbox
   events, the audit links) → commit. The app role's pool has C + 1 connections, as the
   worker sizes it. The procrastinate worker is NOT in the path: this measures the send path
   itself, not the queue's polling.
2. Raw limit: the same N messages, rendered before timing by the channel's own `render_email`
   (same sender, recipients, subjects and bodies: the same bytes give or take the Date and
   Message-ID), each sent by bare `aiosmtplib.send` (one connection per message) to the same
   sink by C asyncio tasks.

Both run block by block (B messages each), alternating which goes first, so they share the
machine; no new block starts once the measuring budget is spent (both paths then have sent the
same messages). A warm-up of 40 messages each comes first (not counted). A platform message's
latency is its block's (queue start → outcome committed); the stages are timed per block. CPU
is read per process from /proc.

`--profile` adds diagnostics after the figures, on 300 more drafts in blocks of B: 150 with
the CPU, statements and per-tenant lock time of each stage and the statements of one block
listed; 150 under cProfile (CPU time), summed by library.

    .venv/bin/python -m bench.outreach [--messages 2000] [--concurrency 8] [--budget 100]
                                       [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import json
import os
import pstats
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import aiosmtplib
import psycopg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import (
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
from leadrelay.approvals.service import content_sha256
from leadrelay.capture.models import LegalBasis, Source, SourceKind, SourceStatus
from leadrelay.compliance import audit
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.errors import LeadRelayError
from leadrelay.core.runtime import settle_process
from leadrelay.core.security import secret_keys
from leadrelay.core.settings import Settings
from leadrelay.drafting import service as drafting
from leadrelay.drafting.compose import check_draft, compose
from leadrelay.drafting.evidence import Channel, Length, Observation, Sender, Tone, evidence_from
from leadrelay.drafting.templates import default_template
from leadrelay.identity.service import Principal, create_tenant, system_principal
from leadrelay.outreach import counting, delivery, queueing, service
from leadrelay.outreach.channels.base import OutboundEmail
from leadrelay.outreach.channels.email_message import RenderedEmail, render_email
from leadrelay.outreach.models import Message, MessageKind, MessageStatus

MESSAGES = 2_000
CONCURRENCY = 8
BLOCK = 100  # messages per timed block; the two paths alternate block by block
BUDGET = 100.0  # seconds of measuring, after which no new block starts (both paths alike)
WARMUP = 40  # messages per path before timing (its own drafts: a draft is sent once)
TARGET_RATIO = 0.50  # issue 7: sends through guard + channel ≥ 50% of raw aiosmtplib
SMTP_TIMEOUT = 10.0
SENDER = {
    "name": "Sam Patel",
    "email": "sam@relay.example",
    "company": "LeadRelay Demo Ltd",
    "postal_address": "1 Market Street, Springfield",
}
TONE, LENGTH, CTA = Tone.FRIENDLY, Length.MEDIUM, "book_call"
FIRST_NAMES = ("Dana", "Fox", "Grace", "Ada", "Linus", "Mira", "Olu", "Chen", "Ines", "Tariq")
LAST_NAMES = ("Scully", "Mulder", "Hopper", "Lovelace", "Berg", "Okafor", "Wei", "Silva", "Khan")
TITLES = ("Head of Sales", "VP Marketing", "Operations Manager", "CTO", "Founder")
CITIES = (("Leeds", "GB"), ("Berlin", "DE"), ("Lyon", "FR"), ("Austin", "US"), ("Porto", "PT"))

# The sink: aiosmtpd's Controller in a process of its own. It accepts everything, counts, and
# answers "messages octets" for every line read on stdin; EOF stops it.
SINK = r"""
import sys
from aiosmtpd.controller import Controller

class Sink:
    def __init__(self):
        self.messages = 0
        self.octets = 0

    async def handle_DATA(self, server, session, envelope):
        self.messages += 1
        self.octets += len(envelope.original_content or b"")
        return "250 2.0.0 Ok: queued"

sink = Sink()
controller = Controller(
    sink, hostname="127.0.0.1", port=int(sys.argv[1]), server_hostname="sink.bench.localhost"
)
controller.start()
print("ready", flush=True)
for _ in sys.stdin:
    print(sink.messages, sink.octets, flush=True)
controller.stop()
"""

T = TypeVar("T")


# --- the sink ------------------------------------------------------------------------------


class SmtpSink:
    """The aiosmtpd sink process on 127.0.0.1:`port`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-c", SINK, str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "ready":
            self.stop()
            raise RuntimeError(f"the SMTP sink did not start (said {line!r})")

    @property
    def pid(self) -> int:
        return self.process.pid

    def counts(self) -> tuple[int, int]:
        """(messages, octets) the sink accepted so far."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        messages, octets = self.process.stdout.readline().split()
        return int(messages), int(octets)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- setup ---------------------------------------------------------------------------------


@dataclass
class Bench:
    tenant_id: uuid.UUID
    actor: Principal
    settings: Settings  # live: dry_run off, smtp to the sink
    keys: str
    warmup_drafts: list[uuid.UUID]
    drafts: list[uuid.UUID]
    profile_drafts: list[uuid.UUID]
    rendered: list[RenderedEmail]  # the raw path's messages, one per draft in `drafts`
    warmup_rendered: list[RenderedEmail]
    setup_seconds: float
    compose_seconds: float


@dataclass(frozen=True, slots=True)
class Planned:
    lead_id: uuid.UUID
    draft_id: uuid.UUID
    revision_id: uuid.UUID
    lead: dict[str, str]  # full_name, email, company, domain, city, country, title
    subject: str
    body: str
    sha256: str
    content: tuple[str, str, str]  # sentences, gaps, compliance as JSON

    def revision(self) -> tuple[str, ...]:
        return (self.subject, self.body, self.sha256, *self.content)


def _plan(count: int, now: datetime) -> list[Planned]:
    """`count` distinct leads, each at its own domain, with its composed first e-mail."""
    sender = Sender(
        name=SENDER["name"],
        company=SENDER["company"],
        postal_address=SENDER["postal_address"],
        email=SENDER["email"],
    )
    template = default_template(Channel.EMAIL, TONE)
    seen = now - timedelta(days=12)
    planned: list[Planned] = []
    for n in range(count):
        first, last = FIRST_NAMES[n % len(FIRST_NAMES)], LAST_NAMES[n % len(LAST_NAMES)]
        city, country = CITIES[n % len(CITIES)]
        domain = f"company{n}.example"
        values = {
            "full_name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}@{domain}",
            "company": f"Company {n} Ltd",
            "domain": domain,
            "city": city,
            "country": country,
            "title": TITLES[n % len(TITLES)],
        }
        observations = [Observation(k, v, None, "Bench", seen) for k, v in values.items()]
        written = compose(
            template,
            evidence_from(observations, now=now),
            sender=sender,
            channel=Channel.EMAIL,
            tone=TONE,
            length=LENGTH,
            cta=CTA,
            first_message=True,
            now=now,
        )
        problems = check_draft(written)
        assert not problems, problems
        content = drafting.revision_content(written)
        assert written.subject is not None
        assert content_sha256(written.subject, written.body) == written.content_sha256
        planned.append(
            Planned(
                lead_id=uuid.uuid4(),
                draft_id=uuid.uuid4(),
                revision_id=uuid.uuid4(),
                subject=written.subject,
                body=written.body,
                sha256=written.content_sha256,
                lead=values,
                content=(
                    json.dumps(content.sentences),
                    json.dumps(content.gaps),
                    json.dumps(content.compliance),
                ),
            )
        )
    return planned


LEAD_COLUMNS = "id, tenant_id, source_id, full_name, email, company, domain, city, country, title"
DRAFT_COLUMNS = (
    "id, tenant_id, lead_id, submitted_at, expires_at, decided_at, channel, template, tone, "
    "length, cta, first_message, origin, status, current_revision, created_by_type, created_by"
)
REVISION_COLUMNS = (
    "id, tenant_id, draft_id, subject, body, content_sha256, sentences, gaps, compliance, "
    "created_at, number, author_type, author"
)
APPROVAL_COLUMNS = (
    "tenant_id, draft_id, revision_id, content_sha256, decided_at, expires_at, decision, "
    "reviewer_type, reviewer"
)


async def _copy_rows(
    cursor: psycopg.AsyncCursor[Any], table: str, columns: str, rows: Iterable[tuple[Any, ...]]
) -> None:
    async with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            await copy.write_row(row)


async def _copy(
    c: Cluster, tenant_id: uuid.UUID, source_id: uuid.UUID, plan: Sequence[Planned], now: datetime
) -> None:
    """Leads, drafts (approved), revision 1 of each and its approval, by COPY as the owner."""
    template = drafting.BUILTIN + default_template(Channel.EMAIL, TONE).id
    draft = (
        Channel.EMAIL.value,
        template,
        TONE.value,
        LENGTH.value,
        CTA,
        True,
        "template",
        "approved",
    )
    draft_by = (1, "system", "bench")  # current revision, created_by_type, created_by
    expires = now + timedelta(days=7)
    revision = (now, 1, "system", "bench")
    approval = (now, expires, "approved", "user", "Bench Reviewer")
    async with await psycopg.AsyncConnection.connect(c.urls.owner) as connection:
        async with connection.cursor() as cursor:
            await _copy_rows(
                cursor,
                "leads",
                LEAD_COLUMNS,
                ((p.lead_id, tenant_id, source_id, *p.lead.values()) for p in plan),
            )
            await _copy_rows(
                cursor,
                "drafts",
                DRAFT_COLUMNS,
                (
                    (p.draft_id, tenant_id, p.lead_id, now, expires, now, *draft, *draft_by)
                    for p in plan
                ),
            )
            await _copy_rows(
                cursor,
                "draft_revisions",
                REVISION_COLUMNS,
                ((p.revision_id, tenant_id, p.draft_id, *p.revision(), *revision) for p in plan),
            )
            await _copy_rows(
                cursor,
                "approvals",
                APPROVAL_COLUMNS,
                ((tenant_id, p.draft_id, p.revision_id, p.sha256, *approval) for p in plan),
            )
        for name in ("leads", "drafts", "draft_revisions", "approvals", "messages"):
            await connection.execute(f"ANALYZE {name}")
        await connection.commit()


def _render(bench_settings: Settings, keys: str, plan: Sequence[Planned]) -> list[RenderedEmail]:
    """The raw path's messages: what the channel would render for each draft."""
    rendered = []
    now = utcnow()
    for p in plan:
        stand_in = Message(id=uuid.uuid4(), tenant_id=uuid.uuid4())
        rendered.append(
            render_email(
                OutboundEmail(
                    message_id=stand_in.id,
                    from_address=SENDER["email"],
                    from_name=SENDER["name"],
                    to_address=p.lead["email"],
                    subject=p.subject,
                    text_body=p.body,
                    unsubscribe_url=service.unsubscribe_url(bench_settings, keys, stand_in),
                ),
                now=now,
            )
        )
    return rendered


async def _setup(c: Cluster, db: Database, live: Settings, messages: int, profiled: int) -> Bench:
    started = time.perf_counter()
    now = utcnow()
    async with db.session() as session:
        tenant = await create_tenant(
            session, name="Bench outreach", slug=f"bench-outreach-{uuid.uuid4().hex[:8]}", now=now
        )
    tenant_id = tenant.id
    actor = system_principal(tenant_id)
    async with db.session(tenant_id) as session:
        await drafting.set_sender(session, actor, SENDER, now=now)
        policy = await service.set_outreach_policy(
            session,
            actor,
            live,
            dry_run=False,
            daily_caps={Channel.EMAIL.value: 10 * (messages + WARMUP + profiled) + 1_000},
            domain_hourly_cap=None,  # the default (5 an hour): every lead has its own domain
            cooldown_days=None,  # the default (30 days): every message goes to another lead
            confirmation=service.LIVE_CONFIRMATION,
            now=now,
        )
        assert not policy.dry_run, policy
        source = Source(
            tenant_id=tenant_id,
            name="Bench trade show",
            kind=SourceKind.CSV_UPLOAD,
            legal_basis=LegalBasis.LEGITIMATE_INTEREST,
            assessment="Trade-show visitors asked to be contacted at work.",
            status=SourceStatus.VETTED,
        )
        session.add(source)
        await session.flush()
        source_id = source.id

    composing = time.perf_counter()
    plan = _plan(WARMUP * 2 + messages + profiled, now)
    compose_seconds = time.perf_counter() - composing
    await _copy(c, tenant_id, source_id, plan, now)
    keys = secret_keys(live)
    warmup, measured = plan[:WARMUP], plan[WARMUP : WARMUP + messages]
    raw_warmup = plan[WARMUP + messages : 2 * WARMUP + messages]
    profiled_plan = plan[2 * WARMUP + messages :]
    return Bench(
        tenant_id=tenant_id,
        actor=actor,
        settings=live,
        keys=keys,
        warmup_drafts=[p.draft_id for p in warmup],
        drafts=[p.draft_id for p in measured],
        profile_drafts=[p.draft_id for p in profiled_plan],
        rendered=_render(live, keys, measured),
        warmup_rendered=_render(live, keys, raw_warmup),
        setup_seconds=time.perf_counter() - started,
        compose_seconds=compose_seconds,
    )


# --- the two paths -------------------------------------------------------------------------

STAGES = (
    ("queue", "queue_drafts: guard + count + Message rows + audit + job (commit)"),
    ("begin", "begin_deliveries: lock, approvals again, mark sending (commit)"),
    ("hand_over", "hand_over_all: render MIME + SMTP to the sink, C sessions"),
    ("finish", "finish_deliveries: sent, drafts, outbox events, audit (commit)"),
)


@dataclass
class Path:
    name: str
    messages: int = 0
    seconds: float = 0.0
    # Seconds per message; on the platform path, its chunk's (queue start → outcome committed).
    latencies: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)  # seconds per block
    chunks: list[int] = field(default_factory=list)  # messages per platform block
    outcomes: Counter[str] = field(default_factory=Counter)
    octets: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process group
    foreign_load: float = 0.0  # worst block
    io_stall: float = 0.0  # worst block

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000

    def stage(self, name: str, seconds: float) -> None:
        self.stages.setdefault(name, []).append(seconds)

    def add_block(self, messages: int, seconds: float, meter: CpuMeter) -> None:
        self.messages += messages
        self.seconds += seconds
        for group, used in meter.used.items():
            self.cpu[group] = self.cpu.get(group, 0.0) + used
        self.foreign_load = max(self.foreign_load, meter.used.get("foreign", 0.0) / seconds)
        self.io_stall = max(self.io_stall, meter.io_stalled / seconds)

    def cores(self) -> str:
        return ", ".join(f"{g} {used / self.seconds:.2f}" for g, used in self.cpu.items())

    def cpu_ms_per_message(self) -> str:
        shown = [(g, used) for g, used in self.cpu.items() if g != "foreign"]
        return ", ".join(f"{g} {used / self.messages * 1000:.2f}" for g, used in shown)

    def row(self) -> list[str]:
        return [
            self.name,
            f"{self.messages:,}",
            f"{self.seconds:.2f}",
            rate(self.rate),
            f"{self.ms(0.50):.1f}",
            f"{self.ms(0.99):.1f}",
            f"{max(self.latencies, default=0.0) * 1000:.1f}",
            f"{self.octets / max(1, self.messages):,.0f}",
            self.cores(),
        ]


@dataclass
class Context:
    db: Database
    bench: Bench
    port: int
    clock: StageClock = field(default_factory=lambda: StageClock())


class Probe:
    """Diagnostics only (`--profile`): per stage, the CPU this thread used and the statements
    sent (all of them, counted at psycopg's cursor; and those that went through SQLAlchemy);
    and how long each of the two per-tenant locks the path takes was held (the counting lock
    of queue_drafts, the audit chain's head in queue_drafts and finish_deliveries: until their
    commit)."""

    def __init__(self) -> None:
        self.current = ""
        self.cpu: dict[str, float] = dict.fromkeys((name for name, _ in STAGES), 0.0)
        self.statements: Counter[str] = Counter()
        self.orm: Counter[str] = Counter()
        self.held: dict[str, list[float]] = {"queue": [], "finish": []}
        self.locked_at: float | None = None
        self.listing: list[tuple[str, str]] | None = []  # the first chunk's statements
        self._cpu_at = 0.0

    def executed(self, query: Any) -> None:
        self.statements[self.current] += 1
        if self.listing is not None:
            text = query.decode() if isinstance(query, bytes) else str(query)
            self.listing.append((self.current, " ".join(text.split())))

    def switch(self, stage: str) -> None:
        """The stage before ends (its commit included) and `stage` begins."""
        at = time.thread_time()
        if self.current:
            self.cpu[self.current] += at - self._cpu_at
        if self.locked_at is not None and self.current in self.held:
            self.held[self.current].append(time.perf_counter() - self.locked_at)
        self.current, self._cpu_at, self.locked_at = stage, at, None

    def locked(self) -> None:
        """A per-tenant lock was taken (the first one of the stage counts)."""
        if self.locked_at is None:
            self.locked_at = time.perf_counter()


class StageClock:
    """Marks where a platform block is (queue → begin → hand_over → finish): the delivery steps
    are wrapped while the bench runs (`_staging`), so the timed path is `deliver_messages`
    itself, the body of the `outreach.deliver` job."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []
        self.probe: Probe | None = None
        self.octets = 0  # of what the channels sent, this block

    def mark(self, stage: str) -> None:
        self.marks.append((stage, time.perf_counter()))
        if self.probe is not None:
            self.probe.switch(stage)

    def start(self) -> None:
        self.marks, self.octets = [], 0
        self.mark("queue")


@contextlib.contextmanager
def _staging(clock: StageClock) -> Iterator[None]:
    begin, hand_over_all, finish = (
        delivery.begin_deliveries,
        delivery.hand_over_all,
        delivery.finish_deliveries,
    )

    async def staged_begin(*args: Any, **kwargs: Any) -> Any:
        clock.mark("begin")
        return await begin(*args, **kwargs)

    async def staged_hand_over_all(*args: Any, **kwargs: Any) -> Any:
        clock.mark("hand_over")
        results = await hand_over_all(*args, **kwargs)
        clock.octets += sum(len(r.raw or b"") for r in results if r is not None)
        return results

    async def staged_finish(*args: Any, **kwargs: Any) -> Any:
        clock.mark("finish")
        return await finish(*args, **kwargs)

    delivery.begin_deliveries = staged_begin  # type: ignore[assignment]
    delivery.hand_over_all = staged_hand_over_all  # type: ignore[assignment]
    delivery.finish_deliveries = staged_finish  # type: ignore[assignment]
    try:
        yield
    finally:
        delivery.begin_deliveries, delivery.hand_over_all = begin, hand_over_all  # type: ignore[assignment]
        delivery.finish_deliveries = finish  # type: ignore[assignment]


async def _platform_block(
    ctx: Context, path: Path, drafts: Sequence[uuid.UUID], concurrency: int
) -> None:
    """A chunk of drafts through the real sending path: `queueing.queue_drafts` (one
    transaction), then `delivery.deliver_messages` (what the `outreach.deliver` job runs)."""
    bench, db, clock = ctx.bench, ctx.db, ctx.clock
    live, keys, tenant = bench.settings, bench.keys, bench.tenant_id
    clock.start()
    async with db.session(tenant) as session:
        answers = await queueing.queue_drafts(
            session,
            bench.actor,
            [queueing.QueueRequest(draft_id) for draft_id in drafts],
            settings=live,
            keys=keys,
            kind=MessageKind.ONE_TO_ONE,
            now=utcnow(),
        )
    queued = []
    for answer in answers:
        if isinstance(answer, LeadRelayError):
            path.outcomes[f"refused: {answer.code}"] += 1
        elif answer.status != MessageStatus.QUEUED:
            path.outcomes[f"{answer.status} by {answer.blocked_by}"] += 1
        else:
            queued.append(answer.message_id)
    outcomes = await delivery.deliver_messages(
        db, tenant, queued, settings=live, keys=keys, concurrency=concurrency
    )
    clock.mark("")
    path.outcomes.update(str(outcome.status) for outcome in outcomes)
    path.octets += clock.octets
    started, ended = clock.marks[0][1], clock.marks[-1][1]
    path.latencies += [ended - started] * len(outcomes)
    for (stage, at), (_, until) in itertools.pairwise(clock.marks):
        path.stage(stage, until - at)
    path.chunks.append(len(drafts))


async def _raw_one(ctx: Context, path: Path, rendered: RenderedEmail) -> None:
    started = time.perf_counter()
    refused, _ = await aiosmtplib.send(
        rendered.raw,
        sender=rendered.envelope_from,
        recipients=[rendered.envelope_to],
        hostname="127.0.0.1",
        port=ctx.port,
        timeout=SMTP_TIMEOUT,
        start_tls=False,
    )
    path.latencies.append(time.perf_counter() - started)
    path.outcomes["refused" if refused else "sent"] += 1
    path.octets += len(rendered.raw)


async def _concurrently(
    items: Sequence[T], concurrency: int, work: Callable[[T], Awaitable[None]]
) -> None:
    """`concurrency` tasks pulling from one queue of `items`."""
    pending: Iterator[T] = iter(items)

    async def worker() -> None:
        for item in pending:  # next() runs between awaits: each item goes to one task
            await work(item)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _timed(
    path: Path, messages: int, meter: CpuMeter, work: Callable[[], Awaitable[None]]
) -> None:
    meter.start()
    started = time.perf_counter()
    await work()
    seconds = time.perf_counter() - started
    meter.stop()
    path.add_block(messages, seconds, meter)


@dataclass
class Result:
    platform: Path
    raw: Path
    sink_messages: int
    sink_octets: int
    expected: int


async def _measure(
    c: Cluster, ctx: Context, sink: SmtpSink, concurrency: int, block: int, budget: float
) -> Result:
    bench = ctx.bench
    # Warm-up (not timed): connections in the pool, statement caches, proof the path sends.
    warm_platform, warm_raw = Path("warm-up"), Path("warm-up")
    await _platform_block(ctx, warm_platform, bench.warmup_drafts, concurrency)
    assert warm_platform.outcomes == Counter({"sent": WARMUP}), warm_platform.outcomes
    await _concurrently(bench.warmup_rendered, concurrency, partial(_raw_one, ctx, warm_raw))
    assert warm_raw.outcomes == Counter({"sent": WARMUP}), warm_raw.outcomes

    platform = Path("platform: queue_drafts + deliver_messages, SMTP channel")
    raw = Path("raw: bare aiosmtplib.send, same messages")
    meter = CpuMeter({"bench": [os.getpid()], "sink": [sink.pid], "postgres": postgres_pids(c)})
    deadline = time.monotonic() + budget
    for number, start in enumerate(range(0, len(bench.drafts), block)):
        if number >= 2 and time.monotonic() > deadline:
            break  # both paths have sent the same blocks so far
        drafts, rendered = (
            bench.drafts[start : start + block],
            bench.rendered[start : start + block],
        )
        steps: list[Callable[[], Awaitable[None]]] = [
            partial(_timed, platform, len(drafts), meter,
                    partial(_platform_block, ctx, platform, drafts, concurrency)),
            partial(_timed, raw, len(rendered), meter,
                    partial(_concurrently, rendered, concurrency, partial(_raw_one, ctx, raw))),
        ]  # fmt: skip
        for step in steps if number % 2 == 0 else reversed(steps):
            await step()
    sink_messages, sink_octets = sink.counts()
    expected = 2 * WARMUP + platform.outcomes["sent"] + raw.outcomes["sent"]
    return Result(platform, raw, sink_messages, sink_octets, expected)


@contextlib.contextmanager
def _probing(ctx: Context, probe: Probe) -> Iterator[None]:
    """Count statements and note lock times for `probe` (diagnostics only: restored after)."""
    engine: AsyncEngine = ctx.db.engine
    cursor = psycopg.AsyncCursor
    execute, executemany = cursor.execute, cursor.executemany
    lock_counting, lock_head = counting.lock_counting, audit._lock_head

    def orm_statement(*_: Any) -> None:
        probe.orm[probe.current] += 1

    async def counted_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        probe.executed(query)
        return await execute(self, query, *args, **kwargs)

    async def counted_executemany(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        probe.executed(query)
        return await executemany(self, query, *args, **kwargs)

    async def timed_lock(*args: Any, **kwargs: Any) -> Any:
        await lock_counting(*args, **kwargs)
        probe.locked()

    async def timed_head(*args: Any, **kwargs: Any) -> Any:
        head = await lock_head(*args, **kwargs)  # the audit chain's head, FOR UPDATE
        probe.locked()
        return head

    event.listen(engine.sync_engine, "before_cursor_execute", orm_statement)
    cursor.execute, cursor.executemany = counted_execute, counted_executemany  # type: ignore[method-assign]
    counting.lock_counting, audit._lock_head = timed_lock, timed_head
    ctx.clock.probe = probe
    try:
        yield
    finally:
        ctx.clock.probe = None
        cursor.execute, cursor.executemany = execute, executemany  # type: ignore[method-assign]
        counting.lock_counting, audit._lock_head = lock_counting, lock_head
        event.remove(engine.sync_engine, "before_cursor_execute", orm_statement)


@dataclass
class Diagnosis:
    probed: Path
    probe: Probe
    profiled: Path
    profile: cProfile.Profile


async def _diagnose(
    ctx: Context, concurrency: int, block: int, profile: cProfile.Profile
) -> Diagnosis:
    """After the figures: the profile drafts' first half in chunks of `block` with a probe,
    the other half the same way under cProfile."""
    drafts = ctx.bench.profile_drafts
    half = len(drafts) // 2
    probed, probe = Path("chunks, probed"), Probe()
    listing: list[tuple[str, str]] = []
    with _probing(ctx, probe):
        for start in range(0, half, block):
            await _platform_block(
                ctx, probed, drafts[start : min(start + block, half)], concurrency
            )
            if probe.listing is not None:
                listing, probe.listing = probe.listing, None
    probe.listing = listing
    profiled = Path("profiled")
    profile.enable()
    try:
        for start in range(half, len(drafts), block):
            await _platform_block(ctx, profiled, drafts[start : start + block], concurrency)
    finally:
        profile.disable()
    return Diagnosis(probed, probe, profiled, profile)


# --- report --------------------------------------------------------------------------------


def run(
    c: Cluster,
    *,
    messages: int = MESSAGES,
    concurrency: int = CONCURRENCY,
    block: int = BLOCK,
    budget: float = BUDGET,
    profile: cProfile.Profile | None = None,
    diagnosed: int = 300,
) -> list[Figure]:
    """The figure over up to `messages` messages per path (no new block starts after `budget`
    seconds of measuring); with `profile`, then `diagnosed` more drafts for the diagnostics
    (half in chunks of `block` with a probe, half the same way under `profile`)."""
    heading("outreach: sends through the policy guard + SMTP channel, beside bare aiosmtplib")
    settle_process()  # the start-up every worker runs before its first job
    diagnosed = diagnosed if profile is not None else 0
    sink = SmtpSink()
    with cleanup_if_cut_short(sink.stop):
        try:
            live = c.settings().model_copy(
                update={
                    "dry_run": False,
                    "smtp_host": "127.0.0.1",
                    "smtp_port": sink.port,
                    "smtp_security": "none",
                    "smtp_timeout_seconds": SMTP_TIMEOUT,
                }
            )
            result, bench, diagnosis = asyncio.run(
                _run(c, live, sink, messages, concurrency, block, budget, profile, diagnosed)
            )
        finally:
            sink.stop()
    figures = _report(c, result, bench, concurrency, block, budget)
    if diagnosis is not None:
        _report_diagnosis(diagnosis, result, concurrency, block)
    return figures


async def _run(
    c: Cluster,
    live: Settings,
    sink: SmtpSink,
    messages: int,
    concurrency: int,
    block: int,
    budget: float,
    profile: cProfile.Profile | None,
    diagnosed: int,
) -> tuple[Result, Bench, Diagnosis | None]:
    db = Database(c.urls, pool_size=concurrency + 1)  # as the worker sizes its pool
    try:
        bench = await _setup(c, db, live, messages, diagnosed)
        ctx = Context(db, bench, sink.port)
        with _staging(ctx.clock):
            result = await _measure(c, ctx, sink, concurrency, block, budget)
            diagnosis = None
            if profile is not None:  # after the figures, so they stay unskewed
                diagnosis = await _diagnose(ctx, concurrency, block, profile)
    finally:
        await db.dispose()
    return result, bench, diagnosis


def _report(
    c: Cluster, result: Result, bench: Bench, concurrency: int, block: int, budget: float
) -> list[Figure]:
    platform, raw = result.platform, result.raw
    n, prepared = platform.messages, len(bench.drafts)
    leads = prepared + 2 * WARMUP + len(bench.profile_drafts)
    print(
        f"setup {bench.setup_seconds:.1f}s (compose {bench.compose_seconds:.1f}s): one tenant "
        f"live (dry-run off, e-mail cap raised, both confirmed), sender identity, "
        f"{leads:,} leads each at its own domain with one approved e-mail draft (COPY); "
        f"{c.durability}"
    )
    print(
        f"sink: aiosmtpd Controller in its own process on 127.0.0.1:{bench.settings.smtp_port}, "
        f"security none, accepts all; {concurrency} asyncio tasks per path (default asyncio "
        f"loop, as the worker), {block} messages per block, paths alternating block by block, "
        f"{WARMUP} warm-up messages each first"
    )
    print(
        "the send path itself, NOT through the procrastinate worker: per block, queue_drafts "
        "(one transaction), then deliver_messages, the outreach.deliver job's body: "
        "begin_deliveries → commit → hand_over_all → finish_deliveries → commit"
    )
    headers = [
        "path",
        "msgs",
        "seconds",
        "msgs/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "bytes/msg",
        "CPU cores",
    ]
    print(table(headers, [platform.row(), raw.row()]))
    if n < prepared:
        print(f"{n:,} of {prepared:,} messages per path: no new block after {budget:.0f}s")
    sent = platform.outcomes["sent"]
    chunks = max(1, len(platform.chunks))
    stage_means = {name: sum(v) / chunks * 1000 for name, v in platform.stages.items() if v}
    total_mean = sum(stage_means.values())
    per_message = {name: sum(v) / max(1, n) * 1000 for name, v in platform.stages.items()}
    print(
        f"platform, per block of {sum(platform.chunks) / chunks:.0f} messages, mean over "
        f"{chunks:,} blocks ({total_mean:.1f} ms a block; {total_mean * chunks / max(1, n):.2f} "
        "ms a message):"
    )
    for name, label in STAGES:
        mean = stage_means.get(name, float("nan"))
        p99 = percentile(platform.stages.get(name, []), 0.99) * 1000
        print(
            f"  {label:<66} {mean:7.2f} ms (p99 {p99:7.2f}, {mean / total_mean:4.0%}; "
            f"{per_message.get(name, 0.0):.2f} ms a message)"
        )
    print(
        f"CPU ms per message: platform {platform.cpu_ms_per_message()}; "
        f"raw {raw.cpu_ms_per_message()}"
    )
    own = platform.cpu.get("bench", 0.0) / max(1, n)
    if own:
        print(
            f"the platform path costs this process {own * 1000:.1f} ms of CPU a message: one "
            f"event loop (one core) sends at most ≈ {1 / own:,.0f} msgs/s that way (--profile "
            "shows where it goes)"
        )
    outcomes = ", ".join(f"{k} {v:,}" for k, v in platform.outcomes.most_common())
    raw_outcomes = ", ".join(f"{k} {v:,}" for k, v in raw.outcomes.most_common())
    print(
        f"outcomes: platform {outcomes}; raw {raw_outcomes}; "
        f"the sink accepted {result.sink_messages:,} messages ({result.expected:,} expected), "
        f"{result.sink_octets / max(1, result.sink_messages):,.0f} bytes each"
    )
    ratio = platform.rate / raw.rate if raw.rate else float("nan")
    met = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"ratio {ratio:.1%} of bare aiosmtplib (target ≥ {TARGET_RATIO:.0%}: {met})")

    notes = [
        f"p50 {platform.ms(0.5):.1f} ms, p99 {platform.ms(0.99):.1f} ms per message",
        "per message "
        + ", ".join(f"{name} {per_message.get(name, 0.0):.2f} ms" for name, _ in STAGES),
        f"{n:,} messages, concurrency {concurrency}, not via the job worker",
    ]
    if sent != n or raw.outcomes["sent"] != n or result.sink_messages != result.expected:
        notes.append(
            f"NOT ALL SENT: platform {dict(platform.outcomes)}, raw {dict(raw.outcomes)}, "
            f"sink {result.sink_messages}/{result.expected}"
        )
    return [
        Figure(
            name="outreach sends (guard + SMTP channel)",
            value=platform.rate,
            raw_name="bare aiosmtplib.send, same sink",
            raw_value=raw.rate,
            unit="msgs/s",
            target_ratio=TARGET_RATIO,
            notes=notes,
            foreign_load=max(platform.foreign_load, raw.foreign_load),
            io_stall=max(platform.io_stall, raw.io_stall),
        )
    ]


def _report_diagnosis(diagnosis: Diagnosis, result: Result, concurrency: int, block: int) -> None:
    probed, probe = diagnosis.probed, diagnosis.probe
    count = max(1, len(probed.latencies))
    chunks = max(1, len(probed.chunks))
    heading(f"outreach diagnostics: {count:,} messages in {chunks} chunks of ≤ {block}, probed")
    rows = []
    for name, label in STAGES:
        held = probe.held.get(name)
        rows.append(
            [
                label.split(":", 1)[0],
                f"{sum(probed.stages.get(name, [])) / count * 1000:.2f}",
                f"{probe.cpu[name] / count * 1000:.2f}",
                f"{probe.statements[name] / count:.2f}",
                f"{probe.orm[name] / count:.2f}",
                f"{probe.statements[name] / chunks:.1f}",
                f"{sum(held) / len(held) * 1000:.2f}" if held else "-",
            ]
        )
    wall = sum(sum(v) for v in probed.stages.values()) / count
    cpu = sum(probe.cpu.values()) / count
    rows.append(
        [
            "total",
            f"{wall * 1000:.2f}",
            f"{cpu * 1000:.2f}",
            f"{sum(probe.statements.values()) / count:.2f}",
            f"{sum(probe.orm.values()) / count:.2f}",
            f"{sum(probe.statements.values()) / chunks:.1f}",
            "",
        ]
    )
    headers = [
        "stage",
        "wall ms/msg",
        "CPU ms/msg",
        "statements/msg",
        "via ORM/msg",
        "statements/chunk",
        "tenant lock held ms/chunk",
    ]
    print(table(headers, rows))
    serialized = sum(sum(v) for v in probe.held.values()) / count
    print(
        "statements: every execute on a psycopg cursor (ORM, pool pre-ping, set_config, audit "
        "chain, job rows); BEGIN/COMMIT come on top. Tenant lock: queue_drafts' counting lock "
        "(then the audit head) and finish_deliveries' audit-chain head, each held to its commit"
    )
    print(
        f"ceilings per tenant and channel, whatever the concurrency: the locks serialize "
        f"{serialized * 1000:.3f} ms a message → ≤ {1 / max(serialized, 1e-9):,.0f} msgs/s; this "
        f"process's CPU {cpu * 1000:.2f} ms a message (one event loop, one core) → "
        f"≤ {1 / max(cpu, 1e-9):,.0f} msgs/s; raw measured {rate(result.raw.rate)} msgs/s"
    )
    print(f"the statements of one chunk of {probed.chunks[0] if probed.chunks else 0}, in order:")
    for stage, text in probe.listing or []:
        shown = "; (the pool's pre-ping on checkout)" if text == ";" else text
        print(f"  {stage:<9} {shown[:110]}")

    profiled = diagnosis.profiled
    sent = max(1, profiled.outcomes["sent"])
    heading(f"outreach profile: {sent:,} messages at concurrency {concurrency} (cProfile, CPU)")
    functions = pstats.Stats(diagnosis.profile).get_stats_profile().func_profiles
    areas: dict[str, float] = {}
    for name, function in functions.items():
        area = _area(function.file_name, name)
        areas[area] = areas.get(area, 0.0) + function.tottime
    total = sum(areas.values())
    print(
        f"own CPU time by where the code lives, per message ({total / sent * 1000:.1f} ms in "
        "all, with cProfile's overhead):"
    )
    for area, seconds in sorted(areas.items(), key=lambda item: item[1], reverse=True):
        print(f"  {area:<44} {seconds / sent * 1000:6.2f} ms  {seconds / total:4.0%}")
    print("functions with the most own CPU time:")
    top = sorted(functions.items(), key=lambda item: item[1].tottime, reverse=True)[:15]
    for name, function in top:
        where = f"{function.file_name.rsplit('site-packages/', 1)[-1]}:{function.line_number}"
        print(
            f"  {function.tottime / sent * 1000:6.3f} ms/msg  {function.ncalls:>9}  "
            f"{name[:40]:<40} {where[-60:]}"
        )


AREAS = (
    ("/sqlalchemy/", "SQLAlchemy (ORM, Core, async adaptor)"),
    ("/psycopg/", "psycopg"),
    ("/procrastinate/", "procrastinate (job rows)"),
    ("/aiosmtplib/", "aiosmtplib"),
    ("/leadrelay/", "leadrelay (src)"),
    ("/email/", "email (stdlib: MIME rendering)"),
    ("/asyncio/", "asyncio event loop"),
    ("/selectors.py", "asyncio event loop"),
    ("/bench/", "bench"),
)


def _area(file_name: str, function: str) -> str:
    for marker, area in AREAS:
        if marker in file_name:
            return area
    if "greenlet" in function:
        return "greenlet (SQLAlchemy's async bridge)"
    return "other (builtins, stdlib)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=MESSAGES)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--block", type=int, default=BLOCK)
    parser.add_argument("--budget", type=float, default=BUDGET, help="seconds of measuring")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after measuring, 300 more messages in blocks: 150 with per-stage CPU, "
        "statements and lock times, 150 under cProfile",
    )
    args = parser.parse_args()
    # CPU time, not wall time: on a shared machine the wall clock also counts being preempted.
    profile = cProfile.Profile(time.process_time) if args.profile else None
    start_watchdog(args.budget + 120)
    with cluster() as c:
        run(
            c,
            messages=args.messages,
            concurrency=args.concurrency,
            block=args.block,
            budget=args.budget,
            profile=profile,
        )


if __name__ == "__main__":
    main()
