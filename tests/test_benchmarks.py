"""The benchmark harness runs and reports (numbers are checked by running it, not here)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.fixtures import REPO


def test_one_benchmark_runs_and_writes_its_table_and_json(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "P8",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode in (0, 1), done.stderr
    assert "| # | measure | value | target | pass |" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert rows and {row["id"] for row in rows} == {"P8"}
    sqlite = rows[0]
    assert "sqlite" in sqlite["measure"] and sqlite["value"] > 0 and sqlite["unit"] == "ms"


def test_unknown_benchmarks_are_refused():
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "P1,P42"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "unknown benchmark(s) P42" in done.stderr
