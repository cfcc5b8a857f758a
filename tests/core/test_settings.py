from __future__ import annotations

import subprocess
import sys

import pytest

from leadrelay.core.settings import Settings, SettingsError, get_settings


class TestSettings:
    def test_defaults_are_safe(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("LEADRELAY_DRY_RUN", "LEADRELAY_APPROVAL_REQUIRED"):
            monkeypatch.delenv(name, raising=False)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.dry_run is True
        assert settings.approval_required is True
        assert settings.daily_cap_email <= 500
        assert settings.webhook_allow_private_targets is False

    def test_wrong_value_names_the_variable_in_one_line(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("LEADRELAY_PORT", "eighty")
        get_settings.cache_clear()
        try:
            with pytest.raises(SettingsError) as raised:
                get_settings()
        finally:
            get_settings.cache_clear()
        message = str(raised.value)
        assert "LEADRELAY_PORT" in message
        assert "\n" not in message

    def test_secret_values_are_not_echoed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATABASE_URL", "mysql://root:hunter2@db/x")
        get_settings.cache_clear()
        try:
            with pytest.raises(SettingsError) as raised:
                get_settings()
        finally:
            get_settings.cache_clear()
        assert "DATABASE_URL" in str(raised.value)
        assert "hunter2" not in str(raised.value)

    def test_production_requires_a_secret_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LEADRELAY_ENV", "production")
        monkeypatch.delenv("LEADRELAY_SECRET_KEY", raising=False)
        get_settings.cache_clear()
        try:
            with pytest.raises(SettingsError, match="LEADRELAY_SECRET_KEY"):
                get_settings()
        finally:
            get_settings.cache_clear()

    def test_cli_stops_with_one_line_and_exit_code_2(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "leadrelay", "migrate"],
            env={"LEADRELAY_WORKER_CONCURRENCY": "0", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1
        assert "LEADRELAY_WORKER_CONCURRENCY" in lines[0]


def test_env_example_documents_every_setting() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / ".env.example").read_text()
    for name, field in Settings.model_fields.items():
        variable = field.validation_alias or f"LEADRELAY_{name.upper()}"
        assert f"{variable}=" in text, f"{variable} is missing from .env.example"
