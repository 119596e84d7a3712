"""The client commands of `tunedeck` start at once: httpx and the standard library only, no
server stack, no ./tunedeck-data (issue 16 item 6)."""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from tests.fixtures import REPO, child_env

UNREACHABLE = "http://127.0.0.1:1"
CLIENT_MODULES = {"app", "app.cli", "app.cli_remote", "app.cli_compare", "app.cli_text", "app.cli_sweep",
                  "app.client", "app.sweeps", "app.sweeps.grid", "app.terminal_bar"}
BUDGET_SECONDS = 0.3
# httpx imports these optional codecs and protocols when installed; its `cli` extra (click,
# rich, pygments) too, except in the `tunedeck` process, where app/cli.py keeps it out.
HTTPX_EXTRAS = ("brotli", "http2", "socks", "zstd")


class Timed:
    """One run of the interpreter: wall seconds, CPU seconds (user + system) and the result."""

    def __init__(self, args: list[str], cwd: Path):
        # Bytecode as an installed package has it: the first run writes it, the rest read it.
        env = {k: v for k, v in child_env({"PYTHONPATH": str(REPO)}).items()
               if k != "PYTHONDONTWRITEBYTECODE"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        self.done = subprocess.run([sys.executable, *args], cwd=cwd, env=env,
                                   capture_output=True, text=True, timeout=60, check=False)
        self.wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def medians(args: list[str], cwd: Path, times: int = 5) -> tuple[float, float, list[Timed]]:
    runs = [Timed(args, cwd) for _ in range(times)]
    return (statistics.median(r.wall for r in runs), statistics.median(r.cpu for r in runs),
            runs)


def loaded_modules(statement: str, cwd: Path, *argv: str) -> set[str]:
    """sys.modules when a process that ran `statement` (with `argv`) exits."""
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: print('MODULES', *sorted(sys.modules)))\n" + statement)
    done = Timed(["-c", probe, *argv], cwd).done
    line = next(line for line in done.stdout.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:])


def httpx_closure(extras: tuple[str, ...]) -> set[str]:
    """Import names of httpx, of what it requires and of what its `extras` require (httpx
    imports those when installed), from the installed metadata."""
    dists: set[str] = set()
    todo = ["httpx"]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in dists:
            continue
        dists.add(name)
        wanted = ["", *extras] if name == "httpx" else [""]
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # an optional one that is not installed
            continue
        for req in map(Requirement, requires):
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(req.name)
    owners = metadata.packages_distributions()
    return {module for module, owned in owners.items()
            if any(d.lower().replace("_", "-") in dists for d in owned)}


def test_jobs_against_no_server_is_quick_says_why_and_creates_nothing(tmp_path):
    """The median of 5 runs stays under 0.3 s of CPU, and of wall time on a machine that is
    not overloaded (more runnable processes than cores stretch any wall clock: then the wall
    time is reported, not judged; the CPU time still is)."""
    args = ["-m", "app.cli", "jobs", "--url", UNREACHABLE]
    Timed(args, tmp_path)  # writes the bytecode of app/ (once per install in real use)
    wall, cpu, runs = medians(args, tmp_path)
    bare_wall, bare_cpu, _ = medians(["-c", "pass"], tmp_path)
    for run in runs:
        assert run.done.returncode == 1
        assert "cannot reach the tunedeck server" in run.done.stderr
    assert list(tmp_path.iterdir()) == []
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    took = (f"`tunedeck jobs` took {wall:.3f} s wall, {cpu:.3f} s CPU (median of 5); the bare "
            f"interpreter {bare_wall:.3f} s wall, {bare_cpu:.3f} s CPU; load {load:.1f}/core")
    print(took)
    assert cpu < BUDGET_SECONDS, took
    assert wall < BUDGET_SECONDS or load > 1.0, took


def test_client_commands_import_only_httpx_and_the_standard_library(tmp_path,
                                                                     tmp_path_factory):
    stdlib = set(sys.stdlib_module_names) | {"app"}
    at_start = loaded_modules("pass", tmp_path)  # site's own (.pth files)
    cli = "import runpy\nrunpy.run_module('app.cli', run_name='__main__', alter_sys=True)"
    spec = tmp_path_factory.mktemp("spec") / "spec.json"
    spec.write_text('{"model": "m"}')
    for extras, statement, *argv in (
            (HTTPX_EXTRAS, cli, "jobs", "--url", UNREACHABLE),
            (HTTPX_EXTRAS, cli, "watch", "1", "--url", UNREACHABLE),
            (HTTPX_EXTRAS, cli, "sweep", str(spec), "--grid", "training.seed=1,2", "--url",
             UNREACHABLE),
            ((*HTTPX_EXTRAS, "cli"), "import app.client")):
        allowed = stdlib | httpx_closure(extras)
        modules = loaded_modules(statement, tmp_path, *argv)
        assert "httpx" in modules, argv  # the list is real
        foreign = {m for m in modules - at_start if m.split(".")[0] not in allowed}
        assert not foreign, (statement, argv, sorted(foreign))
        ours = {m for m in modules if m.split(".")[0] == "app"}
        assert ours <= CLIENT_MODULES, (argv, sorted(ours - CLIENT_MODULES))
    assert list(tmp_path.iterdir()) == []


def test_server_commands_still_load_their_modules(tmp_path):
    """A server command's module is loaded when it runs: `worker --help` parses, `migrate` builds
    the database (and, being a server command, creates ./tunedeck-data)."""
    done = Timed(["-m", "app.cli", "worker", "--help"], tmp_path).done
    assert done.returncode == 0 and "--hostname" in done.stdout
    done = Timed(["-m", "app.cli", "migrate"], tmp_path).done
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tunedeck-data" / "tunedeck.db").is_file()
    assert os.listdir(tmp_path) == ["tunedeck-data"]
