"""The audit trail: a hash chain per tenant that the database refuses to rewrite and that
`verify_chain` proves intact, or shows exactly where it was tampered with."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from leadrelay.compliance.audit import (
    CSV_COLUMNS,
    GENESIS_HASH,
    AuditEntry,
    ChainReport,
    record,
    verify_chain,
)
from leadrelay.compliance.models import AuditEvent
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.logging import correlation_id_var, request_id_var
from leadrelay.identity.models import Role
from tests.factories import TenantCtx, TenantFactory
from tests.support import invoke_cli, owner_connection

Tamper = Callable[..., None]


async def append(tenant: TenantCtx, *actions: str, **fields: Any) -> None:
    """Append one link per action, each in its own transaction (as requests do)."""
    for action in actions:
        async with tenant.db.session(tenant.id) as session:
            await record(session, tenant.id, AuditEntry(action, **fields), now=utcnow())


async def chain_rows(db: Database, tenant_id: uuid.UUID) -> list[AuditEvent]:
    async with db.session(tenant_id) as session:
        return list(
            await session.scalars(
                select(AuditEvent).where(AuditEvent.tenant_id == tenant_id).order_by(AuditEvent.seq)
            )
        )


async def verify(db: Database, tenant_id: uuid.UUID) -> ChainReport:
    async with db.session(tenant_id) as session:
        return await verify_chain(session, tenant_id)


@contextmanager
def tampering(urls: DatabaseUrls, tenant_id: uuid.UUID) -> Iterator[Tamper]:
    """Yield `tamper(sql, *params)`, which rewrites audit rows as the owner with the append-only
    trigger switched off for that one transaction. On exit the tenant's rows are put back
    exactly as they were, so that a global `audit verify` still passes afterwards."""
    with owner_connection(urls) as connection:
        snapshot = connection.execute(
            "SELECT * FROM audit_events WHERE tenant_id = %s ORDER BY id", (tenant_id,)
        ).fetchall()

    def tamper(statement: str, *params: object) -> None:
        with owner_connection(urls) as connection:
            connection.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
            connection.execute(statement, (tenant_id, *params))
            connection.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")

    try:
        yield tamper
    finally:
        with owner_connection(urls) as connection:
            connection.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
            connection.execute("DELETE FROM audit_events WHERE tenant_id = %s", (tenant_id,))
            for row in snapshot:
                columns = ", ".join(row)
                marks = ", ".join(["%s"] * len(row))
                values = [Jsonb(v) if k == "data" else v for k, v in row.items()]
                connection.execute(
                    f"INSERT INTO audit_events ({columns}) OVERRIDING SYSTEM VALUE "
                    f"VALUES ({marks})",
                    values,
                )
            connection.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")


@pytest.fixture
async def chained(tenants: TenantFactory) -> TenantCtx:
    """A tenant of its own whose chain holds six links (tenant.created, then five)."""
    tenant = await tenants.create()
    await append(tenant, "test.one", "test.two", "test.three", "test.four", "test.five")
    return tenant


class TestAuditChain:
    async def test_appends_form_a_contiguous_linked_chain(
        self, db: Database, chained: TenantCtx
    ) -> None:
        rows = await chain_rows(db, chained.id)

        assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
        assert [r.action for r in rows] == [
            "tenant.created",
            "test.one",
            "test.two",
            "test.three",
            "test.four",
            "test.five",
        ]
        assert rows[0].prev_hash == GENESIS_HASH
        for before, after in itertools.pairwise(rows):
            assert after.prev_hash == before.hash
        assert len({r.hash for r in rows}) == len(rows)
        report = await verify(db, chained.id)
        assert report.ok
        assert report.checked == 6
        assert report.first_bad_seq is None
        assert report.reason is None

    async def test_a_tenant_without_links_verifies_as_empty(self, db: Database) -> None:
        report = await verify(db, uuid.uuid4())
        assert (report.ok, report.checked) == (True, 0)

    async def test_detects_changed_data(
        self, db: Database, urls: DatabaseUrls, chained: TenantCtx
    ) -> None:
        with tampering(urls, chained.id) as tamper:
            tamper(
                "UPDATE audit_events SET data = '{\"forged\": true}' "
                "WHERE tenant_id = %s AND seq = 3"
            )
            report = await verify(db, chained.id)
        assert not report.ok
        assert report.first_bad_seq == 3
        assert report.reason == "link 3 was changed"
        assert report.checked == 2
        assert (await verify(db, chained.id)).ok  # restored exactly

    async def test_detects_changed_action(
        self, db: Database, urls: DatabaseUrls, chained: TenantCtx
    ) -> None:
        with tampering(urls, chained.id) as tamper:
            tamper(
                "UPDATE audit_events SET action = 'test.harmless' WHERE tenant_id = %s AND seq = 5"
            )
            report = await verify(db, chained.id)
        assert (report.ok, report.first_bad_seq, report.reason) == (
            False,
            5,
            "link 5 was changed",
        )

    async def test_detects_a_removed_row(
        self, db: Database, urls: DatabaseUrls, chained: TenantCtx
    ) -> None:
        with tampering(urls, chained.id) as tamper:
            tamper("DELETE FROM audit_events WHERE tenant_id = %s AND seq = 4")
            report = await verify(db, chained.id)
        assert (report.ok, report.first_bad_seq, report.reason) == (
            False,
            4,
            "link 4 is missing",
        )
        assert (await verify(db, chained.id)).ok

    async def test_detects_a_cut_tail(
        self, db: Database, urls: DatabaseUrls, chained: TenantCtx
    ) -> None:
        with tampering(urls, chained.id) as tamper:
            tamper("DELETE FROM audit_events WHERE tenant_id = %s AND seq = 6")
            report = await verify(db, chained.id)
        assert (report.ok, report.first_bad_seq, report.reason) == (
            False,
            6,
            "chain ends at 5, head says 6",
        )

    async def test_detects_rows_whose_seq_were_swapped(
        self, db: Database, urls: DatabaseUrls, chained: TenantCtx
    ) -> None:
        with tampering(urls, chained.id) as tamper:
            # Three steps: (tenant_id, seq) is unique at every row.
            tamper("UPDATE audit_events SET seq = -1 WHERE tenant_id = %s AND seq = 3")
            tamper("UPDATE audit_events SET seq = 3 WHERE tenant_id = %s AND seq = 4")
            tamper("UPDATE audit_events SET seq = 4 WHERE tenant_id = %s AND seq = -1")
            report = await verify(db, chained.id)
        assert (report.ok, report.first_bad_seq, report.reason) == (
            False,
            3,
            "link 3 does not follow link 2",
        )
        assert (await verify(db, chained.id)).ok

    async def test_detects_rows_reinserted_in_another_order(
        self, db: Database, urls: DatabaseUrls, chained: TenantCtx
    ) -> None:
        """Every column but the insertion id swapped between links 3 and 4: each link is
        self-consistent, but link 4 is now the older row."""
        content = (
            "seq, occurred_at, actor_type, actor_id, action, target_type, target_id, "
            "correlation_id, request_id, data, prev_hash, hash"
        )
        with tampering(urls, chained.id) as tamper:
            tamper("UPDATE audit_events SET seq = -seq WHERE tenant_id = %s AND seq IN (3, 4)")
            tamper(
                f"UPDATE audit_events AS a SET ({content}) = "
                f"(-b.seq, {', '.join('b.' + c for c in content.split(', ')[1:])}) "
                "FROM audit_events AS b WHERE a.tenant_id = %s AND b.tenant_id = a.tenant_id "
                "AND a.seq IN (-3, -4) AND b.seq = -7 - a.seq"
            )
            rows = await chain_rows(db, chained.id)
            assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
            assert rows[2].id > rows[3].id
            report = await verify(db, chained.id)
        assert (report.ok, report.first_bad_seq, report.reason) == (
            False,
            4,
            "link 4 is out of order",
        )
        assert (await verify(db, chained.id)).ok

    async def test_app_role_cannot_update_delete_or_truncate(
        self, db: Database, chained: TenantCtx
    ) -> None:
        for statement in (
            "UPDATE audit_events SET action = 'test.forged' WHERE seq = 2",
            "DELETE FROM audit_events WHERE seq = 2",
            "TRUNCATE audit_events",
        ):
            with pytest.raises(DBAPIError, match="permission denied for table audit_events"):
                async with db.session(chained.id) as session:
                    await session.execute(text(statement))
        assert (await verify(db, chained.id)).checked == 6

    async def test_owner_is_refused_by_the_triggers(
        self, db: Database, urls: DatabaseUrls, chained: TenantCtx
    ) -> None:
        for statement, operation in (
            ("UPDATE audit_events SET action = 'test.forged' WHERE tenant_id = %s", "UPDATE"),
            ("DELETE FROM audit_events WHERE tenant_id = %s", "DELETE"),
            ("TRUNCATE audit_events", "TRUNCATE"),
        ):
            params = (chained.id,) if "%s" in statement else ()
            with psycopg.connect(urls.owner) as connection:
                # Whatever happens, nothing is committed: TRUNCATE would take every tenant.
                try:
                    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                        connection.execute(statement, params)
                finally:
                    connection.rollback()
            assert f"audit_events is append-only: {operation} refused" in str(refused.value)
        assert (await verify(db, chained.id)).checked == 6

    async def test_concurrent_appends_keep_one_chain(
        self, db: Database, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()

        async def append_one(n: int) -> None:
            async with db.session(tenant.id) as session:
                await record(session, tenant.id, AuditEntry(f"test.concurrent.{n}"), now=utcnow())

        await asyncio.gather(*(append_one(n) for n in range(20)))

        rows = await chain_rows(db, tenant.id)
        assert [r.seq for r in rows] == list(range(1, 22))
        assert {r.action for r in rows[1:]} == {f"test.concurrent.{n}" for n in range(20)}
        report = await verify(db, tenant.id)
        assert (report.ok, report.checked) == (True, 21)

    async def test_rows_carry_request_and_correlation_ids(
        self, db: Database, chained: TenantCtx
    ) -> None:
        request_token = request_id_var.set("req-1234")
        correlation_token = correlation_id_var.set("corr-5678")
        try:
            await append(chained, "test.with_ids")
        finally:
            request_id_var.reset(request_token)
            correlation_id_var.reset(correlation_token)
        await append(chained, "test.without_ids")

        rows = {r.action: r for r in await chain_rows(db, chained.id)}
        assert (rows["test.with_ids"].request_id, rows["test.with_ids"].correlation_id) == (
            "req-1234",
            "corr-5678",
        )
        assert rows["test.without_ids"].request_id is None
        assert rows["test.without_ids"].correlation_id is None
        assert (await verify(db, chained.id)).ok  # the ids are covered by the hash

    async def test_request_ids_reach_the_audit_row_through_http(
        self, db: Database, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        response = await client.post(
            "/v1/api-keys",
            json={"name": "ci", "role": "rep"},
            headers={**await tenant.headers(), "x-request-id": "req-via-http"},
        )
        assert response.status_code == 201
        rows = [r for r in await chain_rows(db, tenant.id) if r.request_id == "req-via-http"]
        assert [r.action for r in rows] == ["api_key.created"]
        assert rows[0].correlation_id == "req-via-http"  # none sent: the request id

    async def test_user_creation_stores_only_a_hash_of_the_email(
        self, db: Database, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        email = f"Jane.Doe-{uuid.uuid4().hex[:6]}@Example.test"
        await tenant.user(Role.REP, email=email)

        (row,) = [r for r in await chain_rows(db, tenant.id) if r.action == "user.created"]
        stored = json.dumps(
            {c: str(getattr(row, c)) for c in CSV_COLUMNS if c != "data"} | {"data": row.data}
        )
        assert email.lower() not in stored.lower()
        assert email.split("@")[0].lower() not in stored.lower()
        assert row.data["email_sha256"] == hashlib.sha256(email.lower().encode()).hexdigest()
        assert row.data["role"] == "rep"


class TestAuditVerifyCommand:
    async def test_exits_zero_when_the_chain_is_intact(
        self, urls: DatabaseUrls, chained: TenantCtx, tmp_path: Path
    ) -> None:
        result = await invoke_cli(urls, str(tmp_path), "audit", "verify", "--tenant", chained.slug)
        assert result.exit_code == 0, result.output
        assert f"{chained.slug}: 6 links intact" in result.output

    async def test_exits_one_after_tampering(
        self, urls: DatabaseUrls, chained: TenantCtx, tmp_path: Path
    ) -> None:
        with tampering(urls, chained.id) as tamper:
            tamper("UPDATE audit_events SET target_id = 'x' WHERE tenant_id = %s AND seq = 2")
            result = await invoke_cli(
                urls, str(tmp_path), "audit", "verify", "--tenant", chained.slug
            )
        assert result.exit_code == 1, result.output
        assert f"{chained.slug}: link 2 was changed" in result.output

        after = await invoke_cli(urls, str(tmp_path), "audit", "verify", "--tenant", chained.slug)
        assert after.exit_code == 0, after.output

    async def test_refuses_an_unknown_tenant(self, urls: DatabaseUrls, tmp_path: Path) -> None:
        result = await invoke_cli(urls, str(tmp_path), "audit", "verify", "--tenant", "nope-x")
        assert result.exit_code == 1
        assert "no tenant 'nope-x'" in result.output


def parse_csv(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body)))


class TestAuditApi:
    async def test_lists_newest_first_and_filters(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        headers = await tenant.headers(Role.MANAGER)
        await append(tenant, "lead.viewed", target_type="lead", target_id="lead-1")
        await append(tenant, "lead.exported", target_type="lead", target_id="lead-2")
        await append(tenant, "lead.viewed", target_type="draft", target_id="draft-1")

        everything = (await client.get("/v1/audit", headers=headers)).json()
        seqs = [e["seq"] for e in everything]
        assert seqs == sorted(seqs, reverse=True)
        assert [e["action"] for e in everything[:3]] == [
            "lead.viewed",
            "lead.exported",
            "lead.viewed",
        ]

        viewed = (await client.get("/v1/audit?action=lead.viewed", headers=headers)).json()
        assert [(e["action"], e["target_id"]) for e in viewed] == [
            ("lead.viewed", "draft-1"),
            ("lead.viewed", "lead-1"),
        ]
        leads = (
            await client.get("/v1/audit", params={"target_type": "lead"}, headers=headers)
        ).json()
        assert [e["target_id"] for e in leads] == ["lead-2", "lead-1"]
        both = (
            await client.get(
                "/v1/audit",
                params={"target_type": "lead", "action": "lead.viewed"},
                headers=headers,
            )
        ).json()
        assert [e["target_id"] for e in both] == ["lead-1"]
        assert set(everything[0]) >= {"seq", "occurred_at", "prev_hash", "hash", "data"}

    async def test_filters_by_time(self, client: httpx.AsyncClient, tenants: TenantFactory) -> None:
        tenant = await tenants.create()
        long_ago = utcnow() - timedelta(days=30)
        async with tenant.db.session(tenant.id) as session:
            await record(session, tenant.id, AuditEntry("test.old"), now=long_ago)
        cutoff = utcnow() - timedelta(days=1)
        await append(tenant, "test.recent")
        headers = await tenant.headers(Role.OPERATOR)

        recent = await client.get(
            "/v1/audit", params={"since": cutoff.isoformat()}, headers=headers
        )
        old = await client.get("/v1/audit", params={"until": cutoff.isoformat()}, headers=headers)

        assert recent.status_code == 200
        assert "test.old" not in {e["action"] for e in recent.json()}
        assert "test.recent" in {e["action"] for e in recent.json()}
        assert [e["action"] for e in old.json()] == ["test.old"]

    async def test_pages_with_before_seq(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        await append(tenant, *(f"test.page.{n}" for n in range(7)))
        headers = await tenant.headers()  # its own link: 9 in all
        everything = [e["seq"] for e in (await client.get("/v1/audit", headers=headers)).json()]

        pages: list[list[int]] = []
        params: dict[str, int] = {"limit": 4}
        while True:
            page = (await client.get("/v1/audit", params=params, headers=headers)).json()
            if not page:
                break
            pages.append([e["seq"] for e in page])
            params["before_seq"] = page[-1]["seq"]

        assert pages == [[9, 8, 7, 6], [5, 4, 3, 2], [1]]
        assert [s for p in pages for s in p] == everything

    async def test_rejects_unknown_filters_and_bad_limits(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        headers = await tenant.headers()
        for params in (
            {"limit": 0},
            {"limit": 5000},
            {"before_seq": 0},
            {"since": "yesterday"},
            {"acton": "typo.of.action"},
        ):
            response = await client.get("/v1/audit", params=params, headers=headers)
            assert response.status_code == 422, params
            assert response.headers["content-type"] == "application/problem+json"

    async def test_exports_csv_with_formulas_neutralized(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        await append(
            tenant,
            '=HYPERLINK("http://evil.test","x")',
            target_type="lead",
            target_id="+1-555-0100",
            actor_id="@admin",
            data={"note": "=1+2", "plain": "ok"},
        )
        await append(tenant, "test.harmless", target_id="-5")
        headers = await tenant.headers(Role.OPERATOR)

        response = await client.get("/v1/audit/export.csv", headers=headers)

        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert 'filename="audit.csv"' in response.headers["content-disposition"]
        lines = response.text.splitlines()
        assert lines[0] == ",".join(CSV_COLUMNS)
        rows = parse_csv(response.text)
        assert [int(r["seq"]) for r in rows] == list(range(1, len(rows) + 1))  # oldest first
        evil = next(r for r in rows if "HYPERLINK" in r["action"])
        assert evil["action"] == '\'=HYPERLINK("http://evil.test","x")'
        assert evil["target_id"] == "'+1-555-0100"
        assert evil["actor_id"] == "'@admin"
        # `data` is one JSON object per cell: it starts with "{", never with a formula sign.
        assert evil["data"].startswith("{")
        assert json.loads(evil["data"]) == {"note": "=1+2", "plain": "ok"}
        harmless = next(r for r in rows if r["action"] == "test.harmless")
        assert harmless["target_id"] == "'-5"
        for row in rows:
            for column in CSV_COLUMNS:
                assert row[column][:1] not in {"=", "+", "-", "@", "\t", "\r"}

    async def test_export_honours_filters(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        await append(tenant, "test.exported", "test.skipped", "test.exported")
        response = await client.get(
            "/v1/audit/export.csv",
            params={"action": "test.exported"},
            headers=await tenant.headers(),
        )
        rows = parse_csv(response.text)
        assert [r["action"] for r in rows] == ["test.exported", "test.exported"]

    async def test_verify_reports_the_chain(
        self, client: httpx.AsyncClient, urls: DatabaseUrls, chained: TenantCtx
    ) -> None:
        headers = await chained.headers(Role.MANAGER)  # link 7
        response = await client.get("/v1/audit/verify", headers=headers)
        assert response.json() == {"ok": True, "checked": 7, "first_bad_seq": None, "reason": None}

        with tampering(urls, chained.id) as tamper:
            tamper("UPDATE audit_events SET actor_type = 'user' WHERE tenant_id = %s AND seq = 6")
            broken = await client.get("/v1/audit/verify", headers=headers)
        assert broken.json() == {
            "ok": False,
            "checked": 5,
            "first_bad_seq": 6,
            "reason": "link 6 was changed",
        }

    async def test_shows_only_the_callers_tenant(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        a, b = await tenants.create(), await tenants.create()
        await append(b, "test.secret_of_b")
        listed = (await client.get("/v1/audit", headers=await a.headers())).json()
        exported = (await client.get("/v1/audit/export.csv", headers=await a.headers())).text
        assert "test.secret_of_b" not in {e["action"] for e in listed}
        assert "test.secret_of_b" not in exported

    @pytest.mark.parametrize(
        ("role", "path"),
        [
            (Role.REP, "/v1/audit"),
            (Role.REP, "/v1/audit/verify"),
            (Role.REP, "/v1/audit/export.csv"),
            (Role.REVIEWER, "/v1/audit"),
            (Role.MANAGER, "/v1/audit/export.csv"),
        ],
    )
    async def test_refuses_roles_without_the_permission(
        self, client: httpx.AsyncClient, tenants: TenantFactory, role: Role, path: str
    ) -> None:
        tenant = await tenants.create()
        response = await client.get(path, headers=await tenant.headers(role))
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
