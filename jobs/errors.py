"""Every error code the service gives, and the domain errors that carry them with their HTTP status.

Core code raises these (never HTTP exceptions); the API maps them to `{"error": {"code", "message"}}`
in one handler (api/errors.py). A failed job's `error.code` comes from the same enumeration.
"""

from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    # Requests the API refuses.
    MISSING_API_KEY = "missing_api_key"
    INVALID_API_KEY = "invalid_api_key"
    INVALID_OR_EXPIRED_URL = "invalid_or_expired_url"
    JOB_NOT_FOUND = "job_not_found"
    FILE_NOT_FOUND = "file_not_found"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    UPLOAD_TOO_LARGE = "upload_too_large"
    UNSUPPORTED_IMAGE_TYPE = "unsupported_image_type"
    IMAGE_TOO_LARGE = "image_too_large"
    INVALID_IMAGE = "invalid_image"
    INVALID_SETTINGS = "invalid_settings"
    INVALID_WEBHOOK_URL = "invalid_webhook_url"
    WEBHOOK_URL_FORBIDDEN = "webhook_url_forbidden"
    INVALID_WEBHOOK_EVENTS = "invalid_webhook_events"
    INVALID_WEBHOOK_SECRET = "invalid_webhook_secret"
    WEBHOOKS_NOT_CONFIGURED = "webhooks_not_configured"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    INVALID_METADATA = "invalid_metadata"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_LAST_EVENT_ID = "invalid_last_event_id"
    HEADERS_TOO_LARGE = "headers_too_large"
    INVALID_REQUEST = "invalid_request"
    TOO_MANY_ACTIVE_JOBS = "too_many_active_jobs"
    SERVICE_UNAVAILABLE = "service_unavailable"
    STORAGE_UNAVAILABLE = "storage_unavailable"  # also a failed job's code
    NOT_READY = "not_ready"
    INTERNAL_ERROR = "internal_error"
    # A failed job's `error.code`.
    INVALID_INPUT = "invalid_input"
    RENDER_FAILED = "render_failed"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    MODEL_UNAVAILABLE = "model_unavailable"


class ServiceError(Exception):
    """An error answered to the client as its status and `{"error": {"code", "message"}}`."""

    status: ClassVar[int] = 400

    def __init__(self, code: ErrorCode, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers

    def __str__(self) -> str:
        return self.message


class Unauthorized(ServiceError):
    status = 401

    def __init__(self, code: ErrorCode, message: str, headers: dict[str, str] | None = None):
        super().__init__(code, message, {"WWW-Authenticate": "Bearer", **(headers or {})})


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class JobNotFound(NotFound):
    """No such job, or another API key's: both answer the same, so ids reveal nothing."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.JOB_NOT_FOUND, "no such job for this API key")


class Conflict(ServiceError):
    status = 409


class IdempotencyConflict(Conflict):
    def __init__(self) -> None:
        super().__init__(ErrorCode.IDEMPOTENCY_KEY_REUSED, "this Idempotency-Key was used for a different request")


class PayloadTooLarge(ServiceError):
    status = 413


class UnsupportedMediaType(ServiceError):
    status = 415


class InvalidRequest(ServiceError):
    status = 422


class TooManyActiveJobs(ServiceError):
    status = 429

    def __init__(self, limit: int):
        message = f"this API key already has {limit} queued or running jobs; wait for one to finish"
        super().__init__(ErrorCode.TOO_MANY_ACTIVE_JOBS, message, {"Retry-After": "30"})
        self.limit = limit


class HeadersTooLarge(ServiceError):
    status = 431


class ServiceUnavailable(ServiceError):
    status = 503
