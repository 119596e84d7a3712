"""Try it's inputs in each task's shape, checked before anything reaches a model.

The web checks them (a 422 naming the field, e.g. `inputs.0.text`, without a round trip to
the inference worker) and the worker checks them again (worker/tryit.py turns Invalid into
BadInput), so a request that skips the web is held to the same rules. Pure Python: both
processes import it.

An input is `{field: value}` with the job's own dataset field names:
- text-classification, multi-label-classification, text-regression: each of
  `dataset.text_fields` holds a text;
- token-classification: `dataset.tokens_field` holds a list of words (a string is split on
  whitespace);
- causal-lm-sft: `dataset.prompt_field` holds the prompt, or for a chat job
  `dataset.messages_field` holds the prompt turns ({role, content}, not ending with the
  assistant's) or a string, taken as one user message.
"""
from __future__ import annotations

from typing import Any

from app.errors import Invalid
from app.jobs.schemas import DEFAULT_TASK

MAX_INPUTS = 64            # inputs per request
MAX_CHARS = 20_000         # per text (the tokenizer truncates at max_length anyway)
MAX_WORDS = 1_000          # per sentence of a token-classification input
MAX_NEW_TOKENS = 512       # the most a Try it request may generate
DEFAULT_NEW_TOKENS = 64    # the schema's generation.max_new_tokens default
ROLES = ("system", "user", "assistant", "tool")
TEXT_TASKS = ("text-classification", "multi-label-classification", "text-regression")


class InputError(Invalid):
    """A bad Try it input (422 naming its field); the worker re-raises it as BadInput."""


def task_of(spec: dict[str, Any]) -> str:
    return spec.get("task") or DEFAULT_TASK


def fields_of(spec: dict[str, Any]) -> list[str]:
    """The fields one input holds, in the job's own names."""
    ds, task = spec["dataset"], task_of(spec)
    if task in TEXT_TASKS:
        return list(ds["text_fields"])
    if task == "token-classification":
        return [ds.get("tokens_field") or "tokens"]
    if ds.get("messages_field"):
        return [ds["messages_field"]]
    return [ds.get("prompt_field") or "prompt"]


def is_chat(spec: dict[str, Any]) -> bool:
    return task_of(spec) == "causal-lm-sft" and bool(spec["dataset"].get("messages_field"))


def check(spec: dict[str, Any], inputs: Any) -> list[dict[str, Any]]:
    """The inputs, normalised (words split, a chat string as one user turn), or Invalid."""
    if not isinstance(inputs, list) or not inputs:
        raise InputError("inputs", "give a non-empty list of inputs")
    if len(inputs) > MAX_INPUTS:
        raise InputError("inputs", f"at most {MAX_INPUTS} inputs per request, got {len(inputs)}")
    return [check_one(spec, value, f"inputs.{i}") for i, value in enumerate(inputs)]


def check_one(spec: dict[str, Any], value: Any, where: str) -> dict[str, Any]:
    fields = fields_of(spec)
    if not isinstance(value, dict):
        raise InputError(where, f"an input is an object with {_names(fields)}")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise InputError(f"{where}.{unknown[0]}",
                      f"this job does not read {unknown[0]!r}; an input holds {_names(fields)}")
    task = task_of(spec)
    out: dict[str, Any] = {}
    for field in fields:
        at = f"{where}.{field}"
        if field not in value:
            raise InputError(at, "missing: " + _names(fields) + " are required")
        if task in TEXT_TASKS:
            out[field] = text(value[field], at)
        elif task == "token-classification":
            out[field] = words(value[field], at)
        elif is_chat(spec):
            out[field] = messages(value[field], at)
        else:
            out[field] = text(value[field], at)
    return out


def text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(where, "must be non-empty text")
    if len(value) > MAX_CHARS:
        raise InputError(where, f"at most {MAX_CHARS:,} characters, got {len(value):,}")
    return value


def words(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not value:
        raise InputError(where, "must be a non-empty list of words (or a text to split on spaces)")
    if len(value) > MAX_WORDS:
        raise InputError(where, f"at most {MAX_WORDS:,} words, got {len(value):,}")
    for i, word in enumerate(value):
        if not isinstance(word, str) or not word.strip():
            raise InputError(f"{where}.{i}", "a word must be non-empty text")
    return list(value)


def messages(value: Any, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": text(value, where)}]
    if not isinstance(value, list) or not value:
        raise InputError(where, "must be a non-empty list of {role, content} turns (or a text)")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict) or turn.get("role") not in ROLES:
            raise InputError(f"{where}.{i}.role", f"a turn is {{role, content}} with role one "
                          f"of {', '.join(ROLES)}")
        turns.append({"role": turn["role"], "content": text(turn.get("content"),
                                                            f"{where}.{i}.content")})
    if turns[-1]["role"] == "assistant":
        raise InputError(f"{where}.{len(turns) - 1}.role",
                      "the last turn is the model's to write: end with a user turn")
    return turns


def new_tokens(spec: dict[str, Any], asked: int | None) -> int:
    """max_new_tokens for a generation: the request's, else the job's, at most MAX_NEW_TOKENS."""
    if asked is not None:
        if isinstance(asked, bool) or not isinstance(asked, int) or not \
                1 <= asked <= MAX_NEW_TOKENS:
            raise InputError("max_new_tokens", f"an integer from 1 to {MAX_NEW_TOKENS}")
        return asked
    configured = (spec.get("generation") or {}).get("max_new_tokens", DEFAULT_NEW_TOKENS)
    return min(int(configured), MAX_NEW_TOKENS)


def _names(fields: list[str]) -> str:
    return " and ".join(repr(f) for f in fields)
