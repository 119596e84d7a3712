"""Layers point one way (issue 16 item 2): app/ never imports worker/, and worker/ takes from app/
only the shared core. Read from the source with `ast`, so a function-level import counts too."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.fixtures import REPO

# What the worker may use of app/: settings, the database, the ORM models, the job lifecycle,
# the worker's writes, the queue client (task names, Celery settings, re-sending a job) and
# the local-path policy.
WORKER_MAY_IMPORT = {
    "app.config",
    "app.db",
    "app.models",
    "app.auth.models",
    "app.datasets.models",
    "app.jobs.models",
    "app.jobs.lifecycle",  # every state change of a job (issue 16 item 1)
    "app.jobs.store",  # the worker's writes, split out of app/jobs/repository.py (item 3)
    "app.jobs.queue",
    "app.inference.models",  # the inference worker answers into its request rows
    "app.hub.models",  # worker/push.py writes a push's progress and outcome
    # Which local paths a job may read: the web checks at submit, the worker again before it
    # opens anything, by one policy. (It reaches app.auth.service for auth_enabled.)
    "app.paths",
    # Try it's input rules: the web checks them, the inference worker again, by one policy.
    "app.tryit.inputs",
    # The worker advertises its GPUs (worker/inventory.py): its own row, and nothing else.
    "app.workers.models",
    "app.workers.store",
}
# Imports allowed for now beyond the shared core; the test fails once one is gone, so this
# list only shrinks. (worker/'s app.jobs.repository imports went with the split into
# app/jobs/lifecycle.py and app/jobs/store.py.)
NOT_YET: set[tuple[str, str]] = set()
# The one module besides app/config.py's Settings that reads the environment: the client,
# which must start without pydantic-settings (app/config.py's docstring says so).
READS_ENVIRON = {"app/client.py"}


def sources(package: str) -> Iterator[Path]:
    yield from sorted((REPO / package).rglob("*.py"))


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported(path: Path) -> set[str]:
    """Modules `path` imports; `from app import db` counts as app.db."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            subs = {f"{node.module}.{alias.name}" for alias in node.names}
            names.update({s for s in subs if is_module(s)} or {node.module})
    return names


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def test_app_never_imports_worker():
    found = [(rel(path), name) for path in sources("app") for name in imported(path)
             if name.split(".")[0] == "worker"]
    assert found == []


def test_worker_imports_only_the_shared_core_of_app():
    found = {(rel(path), name) for path in sources("worker") for name in imported(path)
             if name.split(".")[0] == "app" and name not in WORKER_MAY_IMPORT}
    assert found - NOT_YET == set(), "worker/ imports app/ beyond the shared core"
    assert NOT_YET - found == set(), "these imports are gone: drop them from NOT_YET"


def test_the_import_reader_sees_every_form():
    """`import a.b`, `from a import b` (a module), `from a.b import name`, inside a function."""
    assert imported(REPO / "worker" / "tasks.py") >= {"app.db", "app.config", "app.jobs.queue"}
    assert "worker.celery_app" in imported(REPO / "worker" / "__main__.py")


def reads_environ(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "os" and node.attr in ("environ", "getenv", "environb")):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                alias.name in ("environ", "getenv") for alias in node.names):
            return True
    return False


def test_only_settings_and_the_client_read_the_environment():
    found = {rel(path) for package in ("app", "worker") for path in sources(package)
             if reads_environ(path)}
    assert found == READS_ENVIRON
