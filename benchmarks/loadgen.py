"""A small HTTP load generator (asyncio + httpx), for machines without wrk.

    python -m benchmarks.loadgen [--header 'Name: value'] URL SECONDS CONNECTIONS PATH [PATH ...]

Keeps CONNECTIONS requests in flight for SECONDS, cycling through the paths; prints one JSON
line: rps, p95_ms, errors.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time

import httpx


async def load(url: str, seconds: float, connections: int, paths: list[str],
               headers: dict[str, str]) -> dict:
    cycle = itertools.cycle(paths)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30,
                                 headers=headers) as client:
        end = time.perf_counter() + seconds

        async def one_connection() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                start = time.perf_counter()
                try:
                    response = await client.get(next(cycle))
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - start)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(one_connection() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else latencies[0]
    return {"rps": len(latencies) / elapsed, "p95_ms": p95 * 1000, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("url")
    parser.add_argument("seconds", type=float)
    parser.add_argument("connections", type=int)
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    print(json.dumps(asyncio.run(load(args.url, args.seconds, args.connections, args.paths,
                                      headers))))


if __name__ == "__main__":
    main()
