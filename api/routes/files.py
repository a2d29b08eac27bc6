"""GET /v1/files/{key}: files of folder storage (file://), through the signed, expiring URLs it mints.

With S3 storage, result URLs are presigned S3 URLs instead and this route answers 404.
"""

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from api.deps import ServicesDep
from api.openapi import error_responses
from jobs.errors import ErrorCode, Forbidden, NotFound
from jobs.storage import SignatureError, StorageNotFound

router = APIRouter(prefix="/v1/files", tags=["files"])

NO_FILE = "no such file"


@router.get(
    "/{key:path}",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/mp4": {}, "image/png": {}}},
        **error_responses(
            (403, [ErrorCode.INVALID_OR_EXPIRED_URL]),
            (404, [ErrorCode.FILE_NOT_FOUND]),
            (422, [ErrorCode.INVALID_REQUEST]),
        ),
    },
)
def get_file(
    key: str,
    services: ServicesDep,
    expires: Annotated[int, Query(description="Unix time the URL stops working; part of the signed URL.")],
    signature: Annotated[str, Query(description="The URL's signature; part of the signed URL.")],
) -> FileResponse:
    """A stored file; the URL's signature proves the API minted it, and it stops working when it expires."""
    storage = services.local_storage
    if storage is None:
        raise NotFound(ErrorCode.FILE_NOT_FOUND, NO_FILE)
    try:
        path = storage.open_signed(key, expires, signature)
    except SignatureError as err:
        raise Forbidden(ErrorCode.INVALID_OR_EXPIRED_URL, str(err)) from err
    except StorageNotFound as err:
        raise NotFound(ErrorCode.FILE_NOT_FOUND, NO_FILE) from err
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=60"})
