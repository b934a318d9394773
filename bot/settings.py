"""Peel's configuration: environment variables or a `.env` file (DESIGN section 2).

A missing or invalid setting stops start-up with one line naming the variable. Secrets
are `SecretStr`, so they print as '**********' in any repr, log or traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ProviderName = Literal["gemini", "gmi", "apimart", "linkmodel"]

_KEY_FOR_PROVIDER: dict[str, str] = {
    "gemini": "gemini_api_key",
    "gmi": "gmi_api_key",
    "apimart": "apimart_api_key",
    "linkmodel": "linkmodel_api_key",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    discord_token: SecretStr
    discord_api_base_url: str | None = None
    discord_gateway_url: str | None = None
    discord_dev_guild_id: int | None = None

    image_provider: ProviderName = "gemini"
    image_model: str = Field(default="gemini-3.1-flash-lite-image", min_length=1)

    gemini_api_key: SecretStr | None = None
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
    gmi_api_key: SecretStr | None = None
    gmi_base_url: str = "https://console.gmicloud.ai/api/v1/ie/requestqueue/apikey"
    apimart_api_key: SecretStr | None = None
    apimart_base_url: str = "https://api.apimart.ai"
    linkmodel_api_key: SecretStr | None = None
    linkmodel_base_url: str = "https://api.linkmodel.ai/api/v1"

    data_dir: Path = Path("./data")
    quota_tokens_per_day: int = Field(default=50_000, ge=0)
    max_concurrent_jobs: int = Field(default=8, ge=1, le=256)
    max_jobs_per_user: int = Field(default=2, ge=1, le=100)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    # Price table in USD per million tokens (DESIGN section 1).
    price_input_per_million: float = Field(default=0.25, ge=0)
    price_text_output_per_million: float = Field(default=1.50, ge=0)
    price_image_output_per_million: float = Field(default=30.0, ge=0)

    # Upstream call limits.
    provider_connect_timeout: float = Field(default=10.0, gt=0)
    provider_timeout: float = Field(default=120.0, gt=0)
    # Multiplies the task providers' published polling schedules (GMI, APIMart, LinkModel).
    provider_poll_scale: float = Field(default=1.0, gt=0, le=10)
    # Seconds a shutdown waits for running provider calls before releasing them.
    shutdown_grace: float = Field(default=30.0, ge=0)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("discord_api_base_url", "discord_gateway_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "discord_api_base_url", "gemini_base_url", "gmi_base_url", "apimart_base_url",
        "linkmodel_base_url",
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @field_validator("discord_gateway_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value

    @model_validator(mode="after")
    def _provider_key_present(self) -> Settings:
        if not self.discord_token.get_secret_value().strip():
            raise ValueError("DISCORD_TOKEN is empty")
        field = _KEY_FOR_PROVIDER[self.image_provider]
        key: SecretStr | None = getattr(self, field)
        if key is None or not key.get_secret_value().strip():
            raise ValueError(
                f"{field.upper()} is required when IMAGE_PROVIDER={self.image_provider}"
            )
        return self

    @property
    def provider_api_key(self) -> str:
        key: SecretStr = getattr(self, _KEY_FOR_PROVIDER[self.image_provider])
        return key.get_secret_value()

    @property
    def database_path(self) -> Path:
        return self.data_dir / "peel.sqlite3"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing text bound for logs."""
        values = [self.discord_token.get_secret_value()]
        for field in _KEY_FOR_PROVIDER.values():
            key: SecretStr | None = getattr(self, field)
            if key is not None:
                values.append(key.get_secret_value())
        return tuple(v for v in values if v)


class SettingsError(Exception):
    """Start-up configuration problem; its message is the one line shown to the operator."""


def describe_validation_error(error: ValidationError) -> str:
    """Turn pydantic's report into one line that names the variable."""
    first = error.errors()[0]
    location = [str(part) for part in first.get("loc", ()) if part != "__root__"]
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if not location:
        return f"configuration error: {message}"
    name = location[0].upper()
    if first.get("type") == "missing":
        return f"configuration error: {name} is required but not set"
    return f"configuration error: {name}: {message}"


def load_settings(**overrides: object) -> Settings:
    """Read the settings or raise SettingsError with one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
