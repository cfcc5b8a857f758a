"""Fuzzy deduplication on the real database: pg_trgm blocking, automatic merges into the oldest
lead, the review queue, merge preview and undo, and order independence."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from leadrelay.capture.dedup import dedup_leads, score_leads
from leadrelay.capture.matching import Decision
from leadrelay.capture.models import Lead, LeadStatus
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.jobs import JobRuntime
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role
from tests.capture.test_intake_api import make_source
from tests.factories import TenantCtx, TenantFactory
from tests.support import invoke_cli, run_jobs


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


async def capture(
    client: httpx.AsyncClient, tenant: TenantCtx, rows: list[dict[str, Any]]
) -> list[str]:
    response = await client.post(
        "/v1/leads/batch",
        json={"source": "Website form", "leads": rows},
        headers=await tenant.headers(Role.REP),
    )
    assert response.status_code == 200, response.text
    return [r["lead_id"] for r in response.json()["results"]]


async def live_leads(db: Database, tenant: TenantCtx) -> list[Lead]:
    async with db.session(tenant.id) as session:
        return list(
            await session.scalars(
                select(Lead).where(Lead.status == LeadStatus.NEW).order_by(Lead.created_at)
            )
        )


SAME_PERSON = [
    {
        "full_name": "Robert Smith",
        "email": "robert.smith@acme-industries.com",
        "company": "Acme Industries Inc.",
        "phone": "+1 415 555 0101",
    },
    {
        "full_name": "Bob Smith",
        "email": "bob@acme-industries.com",
        "company": "ACME Industries",
        "city": "San Francisco",
    },
]


class TestAutomaticMerge:
    async def test_a_sure_match_merges_into_the_oldest_lead_via_the_job(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        job_runtime: JobRuntime,
    ) -> None:
        await make_source(client, tenant)
        (first,) = await capture(client, tenant, SAME_PERSON[:1])
        (second,) = await capture(client, tenant, SAME_PERSON[1:])
        assert first != second
        await run_jobs()
        live = await live_leads(db, tenant)
        assert [str(lead.id) for lead in live] == [first]
        assert live[0].city == "San Francisco"  # filled from the merged lead
        detail = (
            await client.get(f"/v1/leads/{first}", headers=await tenant.headers(Role.REP))
        ).json()
        assert detail["duplicates"] == [second]
        assert {o["raw_value"] for o in detail["provenance"] if o["field"] == "email"} == {
            "robert.smith@acme-industries.com",
            "bob@acme-industries.com",
        }

    async def test_merging_does_not_depend_on_arrival_order(
        self, client: httpx.AsyncClient, tenants: TenantFactory, db: Database
    ) -> None:
        people = [
            {
                "full_name": "Ana Lima",
                "email": "ana@lima-consulting.com.br",
                "phone": "+55 11 91234 5678",
            },
            {
                "full_name": "Ana Lima",
                "email": "ana.lima@lima-consulting.com.br",
                "phone": "+55 11 91234-5678",
            },
            {
                "full_name": "A. Lima",
                "email": "ana@lima-consulting.com.br",
                "company": "Lima Consulting",
            },
        ]
        partitions = set()
        for order in itertools.permutations(range(3)):
            tenant = await tenants.create()
            await make_source(client, tenant)
            ids = {i: (await capture(client, tenant, [people[i]]))[0] for i in order}
            async with db.session(tenant.id) as session:
                await dedup_leads(
                    session, tenant.id, [uuid.UUID(ids[i]) for i in order], now=utcnow()
                )
                rows = {str(lead.id): lead for lead in await session.scalars(select(Lead))}

            groups: dict[str, set[int]] = {}
            for person, lead_id in ids.items():
                into = rows[lead_id].merged_into_id
                groups.setdefault(str(into) if into else lead_id, set()).add(person)
            partitions.add(frozenset(frozenset(g) for g in groups.values()))
        # Which people end up as one lead never depends on the order they arrived in.
        assert len(partitions) == 1


class TestManualMergeAndUndo:
    async def test_preview_merge_and_undo(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        await make_source(client, tenant)
        a, b = await capture(
            client,
            tenant,
            [
                {"full_name": "Lin Chen", "email": "lin@chen.dev"},
                {"full_name": "Lin Chen", "phone": "+44 20 7946 0958", "city": "London"},
            ],
        )
        headers = await tenant.headers(Role.REP)
        preview = await client.get(f"/v1/leads/{a}/merge-preview?other={b}", headers=headers)
        assert preview.status_code == 200
        fields = preview.json()["fields"]
        assert fields["email"] == {"value": "lin@chen.dev", "from": "survivor", "other": None}
        assert fields["city"]["from"] == "merged"
        assert len(await live_leads(db, tenant)) == 2  # a preview writes nothing

        merged = await client.post(f"/v1/leads/{a}/merge", json={"other": b}, headers=headers)
        assert merged.status_code == 200, merged.text
        live = await live_leads(db, tenant)
        assert [str(lead.id) for lead in live] == [a]
        assert (live[0].phone_e164, live[0].city) == ("+442079460958", "London")

        undone = await client.post(f"/v1/merges/{merged.json()['id']}/undo", headers=headers)
        assert undone.status_code == 200, undone.text
        live = await live_leads(db, tenant)
        assert {str(lead.id) for lead in live} == {a, b}
        restored = next(lead for lead in live if str(lead.id) == a)
        assert (restored.phone_e164, restored.city) == (None, None)
        again = await client.post(f"/v1/merges/{merged.json()['id']}/undo", headers=headers)
        assert again.status_code == 409

    async def test_cannot_merge_a_lead_into_itself_or_across_tenants(
        self, client: httpx.AsyncClient, tenant: TenantCtx, tenants: TenantFactory
    ) -> None:
        await make_source(client, tenant)
        (a,) = await capture(client, tenant, [{"email": "solo@one.io"}])
        headers = await tenant.headers(Role.REP)
        itself = await client.post(f"/v1/leads/{a}/merge", json={"other": a}, headers=headers)
        assert itself.status_code == 409
        other = await tenants.create()
        await make_source(client, other)
        (foreign,) = await capture(client, other, [{"email": "solo@two.io"}])
        cross = await client.post(f"/v1/leads/{a}/merge", json={"other": foreign}, headers=headers)
        assert cross.status_code == 404


class TestReviewQueue:
    async def test_a_likely_match_waits_for_a_person(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        await make_source(client, tenant)
        # An initial and a typo in the company: likely the same person, not sure enough to merge.
        a, b = await capture(
            client,
            tenant,
            [
                {
                    "full_name": "M. Garcia",
                    "company": "Northwind Traders",
                    "email": "mg.nw@gmail.com",
                },
                {
                    "full_name": "Maria Garcia",
                    "company": "Nortwind Traders",
                    "email": "maria.g@yahoo.com",
                },
            ],
        )
        async with db.session(tenant.id) as session:
            first, second = (
                await session.get(Lead, uuid.UUID(a)),
                await session.get(Lead, uuid.UUID(b)),
            )
            assert first is not None
            assert second is not None
            assert score_leads(first, second).decision == Decision.REVIEW
            report = await dedup_leads(
                session, tenant.id, [uuid.UUID(a), uuid.UUID(b)], now=utcnow()
            )
        assert (report.merged, report.reviews) == ([], 1)
        headers = await tenant.headers(Role.REP)
        reviews = (await client.get("/v1/dedup/reviews", headers=headers)).json()
        assert len(reviews) == 1
        assert {c["field"] for c in reviews[0]["contributions"]} >= {"full_name", "company"}
        decided = await client.post(
            f"/v1/dedup/reviews/{reviews[0]['id']}", json={"decision": "merge"}, headers=headers
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["review"]["status"] == "merged"
        live = await live_leads(db, tenant)
        # The older lead survives; these arrived together, so the smaller id breaks the tie.
        assert [str(lead.id) for lead in live] == [str(min(uuid.UUID(a), uuid.UUID(b)))]
        again = await client.post(
            f"/v1/dedup/reviews/{reviews[0]['id']}",
            json={"decision": "keep_apart"},
            headers=headers,
        )
        assert again.status_code == 409


class TestSwitchboards:
    async def test_colleagues_sharing_a_switchboard_are_never_merged_blindly(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        await make_source(client, tenant)
        ids = await capture(
            client,
            tenant,
            [
                {"full_name": "Ann Lee", "company": "Acme Robotics", "phone": "+1 415 555 0100"},
                {"full_name": "Raj Patel", "company": "Acme Robotics", "phone": "+1 415 555 0100"},
                {"company": "Acme Robotics", "phone": "+1 415 555 0100"},
            ],
        )
        assert len(set(ids)) == 3  # an equal phone is not an exact duplicate
        async with db.session(tenant.id) as session:
            report = await dedup_leads(
                session, tenant.id, [uuid.UUID(i) for i in ids], now=utcnow()
            )
        live = await live_leads(db, tenant)
        names = {lead.full_name for lead in live}
        assert {"Ann Lee", "Raj Patel"} <= names  # the two people stay two leads
        assert report.reviews >= 1 or len(live) == 3


class TestDedupCommand:
    async def test_reruns_over_the_whole_tenant(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        urls: DatabaseUrls,
        settings: Settings,
    ) -> None:
        await make_source(client, tenant)
        await capture(client, tenant, SAME_PERSON[:1])
        await capture(client, tenant, SAME_PERSON[1:])
        result = await invoke_cli(
            urls, str(settings.data_dir), "dedup", "--tenant", tenant.slug, "--chunk", "1"
        )
        assert result.exit_code == 0, result.output
        assert "1 merged" in result.output
        assert len(await live_leads(db, tenant)) == 1
