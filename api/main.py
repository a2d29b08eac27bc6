"""The FastAPI application of the job service.

    uvicorn --factory api.main:create_app     (settings from the environment; see api.config)

Never imports torch: jobs are handed to the render workers through Celery by task name.
"""

import logging

import redis
import redis.asyncio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from api.config import ApiSettings
from api.deps import Services
from api.errors import error_response, install_error_handlers
from api.limits import FORM_OVERHEAD_BYTES, BodySizeLimit
from api.metrics import ServiceCollector
from api.routes import events, files, health, jobs
from jobs.notify import WebhookNotifier
from jobs.queue import create_celery
from jobs.storage import StorageError, open_storage
from jobs.store import JobStore, connect
from jobs.webhooks import parse_secret

log = logging.getLogger("api")

DESCRIPTION = """Turns one finished illustration into a timelapse video of how it might have been drawn (Paints-UNDO).

Submit an image to `POST /v1/jobs`, then poll `GET /v1/jobs/{id}`, stream `GET /v1/jobs/{id}/events`, or receive
signed webhooks. Keyframes appear on the job as they are generated; the MP4 when it succeeds. Every URL expires and
is minted afresh on each read. Authenticate with `Authorization: Bearer <API key>`. Errors are
`{"error": {"code", "message"}}`.
"""


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    if settings.webhook_secret is not None:
        parse_secret(settings.webhook_secret.get_secret_value())  # a malformed secret stops startup
    owners = settings.owners()
    settings = settings.model_copy(update={"api_keys": ()})  # keep only the hashes
    celery = create_celery(settings)
    storage = open_storage(settings)
    store = JobStore(connect(settings.redis_url, retries=2), settings.retention_seconds)
    services = Services(
        settings=settings,
        owners=owners,
        store=store,
        events_redis=redis.asyncio.Redis.from_url(
            settings.redis_url, decode_responses=True, socket_timeout=events.READ_TIMEOUT_SECONDS
        ),
        storage=storage,
        celery=celery,
        notifier=WebhookNotifier(celery, storage, settings),
    )
    app = FastAPI(title="paints-undo", version="0.1.0", description=DESCRIPTION)
    app.state.services = services
    app.state.metrics = CollectorRegistry(auto_describe=True)
    app.state.metrics.register(ServiceCollector(store))
    install_error_handlers(app)
    install_unavailable_handlers(app)
    for module in (jobs, events, files, health):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES)
    return app


def install_unavailable_handlers(app: FastAPI) -> None:
    """Redis or storage down: 503, and the request changed nothing (the job was not accepted)."""

    @app.exception_handler(redis.RedisError)
    async def redis_down(_: Request, err: redis.RedisError) -> JSONResponse:
        log.error("redis: %s", err)
        return error_response(503, "service_unavailable", "the job database is unreachable; retry later", RETRY)

    @app.exception_handler(StorageError)
    async def storage_down(_: Request, err: StorageError) -> JSONResponse:
        log.error("storage: %s", err)
        return error_response(503, "storage_unavailable", "file storage is unreachable; retry later", RETRY)


RETRY = {"Retry-After": "10"}
