"""Dead letters: listed per tenant, replayed once (API or command line) with their original
payload, and never reachable from another tenant."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from leadrelay.compliance.models import AuditEvent
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.jobs import JobRuntime, add_dead_letter, job_app, retry_strategy
from leadrelay.core.jobs_models import DeadLetter
from leadrelay.identity.models import Role
from tests.factories import TenantCtx, TenantFactory
from tests.support import invoke_cli, jobs_for, new_marker, run_jobs

RECORDS = "tests.ops.records"
ran: list[dict[str, Any]] = []


@job_app.task(name=RECORDS, retry=retry_strategy(3))
async def records(*, tenant_id: str, marker: str, correlation_id: str | None = None) -> None:
    ran.append({"tenant_id": tenant_id, "marker": marker, "correlation_id": correlation_id})


async def dead_letter(
    db: Database,
    tenant_id: uuid.UUID | None,
    *,
    task_name: str = RECORDS,
    marker: str | None = None,
) -> DeadLetter:
    payload: dict[str, object] = {"marker": marker or new_marker(), "correlation_id": "corr-old"}
    if tenant_id is not None:
        payload["tenant_id"] = str(tenant_id)
    async with db.session(tenant_id) as session:
        letter = add_dead_letter(
            session,
            task_name=task_name,
            payload=payload,
            error="RuntimeError: boom",
            attempts=5,
            job_id=424242,
        )
        await session.flush()
    return letter


async def reload(db: Database, tenant_id: uuid.UUID | None, letter_id: uuid.UUID) -> DeadLetter:
    async with db.session(tenant_id) as session:
        letter = await session.get(DeadLetter, letter_id)
    assert letter is not None
    return letter


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


class TestDeadLetterApi:
    async def test_lists_newest_first_with_payload_and_error(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCtx
    ) -> None:
        older = await dead_letter(db, tenant.id)
        newer = await dead_letter(db, tenant.id)

        response = await client.get("/v1/dead-letters", headers=await tenant.headers(Role.MANAGER))

        assert response.status_code == 200
        listed = response.json()
        assert [x["id"] for x in listed] == [str(newer.id), str(older.id)]
        first = listed[0]
        assert first["task_name"] == RECORDS
        assert first["payload"] == newer.payload
        assert (first["error"], first["attempts"], first["job_id"]) == (
            "RuntimeError: boom",
            5,
            424242,
        )
        assert first["correlation_id"] == "corr-old"
        assert (first["replayed_at"], first["replay_job_id"]) == (None, None)

    async def test_gets_one_and_404s_an_unknown_id(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCtx
    ) -> None:
        letter = await dead_letter(db, tenant.id)
        headers = await tenant.headers(Role.OPERATOR)

        found = await client.get(f"/v1/dead-letters/{letter.id}", headers=headers)
        missing = await client.get(f"/v1/dead-letters/{uuid.uuid4()}", headers=headers)
        missing_replay = await client.post(
            f"/v1/dead-letters/{uuid.uuid4()}/replay", headers=headers
        )

        assert found.json()["id"] == str(letter.id)
        assert missing.status_code == 404
        assert missing.json()["detail"] == "The dead letter does not exist."
        assert missing_replay.status_code == 404

    async def test_replay_defers_a_new_job_with_the_original_payload(
        self,
        client: httpx.AsyncClient,
        db: Database,
        urls: DatabaseUrls,
        tenant: TenantCtx,
        job_runtime: JobRuntime,
    ) -> None:
        marker = new_marker()
        letter = await dead_letter(db, tenant.id, marker=marker)

        response = await client.post(
            f"/v1/dead-letters/{letter.id}/replay",
            headers={**await tenant.headers(Role.OPERATOR), "x-request-id": "replay-1"},
        )

        assert response.status_code == 200
        body = response.json()
        assert body["replayed_at"] is not None
        (job,) = jobs_for(urls, RECORDS, marker=marker)
        assert body["replay_job_id"] == job["id"]
        assert job["status"] == "todo"
        # The original payload, with the replaying request's correlation id instead of the old.
        assert job["args"] == {
            "tenant_id": str(tenant.id),
            "marker": marker,
            "correlation_id": "replay-1",
        }
        stored = await reload(db, tenant.id, letter.id)
        assert stored.replay_job_id == job["id"]
        assert stored.replayed_at is not None

        await run_jobs()
        assert {"tenant_id": str(tenant.id), "marker": marker, "correlation_id": "replay-1"} in ran
        assert jobs_for(urls, RECORDS, marker=marker)[0]["status"] == "succeeded"

    async def test_a_second_replay_is_409(
        self,
        client: httpx.AsyncClient,
        db: Database,
        urls: DatabaseUrls,
        tenant: TenantCtx,
        job_runtime: JobRuntime,
    ) -> None:
        marker = new_marker()
        letter = await dead_letter(db, tenant.id, marker=marker)
        headers = await tenant.headers()
        first = await client.post(f"/v1/dead-letters/{letter.id}/replay", headers=headers)

        second = await client.post(f"/v1/dead-letters/{letter.id}/replay", headers=headers)

        assert second.status_code == 409
        assert second.headers["content-type"] == "application/problem+json"
        assert second.json()["code"] == "already-replayed"
        assert second.json()["detail"] == "This dead letter was already replayed."
        assert len(jobs_for(urls, RECORDS, marker=marker)) == 1
        stored = await reload(db, tenant.id, letter.id)
        assert stored.replay_job_id == first.json()["replay_job_id"]

    async def test_replay_is_audited(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCtx, job_runtime: JobRuntime
    ) -> None:
        letter = await dead_letter(db, tenant.id)
        issued = (
            await client.post(
                "/v1/api-keys",
                json={"name": "ops", "role": "operator"},
                headers=await tenant.headers(),
            )
        ).json()
        replayed = await client.post(
            f"/v1/dead-letters/{letter.id}/replay",
            headers={"authorization": f"Bearer {issued['key']}"},
        )

        async with db.session(tenant.id) as session:
            (event,) = await session.scalars(
                select(AuditEvent).where(AuditEvent.action == "dead_letter.replayed")
            )
        assert (event.actor_type, event.actor_id) == ("api_key", issued["id"])
        assert (event.target_type, event.target_id) == ("dead_letter", str(letter.id))
        assert event.data == {"task": RECORDS, "replay_job_id": replayed.json()["replay_job_id"]}

    async def test_refuses_to_replay_a_task_that_no_longer_exists(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCtx
    ) -> None:
        letter = await dead_letter(db, tenant.id, task_name="tests.ops.removed_long_ago")

        response = await client.post(
            f"/v1/dead-letters/{letter.id}/replay", headers=await tenant.headers()
        )

        assert response.status_code == 409
        assert response.json()["code"] == "conflict"
        assert response.json()["detail"] == "task 'tests.ops.removed_long_ago' no longer exists"
        assert (await reload(db, tenant.id, letter.id)).replayed_at is None

    async def test_hides_replayed_letters_on_request(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCtx, job_runtime: JobRuntime
    ) -> None:
        replayed, pending = await dead_letter(db, tenant.id), await dead_letter(db, tenant.id)
        headers = await tenant.headers()
        await client.post(f"/v1/dead-letters/{replayed.id}/replay", headers=headers)

        everything = await client.get("/v1/dead-letters", headers=headers)
        waiting = await client.get(
            "/v1/dead-letters", params={"include_replayed": "false"}, headers=headers
        )

        assert {x["id"] for x in everything.json()} == {str(replayed.id), str(pending.id)}
        assert [x["id"] for x in waiting.json()] == [str(pending.id)]

    async def test_readers_cannot_replay(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCtx
    ) -> None:
        letter = await dead_letter(db, tenant.id)
        headers = await tenant.headers(Role.MANAGER)

        read = await client.get(f"/v1/dead-letters/{letter.id}", headers=headers)
        replay = await client.post(f"/v1/dead-letters/{letter.id}/replay", headers=headers)
        rep = await client.get("/v1/dead-letters", headers=await tenant.headers(Role.REP))

        assert read.status_code == 200
        assert replay.status_code == 403
        assert rep.status_code == 403
        assert (await reload(db, tenant.id, letter.id)).replayed_at is None

    async def test_system_letters_stay_out_of_every_tenant(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCtx
    ) -> None:
        system = await dead_letter(db, None)
        headers = await tenant.headers()

        listed = await client.get("/v1/dead-letters", headers=headers)
        fetched = await client.get(f"/v1/dead-letters/{system.id}", headers=headers)
        replayed = await client.post(f"/v1/dead-letters/{system.id}/replay", headers=headers)

        assert str(system.id) not in {x["id"] for x in listed.json()}
        assert fetched.status_code == 404
        assert replayed.status_code == 404
        assert (await reload(db, None, system.id)).replayed_at is None


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


class TestDeadLettersCommand:
    async def test_lists_a_tenants_letters(
        self, db: Database, urls: DatabaseUrls, tenant: TenantCtx, tmp_path: Path
    ) -> None:
        letter = await dead_letter(db, tenant.id)

        as_json = await invoke_cli(
            urls, str(tmp_path), "dead-letters", "list", "--tenant", tenant.slug, "--json"
        )
        as_table = await invoke_cli(
            urls, str(tmp_path), "dead-letters", "list", "--tenant", tenant.slug
        )

        assert as_json.exit_code == 0, as_json.output
        (row,) = json_lines(as_json.stdout)
        assert row["id"] == str(letter.id)
        assert (row["task"], row["attempts"], row["error"]) == (RECORDS, 5, "RuntimeError: boom")
        assert row["payload"] == letter.payload
        assert row["replayed_at"] is None
        assert as_table.exit_code == 0, as_table.output
        assert "dead letters (1)" in as_table.stdout

    async def test_lists_system_letters_without_a_tenant(
        self, db: Database, urls: DatabaseUrls, tenant: TenantCtx, tmp_path: Path
    ) -> None:
        system = await dead_letter(db, None)
        tenants_own = await dead_letter(db, tenant.id)

        result = await invoke_cli(urls, str(tmp_path), "dead-letters", "list", "--json")

        assert result.exit_code == 0, result.output
        ids = {row["id"] for row in json_lines(result.stdout)}
        assert str(system.id) in ids
        assert str(tenants_own.id) not in ids

    async def test_replays_once(
        self,
        db: Database,
        urls: DatabaseUrls,
        tenant: TenantCtx,
        tmp_path: Path,
        job_runtime: JobRuntime,
    ) -> None:
        marker = new_marker()
        letter = await dead_letter(db, tenant.id, marker=marker)
        args = ("dead-letters", "replay", str(letter.id), "--tenant", tenant.slug)

        first = await invoke_cli(urls, str(tmp_path), *args)
        second = await invoke_cli(urls, str(tmp_path), *args)

        assert first.exit_code == 0, first.output
        (job,) = jobs_for(urls, RECORDS, marker=marker)
        assert f"replayed as job {job['id']}" in first.stdout
        assert job["args"] == {"tenant_id": str(tenant.id), "marker": marker}
        stored = await reload(db, tenant.id, letter.id)
        assert (stored.replay_job_id, stored.replayed_at is not None) == (job["id"], True)
        assert second.exit_code == 1
        assert "This dead letter was already replayed." in second.stderr
        async with db.session(tenant.id) as session:
            (event,) = await session.scalars(
                select(AuditEvent).where(AuditEvent.action == "dead_letter.replayed")
            )
        assert (event.actor_type, event.actor_id) == ("system", None)

        await run_jobs()
        assert {"tenant_id": str(tenant.id), "marker": marker, "correlation_id": None} in ran

    async def test_a_letter_of_another_tenant_is_not_found(
        self, db: Database, urls: DatabaseUrls, tenants: TenantFactory, tmp_path: Path
    ) -> None:
        a, b = await tenants.create(), await tenants.create()
        letter = await dead_letter(db, b.id)

        result = await invoke_cli(
            urls, str(tmp_path), "dead-letters", "replay", str(letter.id), "--tenant", a.slug
        )

        assert result.exit_code == 1
        assert "The dead letter does not exist." in result.stderr
        assert (await reload(db, b.id, letter.id)).replayed_at is None
