from __future__ import annotations

import json

import pytest
import structlog

from leadrelay.core.logging import (
    REDACTED,
    configure_logging,
    correlation_id_var,
    get_logger,
    redact_text,
    request_id_var,
)


class TestRedaction:
    @pytest.mark.parametrize(
        "text",
        [
            "contact ada.lovelace@example.com now",
            "call +1 415 555 0101 today",
            "Authorization: Bearer abc.def.ghi",
            "key lr_0123456789.s3cr3t-token-value",
            "secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ],
    )
    def test_redacts_pii_and_tokens_in_text(self, text: str) -> None:
        out = redact_text(text)
        assert REDACTED in out
        for secret in ("ada.lovelace", "555 0101", "abc.def.ghi", "s3cr3t", "MfKQ9r8"):
            assert secret not in out

    def test_log_lines_are_json_with_ids_and_no_pii(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        configure_logging("INFO", json=True)
        request_token = request_id_var.set("req-123")
        correlation_token = correlation_id_var.set("corr-456")
        try:
            get_logger("test").info(
                "lead.received",
                email="ada@example.com",
                note="phone is +44 20 7946 0958",
                password="hunter2",
                api_key="lr_0123456789.abc",
                lead_id="L-1",
            )
        finally:
            request_id_var.reset(request_token)
            correlation_id_var.reset(correlation_token)
            structlog.reset_defaults()
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert line["request_id"] == "req-123"
        assert line["correlation_id"] == "corr-456"
        assert line["lead_id"] == "L-1"
        assert line["email"] == REDACTED
        assert line["password"] == REDACTED
        assert line["api_key"] == REDACTED
        assert "7946" not in line["note"]
