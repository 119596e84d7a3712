"""Domain errors; app/main.py's exception handlers turn them into HTTP responses."""


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


class TooLarge(Exception):
    """Maps to 413."""
