"""Signed inbound webhooks over HTTP: verified, replay-refused, stored, processed by a job."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
from sqlalchemy import select

from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.events import OutboxEvent
from leadrelay.core.jobs import JobRuntime, dead_letter_middleware, job_app
from leadrelay.core.signatures import sign_standard_webhook
from leadrelay.inbound.batcher import IntakeBatcher, IntakeUnavailable
from leadrelay.inbound.models import InboundMessage, MessageStatus
from leadrelay.inbound.service import VerifiedDelivery
from tests.factories import TenantCtx, TenantFactory


async def make_endpoint(client: httpx.AsyncClient, tenant: TenantCtx) -> tuple[str, str]:
    response = await client.post(
        "/v1/inbound-endpoints", json={"name": "CRM forms"}, headers=await tenant.headers()
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["url"].endswith(f"/v1/inbound/{body['id']}")
    return body["id"], body["secret"]


def signed(
    secret: str, payload: bytes, *, msg_id: str | None = None, ts: int | None = None
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = ts or int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign_standard_webhook(
            secret=secret, msg_id=msg_id, timestamp=ts, payload=payload
        ),
        "content-type": "application/json",
    }


class TestReceive:
    async def test_accepts_signed_delivery_and_processes_it(
        self,
        client: httpx.AsyncClient,
        tenants: TenantFactory,
        db: Database,
        job_runtime: JobRuntime,
    ) -> None:
        tenant = await tenants.create()
        endpoint_id, secret = await make_endpoint(client, tenant)
        payload = json.dumps({"email": "ada@example.com", "form": "contact"}).encode()
        response = await client.post(
            f"/v1/inbound/{endpoint_id}", content=payload, headers=signed(secret, payload)
        )
        assert response.status_code == 202, response.text
        message_id = uuid.UUID(response.json()["id"])
        await job_app.run_worker_async(
            wait=False,
            install_signal_handlers=False,
            worker_middleware=[dead_letter_middleware],
            listen_notify=False,
        )
        async with db.session(tenant.id) as session:
            message = await session.get(InboundMessage, message_id)
            assert message is not None
            assert message.status == MessageStatus.PROCESSED
            assert message.payload["form"] == "contact"
            events = list(
                await session.scalars(
                    select(OutboxEvent).where(OutboxEvent.type == "inbound.received")
                )
            )
        assert [e.payload["message_id"] for e in events] == [str(message_id)]

    async def test_replayed_delivery_id_is_not_stored_twice(
        self, client: httpx.AsyncClient, tenants: TenantFactory, db: Database
    ) -> None:
        tenant = await tenants.create()
        endpoint_id, secret = await make_endpoint(client, tenant)
        payload = b'{"a":1}'
        headers = signed(secret, payload)
        first = await client.post(f"/v1/inbound/{endpoint_id}", content=payload, headers=headers)
        second = await client.post(f"/v1/inbound/{endpoint_id}", content=payload, headers=headers)
        assert first.status_code == 202
        assert second.status_code == 200
        assert second.json()["status"] == "duplicate"
        async with db.session(tenant.id) as session:
            rows = list(await session.scalars(select(InboundMessage)))
        assert len(rows) == 1

    async def test_rejects_tampered_body(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        endpoint_id, secret = await make_endpoint(client, tenant)
        headers = signed(secret, b'{"amount":1}')
        response = await client.post(
            f"/v1/inbound/{endpoint_id}", content=b'{"amount":9}', headers=headers
        )
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "invalid-signature"

    async def test_rejects_stale_timestamp(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        endpoint_id, secret = await make_endpoint(client, tenant)
        payload = b"{}"
        headers = signed(secret, payload, ts=int(time.time()) - 3600)
        response = await client.post(f"/v1/inbound/{endpoint_id}", content=payload, headers=headers)
        assert response.status_code == 401

    async def test_unknown_endpoint_looks_like_bad_signature(
        self, client: httpx.AsyncClient
    ) -> None:
        payload = b"{}"
        headers = signed("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", payload)
        response = await client.post(
            f"/v1/inbound/{uuid.uuid4()}", content=payload, headers=headers
        )
        assert response.status_code == 401

    async def test_signed_non_object_body_is_a_clear_400(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        endpoint_id, secret = await make_endpoint(client, tenant)
        payload = b"[1, 2, 3]"
        response = await client.post(
            f"/v1/inbound/{endpoint_id}", content=payload, headers=signed(secret, payload)
        )
        assert response.status_code == 400
        assert response.json()["code"] == "invalid-payload"

    async def test_other_tenant_cannot_list_endpoints(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        a, b = await tenants.create(), await tenants.create()
        endpoint_id, _ = await make_endpoint(client, a)
        listed = await client.get("/v1/inbound-endpoints", headers=await b.headers())
        assert listed.status_code == 200
        assert endpoint_id not in {e["id"] for e in listed.json()}


class TestGroupCommit:
    async def test_concurrent_deliveries_are_each_stored_once(
        self, client: httpx.AsyncClient, tenants: TenantFactory, db: Database
    ) -> None:
        a, b = await tenants.create(), await tenants.create()
        endpoint_a, secret_a = await make_endpoint(client, a)
        endpoint_b, secret_b = await make_endpoint(client, b)
        requests = []
        for n in range(120):
            endpoint, secret = (endpoint_a, secret_a) if n % 2 else (endpoint_b, secret_b)
            payload = json.dumps({"n": n}).encode()
            # Every fifth delivery is sent twice at the same time: one is stored, one is a replay.
            headers = signed(secret, payload, msg_id=f"msg_{n}")
            requests.append((endpoint, payload, headers))
            if n % 5 == 0:
                requests.append((endpoint, payload, headers))
        responses = await asyncio.gather(
            *(client.post(f"/v1/inbound/{e}", content=p, headers=h) for e, p, h in requests)
        )
        statuses = [r.status_code for r in responses]
        assert statuses.count(202) == 120
        assert statuses.count(200) == 24
        for tenant in (a, b):
            async with db.session(tenant.id) as session:
                stored = list(await session.scalars(select(InboundMessage.delivery_id)))
            assert len(stored) == 60
            assert len(set(stored)) == 60

    async def test_database_failure_answers_503_and_acknowledges_nothing(self) -> None:
        broken = Database(
            DatabaseUrls(
                owner="postgresql://nobody@127.0.0.1:1/none",
                app="postgresql://nobody@127.0.0.1:1/none",
                app_role="nobody",
                app_password="",
            )
        )
        batcher = IntakeBatcher(broken)
        delivery = VerifiedDelivery(uuid.uuid4(), uuid.uuid4(), "msg_1", {"a": 1})
        try:
            with pytest.raises(IntakeUnavailable):
                await batcher.submit(delivery)
        finally:
            await batcher.close()
            await broken.dispose()
