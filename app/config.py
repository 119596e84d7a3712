"""The server's one Settings object (web and worker); nothing else there reads os.environ.

The client (app/client.py) reads its own two variables, TUNEDECK_URL and TUNEDECK_TOKEN, in
`client.settings_from_env`, so that it starts without pydantic-settings; tests/test_layers.py
checks that no other module reads the environment.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNEDECK_", env_file=".env", extra="ignore")

    data_dir: Path = Path("tunedeck-data")
    database_url: str | None = Field(default=None, description="default: SQLite in data_dir")
    broker_url: str | None = Field(default=None, description="default: SQLite broker in data_dir")
    host: str = "127.0.0.1"
    port: int = 8000
    web_workers: int = Field(default=1, ge=1, le=64)  # web processes of `tunedeck serve`
    # SecretStr: a logged or printed Settings never shows a token.
    api_tokens: SecretStr = Field(default=SecretStr(""), description="comma-separated tokens")
    secret_key: SecretStr | None = Field(default=None, description="signs session cookies")
    # Host names clients reach this server by (app/security.py); "*" allows any.
    allowed_hosts: str = Field(default="", description="comma-separated Host names")
    # Wrong tokens (bearer or login form) per client address a minute, then 429 (in-process).
    auth_failures_per_minute: int = Field(default=10, ge=1)
    max_upload_mb: int = 200
    # With auth on, a spec may name local datasets and models only under these (app/paths.py).
    local_roots: str = Field(default="", description="comma-separated directories")
    # Work per upload request: a few KB can hold 100,000 column names or declare 100M rows.
    max_upload_columns: int = Field(default=1000, ge=1)
    max_stats_rows: int = Field(default=1_000_000, ge=1, description="rows read for value counts")
    heartbeat_seconds: float = 5.0
    lease_timeout_seconds: float = 60.0
    max_restarts: int = 3
    # A CUDA out-of-memory halves the batch and retries (a spec's on_oom: fail opts out);
    # false turns that off for every job on this server (worker/runner.py).
    oom_retry: bool = True
    # How long the web waits for the inference worker (try it, pre-flight) before a 503.
    inference_timeout_seconds: float = Field(default=30.0, gt=0)
    # Pre-flight reads and tokenizes the whole dataset (100k rows: seconds, a large Hub
    # dataset's first download: longer); a measurement loads the model and trains ~20 steps.
    preflight_timeout_seconds: float = Field(default=120.0, gt=0)
    measure_timeout_seconds: float = Field(default=600.0, gt=0)
    # Requests the inference worker serves at once (threads sharing its loaded models).
    inference_threads: int = Field(default=4, ge=1, le=64)
    # Pushes to the Hugging Face Hub (worker/push.py) authenticate with this write token; the
    # Hub's address is huggingface_hub's own HF_ENDPOINT. Never echoed, logged or stored.
    hf_token: SecretStr | None = Field(default=None, description="a Hub write token")
    # Checkpoints the inference worker keeps loaded for Try it (least recently used out).
    inference_cache_size: int = Field(default=2, ge=1, le=32)
    # Where Try it runs: auto = CUDA when the GPU's free memory holds the model beside a
    # training job (worker/model_cache.py choose_device), else the CPU.
    inference_device: Literal["auto", "cpu", "cuda"] = "auto"
    flush_seconds: float = 0.25
    # GPUs this worker may use, by CUDA index ("0,1"); empty: every GPU it finds.
    gpus: str = Field(default="", description="comma-separated CUDA device indices")
    # Jobs whose resources.gpu_memory_gb fit together share one GPU (worker/scheduler.py).
    gpu_sharing: bool = False
    # A worker without GPUs runs a job asking for N GPUs as N CPU processes (DDP on gloo):
    # the same launch path as on a GPU box, for tests and for trying it on a laptop.
    ddp_cpu: bool = False
    # Jobs a worker runs at once (Celery pool processes); 0: one per GPU (four per GPU with
    # sharing on), one on a worker without GPUs.
    worker_concurrency: int = Field(default=0, ge=0, le=256)
    # Testing only: pretend this worker has these GPUs ("2x80": two of 80 GB); jobs placed
    # on them train on the CPU (tests/worker/test_allocation.py).
    fake_gpus: str = ""
    # The operator's own restriction of this worker (the one-worker-per-GPU layout); the GPUs
    # it names are the worker's CUDA indices 0, 1, ... (worker/inventory.py).
    cuda_visible_devices: str | None = Field(default=None,
                                             validation_alias="CUDA_VISIBLE_DEVICES")
    sse_poll_seconds: float = 0.2
    # Jobs one sweep may queue (grid points or random samples); beyond it a 422.
    max_sweep_jobs: int = Field(default=64, ge=1)
    # Open /events streams per web process; beyond it a 503 with Retry-After.
    max_streams: int = Field(default=100, ge=1)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'tunedeck.db').resolve()}"

    @property
    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    def job_dir(self, job_id: int) -> Path:
        return self.jobs_dir / str(job_id)

    @property
    def local_root_paths(self) -> list[Path]:
        """TUNEDECK_LOCAL_ROOTS, each resolved (symlinks and .. followed)."""
        return [Path(p.strip()).expanduser().resolve() for p in self.local_roots.split(",")
                if p.strip()]

    @property
    def gpu_list(self) -> list[int] | None:
        """TUNEDECK_GPUS as indices; None when unset (every GPU found)."""
        found = [int(g) for g in self.gpus.replace(" ", "").split(",") if g]
        return found or None

    @property
    def allowed_host_list(self) -> list[str]:
        return [h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()]

    @property
    def hub_token(self) -> str | None:
        """TUNEDECK_HF_TOKEN, None when unset or blank."""
        token = self.hf_token.get_secret_value().strip() if self.hf_token else ""
        return token or None

    @property
    def token_list(self) -> list[str]:
        return [t.strip() for t in self.api_tokens.get_secret_value().split(",") if t.strip()]


@lru_cache
def get_settings() -> Settings:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings
