"""The production deployment files, checked without a Docker engine.

docker-compose.yml is read with PyYAML (anchors and merge keys resolved as compose does) and its
${VAR} interpolation applied with compose's rules, the Dockerfile's stages are parsed, and the
web image's dependency set is resolved from pyproject and the installed distributions' metadata.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from app.config import Settings

REPO = Path(__file__).resolve().parent.parent
ML_STACK = {"torch", "transformers", "datasets", "accelerate", "evaluate", "triton",
            "tokenizers", "safetensors", "scikit-learn"}
TUNEDECK_SERVICES = ("migrate", "web", "worker")


# ---------------------------------------------------------------- helpers

_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


def interpolate(value, env: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error}, ${VAR:+alt} and $$, applied deeply."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        current = env.get(name)
        empty = current is None or (current == "" and op and op.startswith(":"))
        if op in (":-", "-"):
            return arg if empty else current
        if op in (":?", "?"):
            if empty:
                raise KeyError(f"{name}: {arg}")
            return current
        if op in (":+", "+"):
            return "" if empty else arg
        return current or ""

    return _VAR.sub(one, value)


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(REPO / ".env.example")


@pytest.fixture(scope="module")
def compose(env_example) -> dict:
    """docker-compose.yml as `docker compose config` would see it with .env.example as .env."""
    raw = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return interpolate(raw, env_example)


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def mounts(service: dict) -> dict[str, str]:
    """Container path -> source, from the short volume syntax."""
    return {spec.split(":")[1]: spec.split(":")[0] for spec in service.get("volumes", [])}


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_stages(text: str) -> dict[str, Stage]:
    text = re.sub(r"\\\n", " ", text)
    stages: dict[str, Stage] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            image, _, name = re.sub(r"--platform=\S+\s+", "", args).partition(" AS ")
            current = Stage(name.strip() or f"stage{len(stages)}", image.strip())
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, args.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return dockerfile_stages((REPO / "Dockerfile").read_text())


def chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    found = [stages[name]]
    while found[-1].base in stages:
        found.append(stages[found[-1].base])
    return found


def arg_default(stage: Stage, name: str) -> str:
    for args in stage.args("ARG"):
        key, _, default = args.partition("=")
        if key == name:
            return default
    raise AssertionError(f"no ARG {name} in stage {stage.name}")


# ---------------------------------------------------------------- docker-compose.yml


def test_compose_has_the_services(compose):
    assert {"postgres", "redis", "migrate", "web", "worker", "flower"} <= set(compose["services"])


@pytest.mark.parametrize("service, probe", [
    ("postgres", "pg_isready"), ("redis", "redis-cli"), ("web", "/healthz"),
    ("worker", "inspect ping"), ("flower", "/healthcheck")])
def test_long_running_services_have_health_checks(compose, service, probe):
    check = compose["services"][service]["healthcheck"]
    test = check["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    assert probe in " ".join(test[1:])
    assert check["interval"] and check["retries"] >= 1


def test_postgres_and_redis_are_durable(compose):
    postgres, redis = compose["services"]["postgres"], compose["services"]["redis"]
    assert postgres["image"].startswith("postgres:16")
    assert mounts(postgres)["/var/lib/postgresql/data"] == "pgdata"
    assert redis["image"].startswith("redis:7")
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert mounts(redis)["/data"] == "redis-data"


def test_named_volumes_hold_the_database_and_the_data_dir(compose):
    assert {"pgdata", "tunedeck-data"} <= set(compose["volumes"])
    for name in TUNEDECK_SERVICES:
        service = compose["services"][name]
        assert mounts(service)["/data"] == "tunedeck-data", name
        assert environment(service)["TUNEDECK_DATA_DIR"] == "/data", name


def test_data_store_can_be_a_shared_host_path(env_example):
    raw = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    shared = interpolate(raw, {**env_example, "DATA_VOLUME": "/mnt/tunedeck"})
    for name in TUNEDECK_SERVICES:
        assert mounts(shared["services"][name])["/data"] == "/mnt/tunedeck"


def test_tunedeck_services_share_database_and_broker(compose, env_example):
    for name in TUNEDECK_SERVICES:
        env = environment(compose["services"][name])
        assert env["TUNEDECK_DATABASE_URL"] == env_example["TUNEDECK_DATABASE_URL"]
        assert env["TUNEDECK_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["TUNEDECK_DATABASE_URL"]
        assert env["TUNEDECK_BROKER_URL"].startswith("redis://")
        assert compose["services"][name]["env_file"] == ".env"


def test_the_database_url_is_required(env_example):
    raw = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    missing = {k: v for k, v in env_example.items() if k != "TUNEDECK_DATABASE_URL"}
    with pytest.raises(KeyError, match="TUNEDECK_DATABASE_URL"):
        interpolate(raw, missing)


def test_migrate_is_a_one_shot_after_postgres(compose):
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["build"]["target"] == "web"


def test_web_starts_after_migrations_and_redis(compose):
    web = compose["services"]["web"]
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert web["depends_on"]["redis"]["condition"] == "service_healthy"
    assert web["command"][:2] == ["serve", "--no-worker"]
    assert "0.0.0.0" in web["command"]
    assert any(str(port).endswith(":8000") for port in web["ports"])
    assert web["build"]["target"] == "web"
    assert web["image"] == compose["services"]["migrate"]["image"]


def test_the_worker_owns_every_gpu_of_the_box(compose):
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    # It finds them itself (NVML) and gives each job its own CUDA_VISIBLE_DEVICES.
    assert "CUDA_VISIBLE_DEVICES" not in environment(worker)
    assert worker["command"][0] == "worker"
    assert worker["build"]["target"] == "worker"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["shm_size"]


def test_one_worker_per_gpu_is_one_anchor_away(compose):
    """x-gpu-worker holds everything but the GPUs; the commented worker-gpu0/-gpu1 blocks show
    the older layout (one worker per GPU), which still works."""
    template = compose["x-gpu-worker"]
    assert template["build"]["target"] == "worker"
    text = (REPO / "docker-compose.yml").read_text()
    assert "# worker-gpu1:" in text and "#   <<: *gpu-worker" in text
    assert 'device_ids: ["1"]' in text and '#     CUDA_VISIBLE_DEVICES: "0"' in text


def test_flower_is_optional(compose):
    flower = compose["services"]["flower"]
    assert flower["profiles"] == ["flower"]
    assert "flower" in flower["command"]
    assert all(isinstance(s["profiles"], list) for s in compose["services"].values()
               if "profiles" in s)
    assert not any("profiles" in compose["services"][name] for name in TUNEDECK_SERVICES)


def test_database_and_broker_ports_stay_on_loopback_by_default(compose):
    assert compose["services"]["postgres"]["ports"] == ["127.0.0.1:5432:5432"]
    assert compose["services"]["redis"]["ports"] == ["127.0.0.1:6379:6379"]


# ---------------------------------------------------------------- .env.example


def test_env_example_lists_every_setting():
    text = (REPO / ".env.example").read_text()
    for name, info in Settings.model_fields.items():
        if info.validation_alias:  # read under its own name (CUDA_VISIBLE_DEVICES)
            continue
        assert re.search(rf"^#? ?TUNEDECK_{name.upper()}=", text, re.MULTILINE), name


def test_env_example_names_every_compose_variable():
    text = (REPO / ".env.example").read_text()
    compose_text = (REPO / "docker-compose.yml").read_text().replace("$$", "")
    for name in sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", compose_text))):
        assert re.search(rf"^#? ?{name}=", text, re.MULTILINE), name


def test_env_example_is_valid_settings(monkeypatch):
    for key in list(os.environ):
        if key.startswith("TUNEDECK_"):
            monkeypatch.delenv(key)
    settings = Settings(_env_file=REPO / ".env.example")
    assert settings.db_url.startswith("postgresql+psycopg://")
    assert settings.broker.startswith("redis://")


def test_env_example_keeps_postgres_password_in_step(env_example):
    url = env_example["TUNEDECK_DATABASE_URL"]
    assert f":{env_example['POSTGRES_PASSWORD']}@" in url
    assert f"//{env_example['POSTGRES_USER']}:" in url
    assert url.endswith("/" + env_example["POSTGRES_DB"])


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_has_the_stages(stages):
    assert {"assets", "source", "base", "web", "worker"} <= set(stages)
    assert chain(stages, "web")[-1].base.startswith("python:")
    assert chain(stages, "worker")[1].name == "base"


def test_front_end_assets_come_from_the_lockfile(stages):
    assets = stages["assets"]
    assert assets.base.startswith("node:20")
    assert any("package-lock.json" in args for args in assets.args("COPY"))
    assert any("scripts/vendor.sh" in args for args in assets.args("RUN"))
    assert "npm ci" in (REPO / "scripts" / "vendor.sh").read_text()
    assert any(args.startswith("--from=assets") and "app/static/vendor" in args
               for args in stages["source"].args("COPY"))


def test_web_image_installs_no_torch(stages):
    runs = " ".join(args for stage in chain(stages, "web") for args in stage.args("RUN"))
    assert "['dependencies']" in runs  # the base dependencies, read from pyproject
    assert "pip install --no-deps -e ." in runs
    for forbidden in ("torch", "optional-dependencies", "[worker]", ".[", "transformers"):
        assert forbidden not in runs, forbidden


def test_web_image_serves_without_a_worker(stages):
    web = stages["web"]
    assert json.loads(web.args("ENTRYPOINT")[-1]) == ["tunedeck"]
    command = json.loads(web.args("CMD")[-1])
    assert command[:2] == ["serve", "--no-worker"] and "0.0.0.0" in command
    assert web.args("USER") == ["1000:1000"]  # numeric, for runAsNonRoot checks
    assert any(args.startswith("--from=source") for args in web.args("COPY"))


def test_worker_image_has_a_cuda_torch_and_the_worker_extra(stages, pyproject):
    worker = stages["worker"]
    runs = " ".join(worker.args("RUN"))
    assert 'pip install "torch==${TORCH_VERSION}"' in runs
    assert "['optional-dependencies']" in runs and "extras['worker']" in runs
    assert "nvidia-ml-py" in runs  # torch.cuda.utilization() needs pynvml
    assert json.loads(worker.args("CMD")[-1]) == ["worker"]
    assert any("benchmarks/gpu_check.py" in args for args in worker.args("COPY"))
    torch_spec = next(Requirement(r) for r in pyproject["project"]["optional-dependencies"]
                      ["worker"] if Requirement(r).name == "torch").specifier
    assert arg_default(worker, "TORCH_VERSION") in torch_spec


def test_torch_version_agrees_everywhere(stages, env_example):
    compose_text = (REPO / "docker-compose.yml").read_text()
    default = arg_default(stages["worker"], "TORCH_VERSION")
    assert f"${{TORCH_VERSION:-{default}}}" in compose_text
    assert env_example["TORCH_VERSION"] == default


def test_dockerignore_keeps_local_state_out():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "node_modules", "app/static/vendor",
            "tunedeck-data"} <= ignored
    assert "!benchmarks/gpu_check.py" in ignored  # the worker image carries the GPU check


# ---------------------------------------------------------------- the web dependency set


def test_base_dependencies_exclude_the_ml_stack(pyproject):
    names = {canonicalize_name(Requirement(r).name) for r in pyproject["project"]["dependencies"]}
    assert not names & ML_STACK
    worker = {canonicalize_name(Requirement(r).name)
              for r in pyproject["project"]["optional-dependencies"]["worker"]}
    assert {"torch", "transformers", "datasets"} <= worker


def _wanted(requirement: Requirement, extras: set[str]) -> bool:
    marker: Marker | None = requirement.marker
    return marker is None or any(marker.evaluate({"extra": e}) for e in extras | {""})


def dependency_closure(requirements: list[str]) -> tuple[set[str], set[str]]:
    """Every distribution the requirements pull in, from installed metadata; and those missing."""
    seen: set[tuple[str, frozenset[str]]] = set()
    found, missing = set(), set()
    todo = [(Requirement(r), set()) for r in requirements]
    while todo:
        requirement, parent_extras = todo.pop()
        if not _wanted(requirement, parent_extras):
            continue
        name, extras = canonicalize_name(requirement.name), set(requirement.extras)
        if (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            missing.add(name)
            continue
        found.add(name)
        todo += [(Requirement(r), extras) for r in requires]
    return found, missing


def test_web_dependency_closure_has_no_torch(pyproject):
    found, _missing = dependency_closure(pyproject["project"]["dependencies"])
    assert {"fastapi", "sqlalchemy", "celery", "uvicorn", "redis", "psycopg"} <= found
    assert not found & ML_STACK, sorted(found & ML_STACK)
    assert not [name for name in found if name.startswith(("nvidia-", "cuda-"))]


def test_dependency_closure_follows_extras():
    found, _ = dependency_closure(["tunedeck[worker]"])
    assert "torch" in found


def test_web_code_never_imports_the_ml_stack(tmp_path):
    """Import every module of app/ and the Celery app, as the web image would, in a clean process."""
    script = (
        "import importlib, pkgutil, sys\n"
        "import app\n"
        "for module in pkgutil.walk_packages(app.__path__, 'app.'):\n"
        "    importlib.import_module(module.name)\n"
        "import worker.celery_app\n"
        "from app.main import create_app\n"
        "create_app()\n"
        f"heavy = {sorted(ML_STACK)!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEDECK_")}
    env["TUNEDECK_DATA_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"

