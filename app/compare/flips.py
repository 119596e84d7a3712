"""Flipped predictions: rows right in one job and wrong in another, on a split they share.

The first job is the baseline: a row is `fixed` when the baseline got it wrong and another
job right, `broken` when the baseline got it right and another job wrong. Each task says
what "right" is and what a row's class is:

- text-classification, multi-label-classification, token-classification, causal-lm-sft: the
  worker's own verdict (`correct`: the label, the label set, every word's tag, the exact
  generation). Classes: the true label; each true label of a multi-label row; each entity
  type in a sentence's true tags; none for generations.
- text-regression has no verdict: a row is right when |prediction - label| <= tolerance,
  by default a tenth of the true labels' range on the shared rows (a query parameter
  changes it). Classes: four equal ranges of the true value.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.compare import repository
from app.compare.schemas import ClassChange, FlipRow, FlipRun, FlipSummary
from app.jobs.iob import iob_spans
from app.jobs.models import Job, Prediction
from app.jobs.schemas import DEFAULT_TASK

REGRESSION = "text-regression"
RANGES = 4  # text-regression's classes
DIRECTIONS = ("all", "fixed", "broken")


@dataclass
class Flips:
    """The shared rows' verdicts per job and their classes; `reason` when not comparable."""

    ids: list[int]
    reason: str | None = None
    task: str | None = None
    split: str | None = None
    tolerance: float | None = None
    right: dict[int, dict[int, bool]] = field(default_factory=dict)  # job -> row -> right
    classes: dict[int, list[str]] = field(default_factory=dict)      # row -> class names

    def rows(self) -> list[int]:
        """Rows every job has a verdict on, in order."""
        if not self.right:
            return []
        shared = set.intersection(*(set(v) for v in self.right.values()))
        return sorted(shared)

    def direction(self, row: int) -> str | None:
        base, others = self.right[self.ids[0]][row], [self.right[j][row] for j in self.ids[1:]]
        if not base and any(others):
            return "fixed"
        if base and not all(others):
            return "broken"
        return None


def task_of(job: Job) -> str:
    return job.spec.get("task") or DEFAULT_TASK


def load(session: Session, jobs: Sequence[Job], tolerance: float | None = None) -> Flips:
    flips = Flips(ids=[job.id for job in jobs])
    splits = repository.prediction_splits(session, flips.ids)
    flips.reason = why_not(jobs, splits)
    if flips.reason:
        return flips
    flips.task = task_of(jobs[0])
    flips.split = splits[jobs[0].id][0][0]
    truth = dict(repository.truths(session, jobs[0].id, flips.task == DEFAULT_TASK))
    if flips.task == REGRESSION:
        labels = {row: f.get("label") for row, f in truth.items() if f}
        flips.tolerance = tolerance if tolerance is not None else default_tolerance(labels)
        flips.classes = value_ranges(labels)
    else:
        flips.classes = {row: classes_of(flips.task, value) for row, value in truth.items()}
    for job in jobs:
        flips.right[job.id] = verdicts(session, job.id, flips.tolerance)
    if not flips.rows():
        flips.reason = (f"the shared split {flips.split!r} has no labels, so no prediction "
                        "is right or wrong")
    return flips


def why_not(jobs: Sequence[Job],
            splits: dict[int, list[tuple[str, int, int, int]]]) -> str | None:
    """Why these jobs' predictions cannot be set side by side; None when they can.

    `splits`: repository.prediction_splits of the jobs."""
    if len(jobs) < 2:
        return "flips need at least two jobs"
    tasks = sorted({task_of(job) for job in jobs})
    if len(tasks) > 1:
        return f"the jobs are of different tasks ({', '.join(tasks)})"
    missing = [job for job in jobs if not splits[job.id]]
    if missing:
        return "; ".join(f"job {job.id} has no predictions yet ({job.status})"
                         for job in missing)
    datasets = {job.id: dataset_of(job) for job in jobs}
    if len(set(datasets.values())) > 1:
        return "the jobs predicted on different datasets: " + _each(datasets)
    shapes = {job_id: tuple(found) for job_id, found in splits.items()}
    if len({tuple(s[0] for s in shape) for shape in shapes.values()}) > 1:
        return "the jobs predicted on different splits: " + _each(
            {j: ", ".join(s[0] for s in shape) for j, shape in shapes.items()})
    if len(set(shapes.values())) > 1:
        return "the jobs predicted on different rows: " + _each(
            {j: f"{sum(s[1] for s in shape)} rows" for j, shape in shapes.items()})
    return None


def dataset_of(job: Job) -> str:
    """Where a job's predicted rows come from: source, path and config of its dataset."""
    data = job.spec.get("dataset") or {}
    where = f"{data.get('source', 'hub')}:{data.get('path')}"
    return where + (f"/{data['config']}" if data.get("config") else "")


def _each(values: dict[int, str]) -> str:
    return ", ".join(f"job {job_id} {value}" for job_id, value in values.items())


def verdicts(session: Session, job_id: int, tolerance: float | None) -> dict[int, bool]:
    """Row -> right, for the rows with a verdict (labelled rows); with a tolerance (text-
    regression) right is |error| <= tolerance."""
    found = repository.verdicts(session, job_id, by_error=tolerance is not None)
    if tolerance is None:
        return {row: bool(correct) for row, correct in found if correct is not None}
    return {row: abs(error) <= tolerance for row, error in found if error is not None}


def default_tolerance(labels: dict[int, Any]) -> float:
    values = [float(v) for v in labels.values() if v is not None]
    spread = max(values) - min(values) if values else 0.0
    return spread / 10 if spread > 0 else 0.1


def value_ranges(labels: dict[int, Any]) -> dict[int, list[str]]:
    """Each labelled row's class: which of RANGES equal ranges of the true value it is in."""
    values = {row: float(v) for row, v in labels.items() if v is not None}
    if not values:
        return {}
    lo, hi = min(values.values()), max(values.values())
    width = (hi - lo) / RANGES or 1.0
    edges = [lo + width * i for i in range(RANGES + 1)]
    names = [f"{edges[i]:.3g} to {edges[i + 1]:.3g}" for i in range(RANGES)]
    return {row: [names[min(RANGES - 1, int((v - lo) / width))]] for row, v in values.items()}


def classes_of(task: str, truth: Any) -> list[str]:
    if task == DEFAULT_TASK:
        return [truth] if truth is not None else []
    fields = truth or {}
    if task == "multi-label-classification":
        return list(fields.get("labels") or []) or ["(no label)"]
    if task == "token-classification":
        kinds = sorted({kind for kind, _, _ in iob_spans(fields.get("tags") or [])})
        return kinds or ["(no entity)"]
    return []


# ---------------------------------------------------------------- summary and rows

def summary(flips: Flips) -> FlipSummary:
    rows = flips.rows()
    directions = {row: flips.direction(row) for row in rows}
    return FlipSummary(
        comparable=flips.reason is None, reason=flips.reason, task=flips.task,
        split=flips.split, baseline=flips.ids[0], rows=len(rows),
        flipped=sum(1 for d in directions.values() if d),
        fixed=sum(1 for d in directions.values() if d == "fixed"),
        broken=sum(1 for d in directions.values() if d == "broken"),
        tolerance=flips.tolerance, classes=class_changes(flips, directions))


def class_changes(flips: Flips, directions: dict[int, str | None]) -> list[ClassChange]:
    """Per class: its rows, the rows each job got right, fixed and broken (counted in plain
    lists; one model per class at the end)."""
    counts: dict[str, list[int]] = {}  # class -> [rows, fixed, broken, right per job...]
    for row, direction in directions.items():
        for name in flips.classes.get(row) or []:
            c = counts.setdefault(name, [0] * (3 + len(flips.ids)))
            c[0] += 1
            c[1] += direction == "fixed"
            c[2] += direction == "broken"
            for i, job_id in enumerate(flips.ids):
                c[3 + i] += flips.right[job_id][row]
    table = [ClassChange(name=name, rows=c[0], fixed=c[1], broken=c[2],
                         right={str(j): c[3 + i] for i, j in enumerate(flips.ids)})
             for name, c in counts.items()]
    return sorted(table, key=lambda c: (-(c.fixed + c.broken), c.name))


def flipped_rows(flips: Flips, direction: str = "all", label: str | None = None) -> list[int]:
    """The flipped rows, in order, of one direction (all, fixed, broken) and one class."""
    return [row for row in flips.rows()
            if (d := flips.direction(row)) and direction in ("all", d)
            and (label is None or label in (flips.classes.get(row) or []))]


def flip_rows(session: Session, flips: Flips, rows: Sequence[int]) -> list[FlipRow]:
    """The rows as every job predicted them, with each job's verdict."""
    by_row: dict[int, dict[int, Prediction]] = {row: {} for row in rows}
    for p in repository.rows_of(session, flips.ids, rows):
        by_row[p.row][p.job_id] = p
    task = flips.task or DEFAULT_TASK
    out = []
    for row in rows:
        base = by_row[row][flips.ids[0]].as_row(task)
        runs = {str(j): run_of(task, by_row[row][j].as_row(task), flips.right[j][row])
                for j in flips.ids}
        out.append(FlipRow(row=row, text=text_of(task, base), truth=truth_of(task, base),
                           label=", ".join(flips.classes.get(row) or []), runs=runs))
    return out


def text_of(task: str, row: dict[str, Any]) -> str:
    if task == "token-classification":
        return " ".join(row.get("tokens") or [])
    if task == "causal-lm-sft":
        return row.get("prompt") or ""
    return " / ".join(str(v) for v in (row.get("inputs") or {}).values())


def truth_of(task: str, row: dict[str, Any]) -> Any:
    if task == "multi-label-classification":
        return row.get("labels")
    if task == "token-classification":
        tokens = row.get("tokens") or []
        return [f"{kind}: {' '.join(tokens[a:b])}" for kind, a, b in iob_spans(row.get("tags")
                                                                              or [])]
    if task == "causal-lm-sft":
        return row.get("reference")
    return row.get("label")


def run_of(task: str, row: dict[str, Any], right: bool) -> FlipRun:
    """One job's prediction of a row and how sure it was (null where the task keeps none).

    multi-label-classification: the least sure of its per-label decisions, max(p, 1 - p)."""
    prediction: Any = row.get("prediction")
    confidence = None
    if task == DEFAULT_TASK:
        confidence = row.get("confidence")
    elif task == "multi-label-classification":
        prediction = row.get("predictions")
        probabilities = (row.get("probabilities") or {}).values()
        confidence = min((max(p, 1 - p) for p in probabilities), default=None)
    elif task == "token-classification":
        prediction = [f"{e['type']}: {e['text']}" for e in row.get("entities") or []]
    elif task == "causal-lm-sft":
        prediction = row.get("generated")
    return FlipRun(prediction=prediction, confidence=confidence, correct=right)
