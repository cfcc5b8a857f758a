"""The chunked send path on real parts: a chunk of drafts decided by the same ordered guard and
counted under the same lock, only what it lets through handed to a real SMTP relay; retries
that never send twice; caps that hold across processes sending chunks; one bad message, or a
failing relay, that never stops the rest."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import delete, select

from leadrelay.approvals import service as approvals
from leadrelay.approvals.models import Approval
from leadrelay.compliance import audit
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.errors import LeadRelayError
from leadrelay.core.security import secret_keys
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role
from leadrelay.identity.service import system_principal
from leadrelay.outreach import circuit, counting, delivery, queueing, service
from leadrelay.outreach.channels.base import SendResult
from leadrelay.outreach.models import Message, MessageKind, MessageStatus, ProviderCircuit
from leadrelay.outreach.policy import CHECK_ORDER
from tests.conftest import free_port
from tests.factories import TenantCtx, TenantFactory
from tests.outreach.test_send import approved_draft, setup
from tests.outreach.test_smtp import Relay, serve
from tests.support import owner_connection, until_a_backend_waits_for_a_lock

CHECKS = [str(check) for check in CHECK_ORDER]


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


@pytest.fixture
async def smtp_circuit(db: Database) -> AsyncIterator[None]:
    """The SMTP provider's circuit (shared by every tenant) closed before and after the test."""

    async def reset() -> None:
        async with db.session() as session:
            await session.execute(delete(ProviderCircuit).where(ProviderCircuit.provider == "smtp"))

    await reset()
    yield
    await reset()


async def go_live(
    client: httpx.AsyncClient, tenant: TenantCtx, settings: Settings, port: int, **policy: object
) -> Settings:
    """The tenant out of dry-run (with `policy` on top), and settings that send to `port`."""
    await setup(client, tenant)
    admin = await tenant.headers(Role.ADMIN)
    changed = await client.patch(
        "/v1/outreach/policy",
        json={"dry_run": False, "confirmation": service.LIVE_CONFIRMATION, **policy},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    return settings.model_copy(
        update={"dry_run": False, "smtp_host": "127.0.0.1", "smtp_port": port,
                "smtp_security": "none", "smtp_timeout_seconds": 5.0}
    )  # fmt: skip


async def queue(
    db: Database, tenant: TenantCtx, live: Settings, drafts: list[str]
) -> list[queueing.Queued | LeadRelayError]:
    async with db.session(tenant.id) as session:
        return await queueing.queue_drafts(
            session,
            system_principal(tenant.id),
            [queueing.QueueRequest(uuid.UUID(d)) for d in drafts],
            settings=live,
            keys=secret_keys(live),
            kind=MessageKind.CAMPAIGN,
            now=utcnow(),
        )


def queued(answers: list[queueing.Queued | LeadRelayError]) -> list[queueing.Queued]:
    assert not [a for a in answers if isinstance(a, LeadRelayError)], answers
    return [a for a in answers if isinstance(a, queueing.Queued)]


async def messages(db: Database, tenant: TenantCtx, ids: list[uuid.UUID]) -> list[Message]:
    async with db.session(tenant.id) as session:
        rows = {m.id: m for m in await session.scalars(select(Message).where(Message.id.in_(ids)))}
    return [rows[i] for i in ids]


async def audit_actions(client: httpx.AsyncClient, tenant: TenantCtx) -> list[tuple[str, str]]:
    admin = await tenant.headers(Role.ADMIN)
    events = await client.get("/v1/audit", params={"limit": 500}, headers=admin)
    return [(e["action"], e["target_id"]) for e in events.json() if e["target_type"] == "message"]


class TestChunk:
    async def test_only_what_the_guard_lets_through_is_sent_and_every_refusal_is_traced(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        relay = Relay()
        with serve(relay) as port:
            live = await go_live(client, tenant, settings, port, domain_hourly_cap=1)
            good = await approved_draft(client, tenant, "good@first.example")
            suppressed = await approved_draft(client, tenant, "gone@second.example")
            unapproved = await approved_draft(client, tenant, "new@third.example", approve=False)
            first = await approved_draft(client, tenant, "first@same.example")
            throttled = await approved_draft(client, tenant, "second@same.example")
            rep = await tenant.headers(Role.REP)
            await client.post(
                "/v1/suppressions",
                json={"kind": "email", "address": "gone@second.example"},
                headers=rep,
            )

            answers = queued(
                await queue(db, tenant, live, [good, suppressed, unapproved, first, throttled])
            )
            ids = [a.message_id for a in answers]
            assert [(a.status, a.blocked_by, a.created) for a in answers] == [
                (MessageStatus.QUEUED, None, True),
                (MessageStatus.BLOCKED, "suppression", True),
                (MessageStatus.BLOCKED, "approval", True),
                (MessageStatus.QUEUED, None, True),
                (MessageStatus.DEFERRED, "domain_throttle", True),
            ]
            outcomes = await delivery.deliver_messages(
                db, tenant.id, [ids[0], ids[3]], settings=live, keys=secret_keys(live)
            )

        assert [o.status for o in outcomes] == [MessageStatus.SENT, MessageStatus.SENT]
        assert sorted(d.rcpt_tos[0] for d in relay.deliveries) == [
            "first@same.example",
            "good@first.example",
        ]
        rows = await messages(db, tenant, ids)
        # Every check in order for what passed; up to the refusing one for the others.
        assert [s["check"] for s in rows[0].policy_trace] == CHECKS
        for row, check in zip(rows[1:3], ("suppression", "approval"), strict=True):
            trace = row.policy_trace
            assert [s["check"] for s in trace] == CHECKS[: CHECKS.index(check) + 1]
            assert trace[-1]["outcome"] == "block"
            assert row.block_reason
            assert row.counted_at is None
        deferred = rows[4]
        assert deferred.policy_trace[-1] == {
            "check": "domain_throttle",
            "outcome": "block",
            "detail": deferred.block_reason,
        }
        assert deferred.retry_at is not None
        assert "same.example" in (deferred.block_reason or "")
        assert "second@" not in json.dumps(deferred.policy_trace)  # no address in a trace
        # One audit link per decision, one per delivery.
        actions = await audit_actions(client, tenant)
        for message_id, action in zip(
            ids,
            ["queued", "blocked", "blocked", "queued", "deferred"],
            strict=True,
        ):
            assert (f"message.{action}", str(message_id)) in actions
        assert actions.count(("message.sent", str(ids[0]))) == 1
        assert actions.count(("message.sent", str(ids[3]))) == 1

    async def test_one_delivery_job_carries_the_chunk(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        settings: Settings,
        urls: DatabaseUrls,
    ) -> None:
        await setup(client, tenant)
        drafts = [await approved_draft(client, tenant, f"j{n}@jobs.example") for n in range(3)]
        ids = {str(a.message_id) for a in queued(await queue(db, tenant, settings, drafts))}
        with owner_connection(urls) as connection:
            jobs = connection.execute(
                "SELECT args FROM procrastinate_jobs WHERE task_name = 'outreach.deliver' "
                "AND args->>'tenant_id' = %s",
                (str(tenant.id),),
            ).fetchall()
        assert [set(job["args"]["message_ids"]) for job in jobs] == [ids]

    async def test_a_request_that_cannot_become_a_message_leaves_the_others_alone(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        await setup(client, tenant)
        good = await approved_draft(client, tenant, "ok@fine.example")
        answers = await queue(db, tenant, settings, [str(uuid.uuid4()), good, good])
        missing, made, again = answers
        assert isinstance(missing, approvals.DraftNotFound)
        assert isinstance(made, queueing.Queued)
        assert made.created
        assert made.status == MessageStatus.QUEUED
        # The same draft twice in one chunk: one message.
        assert again == queueing.Queued(made.message_id, made.status, None, created=False)


class TestRetries:
    async def test_a_retried_chunk_sends_nothing_twice(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        relay = Relay()
        with serve(relay) as port:
            live = await go_live(client, tenant, settings, port)
            keys = secret_keys(live)
            drafts = [await approved_draft(client, tenant, f"r{n}@once.example") for n in range(3)]
            first = queued(await queue(db, tenant, live, drafts))
            # Queued again (a retried request or job): the same messages, nothing new.
            again = queued(await queue(db, tenant, live, drafts))
            assert [a.message_id for a in again] == [a.message_id for a in first]
            assert not any(a.created for a in again)
            ids = [a.message_id for a in first]

            sent = await delivery.deliver_messages(db, tenant.id, ids, settings=live, keys=keys)
            assert [o.status for o in sent] == [MessageStatus.SENT] * 3
            # The delivery job run again: nothing is sent again.
            assert (
                await delivery.deliver_messages(db, tenant.id, ids, settings=live, keys=keys) == []
            )
            assert len(relay.deliveries) == 3

            # A worker marks a chunk `sending`, commits, and dies before hearing back.
            more = [await approved_draft(client, tenant, f"c{n}@crash.example") for n in range(2)]
            crashed = [a.message_id for a in queued(await queue(db, tenant, live, more))]
            async with db.session(tenant.id) as session:
                started = await delivery.begin_deliveries(
                    session, crashed, settings=live, keys=keys, now=utcnow()
                )
            assert [h.message_id for h in started.handovers] == crashed
            # Its job is retried: what may have left is failed, visibly, never sent twice.
            assert (
                await delivery.deliver_messages(db, tenant.id, crashed, settings=live, keys=keys)
                == []
            )
        assert len(relay.deliveries) == 3
        for row in await messages(db, tenant, crashed):
            assert row.status == MessageStatus.FAILED
            assert "outcome unknown" in (row.error or "")

    async def test_a_worker_dying_mid_chunk_leaves_only_its_slice_unknown(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A chunk goes out a slice at a time (mark `sending`, hand over, record). A worker that
        dies handing over its second slice leaves that slice unknown; the first is recorded
        as sent and the third, never begun, is sent by the retry."""
        monkeypatch.setattr(delivery, "DELIVERY_SLICE", 2)
        relay = Relay()
        with serve(relay) as port:
            live = await go_live(client, tenant, settings, port)
            keys = secret_keys(live)
            drafts = [await approved_draft(client, tenant, f"s@slice{n}.example") for n in range(6)]
            ids = [a.message_id for a in queued(await queue(db, tenant, live, drafts))]
            real, calls = delivery.hand_over_all, 0

            async def dies_on_the_second_slice(*args: Any, **kwargs: Any) -> Any:
                nonlocal calls
                calls += 1
                if calls == 2:
                    raise RuntimeError("the worker died")
                return await real(*args, **kwargs)

            monkeypatch.setattr(delivery, "hand_over_all", dies_on_the_second_slice)
            with pytest.raises(RuntimeError, match="the worker died"):
                await delivery.deliver_messages(db, tenant.id, ids, settings=live, keys=keys)
            monkeypatch.setattr(delivery, "hand_over_all", real)
            retried = await delivery.deliver_messages(db, tenant.id, ids, settings=live, keys=keys)

        assert [o.message_id for o in retried] == ids[4:]
        rows = await messages(db, tenant, ids)
        assert [r.status for r in rows] == [MessageStatus.SENT] * 2 + [MessageStatus.FAILED] * 2 + [
            MessageStatus.SENT
        ] * 2
        assert all("outcome unknown" in (r.error or "") for r in rows[2:4])
        assert sorted(d.rcpt_tos[0] for d in relay.deliveries) == [
            f"s@slice{n}.example" for n in (0, 1, 4, 5)
        ]

    async def test_a_bounce_suppresses_a_busy_relay_retries_and_the_rest_go_on(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        relay = Relay(
            rcpt_replies={
                "gone@mixed.example": "550 5.1.1 <gone@mixed.example>: User unknown",
                "busy@mixed.example": "451 4.3.0 Try again later",
            }
        )
        with serve(relay) as port:
            live = await go_live(client, tenant, settings, port, domain_hourly_cap=3)
            drafts = [
                await approved_draft(client, tenant, f"{name}@mixed.example")
                for name in ("gone", "busy", "fine")
            ]
            ids = [a.message_id for a in queued(await queue(db, tenant, live, drafts))]
            outcomes = await delivery.deliver_messages(
                db, tenant.id, ids, settings=live, keys=secret_keys(live)
            )
        statuses = {o.message_id: (o.status, o.retry_in) for o in outcomes}
        assert statuses[ids[0]] == (MessageStatus.FAILED, None)
        assert statuses[ids[1]][0] == MessageStatus.QUEUED
        assert (statuses[ids[1]][1] or 0) >= 60  # the relay asked to slow down
        assert statuses[ids[2]] == (MessageStatus.SENT, None)
        assert [d.rcpt_tos for d in relay.deliveries] == [["fine@mixed.example"]]
        rep = await tenant.headers(Role.REP)
        check = await client.get(
            "/v1/suppressions/check",
            params={"kind": "email", "address": "gone@mixed.example"},
            headers=rep,
        )
        assert check.json()["reasons"] == ["email_hard_bounce"]


class TestHandOver:
    async def test_one_bad_message_never_stops_the_chunk(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        relay = Relay()
        with serve(relay) as port:
            live = await go_live(client, tenant, settings, port)
            drafts = [await approved_draft(client, tenant, f"b{n}@bad.example") for n in range(3)]
            ids = [a.message_id for a in queued(await queue(db, tenant, live, drafts))]
            async with db.session(tenant.id) as session:
                started = await delivery.begin_deliveries(
                    session, ids, settings=live, keys=secret_keys(live), now=utcnow()
                )
            handovers = list(started.handovers)
            email = handovers[1].email
            assert email is not None
            # A header that would inject a line: the renderer raises, for this message only.
            broken = dataclasses.replace(email, subject="Hi\r\nBcc: x@evil.example")
            handovers[1] = dataclasses.replace(handovers[1], email=broken)
            results = await delivery.hand_over_all(handovers, live, concurrency=2)
        assert [r.status if r else None for r in results] == ["sent", "permanent", "sent"]
        assert results[1] is not None
        assert results[1].detail.startswith("not handed over: ValueError")
        assert len(relay.deliveries) == 2

    @pytest.mark.usefixtures("smtp_circuit")
    async def test_a_failing_relay_trips_the_circuit_and_the_rest_wait_untried(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        live = await go_live(client, tenant, settings, free_port())  # nobody listens there
        keys = secret_keys(live)
        drafts = [
            await approved_draft(client, tenant, f"d{n}@down{n % 2}.example") for n in range(7)
        ]
        ids = [a.message_id for a in queued(await queue(db, tenant, live, drafts))]
        outcomes = await delivery.deliver_messages(
            db, tenant.id, ids, settings=live, keys=keys, concurrency=1
        )
        # Five failures in a row trip the provider: the last two are not even tried.
        assert [o.status for o in outcomes] == [MessageStatus.QUEUED] * 7
        rows = await messages(db, tenant, ids)
        assert [row.attempts for row in rows] == [1, 1, 1, 1, 1, 0, 0]
        async with db.session() as session:
            opened_until = await circuit.wait_until(session, "smtp", utcnow())
        assert opened_until is not None
        assert all(row.retry_at == opened_until for row in rows[5:])
        # Their next job waits for the circuit: queued, not attempted, not failed.
        assert await delivery.deliver_messages(db, tenant.id, ids, settings=live, keys=keys) == []
        for row in await messages(db, tenant, ids):
            assert row.status == MessageStatus.QUEUED
            assert row.attempts in (0, 1)
            assert "circuit is open" in (row.error or "")

    @pytest.mark.usefixtures("smtp_circuit")
    async def test_answers_left_untried_go_back_to_the_queue(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        live = await go_live(client, tenant, settings, free_port())
        keys = secret_keys(live)
        drafts = [await approved_draft(client, tenant, f"u{n}@untried.example") for n in range(2)]
        ids = [a.message_id for a in queued(await queue(db, tenant, live, drafts))]
        now = utcnow()
        async with db.session(tenant.id) as session:
            await delivery.begin_deliveries(session, ids, settings=live, keys=keys, now=now)
        down = SendResult("transient", None, "connection failed")
        async with db.session(tenant.id) as session:
            outcomes = await delivery.finish_deliveries(
                session, [(ids[0], down), (ids[1], None)], settings=live, keys=keys, now=now
            )
        assert [o.status for o in outcomes] == [MessageStatus.QUEUED, MessageStatus.QUEUED]
        assert all(o.retry_in for o in outcomes)
        tried, untried = await messages(db, tenant, ids)
        assert (tried.attempts, untried.attempts) == (1, 0)  # untried: no attempt spent
        assert untried.retry_at is not None
        # The circuit did not open (one failure): it is tried again after the first backoff.
        assert untried.retry_at - now == delivery.RETRY_BASE


class TestSendGuard:
    async def test_each_draft_gets_what_handoff_would_say(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        await setup(client, tenant)
        approved = uuid.UUID(await approved_draft(client, tenant, "yes@guard.example"))
        pending = uuid.UUID(await approved_draft(client, tenant, "no@guard.example", approve=False))
        async with db.session(tenant.id) as session:
            revision = await approvals.current_revision(
                session, await approvals.get_draft(session, approved)
            )
        text = (revision.subject, revision.body)
        outgoing = [
            approvals.Outgoing(approved, *text),
            approvals.Outgoing(pending, *text),
            approvals.Outgoing(uuid.uuid4(), *text),
            approvals.Outgoing(approved, text[0], text[1] + " "),
        ]
        async with db.session(tenant.id) as session:
            answers = await approvals.handoff_many(session, tenant.id, outgoing, now=utcnow())
        ticket = answers[0]
        assert isinstance(ticket, approvals.SendTicket)
        assert [c["check"] for c in ticket.checks] == ["content", "approval", "lead"]
        refusals = [a.detail for a in answers[1:] if isinstance(a, approvals.GuardRefused)]
        assert [r.split(":", 1)[0] for r in refusals] == ["approval", "draft", "content"]
        for item, refusal in zip(outgoing[1:], refusals, strict=True):
            async with db.session(tenant.id) as session:
                with pytest.raises(approvals.GuardRefused) as one:
                    await approvals.handoff(
                        session,
                        tenant.id,
                        item.draft_id,
                        subject=item.subject,
                        body=item.body,
                        now=utcnow(),
                    )
            assert one.value.detail == refusal

    async def test_an_approval_revoked_after_queueing_stops_its_message_only(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        relay = Relay()
        with serve(relay) as port:
            live = await go_live(client, tenant, settings, port)
            drafts = [
                await approved_draft(client, tenant, f"v{n}@revoke.example") for n in range(2)
            ]
            ids = [a.message_id for a in queued(await queue(db, tenant, live, drafts))]
            async with db.session(tenant.id) as session:
                approval_id = await session.scalar(
                    select(Approval.id).where(Approval.draft_id == uuid.UUID(drafts[0]))
                )
                assert approval_id is not None
                await approvals.revoke(
                    session, system_principal(tenant.id), approval_id, now=utcnow()
                )
            outcomes = await delivery.deliver_messages(
                db, tenant.id, ids, settings=live, keys=secret_keys(live)
            )
        assert [o.message_id for o in outcomes] == [ids[1]]
        assert [d.rcpt_tos for d in relay.deliveries] == [["v1@revoke.example"]]
        stopped, _ = await messages(db, tenant, ids)
        assert stopped.status == MessageStatus.BLOCKED
        assert stopped.blocked_by == "approval"
        assert "revoked" in (stopped.block_reason or "")
        assert stopped.counted_at is None  # no longer counts against the caps


class TestRelease:
    async def test_deferred_messages_are_decided_again_when_due(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        await setup(client, tenant)
        admin = await tenant.headers(Role.ADMIN)
        await client.patch("/v1/outreach/policy", json={"domain_hourly_cap": 1}, headers=admin)
        drafts = [await approved_draft(client, tenant, f"l{n}@later.example") for n in range(2)]
        answers = queued(await queue(db, tenant, settings, drafts))
        assert [a.status for a in answers] == [MessageStatus.QUEUED, MessageStatus.DEFERRED]
        later = utcnow() + timedelta(hours=1, minutes=1)
        async with db.session(tenant.id) as session:
            released = await service.release_deferred(
                session,
                system_principal(tenant.id),
                settings=settings,
                keys=secret_keys(settings),
                now=later,
            )
        assert released == 1
        [row] = await messages(db, tenant, [answers[1].message_id])
        assert row.status == MessageStatus.QUEUED
        assert row.counted_at == later


class TestSeveralWorkers:
    async def test_chunks_from_several_processes_never_pass_a_limit(
        self, client: httpx.AsyncClient, tenant: TenantCtx, urls: DatabaseUrls
    ) -> None:
        """Three OS processes, each queueing its drafts in three chunks at once: nine
        transactions deciding together, counted in PostgreSQL, never past the limits."""
        await setup(client, tenant)
        admin = await tenant.headers(Role.ADMIN)
        await client.patch(
            "/v1/outreach/policy",
            json={"daily_caps": {"email": 10}, "domain_hourly_cap": 4},
            headers=admin,
        )
        drafts = [
            await approved_draft(client, tenant, f"k{n}@{('one', 'two', 'six')[n % 3]}.example")
            for n in range(27)
        ]
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.outreach.send_worker",
                "--chunk",
                "3",
                urls.owner,
                urls.app,
                str(tenant.id),
                *drafts[n::3],
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(Path(__file__).parents[2]),
            )
            for n in range(3)
        ]
        statuses: list[str] = []
        for worker in workers:
            out, err = await worker.communicate()
            assert worker.returncode == 0, err.decode()
            statuses += [json.loads(line) for line in out.decode().splitlines()]
        assert len(statuses) == 27
        rep = await tenant.headers(Role.REP)
        sent = (await client.get("/v1/messages", params={"limit": 100}, headers=rep)).json()
        queued_now = [m for m in sent if m["status"] == "queued"]
        assert len(queued_now) == statuses.count("queued")
        # Three domains at four an hour would let twelve through: the daily cap (10) holds.
        assert len(queued_now) == 10
        for domain in ("one.example", "two.example", "six.example"):
            assert sum(m["recipient_domain"] == domain for m in queued_now) <= 4
        assert {m["blocked_by"] for m in sent if m["status"] == "deferred"} <= {
            "daily_cap",
            "domain_throttle",
        }


class TestLockOrder:
    async def test_a_sender_and_a_run_that_audited_first_do_not_deadlock(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        settings: Settings,
        urls: DatabaseUrls,
    ) -> None:
        """A campaign run audits its drafts and then decides its messages; a send over the API
        decides and then audits. Both take the audit chain's head before the counting lock,
        so neither waits for the other in a circle (PostgreSQL would abort one)."""
        await setup(client, tenant)
        first, second = [
            await approved_draft(client, tenant, f"o{n}@order.example") for n in (1, 2)
        ]
        async with db.session(tenant.id) as run:
            await audit.record(
                run, tenant.id, audit.AuditEntry("draft.generated", target_id=first), now=utcnow()
            )
            sending = asyncio.create_task(queue(db, tenant, settings, [second]))
            await until_a_backend_waits_for_a_lock(urls)
            # The sender waits for the chain's head, holding no counting lock: the run decides.
            key = counting.lock_key(tenant.id, "email")
            async with await psycopg.AsyncConnection.connect(urls.owner) as probe:
                free = await (
                    await probe.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,))
                ).fetchone()
                await probe.rollback()
            assert free == (True,)
            ours = await queueing.queue_drafts(
                run,
                system_principal(tenant.id),
                [queueing.QueueRequest(uuid.UUID(first))],
                settings=settings,
                keys=secret_keys(settings),
                kind=MessageKind.CAMPAIGN,
                now=utcnow(),
            )
        theirs = await asyncio.wait_for(sending, 10)
        assert [a.status for a in queued([*ours, *theirs])] == [MessageStatus.QUEUED] * 2
