"""The FastAPI application of the job service.

    uvicorn --factory api.main:create_app     (settings from the environment; see api.config)

HTTP only: the job logic is jobs.service, and jobs reach the render workers through Celery by task
name. Never imports torch (.importlinter).
"""

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api.config import ApiSettings
from api.deps import Services
from api.docs import install_docs
from api.errors import install_error_handlers
from api.limits import FORM_OVERHEAD_BYTES, BodySizeLimit, HeaderSizeLimit
from api.metrics import ServiceCollector
from api.openapi import build_openapi
from api.routes import events, files, health, jobs, playground
from jobs.events import EventReader
from jobs.notify import WebhookNotifier
from jobs.queue import TaskQueue, create_celery
from jobs.service import JobService
from jobs.storage import INTERACTIVE, open_storage
from jobs.store import open_store
from jobs.webhooks import parse_secret

DESCRIPTION = """Turns one finished illustration into a timelapse video of how it might have been drawn (Paints-UNDO).

Submit an image to `POST /v1/jobs`, then poll `GET /v1/jobs/{id}`, stream `GET /v1/jobs/{id}/events`, or receive
signed webhooks. Keyframes appear on the job as they are generated; the MP4 when it succeeds. Every URL expires and
is minted afresh on each read. Authenticate with `Authorization: Bearer <API key>`.

Errors are `{"error": {"code", "message"}}`; each route lists its statuses and codes. Any route may also answer
431 (`headers_too_large`: request headers over 16 KiB by default) or 500 (`internal_error`). Webhook bodies are
in `webhooks`; the event stream's messages under `GET /v1/jobs/{job_id}/events`.
"""


def create_services(settings: ApiSettings) -> Services:
    """The API's connections and the job service over them; keeps only the hashes of the API keys."""
    if settings.webhook_secret is not None:
        parse_secret(settings.webhook_secret.get_secret_value())  # a malformed secret stops startup
    owners = settings.owners()
    settings = settings.model_copy(update={"api_keys": ()})
    storage = open_storage(settings, INTERACTIVE)
    queue = TaskQueue(create_celery(settings))
    store = open_store(settings, interactive=True)
    notifier = WebhookNotifier(queue, storage, settings.url_expiry_seconds)
    return Services(
        settings=settings,
        owners=owners,
        jobs=JobService(settings, store, storage, queue, notifier),
        events=EventReader(settings.redis_url, events.KEEPALIVE_SECONDS, store.keys),
    )


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    services = create_services(settings)
    app = FastAPI(
        title="paints-undo",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,  # api/docs.py serves them without a CDN
        redoc_url=None,
        generate_unique_id_function=lambda route: route.name,  # operationIds: create_job, get_job, ...
    )
    app.state.services = services
    app.state.metrics = CollectorRegistry()  # collects at each scrape only, so startup needs no Redis
    app.state.metrics.register(ServiceCollector(services.jobs.store))
    install_error_handlers(app)
    for module in (jobs, events, files, health, playground):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes + FORM_OVERHEAD_BYTES)
    app.add_middleware(HeaderSizeLimit, max_bytes=settings.max_header_bytes)  # outermost: runs first
    install_docs(app)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
