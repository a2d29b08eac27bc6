"""Prometheus metrics, read from the job store at each scrape, so every API replica reports the whole service."""

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from jobs.store import JobStore

WORKER_STATES = ("loading", "ready", "busy", "failed")


class ServiceCollector(Collector):
    def __init__(self, store: JobStore):
        self.store = store

    def collect(self) -> Iterator:
        counters = self.store.counters()
        yield GaugeMetricFamily(
            "paints_undo_queue_depth", "Jobs waiting for a render worker.", value=counters.queue_depth
        )

        jobs = GaugeMetricFamily("paints_undo_jobs", "Jobs held (within retention) by status.", labels=["status"])
        for status, count in counters.jobs_by_status.items():
            jobs.add_metric([status], count)
        yield jobs

        failed = CounterMetricFamily("paints_undo_job_failures", "Failed jobs by error code.", labels=["code"])
        for code, count in counters.failures_by_code.items():
            failed.add_metric([code], count)
        yield failed

        seconds = HistogramMetricFamily(
            "paints_undo_stage_duration_seconds", "Wall time of each render stage.", labels=["stage"]
        )
        for stage, histogram in counters.stage_seconds.items():
            buckets = [(str(bound), count) for bound, count in histogram.buckets] + [("+Inf", histogram.count)]
            seconds.add_metric([stage], buckets, histogram.sum)
        yield seconds

        workers = GaugeMetricFamily("paints_undo_render_workers", "Render worker processes by state.", labels=["state"])
        for state in WORKER_STATES:
            workers.add_metric([state], counters.worker_states.count(state))
        yield workers
