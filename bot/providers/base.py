"""The one provider protocol every upstream route implements.

A provider runs one turn (prompt + reference images in; images, caption, usage and
warnings out) and raises only the error types of `bot.errors`. Retries, timeouts and
polling happen inside the provider; callers see a result or one final error.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from bot.models import Capabilities, TurnRequest, TurnResult


@runtime_checkable
class ImageProvider(Protocol):
    @property
    def name(self) -> str:
        """Stable short name recorded in the ledger: gemini, gmi, apimart or linkmodel."""
        ...

    @property
    def model(self) -> str:
        """The model id sent upstream."""
        ...

    @property
    def capabilities(self) -> Capabilities: ...

    async def run_turn(self, request: TurnRequest) -> TurnResult:
        """Generate one image for `request`. Raises `bot.errors.ProviderError` subclasses."""
        ...

    async def check_credentials(self) -> None:
        """Cheap call that raises `ProviderAuthError` when the key is rejected.

        Called once at start-up so a bad key is reported in one clear line. Must not
        spend tokens; a route with no such call may return without checking.
        """
        ...
