"""`python -m bot`: start Peel."""

from __future__ import annotations

import asyncio
import logging
import sys

from bot.app import StartupError, run
from bot.logs import configure_logging
from bot.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"peel: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.secrets)
    try:
        asyncio.run(run(settings))
    except StartupError as exc:
        print(f"peel: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    logging.getLogger(__name__).info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
