"""`tunedeck sweep SPEC.yaml --grid key=v1,v2 ... [--watch]`: a client command (httpx and the
standard library only, like app/cli_remote.py).

With --watch it exits 0 when every job succeeded, 1 when one failed, 2 when one was cancelled
(and none failed), 3 when the sweep could not be watched.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from app import cli_remote
from app.client import Client
from app.sweeps import grid

POLL_SECONDS = 2.0


def cmd_sweep(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"base": cli_remote.load_spec(args.spec),
                            "grid": grid.parse(args.grid or [], "="), "metric": args.metric}
    for key in ("name", "mode", "random", "seed"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    with cli_remote.client_for(args) as client:
        created = client.submit_sweep(body)
        print(created["id"])
        cli_remote.say(f"sweep {created['id']}: {len(created['jobs'])} jobs queued "
                       f"({', '.join(map(str, created['jobs']))})")
        return watch(client, created["id"]) if args.watch else 0


def watch(client: Client, sweep_id: int) -> int:
    """Print the leaderboard each time it changes, until every job has ended."""
    shown = ""
    while True:
        sweep = client.sweep(sweep_id)
        table = leaderboard(sweep)
        if table != shown:
            print(table + "\n", flush=True)
            shown = table
        if sweep["finished"]:
            break
        time.sleep(POLL_SECONDS)
    counts = sweep["counts"]
    best = next((j for j in sweep["jobs"] if j["id"] == sweep["best_job_id"]), None)
    if best is not None:
        cli_remote.say(f"best: job {best['id']} {sweep['metric']} {best['metric']:.4f} "
                       f"({', '.join(f'{k}={v}' for k, v in best['values'].items())})")
    return 1 if counts["failed"] else 2 if counts["cancelled"] else 0


def leaderboard(sweep: dict[str, Any]) -> str:
    """The sweep's jobs, best first, as a text table."""
    keys = list(sweep["grid"]) + list(sweep.get("ranges") or {})
    head = ["RANK", "ID", "STATUS", "PROGRESS", *[k.rsplit(".", 1)[-1] for k in keys],
            sweep["metric"]]
    rows = [head]
    for rank, job in enumerate(sweep["jobs"], 1):
        fraction = job["progress"]["fraction"]
        metric = job["metric"]
        rows.append([str(rank) if metric is not None else "-", str(job["id"]), job["status"],
                     f"{fraction * 100:.0f}%" if fraction is not None else "-",
                     *[str(job["values"].get(k, "")) for k in keys],
                     f"{metric:.4f}" if metric is not None else "-"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def register(sub: argparse._SubParsersAction, common: list) -> None:
    p = sub.add_parser("sweep", parents=common, help="queue one job per grid point of a spec")
    p.add_argument("spec", help="the base SPEC.yaml, SPEC.json or - for stdin")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                   help="a dotted spec key and its values, e.g. training.learning_rate=1e-5,3e-5;"
                        " repeat for more keys (every combination becomes a job)")
    p.add_argument("--random", type=int, metavar="N", help="draw N points instead of all")
    p.add_argument("--seed", type=int, help="of the random draws")
    p.add_argument("--metric", default="eval/loss", help="rank by this series (default: "
                   "eval/loss)")
    p.add_argument("--mode", choices=["max", "min"], help="default: min for losses, else max")
    p.add_argument("--name", help="the sweep's name (its jobs are named after it)")
    p.add_argument("--watch", action="store_true", help="print the leaderboard until every job "
                   "has ended; exit 0 all succeeded, 1 one failed, 2 one was cancelled")
    p.set_defaults(func=cli_remote.guarded(cmd_sweep, cli_remote.EXIT_UNWATCHABLE))
