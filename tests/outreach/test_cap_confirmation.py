"""Safe defaults: raising a daily cap or the per-domain throttle above its default asks for the
typed confirmation, the 422 names each field that needs it, and the confirmed change is
audited with what the confirmation was given for. Lowering needs nothing."""

from __future__ import annotations

import httpx
import pytest

from leadrelay.identity.models import Role
from leadrelay.outreach import service
from tests.factories import TenantCtx, TenantFactory


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


async def patch(
    client: httpx.AsyncClient, tenant: TenantCtx, body: dict[str, object]
) -> httpx.Response:
    return await client.patch(
        "/v1/outreach/policy", json=body, headers=await tenant.headers(Role.ADMIN)
    )


async def policy_events(client: httpx.AsyncClient, tenant: TenantCtx) -> list[dict[str, object]]:
    audit = await client.get(
        "/v1/audit",
        params={"action": "outreach.policy_changed"},
        headers=await tenant.headers(Role.ADMIN),
    )
    events: list[dict[str, object]] = audit.json()
    return events


class TestCapConfirmation:
    async def test_raising_caps_names_each_field_and_changes_nothing(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        defaults = (await patch(client, tenant, {})).json()
        email_default = defaults["daily_caps"]["email"]
        refused = await patch(
            client,
            tenant,
            {
                "daily_caps": {"email": email_default + 1, "sms": 0},
                "domain_hourly_cap": defaults["domain_hourly_cap"] + 10,
            },
        )
        assert refused.status_code == 422
        errors = refused.json()["errors"]
        assert errors[0]["field"] == "confirmation"
        assert service.LIVE_CONFIRMATION in errors[0]["reason"]
        named = {e["field"]: e["reason"] for e in errors[1:]}
        assert set(named) == {"daily_caps.email", "domain_hourly_cap"}  # lowering sms: fine
        assert f"default {email_default}" in named["daily_caps.email"]
        current = (await patch(client, tenant, {})).json()
        assert current["daily_caps"] == defaults["daily_caps"]
        # Only the reads above (empty changes) were audited, none confirmed anything.
        assert all(e["data"]["confirmed"] == [] for e in await policy_events(client, tenant))  # type: ignore[index]

    async def test_a_wrong_phrase_is_refused_like_none(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        refused = await patch(
            client, tenant, {"daily_caps": {"voice": 10_000}, "confirmation": "yes"}
        )
        assert refused.status_code == 422
        assert [e["field"] for e in refused.json()["errors"]] == [
            "confirmation",
            "daily_caps.voice",
        ]

    async def test_the_confirmed_raise_is_saved_and_audited(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        raised = await patch(
            client,
            tenant,
            {
                "daily_caps": {"email": 5000},
                "domain_hourly_cap": 50,
                "confirmation": f"  {service.LIVE_CONFIRMATION.upper()} ",
            },
        )
        assert raised.status_code == 200, raised.text
        assert raised.json()["daily_caps"]["email"] == 5000
        assert raised.json()["domain_hourly_cap"] == 50
        assert raised.json()["dry_run"] is True  # raising caps does not leave dry-run
        (event,) = await policy_events(client, tenant)
        data = event["data"]
        assert isinstance(data, dict)
        assert data["confirmed"] == ["daily_caps.email", "domain_hourly_cap"]
        assert data["before"]["daily_caps"]["email"] != 5000
        assert data["after"]["daily_caps"]["email"] == 5000

    async def test_lowering_or_keeping_the_default_needs_no_confirmation(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        defaults = (await patch(client, tenant, {})).json()
        same = await patch(
            client,
            tenant,
            {"daily_caps": {"email": defaults["daily_caps"]["email"]}, "domain_hourly_cap": 1},
        )
        assert same.status_code == 200, same.text
        events = await policy_events(client, tenant)
        assert all(e["data"]["confirmed"] == [] for e in events)  # type: ignore[index]
