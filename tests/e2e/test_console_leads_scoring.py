"""Scores and owners on the console's leads, in a real browser: the list filtered by score and by
owner (a rep, or unassigned), a bad score in the URL that becomes a warning, and a lead's detail
with its score breakdown and the trace of the routing decision; a reviewer, who may not read
scoring or routing, sees the leads without either."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.identity.models import Role
from leadrelay.routing import service as routing
from leadrelay.routing.models import Assignment, Rep, RoutingRuleRow, Team
from leadrelay.scoring import icp
from leadrelay.scoring import service as scoring
from tests.e2e.conftest import Screenshot
from tests.e2e.test_console import sign_in
from tests.e2e.test_console_capture import make_vetted_source
from tests.e2e.test_console_scoring_routing import capture
from tests.factories import TenantCtx, TenantFactory

pytestmark = pytest.mark.e2e

RULES: list[dict[str, Any]] = [
    {
        "id": "us",
        "label": "Based in the US",
        "when": [{"fact": "country", "op": "equals", "value": "US"}],
        "points": 40,
    },
    {
        "id": "leader",
        "label": "Sales leadership",
        "when": [{"fact": "title", "op": "regex", "value": r"\b(vp|head|chief)\b"}],
        "points": 40,
    },
    {
        "id": "intern",
        "label": "Intern",
        "when": [{"fact": "title", "op": "contains", "value": "intern"}],
        "points": -30,
    },
]
# Scored with the rules above (threshold 60): Grace 80, Katherine 80, Ada 40, Alan -30 → 0.
SCORED = {
    "grace": {
        "full_name": "Grace Hopper",
        "email": "grace@navy-labs.com",
        "title": "VP Sales",
        "country": "US",
    },
    "katherine": {
        "full_name": "Katherine Johnson",
        "email": "katherine@langley-research.com",
        "title": "Head of Research",
        "country": "US",
    },
    "ada": {
        "full_name": "Ada Lovelace",
        "email": "ada@analytical-engines.co.uk",
        "title": "Chief Analyst",
        "country": "GB",
    },
    "alan": {
        "full_name": "Alan Turing",
        "email": "alan@bletchley-park.co.uk",
        "title": "Engineering Intern",
        "country": "GB",
    },
}
# Captured after scoring: neither scored nor routed.
UNSCORED = {"full_name": "Linus Torvalds", "email": "linus@kernel-dev.org", "country": "FI"}


@dataclass
class Workspace:
    tenant: TenantCtx
    db: Database
    lead_ids: dict[str, uuid.UUID]
    reps: dict[str, uuid.UUID]


async def score_and_route(
    db: Database, tenant: TenantCtx, lead_ids: dict[str, uuid.UUID]
) -> dict[str, uuid.UUID]:
    """An active ICP version scores the four leads; two teams of one rep each and two rules
    route them: qualified VPs to Anna (Enterprise), other qualified US leads to Ben (Inbound),
    the rest to the work queue. Returns the reps' ids by first name."""
    now = utcnow()
    async with db.session(tenant.id) as session:
        body = icp.RuleSetBody.model_validate({"rules": RULES, "threshold": 60})
        draft = await scoring.create_draft(session, tenant.owner, body, now=now)
        version, _ = await scoring.activate(session, tenant.owner, draft.id, now=now)
        run = await scoring.score_leads(
            session, tenant.id, list(lead_ids.values()), now=now, version=version, route=False
        )
        assert sorted(run.qualified) == sorted([lead_ids["grace"], lead_ids["katherine"]]), run

        enterprise = Team(tenant_id=tenant.id, name="Enterprise", sla_minutes=30)
        inbound = Team(tenant_id=tenant.id, name="Inbound US")
        session.add_all([enterprise, inbound])
        await session.flush()
        anna = Rep(tenant_id=tenant.id, team_id=enterprise.id, name="Anna Berg")
        ben = Rep(tenant_id=tenant.id, team_id=inbound.id, name="Ben Ortiz")
        session.add_all(
            [
                anna,
                ben,
                RoutingRuleRow(
                    tenant_id=tenant.id,
                    name="Qualified VPs",
                    position=1,
                    when=[
                        {"fact": "score", "op": "gte", "value": 60},
                        {"fact": "title", "op": "regex", "value": r"\bvp\b"},
                    ],
                    team_id=enterprise.id,
                ),
                RoutingRuleRow(
                    tenant_id=tenant.id,
                    name="Qualified US",
                    position=2,
                    when=[
                        {"fact": "score", "op": "gte", "value": 60},
                        {"fact": "country", "op": "equals", "value": "US"},
                    ],
                    team_id=inbound.id,
                ),
            ]
        )
        await session.flush()
        routed = await routing.route_leads(session, tenant.id, list(lead_ids.values()), now=now)
        assert len(routed) == 4, routed
        owners = {
            row.lead_id: row.rep_id
            for row in await session.scalars(
                select(Assignment).where(Assignment.rep_id.is_not(None))
            )
        }
        assert owners == {lead_ids["grace"]: anna.id, lead_ids["katherine"]: ben.id}, owners
        return {"anna": anna.id, "ben": ben.id}


@pytest.fixture
async def workspace(tenants: TenantFactory, db: Database) -> Workspace:
    tenant = await tenants.create("Score Co")
    await make_vetted_source(db, tenant)
    ids = await capture(db, tenant, list(SCORED.values()))
    lead_ids = dict(zip(SCORED, ids, strict=True))
    reps = await score_and_route(db, tenant, lead_ids)
    (lead_ids["linus"],) = await capture(db, tenant, [UNSCORED])
    return Workspace(tenant, db, lead_ids, reps)


def names(*keys: str) -> list[str]:
    every = {**{key: row["full_name"] for key, row in SCORED.items()}, "linus": "Linus Torvalds"}
    return sorted(every[key] for key in keys)


async def listed(page: Page) -> list[str]:
    return sorted(await page.locator("#leads-table tbody tr td:first-child a").all_inner_texts())


class TestLeadsList:
    async def test_scores_and_owners_filter_by_score_owner_and_unassigned(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await sign_in(page, await workspace.tenant.user(Role.MANAGER))
        await page.goto("/console/leads")
        rows = page.locator("#leads-table tbody tr")
        await expect(rows).to_have_count(5)
        head = page.locator("#leads-table thead")
        await expect(head).to_contain_text("Score")
        await expect(head).to_contain_text("Owner")

        grace = rows.filter(has_text="Grace Hopper")
        await expect(grace.locator("[data-col=score] .score-badge")).to_have_text("80")
        await expect(grace.locator(".score-badge--qualified")).to_have_count(1)
        await expect(grace.locator("[data-col=owner]")).to_have_text("Anna Berg")
        ada = rows.filter(has_text="Ada Lovelace")
        await expect(ada.locator("[data-col=score]")).to_have_text("40")
        await expect(ada.locator(".score-badge--qualified")).to_have_count(0)
        alan = rows.filter(has_text="Alan Turing")
        await expect(alan.locator("[data-col=score]")).to_have_text("0")
        await expect(alan.locator("[data-col=owner]")).to_contain_text("queued")
        await expect(alan.locator("[data-col=owner]")).to_contain_text("No rule matched")
        linus = rows.filter(has_text="Linus Torvalds")
        await expect(linus.locator("[data-col=score]")).to_have_text("—")
        await expect(linus.locator("[data-col=owner]")).to_have_text("—")
        await expect(rows.filter(has_text="Katherine Johnson")).to_contain_text("Ben Ortiz")
        await screenshot(page, "leads-scores-owners")

        filters = page.locator("#lead-filters")
        await filters.locator("input[name=min_score]").fill("60")
        await expect(rows).to_have_count(2)
        assert await listed(page) == names("grace", "katherine")
        await expect(page).to_have_url(re.compile(r"min_score=60"))
        await expect(rows.locator(".score-badge--qualified")).to_have_count(2)
        await screenshot(page, "leads-score-at-least-60")

        await filters.locator("input[name=min_score]").fill("")
        await filters.locator("select[name=owner]").select_option(label="Anna Berg")
        await expect(rows).to_have_count(1)
        await expect(rows).to_contain_text("Grace Hopper")
        await expect(page).to_have_url(re.compile(rf"owner={workspace.reps['anna']}"))

        await filters.locator("select[name=owner]").select_option(label="Unassigned")
        await expect(rows).to_have_count(3)
        assert await listed(page) == names("ada", "alan", "linus")
        await expect(page).to_have_url(re.compile(r"owner=unassigned"))

        # Both filters at once, kept through a reload of the URL.
        await filters.locator("input[name=min_score]").fill("30")
        await expect(rows).to_have_count(1)
        await expect(rows).to_contain_text("Ada Lovelace")
        await page.reload()
        await expect(rows).to_have_count(1)
        await expect(filters.locator("input[name=min_score]")).to_have_value("30")
        await expect(filters.locator("select[name=owner]")).to_have_value("unassigned")

    async def test_bad_score_and_owner_become_warnings_and_the_list_still_renders(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await sign_in(page, await workspace.tenant.user(Role.MANAGER))
        await page.goto("/console/leads?min_score=abc")
        notice = page.locator("#leads-list .notice--warning")
        await expect(notice).to_contain_text("Ignored the score 'abc'")
        await expect(page.locator("#leads-table tbody tr")).to_have_count(5)
        await screenshot(page, "leads-bad-score")

        await page.goto("/console/leads?min_score=101")
        await expect(notice).to_contain_text("from 0 to 100")
        await expect(page.locator("#leads-table tbody tr")).to_have_count(5)
        await page.goto("/console/leads?owner=nobody")
        await expect(notice).to_contain_text("not a rep id")
        await page.goto(f"/console/leads?owner={uuid.uuid4()}")
        await expect(notice).to_contain_text("not a rep here")
        await expect(page.locator("#leads-table tbody tr")).to_have_count(5)

    async def test_reviewer_sees_leads_without_scores_or_owners(
        self, page: Page, workspace: Workspace
    ) -> None:
        await sign_in(page, await workspace.tenant.user(Role.REVIEWER))
        await page.goto("/console/leads?min_score=60")
        await expect(page.locator("#leads-table tbody tr")).to_have_count(5)
        await expect(page.locator("#leads-list .notice--warning")).to_contain_text(
            "scores are hidden"
        )
        await expect(page.locator("#leads-table thead")).not_to_contain_text("Score")
        await expect(page.locator("#lead-filters select[name=owner]")).to_have_count(0)
        await page.goto(f"/console/leads/{workspace.lead_ids['grace']}")
        await expect(page.locator("h1")).to_have_text("Grace Hopper")
        await expect(page.get_by_test_id("lead-score")).to_have_count(0)
        await expect(page.get_by_test_id("lead-routing")).to_have_count(0)


class TestLeadDetail:
    async def test_score_breakdown_and_routing_trace(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await sign_in(page, await workspace.tenant.user(Role.MANAGER))
        await page.goto("/console/leads?min_score=60")
        await page.get_by_role("link", name="Grace Hopper").click()
        await expect(page).to_have_url(
            re.compile(rf"/console/leads/{workspace.lead_ids['grace']}$")
        )

        card = page.get_by_test_id("lead-score")
        await expect(card.get_by_test_id("score-value")).to_have_text("80/100")
        await expect(card.locator(".badge--good")).to_have_text("qualified")
        await expect(card).to_contain_text("qualifies at 60")
        await expect(card.get_by_test_id("score-version")).to_have_text("ICP version 1")
        breakdown = card.locator("#score-breakdown tbody tr")
        await expect(breakdown).to_have_count(2)
        us = card.locator("tr[data-rule=us]")
        await expect(us).to_contain_text("Based in the US")
        await expect(us).to_contain_text("+40")
        await expect(us.locator(".kv")).to_have_text(re.compile(r"country\s+US"))
        leader = card.locator("tr[data-rule=leader]")
        await expect(leader).to_contain_text("Sales leadership")
        await expect(leader.locator(".kv")).to_have_text(re.compile(r"title\s+VP Sales"))

        routed = page.get_by_test_id("lead-routing")
        await expect(routed).to_have_attribute("data-status", "assigned")
        await expect(routed.get_by_test_id("routing-team")).to_have_text("Enterprise")
        await expect(routed.get_by_test_id("routing-rep")).to_have_text("Anna Berg")
        await expect(routed.get_by_test_id("routing-sla")).to_contain_text(re.compile(r"min left"))
        trace = routed.get_by_test_id("trace")
        await expect(trace.locator("[data-step=start]")).to_contain_text("score 80")
        await expect(trace.locator("[data-step=rule]")).to_contain_text("Qualified VPs")
        await expect(trace.locator("[data-step=rule]")).to_contain_text("matched")
        await expect(trace.locator("[data-step=team]")).to_contain_text("Enterprise")
        await expect(trace.locator("[data-step=rep]")).to_contain_text("Anna Berg")
        await expect(trace.locator("[data-step=rep]")).to_contain_text("kept")
        await expect(trace.locator("[data-step=decision]")).to_contain_text("assigned to Anna Berg")
        await screenshot(page, "lead-detail-score-routing")

        # The second rule took Katherine: the first one's failed condition shows why not.
        await page.goto(f"/console/leads/{workspace.lead_ids['katherine']}")
        trace = page.get_by_test_id("trace")
        first = trace.locator("[data-step=rule]").nth(0)
        await expect(first).to_contain_text("not matched")
        await expect(first).to_contain_text("the lead has Head of Research")
        await expect(trace.locator("[data-step=decision]")).to_contain_text("assigned to Ben Ortiz")

        # Points can take away: Alan's total is below zero, clipped to 0, and he is queued.
        await page.goto(f"/console/leads/{workspace.lead_ids['alan']}")
        card = page.get_by_test_id("lead-score")
        await expect(card.get_by_test_id("score-value")).to_have_text("0/100")
        await expect(card).to_contain_text("not qualified")
        await expect(card).to_contain_text("-30 points in all, clipped to 0")
        await expect(card.locator("tr[data-rule=intern]")).to_contain_text("-30")
        routed = page.get_by_test_id("lead-routing")
        await expect(routed).to_have_attribute("data-status", "queued")
        await expect(routed).to_contain_text("No rule matched")
        await expect(routed.get_by_test_id("routing-rep")).to_have_text("—")
        await expect(
            routed.get_by_test_id("trace").locator("[data-step=decision]")
        ).to_contain_text("queued: no rule matched")
        await screenshot(page, "lead-detail-queued")

        await page.goto(f"/console/leads/{workspace.lead_ids['linus']}")
        await expect(page.get_by_test_id("not-scored")).to_contain_text("Not scored by version 1")
        await expect(page.get_by_test_id("not-routed")).to_contain_text("Not routed yet")
        await expect(page.get_by_test_id("lead-routing")).to_have_attribute("data-status", "none")
