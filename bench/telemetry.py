"""Delivery webhooks: provider events/s through the whole app (signature, parse, place, store,
state update) beside a bare ASGI endpoint taking the same requests, in the same run.

Setup (not timed): one tenant, N leads and N sent messages (COPY, as the owner), half by
Mailgun, half by SendGrid, each with its provider id; the app under uvicorn (bench.intake's
server) with a Mailgun signing key and a SendGrid verification key set.

1. Mailgun: one event per request, as Mailgun posts them — `delivered` for a different
   message each time, signed (HMAC of timestamp + a fresh token).
2. SendGrid: batches of B events per request, as SendGrid posts them (it batches by time and
   size) — `delivered` then `open` for B/2 messages, signed with ECDSA P-256.
3. Raw limit: the same request bytes to `/bare`, a raw ASGI callable that reads the body and
   answers 202, on the same server, over the same connections.

The figure: delivery events/s through the full path (SendGrid's batches) beside the bare
endpoint's rate for one-event requests (Mailgun's bodies) — events a second against the
requests a second the server can merely read and answer. The request-for-request ratios
(each path against the bare endpoint taking its very bytes) are printed too. Afterwards the
stored rows are counted: every answered event must be in `delivery_events`, and the messages
must show the delivery.

    .venv/bin/python -m bench.telemetry [--messages 60000] [--batch 50]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass

import psycopg
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.common import (
    Cluster,
    CpuMeter,
    Figure,
    cleanup_if_cut_short,
    cluster,
    heading,
    postgres_pids,
    rate,
    start_watchdog,
    table,
)
from bench.intake import (
    Phase,
    _event_loop_runner,
    run_phase,
    start_server,
    wait_until_serving,
)
from leadrelay.capture.models import LegalBasis, Source, SourceKind, SourceStatus
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.identity.service import create_tenant

MESSAGES = 60_000
BATCH = 50
CONNECTIONS = 8
WARMUP_SECONDS = 3.0
MEASURE_SECONDS = 10.0
MAILGUN_KEY = "bench-mailgun-signing-key"
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(
    SENDGRID_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


@dataclass
class Fleet:
    tenant_id: uuid.UUID
    mailgun: list[tuple[uuid.UUID, str]]  # (message id, provider id)
    sendgrid: list[tuple[uuid.UUID, str]]
    setup_seconds: float


async def _setup(c: Cluster, messages: int) -> Fleet:
    started = time.perf_counter()
    db = Database(c.urls, pool_size=1)
    try:
        async with db.session() as session:
            tenant = await create_tenant(
                session, name="Bench telemetry", slug=f"bench-tel-{secrets.token_hex(4)}",
                now=utcnow(),
            )  # fmt: skip
        async with db.session(tenant.id) as session:
            source = Source(
                tenant_id=tenant.id,
                name="Bench",
                kind=SourceKind.OFFICIAL_API,
                legal_basis=LegalBasis.CONSENT,
                status=SourceStatus.VETTED,
            )
            session.add(source)
            await session.flush()
            source_id = source.id
    finally:
        await db.dispose()
    lead_ids = [uuid.uuid4() for _ in range(messages)]
    message_ids = [uuid.uuid4() for _ in range(messages)]
    providers = ["mailgun" if n % 2 == 0 else "sendgrid" for n in range(messages)]
    provider_ids = [f"{p}-{uuid.uuid4().hex}" for p in providers]
    now = utcnow()
    async with await psycopg.AsyncConnection.connect(c.urls.owner) as connection:
        async with connection.cursor() as cursor:
            async with cursor.copy(
                "COPY leads (id, tenant_id, source_id, full_name, email) FROM STDIN"
            ) as copy:
                for n, lead_id in enumerate(lead_ids):
                    await copy.write_row(
                        (lead_id, tenant.id, source_id, f"Lead {n}", f"lead{n}@example.test")
                    )
            async with cursor.copy(
                "COPY messages (id, tenant_id, lead_id, kind, channel, provider, dry_run, "
                "idempotency_key, status, recipient, recipient_domain, body, content_sha256, "
                "policy_trace, provider_message_id, created_by, sent_at) FROM STDIN"
            ) as copy:
                for n, message_id in enumerate(message_ids):
                    await copy.write_row(
                        (
                            message_id,
                            tenant.id,
                            lead_ids[n],
                            "one_to_one",
                            "email",
                            providers[n],
                            False,
                            f"bench-{n}",
                            "sent",
                            f"lead{n}@example.test",
                            "example.test",
                            "Hello",
                            "0" * 64,
                            "[]",
                            provider_ids[n],
                            "bench",
                            now,
                        )
                    )
        await connection.execute("ANALYZE leads")
        await connection.execute("ANALYZE messages")
        await connection.commit()
    pairs = list(zip(message_ids, provider_ids, strict=True))
    return Fleet(
        tenant.id,
        [pair for pair, p in zip(pairs, providers, strict=True) if p == "mailgun"],
        [pair for pair, p in zip(pairs, providers, strict=True) if p == "sendgrid"],
        time.perf_counter() - started,
    )


def _request(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "Content-Type: application/json\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def mailgun_requests(port: int, messages: list[tuple[uuid.UUID, str]]) -> list[bytes]:
    """One signed `delivered` per message, shaped like Mailgun's documented webhook body."""
    built = []
    timestamp = str(int(time.time()))
    for message_id, provider_id in messages:
        token = secrets.token_hex(25)
        signature = hmac.new(
            MAILGUN_KEY.encode(), (timestamp + token).encode(), hashlib.sha256
        ).hexdigest()
        body = {
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": {
                "event": "delivered",
                "id": uuid.uuid4().hex,
                "timestamp": time.time(),
                "log-level": "info",
                "recipient": "lead@example.test",
                "recipient-domain": "example.test",
                "message": {"headers": {"message-id": provider_id}},
                "delivery-status": {"code": 250, "message": "OK", "description": ""},
                "user-variables": {"leadrelay_message_id": str(message_id)},
                "flags": {"is-authenticated": True},
            },
        }
        built.append(json.dumps(body).encode())
    return [_request(port, "/v1/telemetry/mailgun/events", b, {}) for b in built]


def sendgrid_requests(port: int, messages: list[tuple[uuid.UUID, str]], batch: int) -> list[bytes]:
    """Signed batches: `delivered` then `open` for batch/2 messages each."""
    built = []
    per = max(1, batch // 2)
    timestamp = str(int(time.time()))
    for start in range(0, len(messages) - per + 1, per):
        events = []
        for message_id, provider_id in messages[start : start + per]:
            for kind in ("delivered", "open"):
                events.append(
                    {
                        "email": "lead@example.test",
                        "timestamp": int(time.time()),
                        "event": kind,
                        "sg_event_id": uuid.uuid4().hex,
                        "sg_message_id": provider_id,
                        "leadrelay_message_id": str(message_id),
                        "smtp-id": f"<{provider_id}@example.test>",
                    }
                )
        body = json.dumps(events).encode()
        signature = SENDGRID_KEY.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        headers = {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }
        built.append(_request(port, "/v1/telemetry/sendgrid/events", body, headers))
    return built


def to_bare(requests: list[bytes]) -> list[bytes]:
    """The same bytes, addressed to the bare endpoint."""
    return [r.replace(b"POST /v1/telemetry/", b"POST /bare?/v1/telemetry/", 1) for r in requests]


@dataclass
class Measured:
    mailgun: Phase
    mailgun_bare: Phase
    sendgrid: Phase
    sendgrid_bare: Phase
    events_per_batch: int
    stored: int
    moved_messages: int
    answered_events: int


async def _measure(c: Cluster, port: int, pid: int, fleet: Fleet, batch: int) -> Measured:
    meter = CpuMeter({"server": [pid], "client": [os.getpid()], "postgres": postgres_pids(c)})
    mailgun_pool = mailgun_requests(port, fleet.mailgun)
    sendgrid_pool = sendgrid_requests(port, fleet.sendgrid, batch)
    per_batch = 2 * max(1, batch // 2)
    # Warm-ups take requests from the front; the measured phases continue from there.
    warm = max(200, len(mailgun_pool) // 10)
    mailgun_warm = await run_phase(
        "mailgun warm-up", port, mailgun_pool[:warm], seconds=WARMUP_SECONDS, cycle=False,
        meter=meter, connections=CONNECTIONS,
    )  # fmt: skip
    meter.groups["postgres"] = postgres_pids(c)
    mailgun = await run_phase(
        "mailgun: 1 event/request", port, mailgun_pool[warm:], seconds=MEASURE_SECONDS,
        cycle=False, meter=meter, connections=CONNECTIONS,
    )  # fmt: skip
    mailgun_bare = await run_phase(
        "bare ASGI, same mailgun requests", port, to_bare(mailgun_pool[:2_000]),
        seconds=MEASURE_SECONDS, cycle=True, meter=meter, connections=CONNECTIONS,
    )  # fmt: skip
    warm_batches = max(10, len(sendgrid_pool) // 10)
    sendgrid_warm = await run_phase(
        "sendgrid warm-up", port, sendgrid_pool[:warm_batches], seconds=WARMUP_SECONDS,
        cycle=False, meter=meter, connections=CONNECTIONS,
    )  # fmt: skip
    sendgrid = await run_phase(
        f"sendgrid: {per_batch} events/request", port, sendgrid_pool[warm_batches:],
        seconds=MEASURE_SECONDS, cycle=False, meter=meter, connections=CONNECTIONS,
    )  # fmt: skip
    sendgrid_bare = await run_phase(
        "bare ASGI, same sendgrid requests", port, to_bare(sendgrid_pool[:500]),
        seconds=MEASURE_SECONDS, cycle=True, meter=meter, connections=CONNECTIONS,
    )  # fmt: skip
    answered = 0
    for phase, events in (
        (mailgun_warm, 1),
        (mailgun, 1),
        (sendgrid_warm, per_batch),
        (sendgrid, per_batch),
    ):
        answered += phase.statuses[200] * events
    async with await psycopg.AsyncConnection.connect(c.urls.owner) as connection:
        stored_row = await (
            await connection.execute(
                "SELECT count(*) FROM delivery_events WHERE tenant_id = %s", (fleet.tenant_id,)
            )
        ).fetchone()
        moved_row = await (
            await connection.execute(
                "SELECT count(*) FROM messages WHERE tenant_id = %s AND delivered_at IS NOT NULL",
                (fleet.tenant_id,),
            )
        ).fetchone()
    return Measured(
        mailgun,
        mailgun_bare,
        sendgrid,
        sendgrid_bare,
        per_batch,
        int(stored_row[0]) if stored_row else 0,
        int(moved_row[0]) if moved_row else 0,
        answered,
    )


def run(c: Cluster, *, messages: int = MESSAGES, batch: int = BATCH) -> list[Figure]:
    heading("telemetry: provider delivery webhooks, beside a bare ASGI endpoint")
    with _event_loop_runner() as runner:
        fleet = runner.run(_setup(c, messages))
        server = start_server(
            c,
            settings={
                "mailgun_webhook_signing_key": MAILGUN_KEY,
                "sendgrid_webhook_public_key": SENDGRID_PUBLIC,
            },
        )
        with cleanup_if_cut_short(server.stop):
            try:
                runner.run(wait_until_serving(server))
                measured = runner.run(_measure(c, server.port, server.process.pid, fleet, batch))
            finally:
                server.stop()
    m = measured
    print(
        f"setup {fleet.setup_seconds:.1f}s: {messages:,} sent messages (half Mailgun, half "
        f"SendGrid); one uvicorn process, {CONNECTIONS} keep-alive connections, one request "
        f"in flight each; {c.durability}"
    )
    rows = []
    for phase, events in (
        (m.mailgun, 1),
        (m.mailgun_bare, 1),
        (m.sendgrid, m.events_per_batch),
        (m.sendgrid_bare, m.events_per_batch),
    ):
        ok = phase.statuses[200] + phase.statuses[202]
        rows.append(
            [
                phase.name,
                f"{phase.completed:,}",
                f"{phase.seconds:.2f}",
                rate(phase.rate),
                rate(ok * events / phase.seconds if phase.seconds else 0.0),
                f"{phase.completed - ok + phase.errors:,}",
                phase.cpu,
            ]
        )
    print(
        table(["phase", "requests", "seconds", "req/s", "events/s", "not 2xx", "CPU cores"], rows)
    )
    complete = m.stored == m.answered_events
    print(
        f"events answered 200 (warm-ups included): {m.answered_events:,} · "
        f"stored delivery_events: {m.stored:,} · "
        f"messages with delivered_at: {m.moved_messages:,} → "
        + ("nothing lost" if complete else "MISMATCH")
    )
    mailgun_ratio = m.mailgun.rate / m.mailgun_bare.rate if m.mailgun_bare.rate else 0.0
    sendgrid_ratio = m.sendgrid.rate / m.sendgrid_bare.rate if m.sendgrid_bare.rate else 0.0
    sendgrid_events = m.sendgrid.statuses[200] * m.events_per_batch / m.sendgrid.seconds
    bare = m.mailgun_bare.rate  # one-event requests, read and answered 202
    print(
        f"events/s through the full path: SendGrid batches {rate(sendgrid_events)}, Mailgun "
        f"{rate(m.mailgun.rate)}; bare endpoint, one-event requests: {rate(bare)} req/s → "
        f"{sendgrid_events / bare:.0%} and {m.mailgun.rate / bare:.0%} (target ≥ 30 %)"
    )
    return [
        Figure(
            name=f"delivery webhook events (SendGrid, {m.events_per_batch} per request)",
            value=sendgrid_events,
            raw_name="bare ASGI endpoint, one-event requests",
            raw_value=bare,
            unit="events/s",
            notes=[
                f"Mailgun one event per request: {rate(m.mailgun.rate)} events/s "
                f"({mailgun_ratio:.0%} of bare)",
                f"request for request: SendGrid {sendgrid_ratio:.1%} of bare on its own bytes",
                f"{m.stored:,} stored / {m.answered_events:,} answered"
                + ("" if complete else ": MISMATCH"),
            ],
            foreign_load=max(m.sendgrid.foreign_load, m.mailgun.foreign_load),
            io_stall=max(m.sendgrid.io_stall, m.mailgun.io_stall),
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=MESSAGES)
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args()
    start_watchdog(170)
    with cluster() as c:
        run(c, messages=args.messages, batch=args.batch)


if __name__ == "__main__":
    main()
