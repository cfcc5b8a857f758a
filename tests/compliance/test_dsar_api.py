"""The data-subject request API: open, list with age and deadline, export as a ZIP, erase with a
typed confirmation, reject; bad input answered with problem+json naming the field."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any

import httpx
import pytest

from leadrelay.core.db import DatabaseUrls
from leadrelay.identity.models import Role
from tests.compliance.test_dsar import Who, seed_person, seed_tenant
from tests.factories import TenantCtx, TenantFactory
from tests.support import owner_connection


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


@pytest.fixture
async def admin(tenant: TenantCtx) -> dict[str, str]:
    return await tenant.headers(Role.ADMIN)


async def open_dsar(
    client: httpx.AsyncClient, headers: dict[str, str], kind: str, subject: str, **extra: Any
) -> dict[str, Any]:
    body = {"kind": kind, "subject_kind": extra.pop("subject_kind", "email"), "subject": subject}
    response = await client.post("/v1/dsar", json={**body, **extra}, headers=headers)
    assert response.status_code == 201, response.text
    opened: dict[str, Any] = response.json()
    return opened


class TestOpen:
    async def test_opens_with_a_30_day_deadline_and_lists_it(
        self, client: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        opened = await open_dsar(client, admin, "export", "  Ann@Example.ORG ")
        assert opened["status"] == "open"
        assert opened["subject"] == "Ann@example.org"  # normalized as capture does
        assert opened["age_days"] == 0
        assert opened["overdue"] is False
        assert opened["confirmation"] is None  # an export needs none
        listed = await client.get("/v1/dsar", headers=admin)
        assert [r["id"] for r in listed.json()] == [opened["id"]]
        one = await client.get(f"/v1/dsar/{opened['id']}", headers=admin)
        assert one.json()["subject_hash"] == opened["subject_hash"]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"kind": "export", "subject_kind": "email", "subject": "not an address"}, "subject"),
            ({"kind": "export", "subject_kind": "phone", "subject": "555"}, "subject"),
            ({"kind": "export", "subject_kind": "lead", "subject": "42"}, "subject"),
            ({"kind": "forget", "subject_kind": "email", "subject": "a@b.example"}, "kind"),
            ({"kind": "export", "subject_kind": "email"}, "subject"),
            ({"kind": "export", "subject_kind": "email", "subject": "a@b.example", "x": 1}, "x"),
        ],
    )
    async def test_bad_input_is_a_422_naming_the_field(
        self,
        client: httpx.AsyncClient,
        admin: dict[str, str],
        body: dict[str, Any],
        field: str,
    ) -> None:
        response = await client.post("/v1/dsar", json=body, headers=admin)
        problem = assert_problem(response, 422, "validation-failed")
        assert field in [e["field"] for e in problem["errors"]], problem

    async def test_overdue_requests_are_flagged(
        self, client: httpx.AsyncClient, admin: dict[str, str], urls: DatabaseUrls
    ) -> None:
        opened = await open_dsar(client, admin, "erasure", "late@example.org")
        with owner_connection(urls) as conn:
            conn.execute(
                "UPDATE dsar_requests SET requested_at = now() - interval '40 days', "
                "due_at = now() - interval '10 days' WHERE id = %s",
                (opened["id"],),
            )
        row = (await client.get(f"/v1/dsar/{opened['id']}", headers=admin)).json()
        assert row["overdue"] is True
        assert row["age_days"] == 40

    async def test_another_tenant_sees_nothing(
        self, client: httpx.AsyncClient, admin: dict[str, str], tenants: TenantFactory
    ) -> None:
        opened = await open_dsar(client, admin, "erasure", "mine@example.org")
        other = await (await tenants.create()).headers(Role.OWNER)
        for method, path, body in (
            ("GET", f"/v1/dsar/{opened['id']}", None),
            ("GET", f"/v1/dsar/{opened['id']}/export.zip", None),
            ("POST", f"/v1/dsar/{opened['id']}/erase", {"confirmation": opened["confirmation"]}),
            ("POST", f"/v1/dsar/{opened['id']}/reject", {"reason": "not yours"}),
        ):
            response = await client.request(method, path, json=body, headers=other)
            assert_problem(response, 404, "not-found")
        assert (await client.get("/v1/dsar", headers=other)).json() == []

    async def test_roles_without_the_permission_are_refused(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        manager = await tenant.headers(Role.MANAGER)
        response = await client.post(
            "/v1/dsar",
            json={"kind": "export", "subject_kind": "email", "subject": "a@b.example"},
            headers=manager,
        )
        assert_problem(response, 403, "forbidden")


class TestExportAndErase:
    async def test_export_zip_then_erasure_with_typed_confirmation(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        admin: dict[str, str],
        urls: DatabaseUrls,
    ) -> None:
        who = Who.new()
        with owner_connection(urls) as conn:
            seeded = seed_person(conn, seed_tenant(conn, tenant.id), who, unmatched=False)
        export = await open_dsar(client, admin, "export", who.email)
        download = await client.get(f"/v1/dsar/{export['id']}/export.zip", headers=admin)
        assert download.status_code == 200, download.text
        assert download.headers["content-type"] == "application/zip"
        assert "attachment" in download.headers["content-disposition"]
        with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            leads = json.loads(archive.read("json/leads.json"))
            assert archive.read("csv/messages.csv").decode().startswith("id,")
        assert manifest["tables"]["leads"] == 2
        assert str(seeded.lead_id) in {lead["id"] for lead in leads}
        done = (await client.get(f"/v1/dsar/{export['id']}", headers=admin)).json()
        assert done["status"] == "completed"
        assert done["result"]["tables"]["messages"] == 1
        # An export request cannot erase.
        wrong = await client.post(
            f"/v1/dsar/{export['id']}/erase", json={"confirmation": "x"}, headers=admin
        )
        assert_problem(wrong, 409, "dsar-wrong-kind")

        erasure = await open_dsar(client, admin, "erasure", who.email)
        assert erasure["confirmation"] == f"erase {who.email}"
        missing = await client.post(f"/v1/dsar/{erasure['id']}/erase", json={}, headers=admin)
        problem = assert_problem(missing, 422, "validation-failed")
        assert problem["errors"][0]["field"] == "confirmation"
        typo = await client.post(
            f"/v1/dsar/{erasure['id']}/erase", json={"confirmation": "erase"}, headers=admin
        )
        problem = assert_problem(typo, 422, "confirmation-mismatch")
        assert problem["errors"][0]["field"] == "confirmation"
        assert who.email in problem["errors"][0]["message"]

        erased = await client.post(
            f"/v1/dsar/{erasure['id']}/erase",
            json={"confirmation": erasure["confirmation"]},
            headers=admin,
        )
        assert erased.status_code == 200, erased.text
        summary = erased.json()
        assert summary["deleted"]["leads"] == 2
        assert summary["total"] == sum(summary["deleted"].values())
        assert summary["suppressed"] == {"email": 1, "phone": 1}
        assert summary["request"]["status"] == "completed"
        assert summary["request"]["subject"] is None
        lead = await client.get(f"/v1/leads/{seeded.lead_id}", headers=admin)
        assert lead.status_code == 404
        again = await client.post(
            f"/v1/dsar/{erasure['id']}/erase",
            json={"confirmation": erasure["confirmation"]},
            headers=admin,
        )
        assert_problem(again, 409, "dsar-not-open")
        # The earlier export named the same person: its subject is gone too.
        cleared = (await client.get(f"/v1/dsar/{export['id']}", headers=admin)).json()
        assert cleared["subject"] is None
        gone = await client.get(f"/v1/dsar/{export['id']}/export.zip", headers=admin)
        assert_problem(gone, 409, "dsar-not-open")
        audit = await client.get("/v1/audit", params={"target_type": "dsar_request"}, headers=admin)
        actions = [e["action"] for e in audit.json()]
        assert actions == ["dsar.erased", "dsar.opened", "dsar.exported", "dsar.opened"]
        assert who.email not in audit.text
        verified = await client.get("/v1/audit/verify", headers=admin)
        assert verified.json()["ok"] is True

    async def test_reject_with_a_reason(
        self, client: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        opened = await open_dsar(client, admin, "erasure", "who@example.org")
        short = await client.post(f"/v1/dsar/{opened['id']}/reject", json={}, headers=admin)
        assert_problem(short, 422, "validation-failed")
        rejected = await client.post(
            f"/v1/dsar/{opened['id']}/reject",
            json={"reason": "identity could not be verified"},
            headers=admin,
        )
        assert rejected.status_code == 200, rejected.text
        assert rejected.json()["status"] == "rejected"
        assert rejected.json()["note"] == "identity could not be verified"
        twice = await client.post(
            f"/v1/dsar/{opened['id']}/reject", json={"reason": "again!"}, headers=admin
        )
        assert_problem(twice, 409, "dsar-not-open")
        missing = await client.get(f"/v1/dsar/{uuid.uuid4()}", headers=admin)
        assert_problem(missing, 404, "not-found")
