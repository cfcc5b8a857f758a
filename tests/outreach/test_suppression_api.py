"""Suppressions, do-not-call lists and consent records over HTTP, on a real database: addresses
kept only as keyed hashes, idempotent, audited, row-level reports for registry files, one
tenant's lists invisible to another."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.identity.models import Role
from leadrelay.outreach import suppression
from tests.capture.test_intake_api import make_source
from tests.factories import TenantCtx, TenantFactory
from tests.support import invoke_cli


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


class TestSuppressions:
    async def test_an_opt_out_holds_until_lifted_and_keeps_no_address(
        self, client: httpx.AsyncClient, tenant: TenantCtx, tenants: TenantFactory
    ) -> None:
        rep = await tenant.headers(Role.REP)
        added = await client.post(
            "/v1/suppressions",
            json={"kind": "email", "address": "Grace.Hopper@Navy.example", "note": "asked on call"},
            headers=rep,
        )
        assert added.status_code == 201, added.text
        assert "navy" not in added.text.lower()
        again = await client.post(
            "/v1/suppressions",
            json={"kind": "email", "address": "grace.hopper@navy.example", "reason": "complaint"},
            headers=rep,
        )
        assert again.json()["id"] == added.json()["id"]
        assert again.json()["reason"] == "opted_out"  # the first reason stays

        check = await client.get(
            "/v1/suppressions/check",
            params={"kind": "email", "address": "GRACE.HOPPER@navy.example"},
            headers=rep,
        )
        assert check.json() == {
            "suppressed": True,
            "reasons": ["email_opted_out"],
            "dnc_lists": [],
        }
        listed = await client.get("/v1/suppressions", headers=rep)
        assert [row["id"] for row in listed.json()] == [added.json()["id"]]
        assert "navy" not in listed.text.lower()

        other = await (await tenants.create()).headers(Role.ADMIN)
        elsewhere = await client.get(
            "/v1/suppressions/check",
            params={"kind": "email", "address": "grace.hopper@navy.example"},
            headers=other,
        )
        assert elsewhere.json()["suppressed"] is False
        foreign = await client.delete(f"/v1/suppressions/{added.json()['id']}", headers=other)
        assert foreign.status_code == 404

        lifted = await client.delete(f"/v1/suppressions/{added.json()['id']}", headers=rep)
        assert lifted.status_code == 204
        after = await client.get(
            "/v1/suppressions/check",
            params={"kind": "email", "address": "grace.hopper@navy.example"},
            headers=rep,
        )
        assert after.json()["suppressed"] is False
        admin = await tenant.headers(Role.ADMIN)
        actions = [
            event["action"]
            for event in (await client.get("/v1/audit", headers=admin)).json()
            if event["action"].startswith("suppression.")
        ]
        assert sorted(actions) == ["suppression.added", "suppression.added", "suppression.lifted"]

    async def test_bad_addresses_are_field_errors(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        rep = await tenant.headers(Role.REP)
        bad = await client.post(
            "/v1/suppressions", json={"kind": "email", "address": "not-an-address"}, headers=rep
        )
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "address"
        local = await client.post(
            "/v1/suppressions", json={"kind": "phone", "address": "020 7946 0958"}, headers=rep
        )
        assert local.status_code == 422  # no country: never guessed
        phone = await client.post(
            "/v1/suppressions",
            json={"kind": "phone", "address": "020 7946 0958", "default_region": "GB"},
            headers=rep,
        )
        assert phone.status_code == 201, phone.text
        check = await client.get(
            "/v1/suppressions/check",
            params={"kind": "phone", "address": "+44 20 7946 0958"},
            headers=rep,
        )
        assert check.json()["reasons"] == ["phone_opted_out"]
        reviewer = await tenant.headers(Role.REVIEWER)
        forbidden = await client.post(
            "/v1/suppressions", json={"kind": "email", "address": "a@b.example"}, headers=reviewer
        )
        assert forbidden.status_code == 403


class TestDoNotCall:
    async def test_a_registry_file_is_imported_with_a_row_report(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        manager = await tenant.headers(Role.MANAGER)
        registry = (
            b"phone,listed_on\n"
            b"+1 202 555 0143,2024-01-02\n"
            b"banana,2024-01-03\n"
            b"(202) 555-0199,2024-01-04\n"
            b"+1 202 555 0143,2024-01-05\n"
            b"\n"
        )
        imported = await client.post(
            "/v1/dnc/import",
            data={"list_name": "US National DNC", "default_region": "US"},
            files={"file": ("dnc.csv", registry, "text/csv")},
            headers=manager,
        )
        assert imported.status_code == 200, imported.text
        report = imported.json()
        assert report["rows"] == 4
        assert report["added"] == 2
        assert report["already_listed"] == 1
        assert [r["line"] for r in report["rejected"]] == [3]

        again = await client.post(
            "/v1/dnc/import",
            data={"list_name": "US National DNC", "default_region": "US"},
            files={"file": ("dnc.csv", registry, "text/csv")},
            headers=manager,
        )
        assert again.json()["added"] == 0
        lists = await client.get("/v1/dnc", headers=manager)
        assert lists.json() == [{"list_name": "US National DNC", "numbers": 2}]
        check = await client.get(
            "/v1/suppressions/check",
            params={"kind": "phone", "address": "+12025550199"},
            headers=manager,
        )
        assert check.json()["dnc_lists"] == ["US National DNC"]
        assert check.json()["suppressed"] is False  # listed, not opted out: the guard decides


class TestConsents:
    async def test_consent_given_and_withdrawn_is_kept_newest_first(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        admin = await tenant.headers(Role.ADMIN)
        await make_source(client, tenant, "Form")
        lead = await client.post(
            "/v1/leads", json={"source": "Form", "email": "ada@engines.example"}, headers=admin
        )
        lead_id = lead.json()["lead_id"]
        for state, method in (("granted", "web form checkbox"), ("withdrawn", "reply STOP")):
            recorded = await client.post(
                f"/v1/leads/{lead_id}/consents",
                json={
                    "channel": "sms",
                    "state": state,
                    "purpose": "product updates",
                    "method": method,
                },
                headers=admin,
            )
            assert recorded.status_code == 201, recorded.text
        consents = (await client.get(f"/v1/leads/{lead_id}/consents", headers=admin)).json()
        assert [c["state"] for c in consents] == ["withdrawn", "granted"]
        assert consents[0]["method"] == "reply STOP"
        missing = await client.get(
            "/v1/leads/00000000-0000-0000-0000-000000000000/consents", headers=admin
        )
        assert missing.status_code == 404


class TestDncCli:
    async def test_a_registry_file_from_the_command_line(
        self, tenant: TenantCtx, db: Database, urls: DatabaseUrls, tmp_path: Path
    ) -> None:
        registry = tmp_path / "national.csv"
        registry.write_text(
            "phone\n(202) 555-0143\nnot a number\n+1 202 555 0199\n(202) 555-0143\n",
            encoding="utf-8",
        )
        report = tmp_path / "rejected.jsonl"
        result = await invoke_cli(
            urls,
            str(tmp_path),
            "dnc",
            "import",
            str(registry),
            "--tenant",
            tenant.slug,
            "--list",
            "US National DNC",
            "--region",
            "us",
            "--report",
            str(report),
        )
        assert result.exit_code == 0, result.output
        assert "4 numbers read, 2 added, 1 already listed, 1 rejected" in result.output
        assert [json.loads(line)["line"] for line in report.read_text().splitlines()] == [3]
        keys = (tmp_path / "secret.key").read_text().strip()  # the CLI's key, made in data_dir
        async with db.session(tenant.id) as session:
            assert await suppression.dnc_lists(session, keys, "+12025550143") == ["US National DNC"]
