"""`python -m bot` as an operator runs it: a real process against the loopback fakes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.fakes.discord_server import FakeDiscord
from tests.fakes.gemini import FakeGemini


async def start_process(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", env={**keep, **env}, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


def bot_env(
    fake: FakeDiscord, gemini: FakeGemini, tmp_path: Path, **overrides: str
) -> dict[str, str]:
    """The environment an operator gives `python -m bot`, pointed at the loopback fakes."""
    env = {
        "DISCORD_TOKEN": fake.token,
        "DISCORD_API_BASE_URL": fake.base_url,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "GEMINI_API_KEY": gemini.api_key,
        "GEMINI_BASE_URL": gemini.base_url,
        "DATA_DIR": str(tmp_path / "data"),
    }
    env.update(overrides)
    return env


async def test_bot_process_answers_imagine_and_stops_on_sigterm(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, FakeGemini() as gemini:
        env = bot_env(fake, gemini, tmp_path, DISCORD_DEV_GUILD_ID=str(fake.guild_id))
        process = await start_process(env, tmp_path)
        try:
            await fake.wait_ready(timeout=30)
            await fake.wait_until(lambda: "imagine" in fake.commands, timeout=10)
            interaction = await fake.slash("imagine", {"prompt": "a lighthouse"}, user=fake.alice)
            await fake.wait_until(
                lambda: any(m.attachments for m in interaction.messages()), timeout=20
            )
            message = interaction.messages()[-1]
            assert [data for _, data in message.attachments] == [gemini.image]
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), 30)
        log = stderr.decode()
        assert process.returncode == 0, log
        assert "Traceback" not in log
        # Secrets never reach the log.
        assert fake.token not in log and gemini.api_key not in log
        assert (tmp_path / "data" / "peel.sqlite3").exists()


async def test_rejected_provider_key_is_one_line_at_startup(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, FakeGemini() as gemini:
        env = bot_env(fake, gemini, tmp_path, GEMINI_API_KEY="wrong-key-123")
        process = await start_process(env, tmp_path)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    lines = stderr.decode().strip().splitlines()
    assert process.returncode != 0
    assert lines[-1] == ("peel: the gemini API key was rejected (HTTP 400); "
                         "check GEMINI_API_KEY")
    assert "wrong-key-123" not in stderr.decode()
    assert "Traceback" not in stderr.decode()


async def test_rejected_discord_token_is_one_line(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, FakeGemini() as gemini:
        env = bot_env(fake, gemini, tmp_path, DISCORD_TOKEN="not-the-token")
        process = await start_process(env, tmp_path)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    text = stderr.decode()
    assert process.returncode != 0
    assert text.strip().splitlines()[-1] == "peel: Discord rejected DISCORD_TOKEN (login failed)"
    assert "not-the-token" not in text


async def test_missing_message_content_intent_is_one_line(tmp_path: Path) -> None:
    async with FakeDiscord(message_content_intent_allowed=False) as fake, \
            FakeGemini() as gemini:
        process = await start_process(bot_env(fake, gemini, tmp_path), tmp_path)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    text = stderr.decode()
    assert process.returncode != 0
    assert text.strip().splitlines()[-1] == (
        "peel: enable the MESSAGE CONTENT intent for the bot in the Discord developer portal"
    )
    assert "Traceback" not in text
