"""Domain errors; app/main.py's exception handlers turn them into HTTP responses."""
from __future__ import annotations


class NotFound(Exception):
    """Maps to 404."""


class Conflict(Exception):
    """Maps to 409."""


class Invalid(Exception):
    """Maps to 422; `field` names the offending input."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[Invalid], tuple[str, str]]:
        # Raised in the upload checker's process (app/datasets/checker.py) and re-raised here.
        return Invalid, (self.field, self.message)


class InvalidAll(Exception):
    """Maps to 422 with one entry per problem: (location parts, message) each, e.g.
    (("grid", "training.learning_rate"), "point 2 of 4 (...): must be at most 1")."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]):
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


class TooLarge(Exception):
    """Maps to 413."""


class Unavailable(Exception):
    """Maps to 503: a part of the system that should answer does not (say which, and why)."""


class WorkerFailed(Exception):
    """Maps to 500: a worker raised on a well-formed request (the message says what)."""
