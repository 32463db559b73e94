"""Prometheus metrics (``GET /metrics``, an admin token required), with prometheus-client.

Two kinds of series:

- From the database at scrape time (``recu_db.stats``), the same from every API process:
  ``recu_jobs{state}``, ``recu_queue_depth``, ``recu_queue_oldest_age_seconds``,
  ``recu_claims_total``, ``recu_lease_expiries_total`` and, per running job,
  ``recu_job_epoch_seconds{job_id,kind}`` and ``recu_job_images_per_second{job_id,kind}``
  (its newest epoch).
- Measured by this process: ``recu_http_request_duration_seconds{method,route,status}``,
  a histogram labelled by the route's template (``/jobs/{job_id}``, never the raw path:
  the label set stays bounded), ``unmatched`` for a path no route has.

With several server processes (``RECU_API_WORKERS``) ``recu serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder, and a scrape of any process sums every
process's request histograms (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recu_db.queue import utcnow
from recu_db.stats import service_stats

#: Latency buckets (seconds): from a cached read to a request that waited for admission.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DatabaseCollector(Collector):
    """The service's state, read from the database on every scrape."""

    def __init__(self, makers: Callable[[], sessionmaker[Session]]) -> None:
        self.makers = makers

    def collect(self) -> Iterator[Metric]:
        with self.makers()() as session:
            stats = service_stats(session, utcnow())
        jobs = GaugeMetricFamily("recu_jobs", "Jobs, sweeps and trials by state.", labels=["state"])
        for state, count in stats.jobs_by_state.items():
            jobs.add_metric([state], count)
        yield jobs
        yield GaugeMetricFamily(
            "recu_queue_depth", "Queued jobs and sweeps a worker can claim.", value=stats.queued
        )
        yield GaugeMetricFamily(
            "recu_queue_oldest_age_seconds",
            "How long the oldest claimable queued job has waited (0: none queued).",
            value=stats.oldest_queued_age_s,
        )
        yield CounterMetricFamily(
            "recu_claims", "Claims: queued -> running transitions.", value=stats.claims
        )
        yield CounterMetricFamily(
            "recu_lease_expiries",
            "Leases the reaper found expired (their jobs requeued or failed).",
            value=stats.lease_expiries,
        )
        labels = ["job_id", "kind"]
        epoch = GaugeMetricFamily(
            "recu_job_epoch_seconds", "A running job's newest epoch time.", labels=labels
        )
        speed = GaugeMetricFamily(
            "recu_job_images_per_second", "A running job's newest epoch's images/s.", labels=labels
        )
        for job in stats.running:
            if job.epoch_time_s is not None:
                epoch.add_metric([str(job.job_id), job.kind], job.epoch_time_s)
            if job.images_per_s is not None:
                speed.add_metric([str(job.job_id), job.kind], job.images_per_s)
        yield epoch
        yield speed


class Metrics:
    """The app's registry: the request histogram and the database collector."""

    def __init__(self, makers: Callable[[], sessionmaker[Session]]) -> None:
        self.registry = CollectorRegistry()  # the database collector is not read at registration
        self.requests = Histogram(
            "recu_http_request_duration_seconds",
            "Time from a request's arrival to its response's last byte.",
            ["method", "route", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.database = DatabaseCollector(makers)
        self.registry.register(self.database)

    def exposition(self) -> bytes:
        """The text format of every series (the database read happens here)."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry)
        scraped = CollectorRegistry()  # every process's histograms summed, and the database
        multiprocess.MultiProcessCollector(scraped)
        scraped.register(self.database)
        return generate_latest(scraped)


class RequestTimer:
    """Pure ASGI middleware: observes each HTTP request's duration, by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # a request that raised before answering

        async def timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )
