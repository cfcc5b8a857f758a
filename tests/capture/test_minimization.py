"""Data minimization: a tenant's allowlist of lead fields (`capture.allowed_fields`). Fields
outside it are dropped at intake — from the API, a batch and a CSV import alike — reported on
each row, audited by name, and never stored, not even as provenance."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from leadrelay.capture.intake import CapturePolicy
from leadrelay.capture.models import Lead, LeadObservation
from leadrelay.compliance.models import AuditEvent
from leadrelay.core.db import DatabaseUrls
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role, Tenant
from tests.capture.test_intake_api import make_source
from tests.factories import TenantCtx, TenantFactory
from tests.support import invoke_cli

ALLOWED = ["email", "company", "country"]


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


async def allow(client: httpx.AsyncClient, tenant: TenantCtx, fields: list[str] | None) -> None:
    response = await client.patch(
        "/v1/capture/policy",
        json={"allowed_fields": fields},
        headers=await tenant.headers(Role.ADMIN),
    )
    assert response.status_code == 200, response.text
    assert response.json()["allowed_fields"] == fields


class TestPolicy:
    def test_without_an_allowlist_every_field_is_kept(self) -> None:
        row = {"email": "a@b.example", "phone": "+12125550199", "city": "Paris"}
        assert CapturePolicy.from_settings({}).minimize(row) == (row, [])

    def test_a_name_covers_its_parts_and_empty_fields_are_not_reported(self) -> None:
        policy = CapturePolicy.from_settings({"capture": {"allowed_fields": ["email"]}})
        kept, dropped = policy.minimize(
            {"email": "a@b.example", "first_name": "Ada", "last_name": "L", "city": None}
        )
        assert kept == {"email": "a@b.example"}
        assert dropped == ["first_name", "last_name"]

    async def test_is_stored_under_capture_and_removed_by_null(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await allow(client, tenant, ALLOWED)
        async with tenant.db.session(tenant.id) as session:
            row = await session.get(Tenant, tenant.id)
            assert row is not None
            assert row.settings["capture"]["allowed_fields"] == ALLOWED
        # Another policy change leaves the allowlist alone.
        other = await client.patch(
            "/v1/capture/policy",
            json={"business_email_policy": "allow"},
            headers=await tenant.headers(Role.ADMIN),
        )
        assert other.json()["allowed_fields"] == ALLOWED
        await allow(client, tenant, None)
        got = await client.get("/v1/capture/policy", headers=await tenant.headers(Role.ADMIN))
        assert got.json()["allowed_fields"] is None

    async def test_refuses_unknown_fields_and_a_list_without_a_contact(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        admin = await tenant.headers(Role.ADMIN)
        unknown = await client.patch(
            "/v1/capture/policy", json={"allowed_fields": ["email", "shoe_size"]}, headers=admin
        )
        assert unknown.status_code == 422
        assert "allowed_fields" in unknown.text
        no_contact = await client.patch(
            "/v1/capture/policy", json={"allowed_fields": ["company"]}, headers=admin
        )
        assert no_contact.status_code == 422
        assert no_contact.json()["errors"][0]["field"] == "allowed_fields"


class TestIntake:
    async def test_one_lead_drops_and_reports_the_extra_fields(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await make_source(client, tenant)
        await allow(client, tenant, ALLOWED)
        response = await client.post(
            "/v1/leads",
            json={
                "source": "Website form",
                "email": "ada@lovelace.io",
                "full_name": "Ada Lovelace",
                "phone": "+44 20 7946 0958",
                "company": "Analytical Engines",
                "city": "London",
                "country": "GB",
            },
            headers=await tenant.headers(Role.REP),
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["dropped_fields"] == ["city", "full_name", "phone"]
        lead_id = body["lead_id"]
        async with tenant.db.session(tenant.id) as session:
            lead = await session.get(Lead, lead_id)
            assert lead is not None
            assert (lead.email, lead.company, lead.country) == (
                "ada@lovelace.io",
                "Analytical Engines",
                "GB",
            )
            assert (lead.full_name, lead.phone_e164, lead.city) == ("", None, None)
            observed = {
                name
                for fields in await session.scalars(
                    select(LeadObservation.fields).where(LeadObservation.lead_id == lead.id)
                )
                for name in fields
            }
            stored_anywhere = await session.scalar(
                text(
                    "SELECT count(*) FROM lead_observations, jsonb_each(fields) AS f "
                    "WHERE f.value->>'raw_value' IN ('Ada Lovelace', 'London', '+44 20 7946 0958')"
                )
            )
            audit = await session.scalar(
                select(AuditEvent).where(AuditEvent.action == "leads.captured")
            )
        # The company domain is derived from the (allowed) e-mail address, not from a website.
        assert observed == {"email", "company", "country", "domain"}
        assert stored_anywhere == 0
        assert audit is not None
        assert audit.data["dropped_fields"] == ["city", "full_name", "phone"]
        assert "London" not in json.dumps(audit.data)

    async def test_a_batch_reports_per_row(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await make_source(client, tenant)
        await allow(client, tenant, ["email", "phone"])
        response = await client.post(
            "/v1/leads/batch",
            json={
                "source": "Website form",
                "leads": [
                    {"email": "one@acme.example", "title": "CTO"},
                    {"email": "two@acme.example"},
                    {"title": "CEO", "city": "Oslo"},  # nothing left to reach: rejected
                ],
            },
            headers=await tenant.headers(Role.REP),
        )
        assert response.status_code == 200, response.text
        rows = response.json()["results"]
        assert [r["dropped_fields"] for r in rows] == [["title"], [], ["city", "title"]]
        assert [r["status"] for r in rows] == ["accepted", "accepted", "rejected"]
        async with tenant.db.session(tenant.id) as session:
            titles = list(await session.scalars(select(Lead.title)))
        assert titles == [None, None]

    async def test_a_csv_import_reports_dropped_fields_in_the_row_report(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        urls: DatabaseUrls,
        settings: Settings,
        tmp_path: Path,
    ) -> None:
        await make_source(client, tenant, "Fair list")
        await allow(client, tenant, ["full_name", "email"])
        path = tmp_path / "fair.csv"
        path.write_text(
            "email,full_name,city\nada@lovelace.io,Ada Lovelace,London\nbob@acme.example,Bob,\n",
            encoding="utf-8",
        )
        report = tmp_path / "report.jsonl"
        result = await invoke_cli(
            urls,
            str(settings.data_dir),
            "import",
            str(path),
            "--source",
            "Fair list",
            "--tenant",
            tenant.slug,
            "--report",
            str(report),
        )
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
        assert [line.get("dropped_fields") for line in lines] == [["city"], None]
        async with tenant.db.session(tenant.id) as session:
            cities = list(await session.scalars(select(Lead.city)))
        assert cities == [None, None]
