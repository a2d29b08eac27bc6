"""Liveness, readiness and metrics: /healthz, /readyz, /metrics (no API key)."""

from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict

from api.deps import ServicesDep
from api.errors import error_response
from api.openapi import error_responses
from jobs.errors import ErrorCode
from jobs.storage import StorageError

router = APIRouter(tags=["health"])


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "redis": "ok",
                    "storage": "ok",
                    "workers": [{"name": "render@gpu0", "state": "ready"}],
                }
            ]
        }
    )

    status: str
    redis: str
    storage: str
    workers: list[dict]


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The API process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses=error_responses((503, [ErrorCode.NOT_READY])))
def readyz(services: ServicesDep) -> Readiness | Response:
    """Redis and storage are reachable; also lists the render workers and their state (loading, ready, busy, failed).

    Both are checked at once, each within its client's short timeouts, so the answer comes within 5 s.
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        workers_check = pool.submit(services.jobs.store.worker_states)
        storage_check = pool.submit(services.jobs.storage.check)
    problems, workers = [], []
    try:
        workers = workers_check.result()
    except Exception as err:  # any failure here means not ready, and says why
        problems.append(f"redis: {err}")
    try:
        storage_check.result()
    except StorageError as err:
        problems.append(f"storage: {err}")
    if problems:
        return error_response(503, ErrorCode.NOT_READY, "; ".join(problems))
    return Readiness(status="ready", redis="ok", storage="ok", workers=workers)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    """Prometheus: queue depth, jobs by status, stage durations, failures by code, render workers by state."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
