"""Shared fixtures: isolated settings and database, a tiny BERT, generated datasets, live servers.

Tests never touch the Hub: HF_HUB_OFFLINE=1 and a temporary HF_HOME are set for the whole run.
Services (PostgreSQL, Redis) skip with a reason when unreachable, unless TUNEDECK_REQUIRE_SERVICES=1
(set by .ci/run) turns that skip into a failure.
"""
from __future__ import annotations

import os
import tempfile

_HF_HOME = tempfile.mkdtemp(prefix="tunedeck-hf-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["HF_HOME"] = _HF_HOME
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DISABLE_TQDM", "1")
# Tiny models on a shared 2-core box: one intra-op thread per process is ~20x faster than
# torch's default, which oversubscribes the cores when a server, a worker and pytest all run.
os.environ.setdefault("OMP_NUM_THREADS", "1")

pytest_plugins = ["tests.fixtures", "tests.causal_lm"]
