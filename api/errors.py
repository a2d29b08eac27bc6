"""The one place errors become HTTP answers: every one is `{"error": {"code", "message"}}` with a 4xx/5xx status.

Domain errors (jobs.errors.ServiceError) carry their own status and code; a dependency that is down
(Redis, storage) is a 503 and the request changed nothing; the framework's own errors get codes too.
"""

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobs.errors import ErrorCode, ServiceError
from jobs.storage import StorageError

log = logging.getLogger("api")


class ErrorBody(BaseModel):
    code: ErrorCode
    message: str


class ErrorResponse(BaseModel):
    """Every error answer's body."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": {"code": "job_not_found", "message": "no such job for this API key"}}]
        }
    )

    error: ErrorBody


def error_response(status: int, code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


# Codes for the errors Starlette and FastAPI raise themselves.
HTTP_CODES = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.UPLOAD_TOO_LARGE,
    431: ErrorCode.HEADERS_TOO_LARGE,
}
RETRY = {"Retry-After": "10"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, err: ServiceError) -> JSONResponse:
        return error_response(err.status, err.code, err.message, err.headers)

    @app.exception_handler(redis.RedisError)
    async def redis_down(_: Request, err: redis.RedisError) -> JSONResponse:
        log.error("redis: %s", err)
        message = "the job database is unreachable; retry later"
        return error_response(503, ErrorCode.SERVICE_UNAVAILABLE, message, RETRY)

    @app.exception_handler(StorageError)
    async def storage_down(_: Request, err: StorageError) -> JSONResponse:
        log.error("storage: %s", err)
        return error_response(503, ErrorCode.STORAGE_UNAVAILABLE, "file storage is unreachable; retry later", RETRY)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" for problem in err.errors()
        )
        return error_response(422, ErrorCode.INVALID_REQUEST, problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(err.status_code, ErrorCode.INVALID_REQUEST)
        return error_response(err.status_code, code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, err: Exception) -> JSONResponse:
        # Starlette raises the error on after this answer, so the server logs it.
        return error_response(500, ErrorCode.INTERNAL_ERROR, "the server failed; the error is logged")
