"""Try it's request and answer (POST /api/v1/jobs/{id}/checkpoints/{name}/predict)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.tryit.inputs import MAX_INPUTS, MAX_NEW_TOKENS


class TryItIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[dict[str, Any]] = Field(
        min_length=1, max_length=MAX_INPUTS,
        description="one object per input, keyed by the job's dataset fields: text_fields "
                    "(texts), tokens_field (a list of words, or a text split on spaces), "
                    "prompt_field (a prompt) or messages_field (chat turns, or a text as one "
                    "user turn)",
        examples=[[{"text": "the plot was great ."}]])
    max_new_tokens: int | None = Field(
        default=None, ge=1, le=MAX_NEW_TOKENS,
        description="causal-lm-sft only: tokens to generate (default: the job's "
                    "generation.max_new_tokens)")


class TryItOut(BaseModel):
    predictions: list[dict[str, Any]] = Field(
        description="one row per input, in the task's prediction shape (as GET .../predictions "
                    "without `split`; `row` is the input's index; labels and references are "
                    "null)")
    checkpoint: str
    device: str = Field(description="where the inference worker ran it: cpu or cuda")
    seconds: float = Field(description="time in the inference worker, loading included")
