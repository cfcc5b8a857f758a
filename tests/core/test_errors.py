"""Every error leaves as RFC 9457 problem+json, with a stable code, the request id echoed, and
nothing of the server's internals."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from leadrelay.app import create_app
from leadrelay.console import body_limits
from leadrelay.console.imports import UPLOAD_BODY_LIMIT
from leadrelay.core.db import Database
from leadrelay.core.http import BodyLimitMiddleware
from leadrelay.core.settings import Settings
from tests.factories import PASSWORD, TenantFactory

PROBLEM_JSON = "application/problem+json"
HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://leadrelay.dev/problems/{code}"
    assert body["title"]
    assert body["detail"]
    return body


@pytest.fixture
async def owner_headers(tenants: TenantFactory) -> dict[str, str]:
    return await (await tenants.create()).headers()


def user_body(**overrides: object) -> dict[str, object]:
    return {
        "email": "someone@errors.example.com",
        "name": "Someone",
        "role": "rep",
        "password": PASSWORD,
        **overrides,
    }


class TestProblemResponses:
    async def test_unknown_route_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/no-such-thing")
        body = assert_problem(response, 404, "not-found")
        assert body["detail"] == "no route for GET /v1/no-such-thing"
        assert body["instance"] == "/v1/no-such-thing"

    async def test_wrong_method_is_405(
        self, client: httpx.AsyncClient, owner_headers: dict[str, str]
    ) -> None:
        response = await client.delete("/v1/me", headers=owner_headers)
        assert_problem(response, 405, "method-not-allowed")
        assert response.headers["allow"] == "GET"

    async def test_malformed_json_is_400(
        self, client: httpx.AsyncClient, owner_headers: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/users",
            content=b'{"email": "a@b.example.com", ',
            headers={**owner_headers, "content-type": "application/json"},
        )
        body = assert_problem(response, 400, "invalid-json")
        assert body["detail"] == "the body is not valid JSON"

    async def test_body_over_the_limit_is_413(
        self, client: httpx.AsyncClient, owner_headers: dict[str, str], settings: Settings
    ) -> None:
        padding = "x" * settings.max_body_bytes
        response = await client.post(
            "/v1/users", json=user_body(name=padding), headers=owner_headers
        )
        body = assert_problem(response, 413, "body-too-large")
        assert body["detail"] == f"the body exceeds {settings.max_body_bytes} bytes"

    async def test_chunked_body_over_the_limit_is_413(
        self, client: httpx.AsyncClient, owner_headers: dict[str, str], settings: Settings
    ) -> None:
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            yield b'{"name": "'
            while sent <= settings.max_body_bytes:
                sent += 64 * 1024
                yield b"x" * (64 * 1024)
            yield b'"}'

        response = await client.post(
            "/v1/users",
            content=chunks(),
            headers={**owner_headers, "content-type": "application/json"},
        )
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert_problem(response, 413, "body-too-large")

    async def test_body_at_the_limit_is_read(
        self, client: httpx.AsyncClient, owner_headers: dict[str, str], settings: Settings
    ) -> None:
        body = json.dumps(user_body(name="")).encode()
        padded = body[:-1] + b" " * (settings.max_body_bytes - len(body)) + b"}"
        assert len(padded) == settings.max_body_bytes
        response = await client.post(
            "/v1/users",
            content=padded,
            headers={**owner_headers, "content-type": "application/json"},
        )
        assert_problem(response, 422, "validation-failed")  # read and validated: name is empty

    async def test_console_uploads_have_their_own_larger_limit(
        self, client: httpx.AsyncClient, app: FastAPI, settings: Settings
    ) -> None:
        body = b"x" * (settings.max_body_bytes + 1)
        response = await client.post(
            "/console/imports", content=body, headers={"content-type": "text/csv"}
        )
        assert response.status_code == 303  # past the size gate: the console asks for a sign-in
        limits = BodyLimitMiddleware(app, max_bytes=10, path_limits=body_limits())
        assert limits.limit_for("/console/imports") == UPLOAD_BODY_LIMIT > settings.max_body_bytes
        assert limits.limit_for("/console/imports/dry-runs") == UPLOAD_BODY_LIMIT
        assert limits.limit_for("/console/importsx") == 10
        assert limits.limit_for("/v1/leads") == 10

    async def test_non_numeric_content_length_is_400(self, app: FastAPI) -> None:
        messages: list[MutableMapping[str, Any]] = []

        async def receive() -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            messages.append(message)

        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/users",
            "raw_path": b"/v1/users",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"2x")],
            "client": ("127.0.0.1", 1234),
            "server": ("testserver", 80),
            "state": {},
        }
        await app(scope, receive, send)

        assert messages[0]["status"] == 400
        assert json.loads(messages[1]["body"])["code"] == "bad-content-length"

    async def test_wrong_content_type_is_415(
        self, client: httpx.AsyncClient, owner_headers: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/users",
            content=json.dumps(user_body()).encode(),
            headers={**owner_headers, "content-type": "text/plain"},
        )
        body = assert_problem(response, 415, "unsupported-media-type")
        assert body["detail"] == "send the body as application/json"
        form = await client.post("/v1/users", data={"email": "x"}, headers=owner_headers)
        assert_problem(form, 415, "unsupported-media-type")

    async def test_json_with_a_charset_or_a_json_suffix_is_accepted(
        self, client: httpx.AsyncClient, owner_headers: dict[str, str]
    ) -> None:
        for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
            response = await client.post(
                "/v1/users",
                content=json.dumps(user_body(password="short")).encode(),
                headers={**owner_headers, "content-type": content_type},
            )
            assert_problem(response, 422, "validation-failed")

    async def test_missing_credentials_are_401_with_a_challenge(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/v1/me")
        body = assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in body["detail"]

    async def test_validation_lists_each_bad_field(
        self, client: httpx.AsyncClient, owner_headers: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/users",
            json={"email": "nope", "role": "emperor", "password": "short"},
            headers=owner_headers,
        )
        body = assert_problem(response, 422, "validation-failed")
        errors = {e["field"]: e for e in body["errors"]}
        assert set(errors) == {"email", "name", "role", "password"}
        for error in body["errors"]:
            assert error["location"] == "body"
            assert isinstance(error["message"], str)
            assert error["message"]
        assert errors["name"]["type"] == "missing"

    async def test_query_validation_names_the_parameter(
        self, client: httpx.AsyncClient, owner_headers: dict[str, str]
    ) -> None:
        response = await client.get("/v1/audit", params={"limit": "many"}, headers=owner_headers)
        body = assert_problem(response, 422, "validation-failed")
        assert [(e["field"], e["location"]) for e in body["errors"]] == [("limit", "query")]


class TestUnexpectedErrors:
    @pytest.fixture
    def crashing_app(self, settings: Settings, db: Database) -> FastAPI:
        app = create_app(settings, db=db)

        @app.get("/v1/crash")
        async def crash() -> None:
            raise RuntimeError("connection to 10.0.0.5 failed: password=hunter2 in /srv/app.py")

        return app

    async def test_becomes_a_500_problem_without_internals(self, crashing_app: FastAPI) -> None:
        transport = httpx.ASGITransport(app=crashing_app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            response = await c.get("/v1/crash", headers={"x-request-id": "crash-1"})

        body = assert_problem(response, 500, "internal-error")
        for leak in ("hunter2", "10.0.0.5", "RuntimeError", "Traceback", "/srv/app.py"):
            assert leak not in response.text
        assert body["instance"] == "/v1/crash"
        assert response.headers["x-request-id"] == "crash-1"


class TestRequestIds:
    async def test_echoes_a_well_formed_request_id(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/me", headers={"x-request-id": "abc-123.DEF_4:5"})
        assert response.headers["x-request-id"] == "abc-123.DEF_4:5"
        assert response.headers["x-correlation-id"] == "abc-123.DEF_4:5"

    @pytest.mark.parametrize(
        "incoming",
        ["has spaces in it", "x" * 65, "semi;colon", "<script>", ""],
        ids=["spaces", "too-long", "semicolon", "markup", "empty"],
    )
    async def test_replaces_a_malformed_request_id(
        self, client: httpx.AsyncClient, incoming: str
    ) -> None:
        response = await client.get("/v1/me", headers={"x-request-id": incoming})
        assert HEX_ID.match(response.headers["x-request-id"])
        assert response.headers["x-request-id"] != incoming

    async def test_generates_one_when_none_is_sent(self, client: httpx.AsyncClient) -> None:
        first = await client.get("/v1/me")
        second = await client.get("/v1/me")
        assert HEX_ID.match(first.headers["x-request-id"])
        assert first.headers["x-request-id"] != second.headers["x-request-id"]

    async def test_keeps_a_separate_correlation_id(self, client: httpx.AsyncClient) -> None:
        response = await client.get(
            "/v1/me", headers={"x-request-id": "req-1", "x-correlation-id": "flow-9"}
        )
        assert (response.headers["x-request-id"], response.headers["x-correlation-id"]) == (
            "req-1",
            "flow-9",
        )

    async def test_problems_from_middleware_carry_the_id_too(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            "/v1/users",
            content=b"hi",
            headers={"content-type": "text/plain", "x-request-id": "r-7"},
        )
        assert response.status_code == 415
        assert response.headers["x-request-id"] == "r-7"
