"""Settings: every variable validated; a bad one stops start-up with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import SettingsError, load_settings

BASE = {"_env_file": None, "discord_token": "tok", "gemini_api_key": "gkey"}


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("DISCORD_", "GEMINI_", "GMI_", "APIMART_", "LINKMODEL_", "IMAGE_",
                            "QUOTA_", "MAX_", "DATA_DIR", "LOG_LEVEL")):
            monkeypatch.delenv(name, raising=False)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    settings = load_settings(**BASE)
    assert settings.image_provider == "gemini"
    assert settings.image_model == "gemini-3.1-flash-lite-image"
    assert settings.quota_tokens_per_day == 50_000
    assert settings.max_concurrent_jobs == 8
    assert settings.max_jobs_per_user == 2
    assert settings.data_dir == Path("./data")
    assert settings.discord_api_base_url is None and settings.discord_gateway_url is None
    assert settings.provider_api_key == "gkey"


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.setenv("DISCORD_TOKEN", "t")
    monkeypatch.setenv("IMAGE_PROVIDER", "linkmodel")
    monkeypatch.setenv("LINKMODEL_API_KEY", "lk")
    monkeypatch.setenv("QUOTA_TOKENS_PER_DAY", "0")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = load_settings(_env_file=None)
    assert settings.image_provider == "linkmodel"
    assert settings.provider_api_key == "lk"
    assert settings.quota_tokens_per_day == 0
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"discord_token": None}, "DISCORD_TOKEN is required"),
        ({"gemini_api_key": None}, "GEMINI_API_KEY is required"),
        ({"image_provider": "gmi"}, "GMI_API_KEY is required"),
        ({"image_provider": "dalle"}, "IMAGE_PROVIDER"),
        ({"quota_tokens_per_day": -1}, "QUOTA_TOKENS_PER_DAY"),
        ({"max_concurrent_jobs": 0}, "MAX_CONCURRENT_JOBS"),
        ({"max_jobs_per_user": "many"}, "MAX_JOBS_PER_USER"),
        ({"discord_gateway_url": "http://x"}, "DISCORD_GATEWAY_URL"),
        ({"gemini_base_url": "ftp://x"}, "GEMINI_BASE_URL"),
        ({"log_level": "LOUD"}, "LOG_LEVEL"),
    ],
)
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, object], expected: str
) -> None:
    clean_env(monkeypatch)
    values = {**BASE, **overrides}
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(SettingsError) as caught:
        load_settings(**values)
    line = str(caught.value)
    assert expected in line
    assert "\n" not in line


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    settings = load_settings(**{**BASE, "discord_token": "very-secret-token"})
    assert "very-secret-token" not in repr(settings)
    assert "gkey" not in str(settings)


def run_bot(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-m", "bot"], env={**keep, **env}, cwd=cwd, capture_output=True,
        text=True, timeout=60,
    )


def test_python_m_bot_without_a_token_prints_one_line(tmp_path: Path) -> None:
    result = run_bot({"GEMINI_API_KEY": "k"}, tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == ["peel: configuration error: DISCORD_TOKEN is required but not set"]
    assert "Traceback" not in result.stderr


def test_python_m_bot_without_a_provider_key(tmp_path: Path) -> None:
    result = run_bot({"DISCORD_TOKEN": "x"}, tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "peel: configuration error: GEMINI_API_KEY is required when IMAGE_PROVIDER=gemini"
    ]


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DISCORD_TOKEN=abc\nIMAGE_PROVIDER=apimart\n")
    result = run_bot({}, tmp_path)
    assert result.returncode != 0
    assert "APIMART_API_KEY is required" in result.stderr
