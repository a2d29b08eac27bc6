"""GET /: the browser playground, a page that drives the API with the visitor's own key (api/static/).

Plain files, no build step and nothing from a CDN. The page talks to /v1 with fetch() and the key from the tab's
session storage; its Content-Security-Policy lets it run only its own script and style, and connect only to this
origin, while pictures and videos may come from the storage's URLs, wherever they are.
"""

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import FileResponse

from jobs.errors import ErrorCode, NotFound

router = APIRouter(include_in_schema=False)

STATIC = files("api") / "static"
ASSETS = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' http: https: blob:",  # keyframes from the storage's URLs; the chosen picture as a blob
        "media-src 'self' http: https:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
# Revalidated on each load (FileResponse sends an ETag), so a new release shows at once.
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


@router.get("/")
def playground() -> FileResponse:
    headers = {**HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY, "Referrer-Policy": "no-referrer"}
    return FileResponse(str(STATIC / "index.html"), media_type="text/html", headers=headers)


@router.get("/static/{name}")
def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFound(ErrorCode.NOT_FOUND, f"no static file {name!r}")
    return FileResponse(str(STATIC / name), media_type=ASSETS[name], headers=HEADERS)
