"""Token prices and the pre-call estimate that a reservation holds.

Defaults (DESIGN section 1): input $0.25/M, text and thinking output $1.50/M, image output
$30/M; one 1K image is about 1120 output tokens (specs/providers.md sections 1.8 and 5).
Costs are kept in integer micro-USD so sums never drift.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.models import IMAGE_INPUT_TOKENS, IMAGE_OUTPUT_TOKENS, Usage

# Thinking is "minimal" by default on Lite; captures show 0-250 thought tokens. Reserve
# generously so settlement almost always releases rather than overshoots.
THINKING_ALLOWANCE = 300
# A caption is a sentence or two.
TEXT_OUTPUT_ALLOWANCE = 100


@dataclass(frozen=True, slots=True)
class PriceTable:
    input_per_million: float = 0.25
    text_output_per_million: float = 1.50
    image_output_per_million: float = 30.0

    def cost_micro_usd(self, usage: Usage) -> int:
        """Cost of `usage` in micro-USD; a provider-stated cost wins over the table."""
        if usage.cost_usd is not None:
            return round(usage.cost_usd * 1_000_000)
        micro = (
            usage.input_tokens * self.input_per_million
            + (usage.output_text_tokens + usage.thinking_tokens) * self.text_output_per_million
            + usage.output_image_tokens * self.image_output_per_million
        )
        return round(micro)


def prompt_tokens(prompt: str) -> int:
    """A cautious token count for text: about 4 characters a token, rounded up."""
    return max(1, -(-len(prompt.encode("utf-8")) // 4))


def estimate_usage(prompt: str, reference_images: int, images_requested: int = 1) -> Usage:
    """What one turn is expected to cost, before the call; marked as not reported."""
    per_call_input = prompt_tokens(prompt) + reference_images * IMAGE_INPUT_TOKENS
    return Usage(
        input_tokens=per_call_input * images_requested,
        output_image_tokens=IMAGE_OUTPUT_TOKENS * images_requested,
        output_text_tokens=TEXT_OUTPUT_ALLOWANCE * images_requested,
        thinking_tokens=THINKING_ALLOWANCE * images_requested,
        reported=False,
    )


def format_usd(micro_usd: int) -> str:
    dollars = micro_usd / 1_000_000
    return f"${dollars:.4f}" if dollars < 1 else f"${dollars:,.2f}"
