"""Refusing request bodies over the upload limit while they stream in, with the API's JSON error."""

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from jobs.errors import ErrorCode

# Room for the multipart framing and the text fields around the image.
FORM_OVERHEAD_BYTES = 256 * 1024


class BodySizeLimit:
    """A declared Content-Length over the limit is refused before reading; a streamed body once it passes it."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = error_response(413, ErrorCode.UPLOAD_TOO_LARGE, self.message)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # FastAPI passes HTTPExceptions raised while reading the body on to the error handlers.
                raise HTTPException(413, self.message)
            return message

        await self.app(scope, limited_receive, send)

    @property
    def message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"


class HeaderSizeLimit:
    """Requests whose headers total more than max_bytes answer 431 with the API's JSON error.

    Counted as on the wire: each header's name and value plus 4 bytes (": " and CRLF), with the request line.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 16
            size += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.max_bytes:
                message = f"the request headers are {size} bytes; the limit is {self.max_bytes}"
                await error_response(431, ErrorCode.HEADERS_TOO_LARGE, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)
