"""GET /v1/files/{key}: files of folder storage (file://), through the signed, expiring URLs it mints.

With S3 storage, result URLs are presigned S3 URLs instead and this route answers 404.
"""

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from api.deps import ServicesDep
from api.errors import ApiError, ErrorResponse, not_found
from jobs.storage import SignatureError, StorageNotFound

router = APIRouter(prefix="/v1/files", tags=["files"])


@router.get(
    "/{key:path}",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/mp4": {}, "image/png": {}}},
        403: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
    },
)
def get_file(
    key: str, services: ServicesDep, expires: Annotated[int, Query()], signature: Annotated[str, Query()]
) -> FileResponse:
    """A stored file; the URL's signature proves the API minted it, and it stops working when it expires."""
    storage = services.local_storage
    if storage is None:
        raise not_found("file")
    try:
        path = storage.open_signed(key, expires, signature)
    except SignatureError as err:
        raise ApiError(403, "invalid_or_expired_url", str(err)) from err
    except StorageNotFound as err:
        raise not_found("file") from err
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=60"})
