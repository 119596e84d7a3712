"""`tunedeck compare`'s text: final metrics side by side, the spec keys that differ, the flips
(from GET /api/v1/compare). Standard library only, like the other client commands."""
from __future__ import annotations

import json
from typing import Any


def compare_lines(body: dict[str, Any]) -> list[str]:
    """Final metrics side by side (* best), the spec keys that differ, the flips' count."""
    ids = [str(job["id"]) for job in body["jobs"]]
    names = sorted({n for m in body["final_metrics"].values() for n in m or {}
                    if not n.endswith(("runtime", "per_second", "flos", "epoch"))})
    width = max([len(n) for n in [*names, *body["spec_diff"]]] + [14])
    lines = [f"{'':<{width}}" + "".join(f"{'#' + i:>14}" for i in ids)]
    lines += [f"{'':<{width}}" + "".join(f"{job['name'][:13]:>14}" for job in body["jobs"])]
    for name in names:
        best = {str(i) for i in body["best"].get(name, [])}
        cells = [cell((body["final_metrics"][i] or {}).get(name), i in best) for i in ids]
        lines.append(f"{name:<{width}}" + "".join(cells))
    if body["spec_diff"]:
        lines += ["", "spec differences:"]
        for key, values in body["spec_diff"].items():
            cells = [f"{short(values[i]) if i in values else '-':>14}" for i in ids]
            lines.append(f"{key:<{width}}" + "".join(cells))
    flips = body["flips"]
    lines.append("")
    if flips["comparable"]:
        lines.append(f"flips on {flips['split']} ({flips['rows']} rows, against #{ids[0]}): "
                     f"{flips['flipped']} flipped, {flips['fixed']} fixed, "
                     f"{flips['broken']} broken")
    else:
        lines.append(f"no flipped examples: {flips['reason']}")
    return lines


def cell(value: Any, best: bool) -> str:
    shown = "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
    return f"{('*' if best else '') + shown:>14}"


def short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 13 else text[:12] + "…"
