"""Drafting in a real browser: a manager sets the sender identity, has a template-injection
payload refused with the sandbox's reason at its field, saves and edits a template, previews a
built-in one, then drafts a message from a lead's page with that template and lands on the
draft's review page with its text; a lead that may not be contacted gets a notice, not an error.
A rep drafts before the sender is set and is pointed to it, and reads the templates without
forms; a reviewer, who may not write drafts, sees no draft form on a lead."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass

import pytest
from playwright.async_api import APIResponse, Page, expect
from sqlalchemy import select

from leadrelay.approvals.models import Draft, DraftStatus
from leadrelay.capture.models import Lead
from leadrelay.core.db import Database
from leadrelay.drafting.templates import CTA_TEXTS
from leadrelay.identity.models import Role
from tests.e2e.conftest import Screenshot
from tests.e2e.test_console import sign_in
from tests.e2e.test_console_capture import make_vetted_source
from tests.e2e.test_console_scoring_routing import capture, csrf_token
from tests.factories import TenantCtx, TenantFactory

pytestmark = pytest.mark.e2e

LEAD = {
    "full_name": "Dana Scully",
    "email": "dana@northwind-traders.com",
    "company": "Northwind Traders",
    "title": "VP Sales",
    "country": "US",
}
INJECTION = "Hi {{ ''.__class__.__mro__ }}"
TEMPLATE_BODY = (
    "Hi {{ lead.first_name }},\n\n"
    "I noticed {{ lead.company }} is growing its sales team.\n\n"
    "{{ cta }}\n"
)
CTA = CTA_TEXTS["book_call"]["friendly"]


@dataclass
class Workspace:
    tenant: TenantCtx
    db: Database
    lead_id: uuid.UUID


@pytest.fixture
async def workspace(tenants: TenantFactory, db: Database) -> Workspace:
    tenant = await tenants.create("Drafting Co")
    await make_vetted_source(db, tenant)
    (lead_id,) = await capture(db, tenant, [LEAD])
    return Workspace(tenant, db, lead_id)


async def drafts_of(workspace: Workspace) -> list[Draft]:
    async with workspace.db.session(workspace.tenant.id) as session:
        return list(await session.scalars(select(Draft)))


async def choose_builtin(page: Page, name: str) -> None:
    """Pick a built-in template to preview. Right after the panel was swapped in, htmx may not
    have bound the select's change handler yet: the change is sent again until it is heard."""
    select = page.get_by_test_id("builtin-select")
    preview = page.get_by_test_id("builtin-preview")
    await select.select_option(name)
    for _ in range(3):
        try:
            await expect(preview).to_have_attribute("data-name", name, timeout=2_000)
            return
        except AssertionError:
            await select.dispatch_event("change")
    await expect(preview).to_have_attribute("data-name", name)


class TestDrafting:
    async def test_sender_template_refused_saved_then_a_draft_from_the_lead(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await sign_in(page, await workspace.tenant.user(Role.MANAGER))
        await page.locator("nav.sidebar").get_by_role("link", name="Templates").click()
        await expect(page.locator("h1")).to_have_text("Templates")
        sender = page.get_by_test_id("sender")
        await expect(sender.get_by_test_id("sender-status")).to_have_text("incomplete")
        await expect(sender.get_by_test_id("sender-missing")).to_contain_text(
            "name, company, postal address"
        )
        await expect(page.get_by_test_id("no-templates")).to_be_visible()
        await screenshot(page, "templates")

        # --- the sender identity --------------------------------------------------------------
        form = page.get_by_test_id("sender-form")
        await form.locator("input[name=name]").fill("Sam Patel")
        await form.locator("input[name=company]").fill("LeadRelay Demo Ltd")
        await form.locator("textarea[name=postal_address]").fill("1 Market Street\nSpringfield")
        await form.locator("input[name=email]").fill("sam@leadrelay-demo.example")
        await page.get_by_test_id("sender-save").click()
        await expect(sender.locator(".notice--success")).to_contain_text("Sender identity saved")
        await expect(sender.get_by_test_id("sender-status")).to_have_text("complete")
        await expect(sender).to_have_attribute("data-complete", "true")
        await expect(form.locator("input[name=name]")).to_have_value("Sam Patel")

        # --- a template-injection payload is refused, with the sandbox's reason --------------
        template_form = page.locator("#new-template").get_by_test_id("template-form")
        await template_form.locator("input[name=name]").fill("Warm intro")
        await template_form.locator("select[name=channel]").select_option("email")
        await template_form.locator("select[name=tone]").select_option("friendly")
        await template_form.locator("input[name=subject]").fill("A note for {{ lead.company }}")
        await template_form.locator("textarea[name=body]").fill(INJECTION)
        await page.get_by_test_id("template-save").click()
        refusal = page.get_by_test_id("template-refusal")
        await expect(refusal).to_contain_text("This template cannot be saved")
        body_errors = page.locator("#new-template [data-field-error=body]")
        await expect(body_errors.first).to_be_visible()
        await expect(body_errors.filter(has_text="private attribute '__mro__'")).to_have_count(1)
        await expect(body_errors.filter(has_text="private attribute '__class__'")).to_have_count(1)
        await expect(page.locator("#new-template [data-field-error=subject]")).to_have_count(0)
        await expect(page.locator("#new-template textarea[name=body]")).to_have_value(INJECTION)
        await expect(page.locator("#new-template textarea[name=body]")).to_have_attribute(
            "aria-invalid", "true"
        )
        await expect(page.get_by_test_id("templates-count")).to_have_text("0")
        await screenshot(page, "templates-injection-refused")

        # The subject only belongs to e-mail: it hides for SMS and shows again for e-mail.
        subject_field = page.locator("#new-template").get_by_test_id("subject-field")
        await template_form.locator("select[name=channel]").select_option("sms")
        await expect(subject_field).to_be_hidden()
        await template_form.locator("select[name=channel]").select_option("email")
        await expect(subject_field).to_be_visible()

        # --- fixed, it is saved ----------------------------------------------------------------
        await page.locator("#new-template textarea[name=body]").fill(TEMPLATE_BODY)
        await page.get_by_test_id("template-save").click()
        notices = page.get_by_test_id("templates-notices")
        await expect(notices.locator(".notice--success")).to_contain_text("Warm intro")
        row = page.locator("#templates-table tr[data-template='Warm intro']")
        await expect(row).to_contain_text("E-mail")
        await expect(row).to_contain_text("friendly")
        await expect(row).to_contain_text("active")
        await expect(page.get_by_test_id("templates-count")).to_have_text("1")
        # The form is empty again for the next one; the same name is refused.
        name_input = page.locator("#new-template input[name=name]")
        await expect(name_input).to_have_value("")
        await name_input.fill("Warm intro")
        await page.locator("#new-template textarea[name=body]").fill("{{ cta }}")
        await page.locator("#new-template input[name=subject]").fill("Hello")
        await page.get_by_test_id("template-save").click()
        await expect(page.locator("#new-template [data-field-error=name]")).to_contain_text(
            "exists"
        )
        await expect(page.get_by_test_id("templates-count")).to_have_text("1")

        # --- a built-in template's text ----------------------------------------------------------
        preview = page.get_by_test_id("builtin-preview")
        await choose_builtin(page, "default.sms.direct")
        await expect(preview.get_by_test_id("builtin-body")).to_contain_text("{{ cta }}")
        await expect(preview.get_by_test_id("builtin-subject")).to_have_count(0)
        await choose_builtin(page, "default.email.formal")
        await expect(preview.get_by_test_id("builtin-subject")).to_contain_text("lead.company")
        await screenshot(page, "templates-saved-and-preview")

        # --- editing the template --------------------------------------------------------------
        await row.get_by_role("link", name="Warm intro").click()
        await expect(page.locator("h1")).to_contain_text("Warm intro")
        edit = page.get_by_test_id("template-form")
        await expect(edit.locator("textarea[name=body]")).to_have_value(TEMPLATE_BODY)
        await edit.locator("input[name=subject]").fill("{{ lead.company }} and its {{ x }}")
        await page.get_by_test_id("template-save").click()
        await expect(page.locator("[data-field-error=subject]")).to_contain_text(
            "unknown variable 'x'"
        )
        await edit.locator("input[name=subject]").fill("A quick note for {{ lead.company }}")
        await page.get_by_test_id("template-save").click()
        await expect(page.get_by_test_id("template-notices")).to_contain_text("saved")
        await expect(edit.locator("input[name=subject]")).to_have_value(
            "A quick note for {{ lead.company }}"
        )
        await screenshot(page, "template-edit")

        # --- drafting from the lead's page -----------------------------------------------------
        await page.goto(f"/console/leads/{workspace.lead_id}")
        card = page.get_by_test_id("draft-message")
        await expect(card).to_be_visible()
        await expect(card.get_by_test_id("sender-missing")).to_have_count(0)
        await expect(card.get_by_test_id("llm-off")).to_be_visible()
        await expect(card.get_by_test_id("llm-options")).to_have_count(0)
        templates = card.get_by_test_id("draft-template")
        ours = templates.locator("option", has_text="Warm intro")
        # Only the chosen channel's templates are offered.
        await card.get_by_test_id("draft-channel").select_option("sms")
        await expect(ours).to_have_attribute("hidden", "")
        await card.get_by_test_id("draft-channel").select_option("email")
        await expect(ours).not_to_have_attribute("hidden", "")
        await templates.select_option(label="Warm intro (friendly)")
        await card.get_by_test_id("draft-tone").select_option("friendly")
        await card.get_by_test_id("draft-cta").select_option("book_call")
        await expect(card.get_by_test_id("draft-submit-review")).to_be_checked()
        await screenshot(page, "lead-draft-form")
        await card.get_by_test_id("draft-create").click()

        await expect(page).to_have_url(re.compile(r"/console/approvals/[0-9a-f-]{36}$"))
        await expect(page.locator("h1")).to_contain_text("Dana Scully")
        await expect(page.get_by_test_id("draft-status")).to_have_text("pending")
        await expect(page.get_by_test_id("draft-subject")).to_contain_text(
            "A quick note for Northwind Traders"
        )
        body = page.get_by_test_id("draft-body")
        await expect(body).to_contain_text("Hi Dana,")
        await expect(body).to_contain_text("I noticed Northwind Traders is growing its sales team.")
        await expect(body).to_contain_text(CTA)
        await expect(page.get_by_test_id("compliance")).to_contain_text("Sam Patel")
        await screenshot(page, "draft-from-lead")
        (draft,) = await drafts_of(workspace)
        assert draft.status == DraftStatus.PENDING
        assert page.url.endswith(f"/console/approvals/{draft.id}")

        # --- a lead that may not be contacted: a notice, nothing drafted -----------------------
        async with workspace.db.session(workspace.tenant.id) as session:
            lead = await session.get(Lead, workspace.lead_id)
            assert lead is not None
            lead.flags = [*(lead.flags or []), "opted_out"]
        await page.goto(f"/console/leads/{workspace.lead_id}")
        card = page.get_by_test_id("draft-message")
        await expect(card.get_by_test_id("not-contactable")).to_contain_text("opted out")
        await card.get_by_test_id("draft-create").click()
        await expect(card.get_by_test_id("draft-notices")).to_contain_text(
            "this lead may not be contacted (opted out)"
        )
        await expect(page).to_have_url(re.compile(f"/console/leads/{workspace.lead_id}$"))
        assert len(await drafts_of(workspace)) == 1


class TestRoles:
    async def test_a_rep_is_sent_to_the_sender_and_reads_templates_only(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await sign_in(page, await workspace.tenant.user(Role.REP))
        await page.goto(f"/console/leads/{workspace.lead_id}")
        card = page.get_by_test_id("draft-message")
        await expect(card.get_by_test_id("sender-missing")).to_contain_text(
            "an admin or manager sets it"
        )
        await card.get_by_test_id("draft-create").click()
        refusal = card.get_by_test_id("draft-notices").locator(".notice--error")
        await expect(refusal).to_contain_text("set the sender identity first")
        await expect(refusal).to_contain_text("Missing: name, company, postal address")
        await expect(refusal.get_by_role("link", name="Sender identity")).to_have_attribute(
            "href", "/console/templates#sender"
        )
        await screenshot(page, "lead-draft-sender-missing")
        assert await drafts_of(workspace) == []

        await refusal.get_by_role("link", name="Sender identity").click()
        await expect(page.locator("h1")).to_have_text("Templates")
        await expect(page.get_by_test_id("sender-read-only")).to_be_visible()
        await expect(page.get_by_test_id("sender-form")).to_have_count(0)
        await expect(page.get_by_test_id("template-form")).to_have_count(0)
        await expect(page.get_by_test_id("builtin-copy")).to_have_count(0)
        await expect(page.locator("#builtins-table tbody tr")).to_have_count(12)
        await screenshot(page, "templates-read-only")

        token = await csrf_token(page)
        for path, form in (
            ("/console/templates", {"name": "x", "channel": "sms", "body": "{{ cta }}"}),
            ("/console/templates/sender", {"name": "x", "company": "y", "postal_address": "z"}),
            (f"/console/templates/{uuid.uuid4()}", {"name": "x", "channel": "sms", "body": "b"}),
        ):
            response = await page.request.post(path, form={"csrf_token": token, **form})
            assert response.status == 403, (path, response.status)

    async def test_a_reviewer_sees_no_draft_form(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await sign_in(page, await workspace.tenant.user(Role.REVIEWER))
        await page.goto(f"/console/leads/{workspace.lead_id}")
        await expect(page.locator("h1")).to_have_text("Dana Scully")
        await expect(page.get_by_test_id("lead-fields")).to_be_visible()
        await expect(page.get_by_test_id("draft-message")).to_have_count(0)
        await expect(page.get_by_test_id("draft-form")).to_have_count(0)
        await screenshot(page, "lead-detail-reviewer")
        # The templates page is readable with drafts:read.
        await page.locator("nav.sidebar").get_by_role("link", name="Templates").click()
        await expect(page.locator("h1")).to_have_text("Templates")
        await expect(page.get_by_test_id("sender-form")).to_have_count(0)

        token = await csrf_token(page)
        response = await page.request.post(
            f"/console/leads/{workspace.lead_id}/drafts",
            form={"csrf_token": token, "channel": "email", "submit": "on"},
        )
        assert response.status == 403
        assert await drafts_of(workspace) == []


class TestWithoutJavaScript:
    async def test_plain_form_posts_redirect_or_render_whole_pages(
        self, page: Page, workspace: Workspace
    ) -> None:
        """What a browser without htmx gets: a redirect after success, a whole page with the
        reasons after a refusal (never a fragment, never a 500)."""
        await sign_in(page, await workspace.tenant.user(Role.ADMIN))
        await page.goto("/console/templates")
        token = await csrf_token(page)

        def post(path: str, form: dict[str, str], **headers: str) -> Awaitable[APIResponse]:
            return page.request.post(
                path, form={"csrf_token": token, **form}, headers=headers, max_redirects=0
            )

        lead = f"/console/leads/{workspace.lead_id}/drafts"
        refused = await post(lead, {"channel": "email", "submit": "on"})
        assert refused.status == 409
        html = await refused.text()
        assert "<h1>Draft a message</h1>" in html
        assert "set the sender identity first" in html

        saved = await post(
            "/console/templates/sender",
            {"name": "Sam Patel", "company": "Demo Ltd", "postal_address": "1 Main St"},
        )
        assert saved.status == 200
        assert "Sender identity saved" in await saved.text()

        injected = await post(
            "/console/templates", {"name": "Bad", "channel": "sms", "body": INJECTION}
        )
        assert injected.status == 422
        assert "private attribute &#39;__mro__&#39; is not accessible" in await injected.text()
        created = await post(
            "/console/templates",
            {"name": "Short", "channel": "sms", "body": "{{ cta }}", "active": "on"},
        )
        assert created.status == 303
        assert re.fullmatch(r"/console/templates/[0-9a-f-]{36}", created.headers["location"])

        mismatch = await post(
            lead, {"channel": "email", "template": "builtin:default.sms.direct", "submit": "on"}
        )
        assert mismatch.status == 422
        assert "it is for sms" in await mismatch.text()
        unknown = await post(lead, {"channel": "email", "template": f"{uuid.uuid4()}"})
        assert unknown.status == 404
        assert "that template no longer exists" in await unknown.text()
        bad_channel = await post(lead, {"channel": "fax"})
        assert bad_channel.status == 422
        assert "check the marked fields" in await bad_channel.text()
        assert await drafts_of(workspace) == []

        drafted = await post(lead, {"channel": "sms", "tone": "direct", "cta": "reply"})
        assert drafted.status == 303
        (draft,) = await drafts_of(workspace)
        assert drafted.headers["location"] == f"/console/approvals/{draft.id}"
        assert draft.status == DraftStatus.DRAFT  # not submitted: the box was not ticked
        # The tenant default for SMS: its one active SMS template.
        assert draft.template == created.headers["location"].rsplit("/", 1)[1]
        htmx = await post(lead, {"channel": "email", "submit": "on"}, **{"HX-Request": "true"})
        assert htmx.status == 200
        assert re.fullmatch(r"/console/approvals/[0-9a-f-]{36}", htmx.headers["hx-redirect"])

        fragment = await page.request.get(
            "/console/templates/builtin?preview=default.voice.formal",
            headers={"HX-Request": "true"},
        )
        assert fragment.status == 200
        assert 'data-name="default.voice.formal"' in await fragment.text()
        assert "<html" not in await fragment.text()
        missing = await page.request.get("/console/templates/builtin?preview=nope")
        assert missing.status == 404
