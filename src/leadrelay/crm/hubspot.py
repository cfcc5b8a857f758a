"""HubSpot closed deals as outcomes.

Sales teams close deals in HubSpot, not here; the won/lost/disqualified labels they set are
what tells us which leads were worth it. This adapter reads them over HubSpot's public CRM
API, three calls per page of deals:

1. `POST /crm/v3/objects/deals/search`: closed deals (`hs_is_closed` = true), changed since the
   last sync (`hs_lastmodifieddate` >= `since`), oldest change first, 100 a page, following
   `paging.next.after`;
2. `POST /crm/v4/associations/deals/contacts/batch/read`: the contacts of those deals;
3. `POST /crm/v3/objects/contacts/batch/read`: their e-mail addresses, which leads are matched by.

Nothing is stored here. `HubSpotClient.last_modified` is the newest `hs_lastmodifieddate` of
the pages handed out in full: the caller keeps it as the next run's `since`, even after a
failed run (the filter is inclusive, so the boundary deal comes again; `external_id` makes that
harmless).

Nothing is dropped silently either: a deal whose `closedate` is missing or unreadable is
skipped, an unreadable amount or currency is left out of its record, and each case is appended
to `HubSpotClient.problems` and logged as a warning.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pycountry

from leadrelay.core.clock import utcnow
from leadrelay.core.logging import get_logger
from leadrelay.crm.outcomes import OutcomeLabel, OutcomeRecord

log = get_logger("leadrelay.crm.hubspot")

SOURCE = "hubspot"
DEFAULT_BASE_URL = "https://api.hubapi.com"
SEARCH_PATH = "/crm/v3/objects/deals/search"
ASSOCIATIONS_PATH = "/crm/v4/associations/deals/contacts/batch/read"
CONTACTS_PATH = "/crm/v3/objects/contacts/batch/read"
DEAL_PROPERTIES = (
    "dealname",
    "amount",
    "closedate",
    "dealstage",
    "deal_currency_code",
    "hs_is_closed_won",
    "hs_lastmodifieddate",
)
PAGE_SIZE = 100
# The batch read endpoints take at most 100 inputs per call.
CONTACTS_PER_BATCH = 100
# "The search endpoints are limited to 10,000 total results for any given query": paging past
# it is a 400, so a longer sync restarts the query from the last change it has seen.
SEARCH_RESULT_CAP = 10_000
WON_STAGE = "closedwon"  # the default pipeline's "Closed won" stage id
RATE_LIMIT_RETRIES = 3
# HubSpot's windows are one and ten seconds; a longer Retry-After is better left to the job's
# own retry than slept through while holding a worker.
MAX_RETRY_AFTER_SECONDS = 10.0
DEFAULT_RETRY_AFTER_SECONDS = 1.0

Sleep = Callable[[float], Awaitable[None]]


class HubSpotError(Exception):
    """HubSpot refused or did not answer. `status` is None when no response came at all."""

    def __init__(
        self,
        status: int | None,
        message: str,
        correlation_id: str | None = None,
        *,
        category: str | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.correlation_id = correlation_id
        self.category = category
        head = "HubSpot did not answer" if status is None else f"HubSpot answered {status}"
        if category:
            head += f" ({category})"
        text = f"{head}: {message}"
        if correlation_id:
            text += f" [correlationId {correlation_id}]"
        super().__init__(text)

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed later (rate limit, HubSpot's side, no answer)."""
        return self.status is None or self.status == 429 or self.status >= 500


class HubSpotAuthError(HubSpotError):
    """401: the access token is missing, wrong, expired or revoked; retrying will not help."""


@dataclass(frozen=True, slots=True)
class DealProblem:
    deal_id: str
    field: str
    reason: str
    skipped: bool  # True: no record for this deal; False: the record lacks this field


def parse_hubspot_datetime(value: object) -> datetime | None:
    """A HubSpot date-time property (ISO 8601, e.g. "2024-05-14T15:02:11.345Z", or epoch
    milliseconds) in UTC; None when empty or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, UTC)
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    # A date without an offset is a calendar day; HubSpot stores those at midnight UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_amount(value: object) -> tuple[Decimal | None, str | None]:
    """(amount, problem): empty is no amount, not a problem."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, "not a number"
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None, "not a number"
    if not amount.is_finite():
        return None, "not a finite number"
    if amount < 0:
        return None, "negative"
    return amount, None


def parse_currency(value: object) -> tuple[str | None, str | None]:
    """(ISO 4217 code, problem)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    code = str(value).strip().upper()
    if len(code) == 3 and pycountry.currencies.get(alpha_3=code) is not None:
        return code, None
    return None, "not an ISO 4217 currency code"


def deal_label(
    properties: Mapping[str, object], stage_labels: Mapping[str, OutcomeLabel]
) -> OutcomeLabel:
    """A tenant's own stage mapping first (custom stages such as "disqualified"), then
    HubSpot's won flag or the default won stage; any other closed deal is lost."""
    stage = properties.get("dealstage")
    if isinstance(stage, str) and stage in stage_labels:
        return stage_labels[stage]
    if properties.get("hs_is_closed_won") in ("true", True) or stage == WON_STAGE:
        return OutcomeLabel.WON
    return OutcomeLabel.LOST


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _next_after(body: Mapping[str, Any]) -> str | None:
    paging = body.get("paging")
    following = paging.get("next") if isinstance(paging, dict) else None
    after = following.get("after") if isinstance(following, dict) else None
    return str(after) if isinstance(after, str | int) and str(after) else None


def _object_id(value: object) -> str | None:
    # Ids are documented as strings, and `toObjectId` arrives as a JSON number in practice.
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None


def _batches(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    return (items[start : start + size] for start in range(0, len(items), size))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_millis(moment: datetime) -> str:
    # Integer arithmetic: a float timestamp can land one millisecond early, and the filter
    # is inclusive on exactly that millisecond.
    return str((moment - _EPOCH) // timedelta(milliseconds=1))


def _retry_after(response: httpx.Response) -> float:
    header = response.headers.get("retry-after", "").strip()
    seconds = DEFAULT_RETRY_AFTER_SECONDS
    if header:
        try:
            seconds = float(header)
        except ValueError:
            try:
                seconds = (parsedate_to_datetime(header) - utcnow()).total_seconds()
            except (TypeError, ValueError):
                seconds = DEFAULT_RETRY_AFTER_SECONDS
    if seconds != seconds:  # NaN
        seconds = DEFAULT_RETRY_AFTER_SECONDS
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _error_from(response: httpx.Response, path: str) -> HubSpotError:
    """HubSpot's error body: `{"status": "error", "message", "correlationId", "category"}`,
    every field optional; the correlation id is also sent as `X-HubSpot-Correlation-Id`."""
    try:
        body: object = response.json()
    except ValueError:
        body = None
    fields = body if isinstance(body, dict) else {}
    message = fields.get("message")
    if not isinstance(message, str) or not message.strip():
        message = response.reason_phrase or "error"
    correlation_id = fields.get("correlationId")
    if not isinstance(correlation_id, str) or not correlation_id:
        correlation_id = response.headers.get("x-hubspot-correlation-id") or None
    category = fields.get("category") or fields.get("errorType")
    cls = HubSpotAuthError if response.status_code == 401 else HubSpotError
    return cls(
        response.status_code,
        f"{message.strip()[:500]} (POST {path})",
        correlation_id,
        category=category if isinstance(category, str) and category else None,
    )


class HubSpotClient:
    """Closed deals of one HubSpot account as `OutcomeRecord`s.

    `stage_labels` maps a tenant's deal stage ids to labels and overrides HubSpot's won flag,
    e.g. `{"83291674": OutcomeLabel.DISQUALIFIED}`. `sleep` is what waits out a 429 (tests
    pass a recorder). `problems` and `last_modified` describe the latest `closed_deals` run,
    so one instance runs one sync at a time.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        access_token: str = "",
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        stage_labels: Mapping[str, OutcomeLabel] | None = None,
        sleep: Sleep = asyncio.sleep,
        rate_limit_retries: int = RATE_LIMIT_RETRIES,
        search_result_cap: int = SEARCH_RESULT_CAP,
    ) -> None:
        # The token comes second to keep HubSpot's default URL as the first, optional argument.
        if not access_token:
            raise ValueError("a HubSpot access token is required")
        self.base_url = base_url.rstrip("/")
        self._access_token = access_token
        self._client = client
        self.timeout = timeout
        self.stage_labels: dict[str, OutcomeLabel] = dict(stage_labels or {})
        self._sleep = sleep
        self._rate_limit_retries = rate_limit_retries
        self._search_result_cap = search_result_cap
        self.problems: list[DealProblem] = []
        self.last_modified: datetime | None = None

    async def closed_deals(self, *, since: datetime | None = None) -> AsyncIterator[OutcomeRecord]:
        """Closed deals changed at or after `since` (all when None), oldest change first."""
        if since is not None and since.utcoffset() is None:
            raise ValueError("since must be timezone-aware")
        self.problems = []
        self.last_modified = None
        if self._client is not None:
            async for record in self._closed_deals(self._client, since):
                yield record
            return
        async with httpx.AsyncClient(timeout=self.timeout) as http:
            async for record in self._closed_deals(http, since):
                yield record

    async def _closed_deals(
        self, http: httpx.AsyncClient, since: datetime | None
    ) -> AsyncIterator[OutcomeRecord]:
        seen: set[str] = set()  # a restarted query repeats the deals of its first millisecond
        window_start = since
        after: str | None = None
        while True:
            page = await self._post(http, SEARCH_PATH, self._search_body(window_start, after))
            records: list[OutcomeRecord] = []
            page_modified = self.last_modified
            for deal in _dicts(page.get("results")):
                deal_id = _object_id(deal.get("id"))
                if deal_id is None:
                    self._problem("?", "id", "missing", skipped=True)
                    continue
                properties = deal.get("properties")
                modified = parse_hubspot_datetime(
                    properties.get("hs_lastmodifieddate") if isinstance(properties, dict) else None
                )
                if modified is not None and (page_modified is None or modified > page_modified):
                    page_modified = modified
                if deal_id not in seen:
                    seen.add(deal_id)
                    record = self._record(deal_id, deal)
                    if record is not None:
                        records.append(record)
            # Contacts only for the deals that make a record: skipped ones cost no calls.
            emails = await self._emails(http, [record.external_id for record in records])
            for record in records:
                yield replace(record, emails=emails.get(record.external_id, ()))
            # Only now: a run that fails (or is stopped) mid-page leaves a `since` that reads
            # the page again.
            self.last_modified = page_modified
            after = _next_after(page)
            if after is None:
                return
            if after.isdigit() and int(after) >= self._search_result_cap:
                if self.last_modified is None or (
                    window_start is not None and self.last_modified <= window_start
                ):
                    # More deals than the cap changed within one millisecond: no filter can
                    # reach the rest. Say so rather than loop.
                    self._problem("*", "hs_lastmodifieddate", "search cap reached", skipped=True)
                    return
                window_start, after = self.last_modified, None

    def _search_body(self, since: datetime | None, after: str | None) -> dict[str, Any]:
        filters: list[dict[str, str]] = [
            {"propertyName": "hs_is_closed", "operator": "EQ", "value": "true"}
        ]
        if since is not None:
            filters.append(
                {
                    "propertyName": "hs_lastmodifieddate",
                    "operator": "GTE",
                    "value": _epoch_millis(since),
                }
            )
        body: dict[str, Any] = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
            "properties": list(DEAL_PROPERTIES),
            "limit": PAGE_SIZE,
        }
        if after is not None:
            body["after"] = after
        return body

    async def _emails(
        self, http: httpx.AsyncClient, deal_ids: Sequence[str]
    ) -> dict[str, tuple[str, ...]]:
        """deal id -> its contacts' e-mail addresses, lower-cased, without repeats."""
        if not deal_ids:
            return {}
        contacts: dict[str, list[str]] = {deal_id: [] for deal_id in deal_ids}
        pending: list[dict[str, str]] = [{"id": deal_id} for deal_id in deal_ids]
        while pending:
            # A deal with no contact comes back in `errors` (HTTP 207), not as a failure.
            body = await self._post(http, ASSOCIATIONS_PATH, {"inputs": pending})
            pending = []
            for result in _dicts(body.get("results")):
                origin = result.get("from")
                deal_id = _object_id(origin.get("id")) if isinstance(origin, dict) else None
                if deal_id is None or deal_id not in contacts:
                    continue
                for target in _dicts(result.get("to")):
                    contact_id = _object_id(target.get("toObjectId"))
                    if contact_id is not None and contact_id not in contacts[deal_id]:
                        contacts[deal_id].append(contact_id)
                after = _next_after(result)
                if after is not None:
                    pending.append({"id": deal_id, "after": after})
        contact_ids = list(dict.fromkeys(c for ids in contacts.values() for c in ids))
        email_of: dict[str, str] = {}
        for batch in _batches(contact_ids, CONTACTS_PER_BATCH):
            body = await self._post(
                http,
                CONTACTS_PATH,
                {
                    "inputs": [{"id": contact_id} for contact_id in batch],
                    "properties": ["email"],
                    "propertiesWithHistory": [],
                },
            )
            for contact in _dicts(body.get("results")):
                contact_id = _object_id(contact.get("id"))
                properties = contact.get("properties")
                email = properties.get("email") if isinstance(properties, dict) else None
                if contact_id is not None and isinstance(email, str) and email.strip():
                    email_of[contact_id] = email.strip().lower()
        return {
            deal_id: tuple(dict.fromkeys(email_of[c] for c in ids if c in email_of))
            for deal_id, ids in contacts.items()
        }

    def _record(self, deal_id: str, deal: Mapping[str, Any]) -> OutcomeRecord | None:
        """The deal's record without its e-mails (they come from two more calls)."""
        properties = deal.get("properties")
        props: Mapping[str, Any] = properties if isinstance(properties, dict) else {}
        raw_close = props.get("closedate")
        closed_at = parse_hubspot_datetime(raw_close)
        if closed_at is None:
            empty = raw_close is None or (isinstance(raw_close, str) and not raw_close.strip())
            reason = "missing" if empty else f"unparseable: {str(raw_close)[:40]!r}"
            self._problem(deal_id, "closedate", reason, skipped=True)
            return None
        amount, amount_problem = parse_amount(props.get("amount"))
        if amount_problem is not None:
            self._problem(deal_id, "amount", amount_problem, skipped=False)
        currency, currency_problem = parse_currency(props.get("deal_currency_code"))
        if currency_problem is not None:
            self._problem(deal_id, "deal_currency_code", currency_problem, skipped=False)
        return OutcomeRecord(
            source=SOURCE,
            external_id=deal_id,
            label=deal_label(props, self.stage_labels),
            closed_at=closed_at,
            amount=amount,
            currency=currency,
            emails=(),
        )

    def _problem(self, deal_id: str, field: str, reason: str, *, skipped: bool) -> None:
        self.problems.append(DealProblem(deal_id, field, reason, skipped))
        log.warning(
            "hubspot.deal_problem", deal_id=deal_id, field=field, reason=reason, skipped=skipped
        )

    async def _post(
        self, http: httpx.AsyncClient, path: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        headers = {
            "authorization": f"Bearer {self._access_token}",
            "accept": "application/json",
        }
        retries = 0
        while True:
            try:
                response = await http.post(
                    self.base_url + path, json=body, headers=headers, timeout=self.timeout
                )
            except httpx.HTTPError as error:
                # An httpx message may quote the request; name the failure only.
                raise HubSpotError(None, f"{type(error).__name__} (POST {path})") from None
            status = response.status_code
            if status in (200, 207):  # 207: a batch with some per-input errors
                try:
                    data: object = response.json()
                except ValueError:
                    data = None
                if not isinstance(data, dict):
                    raise HubSpotError(
                        status,
                        f"not a JSON object (POST {path})",
                        response.headers.get("x-hubspot-correlation-id") or None,
                    )
                return data
            if status == 429 and retries < self._rate_limit_retries:
                retries += 1
                delay = _retry_after(response)
                log.info("hubspot.rate_limited", path=path, retry_in=delay, attempt=retries)
                await self._sleep(delay)
                continue
            raise _error_from(response, path)
