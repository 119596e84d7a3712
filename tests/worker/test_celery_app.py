"""The Celery apps are built on first use: importing them reads no settings and writes nothing."""
from __future__ import annotations

import subprocess
import sys

from tests.fixtures import REPO, child_env

PROBE = """
import os
import app.jobs.queue, worker.celery_app
print(sorted(os.listdir(".")))
print(worker.celery_app.celery_app.conf.broker_url)
print(worker.celery_app.celery_app.conf.task_default_queue, app.jobs.queue.QUEUE)
print(app.jobs.queue.get_producer().conf.broker_url)
"""


def test_importing_the_celery_apps_reads_no_settings(tmp_path):
    broker = "redis://127.0.0.1:6379/15"
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=True,
                          env=child_env({"PYTHONPATH": str(REPO),
                                         "TUNEDECK_BROKER_URL": broker}))
    listed, worker_broker, queues, producer_broker = done.stdout.splitlines()
    assert listed == "[]"  # nothing created at import
    assert worker_broker == producer_broker == broker  # read when first used
    assert queues == "tunedeck tunedeck"
