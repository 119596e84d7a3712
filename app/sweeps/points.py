"""A sweep's points: the grid's product or random draws, and each point applied to the base spec."""
from __future__ import annotations

import copy
import itertools
import math
import random
from collections.abc import Iterator
from typing import Any

from app.sweeps.schemas import RangeSpec, SweepIn


def count(sweep: SweepIn) -> int:
    """How many jobs the sweep makes, without building them."""
    if sweep.random is not None:
        return sweep.random
    return math.prod(len(values) for values in sweep.grid.values())


def points(sweep: SweepIn) -> Iterator[dict[str, Any]]:
    """Each point as {dotted key: value}, in grid order (the first key varies slowest)."""
    if sweep.random is None:
        keys = list(sweep.grid)
        for values in itertools.product(*sweep.grid.values()):
            yield dict(zip(keys, values, strict=True))
        return
    rng = random.Random(sweep.seed)
    for _ in range(sweep.random):
        point = {key: rng.choice(values) for key, values in sweep.grid.items()}
        point.update({key: draw(rng, r) for key, r in sweep.ranges.items()})
        yield point


def draw(rng: random.Random, r: RangeSpec) -> float | int:
    if r.integer:
        return rng.randint(math.ceil(r.min), math.floor(r.max))
    value = (math.exp(rng.uniform(math.log(r.min), math.log(r.max))) if r.log
             else rng.uniform(r.min, r.max))
    return float(f"{value:.4g}")  # 3.162e-05, not 3.1622776601683795e-05


def apply(base: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """The base spec with each dotted key of the point set (missing mappings are made);
    ValueError names a key whose parent is not a mapping."""
    spec = copy.deepcopy(base)
    for key, value in point.items():
        *parents, leaf = key.split(".")
        node = spec
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"{'.'.join(parents[:i + 1])} is not a mapping in the base spec")
            node = child
        node[leaf] = value
    return spec


def label(point: dict[str, Any]) -> str:
    """`learning_rate=1e-05, per_device_train_batch_size=16`: the point in a job name."""
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={show(value)}" for key, value in point.items())


def show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
