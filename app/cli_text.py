"""The text the client commands print for pre-flight reports and Try it answers (from
POST /api/v1/preflight[/measure] and .../predict). Standard library only, like the other
client commands."""
from __future__ import annotations

from typing import Any

from app.terminal_bar import clock


def describe_report(report: dict[str, Any]) -> str:
    steps = report["steps"]
    lines = [f"{'SPLIT':<22} {'ROWS':>7} {'P50':>5} {'P95':>5} {'MAX':>6} {'CUT':>6}  LABELS"]
    for s in report["splits"]:
        labels = s.get("labels") or {}
        counts = ", ".join(f"{k}: {v}" for k, v in list((labels.get("counts") or {}).items())[:6])
        if labels.get("kind") == "values" and labels.get("min") is not None:
            counts = f"{labels['min']:.3g} .. {labels['max']:.3g}"
        tokens = s["tokens"]
        lines.append(f"{s['role'] + ' ' + s['split']:<22} {s['rows']:>7} {tokens['p50']:>5.0f} "
                     f"{tokens['p95']:>5.0f} {tokens['max']:>6} "
                     f"{s['truncated']['share'] * 100:>5.1f}%  {counts}")
    lines.append(f"steps: {steps['steps_per_epoch']} per epoch, {steps['total_steps']} in all "
                 f"(batch {steps['per_device_train_batch_size']} x accumulation "
                 f"{steps['gradient_accumulation_steps']}; max_length {report['max_length']})")
    for w in report["warnings"]:
        lines.append(f"{w['severity']}: {w['message']}")
    timing = report["timing"]
    lines.append(f"({timing['rows']} rows in {timing['seconds']:.1f} s)")
    return "\n".join(lines)


def describe_measure(m: dict[str, Any]) -> str:
    line = (f"measured on {m['device']}: {m['samples_per_second']:.1f} samples/s, peak memory "
            f"{m['peak_memory_mb']:.0f} MB ({m['memory_kind']}), ETA of {m['total_steps']} "
            f"steps: {clock(m['eta_seconds'])} (training only)")
    search = m.get("batch_search")
    if search and search.get("suggested_batch"):
        line += (f"\nlargest batch that fits: {search['largest_fitting_batch']}; use "
                 f"per_device_train_batch_size {search['suggested_batch']} with "
                 f"gradient_accumulation_steps {search['suggested_accumulation']}")
    return line


def describe_prediction(row: dict[str, Any]) -> str:
    """One Try it row as a line: label and probabilities, score, tagged words or the text."""
    if "generated" in row:
        return row["generated"]
    if "entities" in row:
        return tagged(row["tokens"], row["entities"])
    if "probabilities" not in row:
        return f"{row['prediction']:.4f}"
    top = sorted(row["probabilities"].items(), key=lambda kv: -kv[1])[:5]
    shown = "  ".join(f"{label} {p:.3f}" for label, p in top)
    chosen = row.get("predictions")
    head = (", ".join(chosen) or "(no label)") if chosen is not None else row["prediction"]
    return f"{head}\t({shown})"


def tagged(words: list[str], entities: list[dict[str, Any]]) -> str:
    """The sentence with each entity as [words](TYPE)."""
    starts = {e["start"]: e for e in entities}
    out, i = [], 0
    while i < len(words):
        entity = starts.get(i)
        if entity is None:
            out.append(words[i])
            i += 1
        else:
            out.append(f"[{' '.join(words[i:entity['end']])}]({entity['type']})")
            i = entity["end"]
    return " ".join(out)
