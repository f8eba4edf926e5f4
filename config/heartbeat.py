"""Celery workers say they are alive: a Redis key per consumed queue, refreshed every
HEARTBEAT_INTERVAL_SECONDS, expiring after HEARTBEAT_TTL_SECONDS. /healthz reads it with one
EXISTS instead of asking the workers (``inspect ping`` waits for replies on every probe).

A consumer bootstep of our own, not Celery's event heartbeats: those exist only while worker
events are on (``--without-heartbeat`` turns them off) and ride the event exchange. This one
runs on the consumer's timer, so it stops when the consumer stops consuming (a lost broker
connection, a shutdown) and starts again with it.
"""

from __future__ import annotations

import logging
import time

import redis
from celery import bootsteps
from django.conf import settings

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_SECONDS = 5.0
HEARTBEAT_TTL_SECONDS = 20
_KEY = "chatbot:worker-heartbeat:{queue}"
_clients: dict[str, redis.Redis] = {}


def heartbeat_key(queue: str) -> str:
    return _KEY.format(queue=queue)


def redis_client() -> redis.Redis:
    """A shared client for REDIS_URL with short timeouts (a probe or a scrape never hangs)."""
    url = settings.REDIS_URL
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    return _clients[url]


def heartbeat_record(*, queues: list[str], hostname: str) -> None:
    """Mark each queue as having a live consumer for the next HEARTBEAT_TTL_SECONDS."""
    value = f"{hostname} {time.time():.0f}"
    pipe = redis_client().pipeline(transaction=False)
    for queue in queues:
        pipe.set(heartbeat_key(queue), value, ex=HEARTBEAT_TTL_SECONDS)
    pipe.execute()


def heartbeat_fresh(queue: str) -> bool:
    """True when a worker consuming ``queue`` beat within the TTL (False if Redis is down)."""
    try:
        return bool(redis_client().exists(heartbeat_key(queue)))
    except redis.RedisError:
        return False


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Consumer bootstep: beats for every queue this worker consumes (its ``-Q``)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        self.tref = None
        super().__init__(parent, **kwargs)

    def start(self, parent):
        self.queues = sorted({queue.name for queue in parent.task_consumer.queues})
        self.hostname = parent.hostname
        self._beat()
        self.tref = parent.timer.call_repeatedly(HEARTBEAT_INTERVAL_SECONDS, self._beat)

    def stop(self, parent):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop

    def _beat(self):
        try:
            heartbeat_record(queues=self.queues, hostname=self.hostname)
        except redis.RedisError as exc:  # the broker's own reconnect logic reports the outage
            logger.warning("worker heartbeat not recorded: %s", exc)
