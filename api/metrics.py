"""Prometheus metrics, read from Redis at each scrape, so every API replica reports the whole service."""

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from jobs.store import (
    FAILURES_KEY,
    QUEUED_KEY,
    STAGE_BUCKETS,
    STAGE_SECONDS_KEY,
    STATUS_COUNTS_KEY,
    JobStatus,
    JobStore,
)


class ServiceCollector(Collector):
    def __init__(self, store: JobStore):
        self.store = store

    def collect(self) -> Iterator:
        client = self.store.redis
        with client.pipeline(transaction=False) as pipe:
            pipe.zcard(QUEUED_KEY)
            pipe.hgetall(STATUS_COUNTS_KEY)
            pipe.hgetall(FAILURES_KEY)
            pipe.hgetall(STAGE_SECONDS_KEY)
            depth, statuses, failures, stages = pipe.execute()

        yield GaugeMetricFamily("paints_undo_queue_depth", "Jobs waiting for a render worker.", value=depth)

        jobs = GaugeMetricFamily("paints_undo_jobs", "Jobs held (within retention) by status.", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status], max(0, int(statuses.get(status, 0))))
        yield jobs

        failed = CounterMetricFamily("paints_undo_job_failures", "Failed jobs by error code.", labels=["code"])
        for code, count in sorted(failures.items()):
            failed.add_metric([code], int(count))
        yield failed

        seconds = HistogramMetricFamily(
            "paints_undo_stage_duration_seconds", "Wall time of each render stage.", labels=["stage"]
        )
        for stage in sorted({name.split(":", 1)[0] for name in stages}):
            buckets = [(str(bound), int(stages.get(f"{stage}:le:{bound}", 0))) for bound in STAGE_BUCKETS]
            buckets.append(("+Inf", int(stages.get(f"{stage}:count", 0))))
            seconds.add_metric([stage], buckets, float(stages.get(f"{stage}:sum", 0)))
        yield seconds

        workers = GaugeMetricFamily("paints_undo_render_workers", "Render worker processes by state.", labels=["state"])
        states = [worker["state"] for worker in self.store.worker_states()]
        for state in ("loading", "ready", "busy", "failed"):
            workers.add_metric([state], states.count(state))
        yield workers
