"""Checking an uploaded image before it is accepted: its type by content, its size, and that it decodes."""

import io
import warnings

from PIL import Image, UnidentifiedImageError

from jobs.errors import ErrorCode, InvalidRequest, PayloadTooLarge, UnsupportedMediaType

# Formats by the magic bytes PIL recognises; the file name and Content-Type header are ignored.
ACCEPTED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def check_image(data: bytes, max_bytes: int, max_pixels: int, name: str = "the image") -> str:
    """The image's MIME type; PayloadTooLarge, UnsupportedMediaType (not PNG/JPEG/WebP), or InvalidRequest (too many
    pixels, broken). `name` says which image the messages are about ("the image", "keyframe 2").

    The pixel count comes from the header, so a decompression bomb is refused before its pixels are decoded.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(ErrorCode.UPLOAD_TOO_LARGE, f"{name} is larger than the limit of {max_bytes} bytes")
    if not data:
        raise InvalidRequest(ErrorCode.INVALID_IMAGE, f"{name} is an empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise too_many_pixels(name, width, height, max_pixels)
                image_format = image.format
                image.load()  # a truncated or corrupt file fails here, not in the worker
    except UnidentifiedImageError as err:
        message = f"{name} must be a PNG, JPEG or WebP file"
        raise UnsupportedMediaType(ErrorCode.UNSUPPORTED_IMAGE_TYPE, message) from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # Pillow's own limit met first (its header check runs inside Image.open): our message all the same.
        raise too_many_pixels(name, *header_size(data), max_pixels) from err
    except (OSError, SyntaxError, ValueError) as err:
        raise InvalidRequest(ErrorCode.INVALID_IMAGE, f"{name} could not be decoded: {err}") from err
    return ACCEPTED_FORMATS[image_format]


def too_many_pixels(name: str, width: int, height: int, max_pixels: int) -> InvalidRequest:
    message = f"{name} is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
    return InvalidRequest(ErrorCode.IMAGE_TOO_LARGE, message)


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the image's header alone, by the format's own parser (no decompression-bomb check)."""
    for name in ACCEPTED_FORMATS:
        factory, accept = Image.OPEN[name]
        if accept is None or accept(data[:16]):
            with factory(io.BytesIO(data)) as image:
                return image.size
    raise UnidentifiedImageError("unknown image format")
