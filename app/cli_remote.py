"""Commands that talk to a tunedeck server through app.client: submit, preflight, jobs,
compare, watch, download, predict, cancel, datasets. Server and token: --url/--token, else
TUNEDECK_URL/TUNEDECK_TOKEN.

`watch` (and `submit --watch`) exit with 0 when the job succeeded, 1 when it failed,
2 when it was cancelled and 3 when it could not be watched (server unreachable, auth, 404).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from app.cli_compare import compare_lines
from app.cli_text import describe_measure, describe_prediction, describe_report
from app.client import ApiError, Client, input_from_texts
from app.terminal_bar import ProgressLine, clock, eval_metric

EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 2}
EXIT_UNWATCHABLE = 3


def say(message: str) -> None:
    print(message, file=sys.stderr)


def client_for(args: argparse.Namespace) -> Client:
    return Client(args.url, args.token)


# ---------------------------------------------------------------- submit, jobs, cancel


def load_spec(path: str) -> dict[str, Any]:
    """A job spec from a .json or .yaml file, or '-' for stdin (YAML or JSON)."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    spec = json.loads(text) if path.endswith(".json") else load_yaml(text)
    if not isinstance(spec, dict):
        raise TypeError(f"{path}: a job spec is a mapping (name, model, dataset, ...)")
    return spec


def load_yaml(text: str) -> Any:
    """YAML (a superset of JSON); PyYAML is imported here, not at start-up, for `submit` alone."""
    import yaml  # 30 ms of every other command's start otherwise

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from exc


def cmd_submit(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    if args.name:
        spec["name"] = args.name
    with client_for(args) as client:
        job = client.submit(spec)
        print(job["id"])
        say(f"job {job['id']} {job['status']}: {job['name']}")
        return watch(client, job["id"]) if args.watch else 0


def cmd_jobs(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        page = client.jobs(status=args.status, per_page=args.limit, tag=args.tag)
    print(f"{'ID':>5}  {'STATUS':<10} {'PROGRESS':>8}  {'METRIC':<22} {'CREATED':<16}  NAME")
    for job in page["items"]:
        print(job_row(job))
    if page["total"] > len(page["items"]):
        say(f"({len(page['items'])} of {page['total']}; --limit to see more)")
    return 0


def job_row(job: dict[str, Any]) -> str:
    fraction = job["progress"]["fraction"]
    done = f"{fraction * 100:.0f}%" if fraction is not None else "-"
    best = eval_metric(job.get("final_metrics") or job.get("latest_metrics") or {})
    metric = f"{best[0]} {best[1]:.4f}" if best else "-"
    created = job["created_at"][:16].replace("T", " ")
    return (f"{job['id']:>5}  {job['status']:<10} {done:>8}  {metric:<22} {created:<16}  "
            f"{job['name']}")


def cmd_cancel(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        job = client.cancel(args.job_id)
    state = "cancelled" if job["status"] == "cancelled" else "stops at its next step"
    say(f"job {job['id']} {state}")
    return 0


# ---------------------------------------------------------------- preflight


def cmd_preflight(args: argparse.Namespace) -> int:
    """Print the data report (and with --measure the measured run); exit 1 when a warning is
    an error (training would fail), else 0."""
    spec = load_spec(args.spec)
    with client_for(args) as client:
        report = client.preflight(spec)
        measured = client.measure(spec, args.steps) if args.measure else None
    if args.json:
        print(json.dumps({"report": report, "measure": measured}, indent=2))
    else:
        print(describe_report(report))
        if measured:
            print(describe_measure(measured))
    return 1 if any(w["severity"] == "error" for w in report["warnings"]) else 0


def cmd_compare(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        body = client.compare(args.job_ids, max_points=4)  # the table needs no curves
    print("\n".join(compare_lines(body)))
    return 0


# ---------------------------------------------------------------- watch


def cmd_watch(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        return watch(client, args.job_id)


def watch(client: Client, job_id: int) -> int:
    """Follow the event stream with a progress bar; the exit code tells how the job ended."""
    line = ProgressLine()
    snapshot: dict[str, Any] = {}
    # Status events carry the latest metrics: skip replaying a long job's whole history.
    cursor = client.metrics(job_id, name=["-"], max_points=4)["last_id"]
    for event in client.events(job_id, after=cursor):
        if event.event in ("status", "progress"):
            snapshot = event.data
        elif event.event == "metric" and snapshot:
            snapshot["latest_metrics"][event.data["name"]] = event.data["value"]
        if snapshot and event.event != "end":
            line.update(job_id, snapshot)
    job = client.job(job_id)
    line.update(job_id, job)
    line.finish(summary(job))
    return EXIT_CODES.get(job["status"], EXIT_UNWATCHABLE)


def summary(job: dict[str, Any]) -> str:
    took = elapsed(job.get("started_at"), job.get("finished_at"))
    head = f"job {job['id']} {job['status']}" + (f" in {clock(took)}" if took else "")
    if job["status"] == "failed" and job.get("error"):
        error = job["error"]
        hint = f"\n  hint: {error['hint']}" if error.get("hint") else ""
        return f"{head}: {error.get('type')}: {error.get('message')}{hint}"
    metrics = job.get("final_metrics") or job.get("latest_metrics") or {}
    best = eval_metric(metrics)
    shown = f"; {best[0]} {best[1]:.4f}" if best else ""
    if job["status"] == "succeeded":
        shown += f"; download with: tunedeck download {job['id']}"
    return head + shown


def elapsed(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


# ---------------------------------------------------------------- download


def cmd_download(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        checkpoints = {c["name"]: c for c in client.checkpoints(args.job_id)}
        name = args.checkpoint or client.default_checkpoint(args.job_id)
        if name not in checkpoints:
            raise ApiError(404, f"job {args.job_id} has no checkpoint named {name!r}; it has: "
                           f"{', '.join(checkpoints) or 'none yet'}")
        size = checkpoints[name]["size_bytes"]
        say(f"downloading checkpoint {name!r} of job {args.job_id} ({size / 1e6:.1f} MB)")
        path = client.download(args.job_id, name, args.output, extract=not args.tar,
                               on_progress=download_progress(size))
    if sys.stderr.isatty():
        say("")  # end the progress line
    print(path)
    return 0


def download_progress(size: int) -> Callable[[int], None]:
    tty = sys.stderr.isatty()

    def show(done: int) -> None:
        if tty:
            share = f" {min(done / size, 1.0) * 100:3.0f}%" if size else ""
            sys.stderr.write(f"\r  {done / 1e6:8.1f} MB{share}")
            sys.stderr.flush()

    return show


# ---------------------------------------------------------------- predict


def cmd_predict(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        spec = client.job(args.job_id)["spec"]
        answer = client.predict(args.job_id, [input_from_texts(spec, args.texts)],
                                args.checkpoint, max_new_tokens=args.max_new_tokens)
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
        return 0
    for row in answer["predictions"]:
        print(describe_prediction(row))
    say(f"checkpoint {answer['checkpoint']} on {answer['device']}, {answer['seconds']:.2f} s")
    return 0


# ---------------------------------------------------------------- datasets


def cmd_dataset_upload(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        dataset = client.upload_dataset(args.file, args.label_column)
    print(dataset["id"])
    say(describe_dataset(dataset))
    say(f"use it in a job spec as: dataset: {{source: upload, path: {dataset['id']}}}")
    return 0


def describe_dataset(dataset: dict[str, Any]) -> str:
    head = (f"{dataset['id']}  {dataset['filename']}  {dataset['format']}  "
            f"{dataset['num_rows']} rows  columns: {', '.join(dataset['columns'])}")
    lines = [head]
    if dataset.get("label"):
        label = dataset["label"]
        counts = ", ".join(f"{k}: {v}" for k, v in label["counts"].items())
        lines.append(f"  {label['column']}: {counts}"
                     + (f" (+{label['missing']} missing)" if label["missing"] else ""))
    return "\n".join(lines)


def cmd_dataset_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        for dataset in client.datasets()["items"]:
            print(describe_dataset(dataset))
    return 0


def cmd_dataset_show(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        dataset = client.dataset(args.dataset_id, args.label_column)
    print(describe_dataset(dataset))
    for row in dataset["preview"]:
        print("  " + json.dumps(row, ensure_ascii=False))
    return 0


def cmd_dataset_delete(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        client.delete_dataset(args.dataset_id)
    say(f"dataset {args.dataset_id} deleted")
    return 0


# ---------------------------------------------------------------- parser


def guarded(func: Callable[[argparse.Namespace], int], failure: int = 1):
    """Errors as one line on stderr and an exit code, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ApiError as exc:
            say(f"error: {exc}")
        except httpx.HTTPError as exc:
            say(f"error: cannot reach the tunedeck server: {exc} (check --url / TUNEDECK_URL)")
        except (OSError, ValueError, TypeError) as exc:
            say(f"error: {exc}")
        except KeyboardInterrupt:
            say("\ninterrupted (the job keeps running on the server)")
            return 130
        return failure

    return run


def server_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--url", default=None, help="server URL (default: TUNEDECK_URL or "
                        "http://127.0.0.1:8000)")
    parent.add_argument("--token", default=None, help="API token (default: TUNEDECK_TOKEN)")
    return parent


def register(sub: argparse._SubParsersAction) -> None:
    common = [server_options()]
    p = sub.add_parser("submit", parents=common, help="submit a job spec (YAML or JSON)")
    p.add_argument("spec", help="SPEC.yaml, SPEC.json or - for stdin")
    p.add_argument("--name", help="override the spec's name")
    p.add_argument("--watch", action="store_true", help="then watch it (exit codes as watch)")
    p.set_defaults(func=guarded(cmd_submit, EXIT_UNWATCHABLE))

    p = sub.add_parser("preflight", parents=common, help="check a spec's data before launch: "
                       "rows, labels, token lengths, truncation, duplicates, steps, warnings")
    p.add_argument("spec", help="SPEC.yaml, SPEC.json or - for stdin")
    p.add_argument("--measure", action="store_true",
                   help="also train ~20 real steps on the worker: samples/s, memory, ETA")
    p.add_argument("--steps", type=int, default=20, help="steps to measure (default 20)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=guarded(cmd_preflight, 2))

    p = sub.add_parser("jobs", parents=common, help="list jobs, newest first")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed",
                                        "cancelled"])
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--tag", help="only jobs with this tag")
    p.set_defaults(func=guarded(cmd_jobs))

    p = sub.add_parser("compare", parents=common, help="final metrics side by side (* best), "
                       "the spec keys that differ and the flipped predictions' count")
    p.add_argument("job_ids", type=int, nargs="+", metavar="ID", help="2 to 12 job ids; the "
                   "first is the baseline")
    p.set_defaults(func=guarded(cmd_compare))

    p = sub.add_parser("watch", parents=common, help="live progress until the job ends; exit "
                       "0 succeeded, 1 failed, 2 cancelled, 3 could not watch")
    p.add_argument("job_id", type=int)
    p.set_defaults(func=guarded(cmd_watch, EXIT_UNWATCHABLE))

    p = sub.add_parser("download", parents=common, help="download a checkpoint")
    p.add_argument("job_id", type=int)
    p.add_argument("--checkpoint", help="checkpoint name (default: final, else the latest)")
    p.add_argument("-o", "--output", default=".", help="directory (default: .)")
    p.add_argument("--tar", action="store_true", help="keep the .tar, do not extract")
    p.set_defaults(func=guarded(cmd_download))

    p = sub.add_parser("predict", parents=common, help="try a checkpoint on a text (the "
                       "inference worker answers, also while jobs train)")
    p.add_argument("job_id", type=int)
    p.add_argument("texts", nargs="+", metavar="TEXT", help="a text, a text pair (two), a "
                   "sentence (token classification) or a prompt (SFT)")
    p.add_argument("--checkpoint", help="checkpoint name (default: final, else the latest)")
    p.add_argument("--max-new-tokens", type=int, help="SFT: tokens to generate")
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    p.set_defaults(func=guarded(cmd_predict))

    p = sub.add_parser("cancel", parents=common, help="cancel a queued or running job")
    p.add_argument("job_id", type=int)
    p.set_defaults(func=guarded(cmd_cancel))

    register_datasets(sub, common)


def register_datasets(sub: argparse._SubParsersAction, common: list) -> None:
    datasets = sub.add_parser("datasets", help="upload, list, show or delete dataset files")
    actions = datasets.add_subparsers(dest="datasets_command", required=True)
    p = actions.add_parser("upload", parents=common, help="upload a CSV/TSV/JSONL/Parquet file")
    p.add_argument("file")
    p.add_argument("--label-column", help="count the values of this column")
    p.set_defaults(func=guarded(cmd_dataset_upload))
    p = actions.add_parser("list", parents=common, help="uploaded datasets")
    p.set_defaults(func=guarded(cmd_dataset_list))
    p = actions.add_parser("show", parents=common, help="columns, value counts, preview")
    p.add_argument("dataset_id")
    p.add_argument("--label-column")
    p.set_defaults(func=guarded(cmd_dataset_show))
    p = actions.add_parser("delete", parents=common, help="delete an uploaded dataset")
    p.add_argument("dataset_id")
    p.set_defaults(func=guarded(cmd_dataset_delete))
