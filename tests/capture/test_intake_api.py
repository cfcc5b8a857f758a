"""Capture over HTTP: the lawful-source gate, normalization, exact duplicates, provenance,
idempotency, batches with per-row results, and audited rejections."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from leadrelay.capture.models import LeadObservation
from leadrelay.compliance.models import AuditEvent
from leadrelay.core.db import Database
from leadrelay.core.events import OutboxEvent
from leadrelay.core.jobs import JobRuntime
from leadrelay.core.jobs_models import DeadLetter
from leadrelay.identity.models import Role
from tests.factories import TenantCtx, TenantFactory
from tests.support import run_jobs

ASSESSMENT = "Attendees handed us their business cards at our booth to be contacted later."


async def make_source(
    client: httpx.AsyncClient,
    tenant: TenantCtx,
    name: str = "Website form",
    *,
    vet: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    headers = await tenant.headers(Role.ADMIN)
    body = {"name": name, "kind": "official_api", "legal_basis": "consent", **extra}
    created = await client.post("/v1/sources", json=body, headers=headers)
    assert created.status_code == 201, created.text
    source: dict[str, Any] = created.json()
    assert source["status"] == "pending"
    if vet:
        vetted = await client.patch(
            f"/v1/sources/{source['id']}", json={"status": "vetted"}, headers=headers
        )
        assert vetted.status_code == 200, vetted.text
        source = vetted.json()
    return source


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


class TestSourceGate:
    async def test_refuses_unknown_pending_blocked_and_personal_profile_sources(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        headers = await tenant.headers(Role.ADMIN)
        await make_source(client, tenant, "Pending list", vet=False)
        blocked = await make_source(client, tenant, "Bought list")
        await client.patch(
            f"/v1/sources/{blocked['id']}", json={"status": "blocked"}, headers=headers
        )
        await make_source(client, tenant, "Profile scraper", vet=True, is_personal_profile=True)
        lead = {"email": "ada@lovelace.io"}
        for name, reason in (
            ("Nowhere", "unknown"),
            ("Pending list", "not-vetted"),
            ("Bought list", "blocked"),
            ("Profile scraper", "personal-profile"),
        ):
            response = await client.post(
                "/v1/leads", json={"source": name, **lead}, headers=headers
            )
            assert response.status_code == 422, (name, response.text)
            problem = response.json()
            assert response.headers["content-type"] == "application/problem+json"
            assert problem["code"] == "source-refused"
            assert problem["errors"][0]["type"] == reason

    async def test_legitimate_interest_needs_an_assessment(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        headers = await tenant.headers(Role.ADMIN)
        response = await client.post(
            "/v1/sources",
            json={"name": "Fair", "kind": "csv_upload", "legal_basis": "legitimate_interest"},
            headers=headers,
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "assessment"
        ok = await client.post(
            "/v1/sources",
            json={
                "name": "Fair",
                "kind": "csv_upload",
                "legal_basis": "legitimate_interest",
                "assessment": ASSESSMENT,
            },
            headers=headers,
        )
        assert ok.status_code == 201

    async def test_a_rep_cannot_vet_a_source(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        source = await make_source(client, tenant, vet=False)
        response = await client.patch(
            f"/v1/sources/{source['id']}",
            json={"status": "vetted"},
            headers=await tenant.headers(Role.REP),
        )
        assert response.status_code == 403


class TestCaptureOne:
    async def test_normalizes_and_keeps_provenance(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        await make_source(client, tenant, default_country="GB")
        headers = await tenant.headers(Role.REP)
        response = await client.post(
            "/v1/leads",
            json={
                "source": "Website form",
                "full_name": "  ADA   LOVELACE ",
                "email": "Ada.Lovelace@Analytical.Engines.co.uk",
                "phone": "020 7946 0958",
                "company": "Analytical Engines Ltd",
                "website": "https://www.analytical.engines.co.uk/about",
                "external_id": "crm-42",
            },
            headers=headers,
        )
        assert response.status_code == 202, response.text
        lead_id = response.json()["lead_id"]
        detail = (await client.get(f"/v1/leads/{lead_id}", headers=headers)).json()
        assert detail["phone_e164"] == "+442079460958"
        assert detail["email"].endswith("@analytical.engines.co.uk")
        assert detail["domain"] == "engines.co.uk"
        assert detail["full_name"] == "Ada Lovelace"
        assert detail["external_ids"][0]["external_id"] == "crm-42"
        raw = {o["field"]: o["raw_value"] for o in detail["provenance"]}
        assert raw["phone_e164"] == "020 7946 0958"
        assert raw["full_name"] == "  ADA   LOVELACE "
        async with db.session(tenant.id) as session:
            events = list(
                await session.scalars(select(OutboxEvent).where(OutboxEvent.type == "lead.created"))
            )
        assert [e.payload["lead_id"] for e in events] == [lead_id]

    async def test_the_same_lead_twice_creates_no_new_lead(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        await make_source(client, tenant)
        headers = await tenant.headers(Role.REP)
        lead = {"source": "Website form", "email": "grace@hopper.dev", "company": "Navy"}
        first = await client.post("/v1/leads", json=lead, headers=headers)
        second = await client.post(
            "/v1/leads",
            json={**lead, "email": "GRACE@hopper.dev", "city": "Arlington"},
            headers=headers,
        )
        assert (first.status_code, second.status_code) == (202, 200)
        assert second.json()["status"] == "duplicate"
        assert second.json()["lead_id"] == first.json()["lead_id"]
        listed = (await client.get("/v1/leads", headers=headers)).json()
        assert len(listed) == 1
        assert listed[0]["city"] == "Arlington"  # an empty field is filled, nothing overwritten
        async with db.session(tenant.id) as session:
            emails = [
                str(fields["email"]["raw_value"])
                for fields in await session.scalars(select(LeadObservation.fields))
            ]
        assert sorted(emails) == ["GRACE@hopper.dev", "grace@hopper.dev"]

    async def test_rejection_is_a_clear_422_and_is_audited(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        await make_source(client, tenant)
        response = await client.post(
            "/v1/leads",
            json={"source": "Website form", "email": "not-an-email", "company": "X"},
            headers=await tenant.headers(Role.REP),
        )
        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "lead-rejected"
        assert {e["field"] for e in problem["errors"]} == {"email"}
        async with db.session(tenant.id) as session:
            audited = await session.scalar(
                select(AuditEvent).where(AuditEvent.action == "leads.captured")
            )
        assert audited is not None
        assert audited.data["rejected"] == 1

    async def test_refuses_personal_addresses_when_the_tenant_requires_business_ones(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await make_source(client, tenant)
        headers = await tenant.headers(Role.REP)
        flagged = await client.post(
            "/v1/leads", json={"source": "Website form", "email": "kim@gmail.com"}, headers=headers
        )
        assert flagged.status_code == 202
        assert "personal_email" in flagged.json()["lead"]["flags"]
        policy = await client.patch(
            "/v1/capture/policy",
            json={"business_email_policy": "refuse"},
            headers=await tenant.headers(Role.ADMIN),
        )
        assert policy.status_code == 200, policy.text
        assert policy.json() == {
            "business_email_policy": "refuse",
            "verification_thresholds": {"email": 0.7, "phone": 0.6},
            "allowed_fields": None,  # no allowlist: every field is stored
        }
        refused = await client.post(
            "/v1/leads", json={"source": "Website form", "email": "lee@gmail.com"}, headers=headers
        )
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["message"] == "personal_email_refused"
        bad = await client.patch(
            "/v1/capture/policy",
            json={"verification_thresholds": {"email": 2}},
            headers=await tenant.headers(Role.ADMIN),
        )
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "verification_thresholds.email"

    async def test_idempotency_key_replays_the_first_answer(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await make_source(client, tenant)
        headers = {**await tenant.headers(Role.REP), "Idempotency-Key": "order-7"}
        lead = {"source": "Website form", "email": "alan@turing.uk"}
        first = await client.post("/v1/leads", json=lead, headers=headers)
        again = await client.post("/v1/leads", json=lead, headers=headers)
        assert first.status_code == again.status_code == 202
        assert first.json() == again.json()
        other = await client.post(
            "/v1/leads", json={**lead, "email": "joan@clarke.uk"}, headers=headers
        )
        assert other.status_code == 409
        assert other.json()["code"] == "idempotency-key-reused"

    async def test_another_tenant_cannot_see_the_lead(
        self, client: httpx.AsyncClient, tenant: TenantCtx, tenants: TenantFactory
    ) -> None:
        await make_source(client, tenant)
        created = await client.post(
            "/v1/leads",
            json={"source": "Website form", "email": "x@y.io"},
            headers=await tenant.headers(),
        )
        other = await tenants.create()
        response = await client.get(
            f"/v1/leads/{created.json()['lead_id']}", headers=await other.headers()
        )
        assert response.status_code == 404


class TestBatch:
    async def test_every_row_gets_its_own_result(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await make_source(client, tenant)
        rows = [
            {"email": "one@acme.io", "full_name": "One"},
            {"email": 12345},
            {"phone": "+1 415 555 0101"},
            {"email": "ONE@acme.io"},
            {"company": "No contact Inc"},
            {"email": "two@acme.io", "unknown": "field"},
        ]
        response = await client.post(
            "/v1/leads/batch",
            json={"source": "Website form", "leads": rows},
            headers=await tenant.headers(Role.REP),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        statuses = [r["status"] for r in body["results"]]
        assert statuses == ["accepted", "rejected", "accepted", "duplicate", "rejected", "rejected"]
        assert (body["accepted"], body["duplicate"], body["rejected"]) == (2, 1, 3)
        results = body["results"]
        assert results[3]["lead_id"] == results[0]["lead_id"]
        assert results[1]["errors"][0]["field"] == "email"
        assert results[5]["errors"][0]["field"] == "unknown"

    async def test_more_than_a_thousand_rows_is_a_422(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await make_source(client, tenant)
        response = await client.post(
            "/v1/leads/batch",
            json={
                "source": "Website form",
                "leads": [{"email": f"a{i}@b.io"} for i in range(1001)],
            },
            headers=await tenant.headers(Role.REP),
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "leads"

    async def test_listing_filters_by_flag_and_search(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await make_source(client, tenant)
        headers = await tenant.headers(Role.REP)
        await client.post(
            "/v1/leads/batch",
            json={
                "source": "Website form",
                "leads": [
                    {"email": "info@corp.io", "company": "Corp"},
                    {"email": "jane@corp.io", "full_name": "Jane Roe"},
                ],
            },
            headers=headers,
        )
        role = (await client.get("/v1/leads?flag=role_email", headers=headers)).json()
        assert [lead["email"] for lead in role] == ["info@corp.io"]
        found = (await client.get("/v1/leads?q=roe", headers=headers)).json()
        assert [lead["email"] for lead in found] == ["jane@corp.io"]
        uuid.UUID(found[0]["id"])


class TestEvents:
    async def test_a_batch_emits_one_event_per_new_lead_and_all_are_dispatched(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database, job_runtime: JobRuntime
    ) -> None:
        await make_source(client, tenant)
        await client.post(
            "/v1/leads/batch",
            json={
                "source": "Website form",
                "leads": [{"email": f"p{i}@batch.io"} for i in range(5)]
                + [{"email": "P0@batch.io"}],
            },
            headers=await tenant.headers(Role.REP),
        )
        await run_jobs()
        async with db.session(tenant.id) as session:
            events = list(
                await session.scalars(select(OutboxEvent).where(OutboxEvent.type == "lead.created"))
            )
            letters = list(await session.scalars(select(DeadLetter)))
        assert len(events) == 5
        assert all(e.dispatched_at is not None for e in events)
        assert letters == []
