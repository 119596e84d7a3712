"""Every ORM model, imported once so Alembic and the worker see the whole schema."""
from app.auth.models import ApiToken, WebSession
from app.datasets.models import Dataset
from app.db import Base
from app.hub.models import HubPush
from app.inference.models import WorkerRequest
from app.jobs.models import (
    Checkpoint,
    Job,
    JobAttempt,
    JobStatus,
    MetricPoint,
    MetricTile,
    Prediction,
)
from app.sweeps.models import Sweep
from app.workers.models import Worker

__all__ = [
    "ApiToken", "Base", "Checkpoint", "Dataset", "HubPush", "Job", "JobAttempt", "JobStatus",
    "MetricPoint", "MetricTile", "Prediction", "Sweep", "WebSession", "Worker", "WorkerRequest",
]
