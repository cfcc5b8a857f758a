"""Outbound webhooks end to end: an event goes into the outbox, the worker fans it out to the
interested endpoints and delivers each one, signed per Standard Webhooks, to a real HTTP server
on loopback; failures retry on the schedule, then dead-letter, and a replay delivers."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.events import DISPATCH_TASK, OutboxEvent, dispatch_event, emit
from leadrelay.core.jobs import JobRuntime, defer
from leadrelay.core.jobs_models import DeadLetter
from leadrelay.core.signatures import verify_standard_webhook
from leadrelay.identity.models import Role
from leadrelay.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from leadrelay.webhooks.service import DELIVER_TASK, MAX_ATTEMPTS, RETRY_SCHEDULE, fan_out
from tests.factories import TenantCtx, TenantFactory
from tests.httpserver import RecordedRequest, RecordingServer, recording_server
from tests.support import jobs_for, make_jobs_due, owner_connection, run_jobs


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with recording_server() as server:
        yield server


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


def unique_path(name: str = "hook") -> str:
    # Unique per test: a later test's server may reuse a port that old retries still target.
    return f"/{name}/{uuid.uuid4().hex}"


async def register(
    client: httpx.AsyncClient,
    tenant: TenantCtx,
    url: str,
    event_types: list[str] | None = None,
) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhook-endpoints",
        json={"url": url, "event_types": event_types or [], "description": "test"},
        headers=await tenant.headers(Role.ADMIN),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def emit_event(
    db: Database, tenant: TenantCtx, event_type: str, payload: dict[str, Any]
) -> uuid.UUID:
    async with db.session(tenant.id) as session:
        event = await emit(session, tenant.id, event_type, payload)
        return event.id


async def deliveries_of(db: Database, tenant: TenantCtx, event_id: uuid.UUID) -> list[Any]:
    async with db.session(tenant.id) as session:
        return list(
            await session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.event_id == event_id)
            )
        )


async def only_delivery(db: Database, tenant: TenantCtx, event_id: uuid.UUID) -> WebhookDelivery:
    (delivery,) = await deliveries_of(db, tenant, event_id)
    assert isinstance(delivery, WebhookDelivery)
    return delivery


def verifies(request: RecordedRequest, *secrets: str, header: str | None = None) -> bool:
    return verify_standard_webhook(
        secrets=list(secrets),
        msg_id=request.headers["webhook-id"],
        timestamp=request.headers["webhook-timestamp"],
        payload=request.body,
        signature_header=header if header is not None else request.headers["webhook-signature"],
        now=utcnow(),
    )


def close_to(value: datetime | None, expected: datetime, seconds: float = 3) -> bool:
    return value is not None and abs((value - expected).total_seconds()) <= seconds


class TestEndpointRegistration:
    async def test_returns_the_secret_once_on_creation(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCtx
    ) -> None:
        created = await register(client, tenant, "https://crm.example.com/hooks", ["lead.created"])
        headers = await tenant.headers()

        secret = created["secret"]
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
        assert (created["url"], created["event_types"], created["is_active"]) == (
            "https://crm.example.com/hooks",
            ["lead.created"],
            True,
        )
        listed = await client.get("/v1/webhook-endpoints", headers=headers)
        fetched = await client.get(f"/v1/webhook-endpoints/{created['id']}", headers=headers)
        assert secret not in listed.text
        assert secret not in fetched.text
        assert "secret" not in fetched.json()
        revealed = await client.get(
            f"/v1/webhook-endpoints/{created['id']}/secret", headers=headers
        )
        assert revealed.json()["secret"] == secret
        async with db.session(tenant.id) as session:
            stored = await session.get(WebhookEndpoint, uuid.UUID(created["id"]))
        assert stored is not None
        assert secret.encode() not in stored.secret_encrypted  # encrypted at rest

    async def test_rejects_urls_that_are_not_http(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        headers = await tenant.headers()
        for url in ("ftp://files.example.com/in", "not a url", "javascript:alert(1)"):
            response = await client.post(
                "/v1/webhook-endpoints", json={"url": url}, headers=headers
            )
            assert response.status_code == 422, url
            assert response.json()["errors"][0]["field"] == "url"

    async def test_updates_filters_and_activity(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        created = await register(client, tenant, "https://crm.example.com/a")
        response = await client.patch(
            f"/v1/webhook-endpoints/{created['id']}",
            json={"event_types": ["b.two", "a.one", "a.one"], "is_active": False},
            headers=await tenant.headers(),
        )
        assert (response.json()["event_types"], response.json()["is_active"]) == (
            ["a.one", "b.two"],
            False,
        )


class TestFanOut:
    async def test_one_delivery_per_interested_active_endpoint(
        self,
        client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
    ) -> None:
        paths = {name: unique_path(name) for name in ("all", "match", "other", "off")}
        everything = await register(client, tenant, receiver.url(paths["all"]))
        matching = await register(
            client, tenant, receiver.url(paths["match"]), ["lead.created", "lead.updated"]
        )
        await register(client, tenant, receiver.url(paths["other"]), ["lead.deleted"])
        inactive = await register(client, tenant, receiver.url(paths["off"]))
        await client.patch(
            f"/v1/webhook-endpoints/{inactive['id']}",
            json={"is_active": False},
            headers=await tenant.headers(),
        )

        event_id = await emit_event(db, tenant, "lead.created", {"lead_id": "L-1"})
        await run_jobs()

        deliveries = await deliveries_of(db, tenant, event_id)
        assert {str(d.endpoint_id) for d in deliveries} == {everything["id"], matching["id"]}
        assert {d.status for d in deliveries} == {DeliveryStatus.DELIVERED}
        assert {r.path for r in receiver.received() if r.path in paths.values()} == {
            paths["all"],
            paths["match"],
        }
        async with db.session(tenant.id) as session:
            event = await session.get(OutboxEvent, event_id)
        assert event is not None
        assert event.dispatched_at is not None

    async def test_never_crosses_tenants(
        self,
        client: httpx.AsyncClient,
        db: Database,
        tenants: TenantFactory,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
    ) -> None:
        a, b = await tenants.create(), await tenants.create()
        path_a, path_b = unique_path("a"), unique_path("b")
        await register(client, a, receiver.url(path_a))
        await register(client, b, receiver.url(path_b))

        await emit_event(db, a, "lead.created", {"lead_id": "A-1"})
        await run_jobs()

        assert len(receiver.received(path_a)) == 1
        assert receiver.received(path_b) == []

    async def test_dispatching_an_event_again_creates_no_duplicate(
        self,
        client: httpx.AsyncClient,
        db: Database,
        urls: DatabaseUrls,
        tenant: TenantCtx,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
    ) -> None:
        path = unique_path()
        await register(client, tenant, receiver.url(path))
        event_id = await emit_event(db, tenant, "lead.created", {"lead_id": "L-2"})
        await run_jobs()
        delivery = await only_delivery(db, tenant, event_id)

        async with db.session(tenant.id) as session:
            assert await dispatch_event(session, event_id, now=utcnow()) is False
        # A dispatch that ran its handlers but died before marking the event dispatched:
        with owner_connection(urls) as connection:
            connection.execute(
                "UPDATE outbox_events SET dispatched_at = NULL WHERE id = %s", (event_id,)
            )
        async with db.session(tenant.id) as session:
            assert await dispatch_event(session, event_id, now=utcnow()) is True
            event = await session.get(OutboxEvent, event_id)
            assert event is not None
            await fan_out(session, event)
        async with db.session(tenant.id) as session:
            await defer(session, DISPATCH_TASK, tenant_id=tenant.id, event_id=event_id)
            await defer(session, DELIVER_TASK, tenant_id=tenant.id, delivery_id=delivery.id)
        await run_jobs()

        assert [d.id for d in await deliveries_of(db, tenant, event_id)] == [delivery.id]
        assert len(receiver.received(path)) == 1  # a delivered delivery is not sent again

    async def test_an_event_rolled_back_never_leaves(
        self,
        client: httpx.AsyncClient,
        db: Database,
        urls: DatabaseUrls,
        tenant: TenantCtx,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
    ) -> None:
        path = unique_path()
        await register(client, tenant, receiver.url(path))

        class Abort(Exception):
            pass

        emitted: list[uuid.UUID] = []

        async def emit_then_fail() -> None:
            async with db.session(tenant.id) as session:
                emitted.append((await emit(session, tenant.id, "lead.created", {})).id)
                raise Abort

        with pytest.raises(Abort):
            await emit_then_fail()
        await run_jobs()

        (event_id,) = emitted
        assert jobs_for(urls, DISPATCH_TASK, event_id=str(event_id)) == []
        async with db.session(tenant.id) as session:
            assert await session.get(OutboxEvent, event_id) is None
        assert receiver.received(path) == []


class TestDelivery:
    async def test_sends_a_signed_standard_webhook(
        self,
        client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
    ) -> None:
        path = unique_path()
        endpoint = await register(client, tenant, receiver.url(path))
        payload = {"lead_id": "L-3", "score": 87, "tags": ["hot"]}

        sent_after = utcnow()
        event_id = await emit_event(db, tenant, "lead.scored", payload)
        await run_jobs()

        (request,) = receiver.received(path)
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == "LeadRelay-Webhooks/1"
        assert request.headers["webhook-id"] == f"msg_{event_id.hex}"
        timestamp = int(request.headers["webhook-timestamp"])
        assert int(sent_after.timestamp()) - 1 <= timestamp <= int(utcnow().timestamp()) + 1
        assert len(request.headers["webhook-signature"].split()) == 1
        assert verifies(request, endpoint["secret"])
        assert not verifies(request, "whsec_" + base64.b64encode(b"x" * 32).decode())
        forged = RecordedRequest(
            request.method, request.path, request.headers, request.body.replace(b"87", b"99")
        )
        assert not verifies(forged, endpoint["secret"])
        body = json.loads(request.body)
        assert body["type"] == "lead.scored"
        assert body["data"] == payload
        assert datetime.fromisoformat(body["timestamp"]) >= sent_after - timedelta(seconds=1)

        delivery = await only_delivery(db, tenant, event_id)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            DeliveryStatus.DELIVERED,
            1,
            200,
        )
        assert (delivery.last_error, delivery.next_attempt_at) == (None, None)
        assert close_to(delivery.delivered_at, utcnow(), 10)
        listed = await client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}/deliveries",
            headers=await tenant.headers(Role.OPERATOR),
        )
        assert [(d["id"], d["status"]) for d in listed.json()] == [(str(delivery.id), "delivered")]

    async def test_a_failed_attempt_schedules_the_first_retry(
        self,
        client: httpx.AsyncClient,
        db: Database,
        urls: DatabaseUrls,
        tenant: TenantCtx,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
    ) -> None:
        receiver.default_status = 500
        path = unique_path()
        await register(client, tenant, receiver.url(path))
        event_id = await emit_event(db, tenant, "lead.created", {"lead_id": "L-4"})

        await run_jobs()
        finished = utcnow()

        delivery = await only_delivery(db, tenant, event_id)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            DeliveryStatus.RETRYING,
            1,
            500,
        )
        assert delivery.last_error == "HTTP 500: status 500"
        assert close_to(delivery.next_attempt_at, finished + timedelta(seconds=5))
        first, retry = jobs_for(urls, DELIVER_TASK, delivery_id=str(delivery.id))
        assert first["status"] == "succeeded"  # the job ran; the delivery failed
        assert retry["status"] == "todo"
        assert delivery.next_attempt_at is not None
        assert close_to(retry["scheduled_at"], delivery.next_attempt_at, 1)
        assert len(receiver.received(path)) == 1

    @pytest.mark.parametrize("status", [302, 404, 410, 503])
    async def test_any_non_2xx_answer_is_a_failure(
        self,
        client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
        status: int,
    ) -> None:
        receiver.respond_with(status)
        await register(client, tenant, receiver.url(unique_path()))
        event_id = await emit_event(db, tenant, "lead.created", {})
        await run_jobs()
        delivery = await only_delivery(db, tenant, event_id)
        assert (delivery.status, delivery.last_status_code) == (DeliveryStatus.RETRYING, status)

    async def test_an_unreachable_endpoint_is_retried(
        self,
        client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
        job_runtime: JobRuntime,
    ) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        await register(client, tenant, f"http://127.0.0.1:{closed_port}{unique_path()}")
        event_id = await emit_event(db, tenant, "lead.created", {})

        await run_jobs()

        delivery = await only_delivery(db, tenant, event_id)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            DeliveryStatus.RETRYING,
            1,
            None,
        )
        assert delivery.last_error is not None
        assert delivery.last_error.startswith("ConnectError")

    async def test_refuses_private_targets_unless_allowed(
        self,
        client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(job_runtime.settings, "webhook_allow_private_targets", False)
        path = unique_path()
        await register(client, tenant, receiver.url(path))
        event_id = await emit_event(db, tenant, "lead.created", {})

        await run_jobs()

        delivery = await only_delivery(db, tenant, event_id)
        assert delivery.status == DeliveryStatus.RETRYING
        assert delivery.last_error == "refused: the endpoint resolves to a private address"
        assert receiver.received(path) == []


class TestRetrySchedule:
    async def test_fails_after_the_last_attempt_then_a_replay_delivers(
        self,
        client: httpx.AsyncClient,
        db: Database,
        urls: DatabaseUrls,
        tenant: TenantCtx,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
    ) -> None:
        receiver.default_status = 500
        path = unique_path()
        await register(client, tenant, receiver.url(path))
        event_id = await emit_event(db, tenant, "lead.created", {"lead_id": "L-5"})
        await run_jobs()
        delivery_id = (await only_delivery(db, tenant, event_id)).id

        assert len(RETRY_SCHEDULE) + 1 == MAX_ATTEMPTS
        for attempt in range(2, MAX_ATTEMPTS + 1):
            assert make_jobs_due(urls, DELIVER_TASK, delivery_id=str(delivery_id)) == 1
            await run_jobs()
            finished = utcnow()
            delivery = await only_delivery(db, tenant, event_id)
            assert delivery.attempts == attempt
            if attempt < MAX_ATTEMPTS:
                assert delivery.status == DeliveryStatus.RETRYING
                wait = timedelta(seconds=RETRY_SCHEDULE[attempt - 1])
                assert close_to(delivery.next_attempt_at, finished + wait)

        assert delivery.status == DeliveryStatus.FAILED
        assert delivery.next_attempt_at is None
        assert not [
            j
            for j in jobs_for(urls, DELIVER_TASK, delivery_id=str(delivery_id))
            if j["status"] == "todo"
        ]
        requests = receiver.received(path)
        assert len(requests) == MAX_ATTEMPTS
        assert {r.headers["webhook-id"] for r in requests} == {f"msg_{event_id.hex}"}
        async with db.session(tenant.id) as session:
            (letter,) = await session.scalars(
                select(DeadLetter).where(DeadLetter.task_name == DELIVER_TASK)
            )
        assert letter.payload == {"tenant_id": str(tenant.id), "delivery_id": str(delivery_id)}
        assert (letter.attempts, letter.error) == (MAX_ATTEMPTS, "HTTP 500: status 500")

        receiver.default_status = 200
        replayed = await client.post(
            f"/v1/dead-letters/{letter.id}/replay", headers=await tenant.headers(Role.OPERATOR)
        )
        assert replayed.status_code == 200
        reset = await only_delivery(db, tenant, event_id)
        assert (reset.status, reset.attempts) == (DeliveryStatus.PENDING, 0)

        await run_jobs()

        delivered = await only_delivery(db, tenant, event_id)
        assert (delivered.status, delivered.attempts, delivered.last_status_code) == (
            DeliveryStatus.DELIVERED,
            1,
            200,
        )
        assert len(receiver.received(path)) == MAX_ATTEMPTS + 1

    async def test_a_success_on_a_retry_stops_the_schedule(
        self,
        client: httpx.AsyncClient,
        db: Database,
        urls: DatabaseUrls,
        tenant: TenantCtx,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
    ) -> None:
        receiver.respond_with(503, 502)
        path = unique_path()
        await register(client, tenant, receiver.url(path))
        event_id = await emit_event(db, tenant, "lead.created", {})
        await run_jobs()
        delivery_id = str((await only_delivery(db, tenant, event_id)).id)
        for _ in range(2):
            make_jobs_due(urls, DELIVER_TASK, delivery_id=delivery_id)
            await run_jobs()

        delivery = await only_delivery(db, tenant, event_id)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 3)
        assert make_jobs_due(urls, DELIVER_TASK, delivery_id=delivery_id) == 0
        assert [r.path for r in receiver.received(path)] == [path] * 3

    async def test_the_delivery_log_keeps_every_attempt(
        self,
        client: httpx.AsyncClient,
        db: Database,
        urls: DatabaseUrls,
        tenant: TenantCtx,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
    ) -> None:
        receiver.respond_with(500)
        endpoint = await register(client, tenant, receiver.url(unique_path()))
        event_id = await emit_event(db, tenant, "lead.created", {})
        await run_jobs()
        delivery_id = str((await only_delivery(db, tenant, event_id)).id)
        make_jobs_due(urls, DELIVER_TASK, delivery_id=delivery_id)
        await run_jobs()

        response = await client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/{delivery_id}/attempts",
            headers=await tenant.headers(Role.OPERATOR),
        )
        assert response.status_code == 200, response.text
        log = response.json()
        assert [(a["attempt"], a["status_code"]) for a in log] == [(1, 500), (2, 200)]
        assert log[0]["error"].startswith("HTTP 500")
        assert log[1]["error"] is None
        assert all(a["duration_ms"] >= 0 for a in log)

    async def test_a_deactivated_endpoint_stops_its_retries(
        self,
        client: httpx.AsyncClient,
        db: Database,
        urls: DatabaseUrls,
        tenant: TenantCtx,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
    ) -> None:
        receiver.respond_with(500)
        path = unique_path()
        endpoint = await register(client, tenant, receiver.url(path))
        event_id = await emit_event(db, tenant, "lead.created", {})
        await run_jobs()
        await client.patch(
            f"/v1/webhook-endpoints/{endpoint['id']}",
            json={"is_active": False},
            headers=await tenant.headers(Role.ADMIN),
        )
        delivery_id = str((await only_delivery(db, tenant, event_id)).id)
        make_jobs_due(urls, DELIVER_TASK, delivery_id=delivery_id)
        await run_jobs()

        delivery = await only_delivery(db, tenant, event_id)
        assert delivery.status == DeliveryStatus.FAILED
        assert delivery.last_error == "cancelled: the endpoint was deactivated"
        assert len(receiver.received(path)) == 1


class TestSecretRotation:
    async def test_both_secrets_sign_during_the_overlap_then_only_the_new(
        self,
        client: httpx.AsyncClient,
        db: Database,
        urls: DatabaseUrls,
        tenant: TenantCtx,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
    ) -> None:
        path = unique_path()
        endpoint = await register(client, tenant, receiver.url(path))
        old = endpoint["secret"]
        headers = await tenant.headers(Role.ADMIN)

        rotated = await client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=headers
        )

        assert rotated.status_code == 200
        new = rotated.json()["secret"]
        assert new.startswith("whsec_")
        assert new != old
        expires = datetime.fromisoformat(rotated.json()["previous_secret_expires_at"])
        assert close_to(expires, utcnow() + timedelta(hours=24), 10)
        revealed = await client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}/secret", headers=headers
        )
        assert revealed.json()["secret"] == new

        await emit_event(db, tenant, "lead.created", {"n": 1})
        await run_jobs()
        (during,) = receiver.received(path)
        entries = during.headers["webhook-signature"].split(" ")
        assert len(entries) == 2
        assert all(e.startswith("v1,") for e in entries)
        assert verifies(during, old)
        assert verifies(during, new)
        assert verifies(during, new, header=entries[0])  # the current secret signs first
        assert verifies(during, old, header=entries[1])

        with owner_connection(urls) as connection:
            connection.execute(
                "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 s' "
                "WHERE id = %s",
                (endpoint["id"],),
            )
        await emit_event(db, tenant, "lead.created", {"n": 2})
        await run_jobs()
        _, after = receiver.received(path)
        assert len(after.headers["webhook-signature"].split()) == 1
        assert verifies(after, new)
        assert not verifies(after, old)

    async def test_a_second_rotation_retires_the_oldest_secret(
        self,
        client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCtx,
        receiver: RecordingServer,
        job_runtime: JobRuntime,
    ) -> None:
        path = unique_path()
        endpoint = await register(client, tenant, receiver.url(path))
        headers = await tenant.headers()
        rotate = f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret"
        middle = (await client.post(rotate, headers=headers)).json()["secret"]
        newest = (await client.post(rotate, headers=headers)).json()["secret"]

        await emit_event(db, tenant, "lead.created", {})
        await run_jobs()

        (request,) = receiver.received(path)
        assert verifies(request, newest)
        assert verifies(request, middle)
        assert not verifies(request, endpoint["secret"])

    async def test_audits_the_rotation_without_the_secret(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        endpoint = await register(client, tenant, "https://crm.example.com/rotate")
        headers = await tenant.headers()
        rotated = await client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=headers
        )
        audit = await client.get("/v1/audit", params={"target_id": endpoint["id"]}, headers=headers)
        assert [e["action"] for e in audit.json()] == [
            "webhook_endpoint.secret_rotated",
            "webhook_endpoint.created",
        ]
        assert audit.json()[0]["data"] == {"overlap_seconds": 24 * 3600}
        assert rotated.json()["secret"] not in audit.text
        assert endpoint["secret"] not in audit.text
