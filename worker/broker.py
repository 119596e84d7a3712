"""Which jobs the broker still holds a train message for, so the sweep re-sends only lost ones.

Reads kombu's storage directly (no Celery import): the Redis lists named after the train
queues (tunedeck and the tunedeck.gpusN queues, app/jobs/queue.py) plus the `unacked` hash, or
the message table of the SQL transport. Any other broker answers None ("cannot tell").
"""
from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterable
from typing import cast

import redis
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from app.jobs.queue import GPU_QUEUE_PREFIX, QUEUE
from worker.celery_app import TRAIN_TASK

log = logging.getLogger(__name__)
UNACKED_KEY, UNACKED_INDEX = "unacked", "unacked_index"  # kombu's Redis transport defaults
_SQL_PENDING = text(
    "SELECT m.payload FROM kombu_message m JOIN kombu_queue q ON m.queue_id = q.id "
    "WHERE (q.name = :queue OR q.name LIKE :gpu_queues) AND m.visible"
)


def job_id_of(payload: str | bytes | dict) -> int | None:
    """The job id of a Celery (protocol 2) train message; None for anything else."""
    try:
        message = payload if isinstance(payload, dict) else json.loads(payload)
        if message.get("headers", {}).get("task") != TRAIN_TASK:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0])
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def _ids(payloads: Iterable) -> set[int]:
    return {job_id for job_id in map(job_id_of, payloads) if job_id is not None}


class BrokerView:
    """Read-only look at the messages waiting in one broker.

    A message a worker took but has not acknowledged counts for `fresh_seconds`: tasks are
    acknowledged as they start, so an older one belonged to a worker that died in between
    (kombu would only restore it after the 12 h visibility timeout).
    """

    def __init__(self, url: str, fresh_seconds: float = 60.0):
        self.url = url
        self.fresh_seconds = fresh_seconds
        self._redis: redis.Redis | None = None
        self._engine: Engine | None = None
        if url.startswith(("redis://", "rediss://", "unix://")):
            self._redis = redis.Redis.from_url(url, socket_timeout=10)
        elif url.startswith("sqla+"):
            self._engine = create_engine(url.removeprefix("sqla+"), poolclass=NullPool)

    @property
    def inspectable(self) -> bool:
        return self._redis is not None or self._engine is not None

    def job_ids(self) -> set[int] | None:
        """Ids of train messages not yet started; None when this broker cannot be read."""
        try:
            if self._redis is not None:
                return self._redis_ids(self._redis)
            if self._engine is not None:
                return self._sql_ids(self._engine)
        except Exception:
            log.warning("could not read the broker's train queues", exc_info=True)
        return None

    def _redis_ids(self, client: redis.Redis) -> set[int]:
        queues = [QUEUE, *client.scan_iter(match=f"{GPU_QUEUE_PREFIX}*", _type="list")]
        waiting = [message for queue in queues for message in client.lrange(queue, 0, -1)]
        tags = client.zrangebyscore(UNACKED_INDEX, time.time() - self.fresh_seconds, "+inf")
        entries = client.hmget(UNACKED_KEY, cast(list[bytes], tags)) if tags else []
        # Delivered but not yet acknowledged: [message, exchange, routing_key].
        unacked = [json.loads(entry)[0] for entry in entries if entry]
        return _ids(waiting) | _ids(unacked)

    def _sql_ids(self, engine: Engine) -> set[int]:
        with engine.connect() as conn:
            try:
                rows = conn.execute(_SQL_PENDING, {"queue": QUEUE,
                                                   "gpu_queues": f"{GPU_QUEUE_PREFIX}%"}
                                    ).scalars().all()
            except Exception:
                if not _has_table(engine):
                    return set()
                raise
        return _ids(rows)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
        if self._engine is not None:
            self._engine.dispose()


def _has_table(engine: Engine) -> bool:
    return inspect(engine).has_table("kombu_message")
