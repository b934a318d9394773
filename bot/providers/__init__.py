"""The four routes to the model, chosen by IMAGE_PROVIDER."""

from __future__ import annotations

import aiohttp

from bot.providers.base import ImageProvider
from bot.providers.http import Timeouts
from bot.providers.polling import PollSchedule
from bot.settings import Settings


def build_provider(settings: Settings, session: aiohttp.ClientSession) -> ImageProvider:
    """The configured provider, sharing the one aiohttp session."""
    timeouts = Timeouts(connect=settings.provider_connect_timeout,
                        total=settings.provider_timeout)
    key, model = settings.provider_api_key, settings.image_model
    scale = settings.provider_poll_scale
    name = settings.image_provider
    if name == "gemini":
        from bot.providers.gemini import GeminiProvider

        return GeminiProvider(session, base_url=settings.gemini_base_url, api_key=key,
                              model=model, timeouts=timeouts)
    if name == "gmi":
        from bot.providers.gmi import GmiProvider

        return GmiProvider(session, base_url=settings.gmi_base_url, api_key=key, model=model,
                           timeouts=timeouts, poll=PollSchedule.gmi().scaled(scale))
    if name == "apimart":
        from bot.providers.apimart import ApimartProvider

        return ApimartProvider(session, base_url=settings.apimart_base_url, api_key=key,
                               model=model, timeouts=timeouts,
                               poll=PollSchedule.apimart().scaled(scale))
    from bot.providers.linkmodel import LinkmodelProvider

    return LinkmodelProvider(session, base_url=settings.linkmodel_base_url, api_key=key,
                             model=model, timeouts=timeouts,
                             poll=PollSchedule.linkmodel().scaled(scale))
