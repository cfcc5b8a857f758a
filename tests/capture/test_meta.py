"""Meta Lead Ads over real HTTP: provider configuration, the verification challenge, signed
leadgen webhooks (Meta's own example payloads), and the job that fetches each lead from a
Graph API served on loopback and captures it through intake."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from leadrelay.capture import intake, meta
from leadrelay.capture.meta import Provider
from leadrelay.capture.models import ExternalId, Lead, Source
from leadrelay.compliance.models import AuditEvent
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.jobs import JobRuntime, defer
from leadrelay.core.jobs_models import DeadLetter
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role
from leadrelay.inbound.service import InvalidPayload
from tests.capture.graph_server import GraphServer, graph_server
from tests.capture.test_intake_api import make_source
from tests.factories import TenantCtx, TenantFactory
from tests.support import jobs_for, make_jobs_due, run_jobs

FIXTURES = Path(__file__).parent / "fixtures"
PROBLEM_JSON = "application/problem+json"
APP_SECRET = "fictional-app-secret-0123456789abcdef"
VERIFY_TOKEN = "meatyhamhock"  # the sample value of Meta's Getting Started guide
ACCESS_TOKEN = "EAAFictionalPageToken0123456789"
VERSION = "/v21.0"
TASK = meta.META_FETCH_TASK


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"}


def graph_lead(leadgen_id: str, *, email: str = "joe@example.com") -> dict[str, Any]:
    lead: dict[str, Any] = fixture("meta_graph_lead.json")
    lead["id"] = leadgen_id
    for item in lead["field_data"]:
        if item["name"] == "email":
            item["values"] = [email]
    return lead


def leadgen_webhook(*leadgen_ids: str) -> bytes:
    """Meta's example webhook, with its changes repeated for the given leadgen ids."""
    payload = fixture("meta_leadgen_webhook.json")
    template = payload["entry"][0]["changes"][0]
    payload["entry"][0]["changes"] = [
        {**template, "value": {**template["value"], "leadgen_id": int(leadgen_id)}}
        for leadgen_id in leadgen_ids
    ]
    return json.dumps(payload).encode()


async def configure(
    client: httpx.AsyncClient,
    tenant: TenantCtx,
    source_id: str,
    *,
    provider: str = "meta_lead_ads",
    graph_base_url: str | None = None,
    app_secret: str = APP_SECRET,
) -> httpx.Response:
    body: dict[str, Any] = {
        "provider": provider,
        "app_secret": app_secret,
        "verify_token": VERIFY_TOKEN,
        "access_token": ACCESS_TOKEN,
    }
    if graph_base_url is not None:
        body["graph_base_url"] = graph_base_url
    return await client.put(
        f"/v1/sources/{source_id}/provider-config",
        json=body,
        headers=await tenant.headers(Role.ADMIN),
    )


async def meta_source(
    client: httpx.AsyncClient,
    tenant: TenantCtx,
    graph: GraphServer | None = None,
    *,
    vet: bool = True,
) -> str:
    source = await make_source(client, tenant, "Meta Lead Ads", vet=vet)
    response = await configure(
        client, tenant, source["id"], graph_base_url=graph.url(VERSION) if graph else None
    )
    assert response.status_code == 200, response.text
    return str(source["id"])


async def count_leads(db: Database, tenant: TenantCtx) -> int:
    async with db.session(tenant.id) as session:
        return int(await session.scalar(select(func.count()).select_from(Lead)) or 0)


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


@pytest.fixture
def graph() -> Iterator[GraphServer]:
    with graph_server() as server:
        yield server


class TestProviderConfig:
    async def test_stores_secrets_encrypted_and_never_echoes_them(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, settings: Settings
    ) -> None:
        source = await make_source(client, tenant, "Meta Lead Ads")
        response = await configure(client, tenant, source["id"])
        assert response.status_code == 200, response.text
        body = response.json()
        assert body == {
            "source_id": source["id"],
            "provider": "meta_lead_ads",
            "callback_url": f"{settings.public_url}/v1/inbound/meta/{source['id']}",
            "graph_base_url": settings.meta_graph_base_url,
            "configured": {"app_secret": True, "verify_token": True, "access_token": True},
        }
        for secret in (APP_SECRET, VERIFY_TOKEN, ACCESS_TOKEN):
            assert secret not in response.text
        async with db.session(tenant.id) as session:
            stored = await session.get(Source, uuid.UUID(source["id"]))
            assert stored is not None
            assert stored.config_encrypted is not None
            assert APP_SECRET.encode() not in stored.config_encrypted
            audit = await session.scalar(
                select(AuditEvent).where(AuditEvent.action == "source.provider_configured")
            )
        assert audit is not None
        assert audit.data == {
            "provider": "meta_lead_ads",
            "replaced": False,
            "custom_graph_base_url": False,
        }
        for secret in (APP_SECRET, VERIFY_TOKEN, ACCESS_TOKEN):
            assert secret not in json.dumps(audit.data)

    async def test_lead_ads_needs_an_access_token_and_a_sane_graph_url(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        source = await make_source(client, tenant, "Meta Lead Ads")
        headers = await tenant.headers(Role.ADMIN)
        base = {"provider": "meta_lead_ads", "app_secret": "s", "verify_token": "v"}
        missing = await client.put(
            f"/v1/sources/{source['id']}/provider-config", json=base, headers=headers
        )
        assert missing.status_code == 422
        assert missing.json()["errors"][0]["field"] == "access_token"
        bad_url = await client.put(
            f"/v1/sources/{source['id']}/provider-config",
            json={**base, "access_token": "t", "graph_base_url": "ftp://graph.example/v21.0"},
            headers=headers,
        )
        assert bad_url.status_code == 422
        assert bad_url.json()["errors"][0]["field"] == "graph_base_url"

    async def test_another_tenants_source_is_404_and_a_rep_is_403(
        self, client: httpx.AsyncClient, tenant: TenantCtx, tenants: TenantFactory
    ) -> None:
        source = await make_source(client, tenant, "Meta Lead Ads")
        other = await tenants.create()
        response = await configure(client, other, source["id"])
        assert response.status_code == 404
        rep = await client.put(
            f"/v1/sources/{source['id']}/provider-config",
            json={"provider": "whatsapp", "app_secret": "s", "verify_token": "v"},
            headers=await tenant.headers(Role.REP),
        )
        assert rep.status_code == 403


class TestVerification:
    async def test_answers_the_challenge_as_plain_text(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        source_id = await meta_source(client, tenant, vet=False)
        response = await client.get(
            f"/v1/inbound/meta/{source_id}", params=fixture("meta_verification_request.json")
        )
        assert response.status_code == 200
        assert response.text == "1158201444"
        assert response.headers["content-type"].startswith("text/plain")

    async def test_anything_else_is_a_403_problem(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        source_id = await meta_source(client, tenant)
        good = fixture("meta_verification_request.json")
        whatsapp = await make_source(client, tenant, "WhatsApp")
        await configure(client, tenant, whatsapp["id"], provider="whatsapp")
        for path, params in (
            (source_id, {**good, "hub.verify_token": "meatyhamhocK"}),
            (source_id, {**good, "hub.mode": "unsubscribe"}),
            (source_id, {k: v for k, v in good.items() if k != "hub.verify_token"}),
            (source_id, {k: v for k, v in good.items() if k != "hub.challenge"}),
            (source_id, {**good, "hub.challenge": "<script>alert(1)</script>"}),
            (str(uuid.uuid4()), good),
            (whatsapp["id"], good),  # configured for WhatsApp, not Lead Ads
        ):
            response = await client.get(f"/v1/inbound/meta/{path}", params=params)
            assert response.status_code == 403, params
            assert response.headers["content-type"] == PROBLEM_JSON
            assert response.json()["code"] == "verification-failed"


class TestReceive:
    async def test_signed_leadgen_is_fetched_and_captured(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        graph: GraphServer,
        settings: Settings,
        job_runtime: JobRuntime,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # No graph_base_url on the source: the setting's default is used.
        monkeypatch.setattr(settings, "meta_graph_base_url", graph.url(VERSION))
        source_id = await meta_source(client, tenant)
        graph.serve(f"{VERSION}/123123123123", (200, fixture("meta_graph_lead.json")))
        graph.serve(f"{VERSION}/123123123124", (200, graph_lead("123123123124")))
        body = json.dumps(fixture("meta_leadgen_webhook.json")).encode()

        response = await client.post(
            f"/v1/inbound/meta/{source_id}", content=body, headers=signed(body)
        )

        assert response.status_code == 200, response.text
        assert response.json() == {
            "accepted": 2,
            "duplicates": 0,
            "ignored": 0,
            "ignored_fields": {},
        }
        await run_jobs()
        requests = graph.received()
        assert [r.path for r in requests] == [f"{VERSION}/123123123123", f"{VERSION}/123123123124"]
        assert requests[0].method == "GET"
        assert requests[0].query == {
            "access_token": ACCESS_TOKEN,
            "appsecret_proof": hmac.new(
                APP_SECRET.encode(), ACCESS_TOKEN.encode(), hashlib.sha256
            ).hexdigest(),
        }
        headers = await tenant.headers(Role.REP)
        leads = (await client.get("/v1/leads", headers=headers)).json()
        # The two submissions are the same person (same e-mail): one lead, two leadgen ids.
        assert len(leads) == 1
        detail = (await client.get(f"/v1/leads/{leads[0]['id']}", headers=headers)).json()
        assert detail["full_name"] == "Joe Example"
        assert detail["email"] == "joe@example.com"
        assert detail["domain"] == "example.com"
        assert detail["source_id"] == source_id
        assert sorted(e["external_id"] for e in detail["external_ids"]) == [
            "123123123123",
            "123123123124",
        ]
        provenance = {(o["field"], o["raw_value"]) for o in detail["provenance"]}
        assert ("email", "joe@example.com") in provenance
        assert ("full_name", "Joe Example") in provenance
        # Custom questions are kept with the provenance, never as lead fields.
        assert ("answer:car_make", "Honda") in provenance
        assert ("answer:selected_dealer", "99213450") in provenance
        assert {o["source_id"] for o in detail["provenance"]} == {source_id}

    async def test_tampered_and_unsigned_bodies_are_401(
        self, client: httpx.AsyncClient, tenant: TenantCtx, urls: DatabaseUrls
    ) -> None:
        source_id = await meta_source(client, tenant)
        body = leadgen_webhook("900000000001")
        tampered = body.replace(b"900000000001", b"900000000002")
        for content, headers in (
            (tampered, signed(body)),
            (body, {"content-type": "application/json"}),
            (body, signed(body, secret="another-app-secret")),
            (body, {**signed(body), "x-hub-signature-256": "sha1=" + "0" * 40}),
        ):
            response = await client.post(
                f"/v1/inbound/meta/{source_id}", content=content, headers=headers
            )
            assert response.status_code == 401, response.text
            assert response.headers["content-type"] == PROBLEM_JSON
            assert response.json()["code"] == "invalid-signature"
        assert jobs_for(urls, TASK, source_id=source_id) == []

    async def test_replayed_leadgen_is_a_duplicate_and_fetched_once(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        graph: GraphServer,
        db: Database,
        job_runtime: JobRuntime,
    ) -> None:
        source_id = await meta_source(client, tenant, graph)
        graph.serve(f"{VERSION}/900000000011", (200, graph_lead("900000000011")))
        body = leadgen_webhook("900000000011")
        first = await client.post(
            f"/v1/inbound/meta/{source_id}", content=body, headers=signed(body)
        )
        await run_jobs()
        again = await client.post(
            f"/v1/inbound/meta/{source_id}", content=body, headers=signed(body)
        )
        twice = leadgen_webhook("900000000011", "900000000011")
        repeated = await client.post(
            f"/v1/inbound/meta/{source_id}", content=twice, headers=signed(twice)
        )
        await run_jobs()
        assert first.json()["accepted"] == 1
        assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 1)
        assert (repeated.json()["accepted"], repeated.json()["duplicates"]) == (0, 2)
        assert len(graph.received()) == 1
        assert await count_leads(db, tenant) == 1

    async def test_a_replayed_job_creates_no_second_lead(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        graph: GraphServer,
        db: Database,
        job_runtime: JobRuntime,
    ) -> None:
        source_id = await meta_source(client, tenant, graph)
        graph.serve(f"{VERSION}/900000000021", (200, graph_lead("900000000021")))
        body = leadgen_webhook("900000000021")
        await client.post(f"/v1/inbound/meta/{source_id}", content=body, headers=signed(body))
        await run_jobs()
        # The same job again (a dead-letter replay, a duplicate delivery of the queue).
        async with db.session(tenant.id) as session:
            await defer(
                session,
                TASK,
                tenant_id=str(tenant.id),
                source_id=source_id,
                leadgen_id="900000000021",
            )
        await run_jobs()
        assert len(graph.received()) == 1  # done already: not even fetched again
        assert await count_leads(db, tenant) == 1
        async with db.session(tenant.id) as session:
            source = await session.get(Source, uuid.UUID(source_id))
            assert source is not None
            # Capturing the same fetched lead twice is a duplicate, thanks to its external id.
            mapped = meta.map_lead(
                graph_lead("900000000021", email="other@example.org"), leadgen_id="900000000021"
            )
            result = await meta.capture_meta_lead(
                session, source, mapped, policy=intake.CapturePolicy(), now=utcnow()
            )
            assert result.status == intake.RowStatus.DUPLICATE
            ids = list(await session.scalars(select(ExternalId.external_id)))
        assert ids == ["900000000021"]
        assert await count_leads(db, tenant) == 1

    async def test_unvetted_and_blocked_sources_are_refused_and_audited(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, urls: DatabaseUrls
    ) -> None:
        pending = await meta_source(client, tenant, vet=False)
        body = leadgen_webhook("900000000031")
        response = await client.post(
            f"/v1/inbound/meta/{pending}", content=body, headers=signed(body)
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["code"] == "source-refused"
        assert response.json()["errors"][0]["type"] == "not-vetted"
        headers = await tenant.headers(Role.ADMIN)
        await client.patch(f"/v1/sources/{pending}", json={"status": "vetted"}, headers=headers)
        await client.patch(f"/v1/sources/{pending}", json={"status": "blocked"}, headers=headers)
        blocked = await client.post(
            f"/v1/inbound/meta/{pending}", content=body, headers=signed(body)
        )
        assert blocked.status_code == 422
        assert blocked.json()["errors"][0]["type"] == "blocked"
        assert jobs_for(urls, TASK, source_id=pending) == []
        async with db.session(tenant.id) as session:
            reasons = list(
                await session.scalars(
                    select(AuditEvent.data["reason"].astext).where(
                        AuditEvent.action == "provider_webhook.refused"
                    )
                )
            )
        assert sorted(reasons) == ["blocked", "not-vetted"]

    async def test_another_tenants_source_cannot_be_used_with_our_secret(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        tenants: TenantFactory,
        urls: DatabaseUrls,
    ) -> None:
        await meta_source(client, tenant)  # tenant A, signing with APP_SECRET
        other = await tenants.create()
        theirs = await make_source(client, other, "Meta Lead Ads")
        await configure(client, other, theirs["id"], app_secret="tenant-b-app-secret")
        body = leadgen_webhook("900000000041")
        response = await client.post(
            f"/v1/inbound/meta/{theirs['id']}", content=body, headers=signed(body)
        )
        assert response.status_code == 401
        assert jobs_for(urls, TASK, source_id=theirs["id"]) == []

    async def test_bad_bodies_are_400_and_other_fields_are_counted_as_ignored(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        graph: GraphServer,
        job_runtime: JobRuntime,
    ) -> None:
        source_id = await meta_source(client, tenant, graph)
        url = f"/v1/inbound/meta/{source_id}"
        whatsapp = json.dumps(fixture("whatsapp_text_message.json")).encode()
        change = {"field": "leadgen", "value": {"form_id": 1}}
        no_id = json.dumps({"object": "page", "entry": [{"id": "1", "changes": [change]}]}).encode()
        for content, code in (
            (b"{not json", "invalid-payload"),
            (b"[]", "invalid-payload"),
            (whatsapp, "unexpected-object"),
            (no_id, "invalid-payload"),
        ):
            response = await client.post(url, content=content, headers=signed(content))
            assert response.status_code == 400, content
            assert response.headers["content-type"] == PROBLEM_JSON
            assert response.json()["code"] == code
        payload = json.loads(leadgen_webhook("900000000051"))
        payload["entry"][0]["changes"].append({"field": "feed", "value": {"item": "status"}})
        payload["entry"].append({"id": "1", "time": 1, "messaging": [{"message": {}}]})
        graph.serve(f"{VERSION}/900000000051", (200, graph_lead("900000000051")))
        body = json.dumps(payload).encode()
        response = await client.post(url, content=body, headers=signed(body))
        assert response.json() == {
            "accepted": 1,
            "duplicates": 0,
            "ignored": 2,
            "ignored_fields": {"feed": 1, "messaging": 1},
        }
        await run_jobs()


class TestFetchJob:
    async def test_graph_5xx_is_retried_then_the_lead_is_captured(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        graph: GraphServer,
        db: Database,
        urls: DatabaseUrls,
        job_runtime: JobRuntime,
    ) -> None:
        source_id = await meta_source(client, tenant, graph)
        path = f"{VERSION}/900000000061"
        unavailable = {
            "error": {
                "message": "Service temporarily unavailable",
                "type": "OAuthException",
                "code": 2,
                "is_transient": True,
            }
        }
        graph.serve(path, (500, unavailable), (200, graph_lead("900000000061")))
        body = leadgen_webhook("900000000061")
        await client.post(f"/v1/inbound/meta/{source_id}", content=body, headers=signed(body))

        await run_jobs()
        assert await count_leads(db, tenant) == 0
        assert make_jobs_due(urls, TASK, leadgen_id="900000000061") == 1
        await run_jobs()

        assert len(graph.received(path)) == 2
        assert await count_leads(db, tenant) == 1
        (job,) = jobs_for(urls, TASK, leadgen_id="900000000061")
        assert (job["status"], job["attempts"]) == ("succeeded", 2)
        async with db.session(tenant.id) as session:
            letters = await session.scalar(
                select(func.count()).select_from(DeadLetter).where(DeadLetter.task_name == TASK)
            )
        assert letters == 0

    async def test_graph_4xx_is_a_dead_letter_after_one_try(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        graph: GraphServer,
        db: Database,
        urls: DatabaseUrls,
        job_runtime: JobRuntime,
    ) -> None:
        source_id = await meta_source(client, tenant, graph)
        path = f"{VERSION}/900000000071"
        graph.serve(path, (400, fixture("meta_graph_error.json")))
        body = leadgen_webhook("900000000071")
        await client.post(f"/v1/inbound/meta/{source_id}", content=body, headers=signed(body))

        await run_jobs()

        assert len(graph.received(path)) == 1
        (job,) = jobs_for(urls, TASK, leadgen_id="900000000071")
        assert job["status"] == "failed"
        async with db.session(tenant.id) as session:
            (letter,) = list(
                await session.scalars(select(DeadLetter).where(DeadLetter.task_name == TASK))
            )
        assert letter.attempts == 1
        assert letter.payload["leadgen_id"] == "900000000071"
        assert "HTTP 400 OAuthException code 190 subcode 460" in letter.error
        assert "Message describing the error" in letter.error
        assert "fbtrace_id EJplcsCHuLu" in letter.error
        assert ACCESS_TOKEN not in letter.error
        assert await count_leads(db, tenant) == 0

    async def test_an_unknown_lead_and_a_rejected_lead_are_dead_letters(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        graph: GraphServer,
        db: Database,
        job_runtime: JobRuntime,
    ) -> None:
        source_id = await meta_source(client, tenant, graph)
        no_contact = copy.deepcopy(graph_lead("900000000082"))
        no_contact["field_data"] = [{"name": "full_name", "values": ["Nobody"]}]
        graph.serve(f"{VERSION}/900000000082", (200, no_contact))
        body = leadgen_webhook("900000000081", "900000000082")  # 081 is unknown to Graph
        await client.post(f"/v1/inbound/meta/{source_id}", content=body, headers=signed(body))

        await run_jobs()

        async with db.session(tenant.id) as session:
            letters = {
                letter.payload["leadgen_id"]: letter.error
                for letter in await session.scalars(
                    select(DeadLetter).where(DeadLetter.task_name == TASK)
                )
            }
            rejected = await session.scalar(
                select(AuditEvent).where(AuditEvent.action == "leads.captured")
            )
        assert "HTTP 404 GraphMethodException code 100" in letters["900000000081"]
        assert "rejected by intake: no_valid_contact" in letters["900000000082"]
        assert rejected is not None
        assert rejected.data["rejected"] == 1  # the rejection is audited as well


class TestMapping:
    def test_maps_meta_standard_questions_and_keeps_the_rest_as_answers(self) -> None:
        lead = {
            "id": "1",
            "field_data": [
                {"name": "email", "values": ["ada@analytical.engines"]},
                {"name": "phone_number", "values": ["+447946000000"]},
                {"name": "first_name", "values": ["Ada"]},
                {"name": "last_name", "values": ["Lovelace"]},
                {"name": "company_name", "values": ["Analytical Engines"]},
                {"name": "job_title", "values": ["Countess"]},
                {"name": "city", "values": ["London"]},
                {"name": "country", "values": ["GB"]},
                {"name": "website", "values": ["https://engines.example"]},
                {"name": "budget", "values": ["10k", "20k"]},
                {"name": "empty", "values": []},
            ],
        }
        mapped = meta.map_lead(lead, leadgen_id="1")
        assert mapped.row == {
            "external_id": "1",
            "email": "ada@analytical.engines",
            "phone": "+447946000000",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "company": "Analytical Engines",
            "title": "Countess",
            "city": "London",
            "country": "GB",
            "website": "https://engines.example",
        }
        assert mapped.answers == {"budget": "10k, 20k"}

    def test_refuses_another_lead_than_the_one_asked_for(self) -> None:
        with pytest.raises(meta.LeadMismatch):
            meta.map_lead({"id": "2", "field_data": []}, leadgen_id="1")

    def test_a_leadgen_change_without_its_id_is_invalid(self) -> None:
        body = json.dumps(
            {"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {}}]}]}
        ).encode()
        notification = meta.load_notification(body, expected_object="page")
        with pytest.raises(InvalidPayload):
            meta.parse_leadgen_changes(notification)

    def test_receipt_provider_fits_webhook_receipts(self) -> None:
        source_id = uuid.uuid4()
        for provider in Provider:
            assert len(meta.receipt_provider(provider, source_id)) <= 40
