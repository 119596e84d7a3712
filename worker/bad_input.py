"""The error an inference handler raises for an input the user must fix (worker/inference.py
answers it as a 422 naming the field). Its own module, so handlers import it without
importing worker/inference.py, which imports them."""
from __future__ import annotations


class BadInput(Exception):
    """An input the user must fix; `field` names it (dotted, as in the request body)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
