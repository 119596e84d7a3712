"""The New job form's Sweep section: its grid text -> a SweepIn over the form's spec, and the
sweep's errors by form field."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Invalid, InvalidAll
from app.jobs import forms
from app.sweeps import grid, service
from app.sweeps.models import Sweep
from app.sweeps.schemas import SweepIn

GRID_HELP = "One key per line with its values, e.g. training.learning_rate: 1e-5, 3e-5"


def create_from_form(session: Session, values: forms.Values, settings: Settings) -> Sweep:
    """The sweep of the form's spec (its base, checked as a job first) and its Sweep section;
    forms.FormInvalid with the errors by field, and then nothing is queued."""
    forms.build_spec(values)  # the base's own errors show at their fields, as for a job
    errors: dict[str, str] = {}
    base = forms.spec_data(values, forms.parse_advanced(values.get("advanced", ""), errors))
    body = {"name": values.get("sweep.name") or None, "base": base,
            "grid": parse_grid(values.get("sweep.grid", "")),
            "metric": values.get("sweep.metric") or "eval/loss",
            "mode": values.get("sweep.mode") or None,
            "random": values.get("sweep.random") or None}
    try:
        sweep, _ = service.create_sweep(session, SweepIn.model_validate(body), settings)
    except ValidationError as exc:
        raise forms.FormInvalid({_field(e["loc"]): e["msg"].removeprefix("Value error, ")
                                 for e in exc.errors()}) from None
    except Invalid as exc:
        raise forms.FormInvalid({f"sweep.{exc.field}": exc.message}) from None
    except InvalidAll as exc:
        raise forms.FormInvalid(_by_field(exc, values)) from None
    return sweep


def parse_grid(text: str) -> dict[str, list[Any]]:
    """`key: v1, v2` lines -> {key: [v1, v2]} (app/sweeps/grid.py reads the values)."""
    if not text.strip():
        raise forms.FormInvalid({"sweep.grid": f"Give at least one key to sweep. {GRID_HELP}"})
    try:
        return grid.parse(text.splitlines(), ":")
    except ValueError as exc:
        raise forms.FormInvalid({"sweep.grid": str(exc)}) from None


def _field(loc: tuple[Any, ...]) -> str:
    """The form field of a SweepIn error: grid and ranges at the grid box, else sweep.<name>."""
    name = str(loc[0]) if loc else "grid"
    return "sweep.grid" if name in ("grid", "ranges", "base") else f"sweep.{name}"


def _by_field(exc: InvalidAll, values: forms.Values) -> dict[str, str]:
    """A bad point's error at the grid box, a base field's at that field."""
    errors: dict[str, str] = {}
    for loc, message in exc.problems:
        if loc[0] == "base" and len(loc) > 1:
            field = forms.field_for(loc[1:], message, values)
        else:
            field = "sweep.grid"
        errors[field] = f"{errors[field]}; {message}" if field in errors else message
    return errors
