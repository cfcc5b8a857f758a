"""The HubSpot outcome connector over real HTTP, against a HubSpot served on loopback.

Where the payload shapes come from (details per file in fixtures/README-hubspot.md):
- deal search request/response: HubSpot's CRM search guide and the "Search deals" reference
  (POST /crm/v3/objects/deals/search: filterGroups/filters, sorts, properties, limit, after;
  answer `{"total", "results": [{"id", "properties", "createdAt", "updatedAt", "archived"}],
  "paging": {"next": {"after", "link"}}}`);
- associations: the v4 "Batch read associations" reference (POST
  /crm/v4/associations/{from}/{to}/batch/read, `{"inputs": [{"id", "after"}]}`; answer
  `results[].from.id`, `results[].to[].toObjectId/associationTypes`, per-input `paging`,
  `errors` for inputs without associations);
- contacts: the "Read a batch of contacts" reference (POST /crm/v3/objects/contacts/batch/read);
- errors: "API error responses" (developers.hubspot.com/docs/faq/api-error-responses), a 401
  body quoted in HubSpot/hubspot-api-nodejs#148, a 429 body quoted in HGData/mk-node-hubspot#89.
"""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadrelay.crm import hubspot
from leadrelay.crm.hubspot import (
    ASSOCIATIONS_PATH,
    CONTACTS_PATH,
    SEARCH_PATH,
    DealProblem,
    HubSpotAuthError,
    HubSpotClient,
    HubSpotError,
)
from leadrelay.crm.outcomes import OutcomeLabel, OutcomeRecord
from tests.crm.hubspot_server import Answer, HubSpotServer, hubspot_server, ok

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"  # a private app token's form
DISQUALIFIED_STAGE = "83291674"  # a tenant's custom stage id
SINCE = datetime(2024, 5, 1, tzinfo=UTC)
SINCE_MILLIS = "1714521600000"
PROPERTIES = [
    "dealname",
    "amount",
    "closedate",
    "dealstage",
    "deal_currency_code",
    "hs_is_closed_won",
    "hs_lastmodifieddate",
]
CLOSED = {"propertyName": "hs_is_closed", "operator": "EQ", "value": "true"}
SORTS = [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
EMPTY_ASSOCIATIONS = {"status": "COMPLETE", "results": []}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def search_body(*, since_millis: str | None = None, after: str | None = None) -> dict[str, Any]:
    filters: list[dict[str, str]] = [CLOSED]
    if since_millis is not None:
        filters.append(
            {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": since_millis}
        )
    body: dict[str, Any] = {
        "filterGroups": [{"filters": filters}],
        "sorts": SORTS,
        "properties": PROPERTIES,
        "limit": 100,
    }
    if after is not None:
        body["after"] = after
    return body


def one_page(*deals: dict[str, Any]) -> dict[str, Any]:
    return {"total": len(deals), "results": list(deals)}


def deal(index: int, **properties: str | None) -> dict[str, Any]:
    found: dict[str, Any] = copy.deepcopy(
        fixture("hubspot_deals_search_page1.json")["results"][index]
    )
    found["properties"].update(properties)
    return found


class Sleeps:
    """Stands in for asyncio.sleep: records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def server() -> Iterator[HubSpotServer]:
    with hubspot_server() as running:
        yield running


def client_for(server: HubSpotServer, **options: Any) -> HubSpotClient:
    options.setdefault("sleep", Sleeps())
    return HubSpotClient(server.base_url, TOKEN, **options)


async def collect(client: HubSpotClient, since: datetime | None = None) -> list[OutcomeRecord]:
    return [record async for record in client.closed_deals(since=since)]


def serve_two_pages(server: HubSpotServer) -> None:
    server.serve(
        SEARCH_PATH,
        ok(fixture("hubspot_deals_search_page1.json")),
        ok(fixture("hubspot_deals_search_page2.json")),
    )
    server.serve(
        ASSOCIATIONS_PATH,
        # A deal without contacts is reported in `errors`, with a 207.
        Answer(207, fixture("hubspot_associations_page1.json")),
        ok(fixture("hubspot_associations_page2.json")),
        ok(fixture("hubspot_associations_page2_next.json")),
    )
    server.serve(
        CONTACTS_PATH,
        ok(fixture("hubspot_contacts_page1.json")),
        ok(fixture("hubspot_contacts_page2.json")),
    )


async def test_two_pages_of_closed_deals_become_outcomes(server: HubSpotServer) -> None:
    serve_two_pages(server)
    client = client_for(server, stage_labels={DISQUALIFIED_STAGE: OutcomeLabel.DISQUALIFIED})

    records = await collect(client, since=SINCE)

    assert records == [
        OutcomeRecord(
            source="hubspot",
            external_id="18044191425",
            label=OutcomeLabel.WON,
            closed_at=datetime(2024, 5, 14, 15, 2, 11, 345000, tzinfo=UTC),
            amount=Decimal("1500.00"),
            currency="EUR",
            emails=("jose@muller-gmbh.de", "buyer@muller-gmbh.de"),
        ),
        OutcomeRecord(
            source="hubspot",
            external_id="18044191426",
            label=OutcomeLabel.LOST,
            closed_at=datetime(2024, 5, 15, 10, 0, tzinfo=UTC),
            amount=None,
            currency=None,
            emails=(),
        ),
        OutcomeRecord(
            source="hubspot",
            external_id="18044191427",
            label=OutcomeLabel.DISQUALIFIED,
            closed_at=datetime(2024, 5, 16, tzinfo=UTC),
            amount=Decimal("250"),
            currency="USD",
            emails=("zoe@alander.se",),  # contact 104 has no e-mail
        ),
    ]
    for record in records:
        assert record.closed_at.utcoffset() is not None
        assert record.lead_id is None
    # The deal without a closedate is skipped, and said so; its change still counts.
    assert client.problems == [DealProblem("18044191428", "closedate", "missing", skipped=True)]
    assert client.last_modified == datetime(2024, 5, 17, 7, 0, tzinfo=UTC)

    requests = server.received()
    assert [r.path for r in requests] == [
        SEARCH_PATH,
        ASSOCIATIONS_PATH,
        CONTACTS_PATH,
        SEARCH_PATH,
        ASSOCIATIONS_PATH,
        ASSOCIATIONS_PATH,
        CONTACTS_PATH,
    ]
    for request in requests:
        assert request.method == "POST"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["content-type"] == "application/json"
    assert [r.json for r in requests] == [
        search_body(since_millis=SINCE_MILLIS),
        {"inputs": [{"id": "18044191425"}, {"id": "18044191426"}]},
        {
            "inputs": [{"id": "101"}, {"id": "102"}],
            "properties": ["email"],
            "propertiesWithHistory": [],
        },
        search_body(since_millis=SINCE_MILLIS, after="2"),
        # Deal 18044191428 is skipped before its contacts are asked for.
        {"inputs": [{"id": "18044191427"}]},
        {"inputs": [{"id": "18044191427", "after": "MTAz"}]},
        {
            "inputs": [{"id": "103"}, {"id": "104"}],
            "properties": ["email"],
            "propertiesWithHistory": [],
        },
    ]


async def test_without_since_all_closed_deals_and_without_stage_map_custom_stages_are_lost(
    server: HubSpotServer,
) -> None:
    serve_two_pages(server)
    client = client_for(server)

    records = await collect(client)

    assert [r.label for r in records] == [OutcomeLabel.WON, OutcomeLabel.LOST, OutcomeLabel.LOST]
    searches = server.received(SEARCH_PATH)
    assert [r.json for r in searches] == [search_body(), search_body(after="2")]


@pytest.mark.parametrize(
    ("properties", "stage_labels", "expected"),
    [
        ({"dealstage": "closedwon", "hs_is_closed_won": "true"}, {}, OutcomeLabel.WON),
        ({"dealstage": "contractsigned", "hs_is_closed_won": "true"}, {}, OutcomeLabel.WON),
        ({"dealstage": "closedwon"}, {}, OutcomeLabel.WON),
        ({"dealstage": "closedlost", "hs_is_closed_won": "false"}, {}, OutcomeLabel.LOST),
        ({"dealstage": "123", "hs_is_closed_won": "false"}, {}, OutcomeLabel.LOST),
        (
            {"dealstage": "123", "hs_is_closed_won": "false"},
            {"123": OutcomeLabel.DISQUALIFIED},
            OutcomeLabel.DISQUALIFIED,
        ),
        # The tenant's map wins over HubSpot's won flag and the default won stage.
        (
            {"dealstage": "closedwon", "hs_is_closed_won": "true"},
            {"closedwon": OutcomeLabel.DISQUALIFIED},
            OutcomeLabel.DISQUALIFIED,
        ),
    ],
)
def test_deal_label(
    properties: dict[str, str], stage_labels: dict[str, OutcomeLabel], expected: OutcomeLabel
) -> None:
    assert hubspot.deal_label(properties, stage_labels) == expected


async def test_unreadable_values_are_reported_never_silently_dropped(
    server: HubSpotServer,
) -> None:
    server.serve(
        SEARCH_PATH,
        ok(
            one_page(
                deal(0, closedate="14/05/2024"),
                deal(1, amount="-5", deal_currency_code="EURO"),
                {
                    "id": "18044191499",
                    "properties": {"amount": "NaN", "closedate": "1715695331345"},
                },
            )
        ),
    )
    server.serve(ASSOCIATIONS_PATH, ok(EMPTY_ASSOCIATIONS))
    client = client_for(server)

    records = await collect(client)

    assert [(r.external_id, r.amount, r.currency) for r in records] == [
        ("18044191426", None, None),
        ("18044191499", None, None),
    ]
    # Epoch milliseconds are a HubSpot date too.
    assert records[1].closed_at == datetime(2024, 5, 14, 14, 2, 11, 345000, tzinfo=UTC)
    assert client.problems == [
        DealProblem("18044191425", "closedate", "unparseable: '14/05/2024'", skipped=True),
        DealProblem("18044191426", "amount", "negative", skipped=False),
        DealProblem("18044191426", "deal_currency_code", "not an ISO 4217 currency code", False),
        DealProblem("18044191499", "amount", "not a finite number", skipped=False),
    ]
    # Contacts are asked for the deals that made a record only; none had any.
    assert server.received(ASSOCIATIONS_PATH)[0].json == {
        "inputs": [{"id": "18044191426"}, {"id": "18044191499"}]
    }
    assert server.received(CONTACTS_PATH) == []


@pytest.mark.parametrize(
    ("retry_after", "waited"),
    [("3", 3.0), ("30", 10.0), (None, 1.0), ("soon", 1.0)],
)
async def test_rate_limit_waits_retry_after_capped_then_retries(
    server: HubSpotServer, retry_after: str | None, waited: float
) -> None:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    server.serve(
        SEARCH_PATH,
        Answer(429, fixture("hubspot_error_429.json"), headers),
        ok(one_page(deal(1))),
    )
    server.serve(ASSOCIATIONS_PATH, Answer(207, fixture("hubspot_associations_page1.json")))
    sleeps = Sleeps()
    client = client_for(server, sleep=sleeps)

    records = await collect(client)

    assert [r.external_id for r in records] == ["18044191426"]
    assert sleeps.waits == [waited]
    searches = server.received(SEARCH_PATH)
    assert len(searches) == 2
    assert searches[0].json == searches[1].json == search_body()


async def test_rate_limit_that_does_not_lift_is_an_error(server: HubSpotServer) -> None:
    server.serve(SEARCH_PATH, Answer(429, fixture("hubspot_error_429.json"), {"Retry-After": "1"}))
    sleeps = Sleeps()
    client = client_for(server, sleep=sleeps, rate_limit_retries=2)

    with pytest.raises(HubSpotError) as raised:
        await collect(client)

    error = raised.value
    assert not isinstance(error, HubSpotAuthError)
    assert error.status == 429
    assert error.category == "RATE_LIMIT"
    assert error.correlation_id == "6828d000-3d2f-4701-8d90-b21e53b0d005"
    assert error.message.startswith("You have reached your secondly limit.")
    assert error.retryable
    assert sleeps.waits == [1.0, 1.0]
    assert len(server.received(SEARCH_PATH)) == 3


async def test_unauthorized_is_an_auth_error_without_retry(server: HubSpotServer) -> None:
    server.serve(SEARCH_PATH, Answer(401, fixture("hubspot_error_401.json")))
    async with httpx.AsyncClient() as http:
        client = HubSpotClient(server.base_url, TOKEN, client=http, sleep=Sleeps())

        with pytest.raises(HubSpotAuthError) as raised:
            await collect(client)

        assert not http.is_closed  # a client passed in belongs to the caller
    error = raised.value
    assert error.status == 401
    assert error.category == "INVALID_AUTHENTICATION"
    assert error.correlation_id == "cead9e40-5345-405d-aeea-edc6f13b8cb1"
    assert "Authentication credentials not found." in error.message
    assert not error.retryable
    assert TOKEN not in str(error)
    assert str(error).startswith("HubSpot answered 401 (INVALID_AUTHENTICATION): Authentication")
    assert str(error).endswith("[correlationId cead9e40-5345-405d-aeea-edc6f13b8cb1]")
    assert len(server.received()) == 1


async def test_error_body_is_parsed(server: HubSpotServer) -> None:
    server.serve(SEARCH_PATH, Answer(400, fixture("hubspot_error_validation.json")))

    with pytest.raises(HubSpotError) as raised:
        await collect(client_for(server))

    error = raised.value
    assert (error.status, error.category, error.correlation_id) == (
        400,
        "VALIDATION_ERROR",
        "a43683b0-5717-4ceb-80b4-104d02915d8c",
    )
    assert error.message == (
        f"This will be a human readable message with details about the error. (POST {SEARCH_PATH})"
    )
    assert not error.retryable


async def test_server_error_mid_run_without_json_body(server: HubSpotServer) -> None:
    server.serve(SEARCH_PATH, ok(one_page(deal(0))))
    server.serve(
        ASSOCIATIONS_PATH,
        Answer(
            500,
            b"<html><body>Internal Server Error</body></html>",
            {"X-HubSpot-Correlation-Id": "0d9f1c9e-6b1a-4c4e-9d36-5c1b7a3f2e11"},
        ),
    )
    client = client_for(server)
    received: list[OutcomeRecord] = []

    async def consume() -> None:
        async for record in client.closed_deals():
            received.append(record)

    with pytest.raises(HubSpotError) as raised:
        await consume()

    assert received == []  # a page's records come out only once its contacts are known
    assert client.last_modified is None  # the failed page will be read again
    error = raised.value
    assert error.status == 500
    assert error.retryable
    assert error.correlation_id == "0d9f1c9e-6b1a-4c4e-9d36-5c1b7a3f2e11"
    assert error.message == f"Internal Server Error (POST {ASSOCIATIONS_PATH})"
    assert len(server.received(ASSOCIATIONS_PATH)) == 1  # a 500 is not retried here


async def test_search_cap_restarts_from_the_last_change_seen(server: HubSpotServer) -> None:
    newer = deal(1, hs_lastmodifieddate="2024-05-15T11:00:00.000Z")
    newer["id"] = "18044191429"
    server.serve(
        SEARCH_PATH,
        ok(fixture("hubspot_deals_search_page1.json")),  # next page would be `after` "2"
        ok(one_page(deal(1), newer)),  # the restart repeats the boundary deal
    )
    server.serve(
        ASSOCIATIONS_PATH,
        Answer(207, fixture("hubspot_associations_page1.json")),
        ok(EMPTY_ASSOCIATIONS),
    )
    server.serve(CONTACTS_PATH, ok(fixture("hubspot_contacts_page1.json")))
    client = client_for(server, search_result_cap=2)

    records = await collect(client, since=SINCE)

    assert [r.external_id for r in records] == ["18044191425", "18044191426", "18044191429"]
    boundary = "1715767202114"  # 2024-05-15T10:00:02.114Z, deal 18044191426's last change
    assert [r.json for r in server.received(SEARCH_PATH)] == [
        search_body(since_millis=SINCE_MILLIS),
        search_body(since_millis=boundary),
    ]
    assert server.received(ASSOCIATIONS_PATH)[1].json == {"inputs": [{"id": "18044191429"}]}
    assert client.last_modified == datetime(2024, 5, 15, 11, 0, tzinfo=UTC)


async def test_no_answer_is_a_retryable_error_without_the_token() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    client = HubSpotClient(f"http://127.0.0.1:{port}", TOKEN, timeout=2.0)

    with pytest.raises(HubSpotError) as raised:
        await collect(client)

    assert raised.value.status is None
    assert raised.value.retryable
    assert str(raised.value) == f"HubSpot did not answer: ConnectError (POST {SEARCH_PATH})"


async def test_refuses_naive_since_and_missing_token() -> None:
    with pytest.raises(ValueError, match="token"):
        HubSpotClient(access_token="")
    client = HubSpotClient(access_token=TOKEN)
    assert client.base_url == "https://api.hubapi.com"
    with pytest.raises(ValueError, match="timezone-aware"):
        await collect(client, since=datetime(2024, 5, 1))  # noqa: DTZ001


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-14T15:02:11.345Z", datetime(2024, 5, 14, 15, 2, 11, 345000, tzinfo=UTC)),
        ("2024-05-14T17:02:11+02:00", datetime(2024, 5, 14, 15, 2, 11, tzinfo=UTC)),
        ("2024-05-14", datetime(2024, 5, 14, tzinfo=UTC)),
        ("1715695331345", datetime(2024, 5, 14, 14, 2, 11, 345000, tzinfo=UTC)),
        ("", None),
        (None, None),
        ("yesterday", None),
        ("99999999999999999999999", None),
    ],
)
def test_parse_hubspot_datetime(value: object, expected: datetime | None) -> None:
    assert hubspot.parse_hubspot_datetime(value) == expected


async def test_a_failed_page_leaves_the_cursor_at_the_last_full_page(
    server: HubSpotServer,
) -> None:
    server.serve(
        SEARCH_PATH,
        ok(fixture("hubspot_deals_search_page1.json")),
        Answer(502, b"Bad Gateway"),
    )
    server.serve(ASSOCIATIONS_PATH, Answer(207, fixture("hubspot_associations_page1.json")))
    server.serve(CONTACTS_PATH, ok(fixture("hubspot_contacts_page1.json")))
    client = client_for(server)
    received: list[str] = []

    async def consume() -> None:
        async for record in client.closed_deals(since=SINCE):
            received.append(record.external_id)

    with pytest.raises(HubSpotError, match="HubSpot answered 502"):
        await consume()

    assert received == ["18044191425", "18044191426"]
    assert client.last_modified == datetime(2024, 5, 15, 10, 0, 2, 114000, tzinfo=UTC)
