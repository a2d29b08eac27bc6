"""api.uploads.check_image: type by content, size limits, broken files and decompression bombs."""

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageFile

from jobs.errors import ServiceError
from jobs.uploads import check_image

MAX_BYTES = 1024 * 1024
MAX_PIXELS = 4096 * 4096


def encode(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def picture(width: int = 48, height: int = 32, mode: str = "RGB") -> Image.Image:
    """Random pixels: they compress badly, so the encoded data is mostly pixel data."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def refusal(data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> tuple[int, str]:
    with pytest.raises(ServiceError) as caught:
        check_image(data, max_bytes, max_pixels)
    return caught.value.status, caught.value.code


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with the compressed data of one black row only."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    row = b"\x00" + b"\x00" * 3 * min(width, 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row)) + chunk(b"IEND", b"")


@pytest.fixture
def load_calls(monkeypatch: pytest.MonkeyPatch) -> list[Image.Image]:
    """Records every `ImageFile.load` (pixel decoding) while the test runs; decoding still happens."""
    calls: list[Image.Image] = []
    original: Callable[..., object] = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> object:
        calls.append(self)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


@pytest.mark.parametrize(
    ("format", "mime", "mode"),
    [
        ("PNG", "image/png", "RGB"),
        ("PNG", "image/png", "RGBA"),
        ("PNG", "image/png", "P"),
        ("PNG", "image/png", "L"),
        ("JPEG", "image/jpeg", "RGB"),
        ("JPEG", "image/jpeg", "L"),
        ("WEBP", "image/webp", "RGB"),
        ("WEBP", "image/webp", "RGBA"),
    ],
)
def test_accepts_png_jpeg_and_webp(format: str, mime: str, mode: str) -> None:
    assert check_image(encode(picture(mode=mode), format), MAX_BYTES, MAX_PIXELS) == mime


def test_the_type_comes_from_the_content() -> None:
    """The same checks answer by magic bytes, whatever a name or header would have said: a JPEG is a JPEG."""
    assert check_image(encode(picture(), "JPEG"), MAX_BYTES, MAX_PIXELS) == "image/jpeg"
    assert check_image(encode(picture(), "PNG"), MAX_BYTES, MAX_PIXELS) == "image/png"


@pytest.mark.parametrize("format", ["GIF", "BMP", "TIFF"])
def test_refuses_other_image_formats(format: str) -> None:
    data = encode(picture(), format)
    assert Image.open(io.BytesIO(data)).format == format  # PIL itself reads it: the refusal is ours
    assert refusal(data) == (415, "unsupported_image_type")


def test_refuses_a_text_file() -> None:
    assert refusal(b"just some text, not an image\n" * 10) == (415, "unsupported_image_type")


def test_refuses_an_upload_over_max_bytes() -> None:
    data = encode(picture(), "PNG")
    assert check_image(data, len(data), MAX_PIXELS) == "image/png"
    assert refusal(data, max_bytes=len(data) - 1) == (413, "upload_too_large")


def test_the_byte_limit_comes_before_the_type_check() -> None:
    assert refusal(b"x" * 101, max_bytes=100) == (413, "upload_too_large")


def test_refuses_an_empty_file() -> None:
    assert refusal(b"") == (422, "invalid_image")


def test_refuses_a_png_cut_in_the_middle_of_its_data() -> None:
    data = encode(picture(64, 64), "PNG")
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    assert length > 1000  # the cut below lands inside the pixel data
    truncated = data[: idat + 4 + length // 2]
    assert Image.open(io.BytesIO(truncated)).size == (64, 64)  # the header alone still reads

    assert refusal(truncated) == (422, "invalid_image")


def test_refuses_a_decompression_bomb_without_decoding_it(load_calls: list[Image.Image]) -> None:
    bomb = png_claiming(50_000, 50_000)
    assert len(bomb) < 200  # 2.5 gigapixels claimed by a few bytes: nothing here could take long
    assert struct.unpack(">II", bomb[16:24]) == (50_000, 50_000)  # IHDR's width and height

    assert refusal(bomb, max_pixels=MAX_PIXELS) == (422, "image_too_large")
    assert load_calls == []


def test_refuses_a_header_over_max_pixels_without_decoding_it(load_calls: list[Image.Image]) -> None:
    """Under Pillow's own bomb limit, so our max_pixels check is what refuses it."""
    data = png_claiming(5000, 5000)
    assert 5000 * 5000 < Image.MAX_IMAGE_PIXELS

    assert refusal(data, max_pixels=MAX_PIXELS) == (422, "image_too_large")
    assert load_calls == []


def test_the_spy_sees_the_decoding_of_an_accepted_image(load_calls: list[Image.Image]) -> None:
    """Control for the two tests above: a check that decodes is seen by the spy."""
    assert check_image(encode(picture(), "PNG"), MAX_BYTES, MAX_PIXELS) == "image/png"
    assert len(load_calls) >= 1


@pytest.mark.parametrize(("width", "height"), [(20, 10), (200, 1), (1, 200)])
def test_max_pixels_is_inclusive(width: int, height: int) -> None:
    data = encode(picture(width, height), "PNG")
    assert check_image(data, MAX_BYTES, max_pixels=width * height) == "image/png"
    assert refusal(data, max_pixels=width * height - 1) == (422, "image_too_large")


def test_one_pixel_over_max_pixels_is_refused() -> None:
    assert check_image(encode(picture(20, 10), "PNG"), MAX_BYTES, max_pixels=200) == "image/png"
    assert refusal(encode(picture(201, 1), "PNG"), max_pixels=200) == (422, "image_too_large")
    assert check_image(encode(picture(200, 1), "JPEG"), MAX_BYTES, max_pixels=200) == "image/jpeg"


@pytest.mark.parametrize("side", [10_000, 50_000])  # over Pillow's warning limit, and over its error limit
def test_a_decompression_bomb_gets_the_services_own_message(side: int) -> None:
    with pytest.raises(ServiceError) as caught:
        check_image(png_claiming(side, side), max_bytes=10**6, max_pixels=MAX_PIXELS)
    assert caught.value.code == "image_too_large"
    assert str(caught.value) == f"the image is {side}x{side} = {side * side} pixels; the limit is {MAX_PIXELS}"
    assert "DOS" not in str(caught.value)
