"""One module per task (worker/recipes/base.py describes the seam); RECIPES maps task -> recipe.

A new task is one module here defining `RECIPE`, listed below.
"""
from __future__ import annotations

from worker.recipes import (
    causal_lm_sft,
    multi_label_classification,
    text_classification,
    text_regression,
    token_classification,
)
from worker.recipes.base import Recipe

DEFAULT_TASK = "text-classification"
RECIPES: dict[str, Recipe] = {m.RECIPE.task: m.RECIPE for m in (
    text_classification, multi_label_classification, text_regression, token_classification,
    causal_lm_sft)}


def recipe_for(task: str | None) -> Recipe:
    """The recipe of a spec's `task` (text-classification when the spec has none)."""
    recipe = RECIPES.get(task or DEFAULT_TASK)
    if recipe is None:
        raise ValueError(f"unknown task {task!r}; this worker runs: {', '.join(sorted(RECIPES))}")
    return recipe
