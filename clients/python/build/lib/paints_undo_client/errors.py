"""The exceptions the client raises; all are `PaintsUndoError`s.

An error answer of the API becomes an `APIError` (a subclass per status) carrying the API's `code`, such as
`too_many_active_jobs` or `job_not_found`; a job that ends failed or canceled is a `JobFailedError` or a
`JobCanceledError` from `wait`/`run`.
"""

import httpx

from paints_undo_client.models import Job


class PaintsUndoError(Exception):
    """Base of every error of this client."""


class APIError(PaintsUndoError):
    """The API answered with an error status. `code` is the API's error code (`job_not_found`, ...), or None when
    the answer was not the API's JSON error (a proxy's page, or the file store's own error)."""

    def __init__(self, status: int, code: str | None, message: str, retry_after: float | None = None):
        super().__init__(f"{status} {code or 'error'}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds, from the Retry-After header (429 and 503)


class AuthenticationError(APIError):
    """401: missing_api_key, invalid_api_key."""


class NotFoundError(APIError):
    """404: job_not_found (also another key's job), file_not_found, not_found."""


class ConflictError(APIError):
    """409: idempotency_key_reused (the same Idempotency-Key with a different request)."""


class InvalidRequestError(APIError):
    """413, 415, 422: the request was refused as it is (invalid_settings, image_too_large, ...)."""


class RateLimitError(APIError):
    """429: too_many_active_jobs; retried after Retry-After seconds until the client's retries run out."""


class ServiceUnavailableError(APIError):
    """503: service_unavailable, storage_unavailable; nothing was changed. Retried like 429."""


class APIConnectionError(PaintsUndoError):
    """The API could not be reached, or the connection broke, and the retries ran out."""


class JobError(PaintsUndoError):
    """A job ended without a video: `job` is the finished job."""

    def __init__(self, job: Job, message: str):
        super().__init__(message)
        self.job = job


class JobFailedError(JobError):
    """The job failed; `code` is its error code (invalid_input, render_failed, timeout, worker_lost, ...)."""

    def __init__(self, job: Job):
        code, message = (job.error.code, job.error.message) if job.error else ("unknown", "no error given")
        super().__init__(job, f"job {job.id} failed: {code}: {message}")
        self.code = code


class JobCanceledError(JobError):
    """The job was canceled (or deleted while it ran)."""

    def __init__(self, job: Job):
        super().__init__(job, f"job {job.id} was canceled")


class WebhookVerificationError(PaintsUndoError):
    """A webhook whose signature, timestamp or body is not valid: answer it with 4xx and ignore it."""


ERRORS_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidRequestError,
    415: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def api_error(response: httpx.Response) -> APIError:
    """The typed error of an error answer (its body read): the API's `{"error": {"code", "message"}}`."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = None, response.text[:300] or response.reason_phrase
    cls = ERRORS_BY_STATUS.get(response.status_code, APIError)
    return cls(response.status_code, code, message, retry_after(response))


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds; None when absent or not a number (the API sends whole seconds)."""
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None
