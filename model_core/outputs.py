"""The extra outputs of a render beside its MP4: a small animated WebP preview, a ZIP of every frame as PNG,
and keyframe PNGs that carry their settings as text.

The preview is what a feed can autoplay inline (an <img> loops it with no player); the ZIP is for editors
that want the exact pixels, which the MP4's yuv420p colour no longer has; the text in a keyframe PNG says
how it was made to anyone who opens it later. Each file appears whole or not at all (temp file, then rename).
"""

import io
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, PngImagePlugin

from model_core.checks import check_int_range
from model_core.errors import InvalidInputError

PREVIEW_MEDIA_TYPE = "image/webp"
FRAMES_MEDIA_TYPE = "application/zip"
KEYFRAME_MEDIA_TYPE = "image/png"

PREVIEW_MAX_SIDE = 512
# Lossy WebP quality and effort of the preview. A default job's preview (105 frames of 512x640 scaled to
# 410x512, 4 fps) measured 130 KB for a picture revealed block by block on a clean canvas and 0.93 MB when
# every pixel also jitters by about 3 levels each frame (a worst case for the encoder's frame differencing);
# it took 2 to 7 s on a 2-core CPU. Quality 80 makes it a third larger, 60 saves 15%: 70 keeps edges clean.
# Method 4 is libwebp's default balance of encoding time and size.
PREVIEW_QUALITY = 70
PREVIEW_METHOD = 4


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InvalidInputError("frames must be a (T, H, W, 3) uint8 RGB array.")
    if 0 in frames.shape:
        raise InvalidInputError(f"frames must be non-empty, got shape {frames.shape}.")


def _write_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call write(file) on a hidden file beside `path`, then rename it to `path`; on any error remove it."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as file:
            write(file)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def _preview_size(width: int, height: int, max_side: int = PREVIEW_MAX_SIDE) -> tuple[int, int]:
    """(width, height) scaled down, never up, so the long side is at most max_side; the aspect is kept."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def write_preview(frames: np.ndarray, path: str | Path, *, fps: int, max_side: int = PREVIEW_MAX_SIDE) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames as a lossy animated WebP that loops forever; returns the path.

    Frames are scaled down (Lanczos) so the long side is at most max_side pixels; each shows for 1/fps s
    (WebP counts whole milliseconds, so 1000/fps is rounded).
    """
    _check_frames(frames)
    check_int_range("fps", fps, 1, 1000)
    check_int_range("max_side", max_side, 1, 16383)  # WebP's largest side
    height, width = frames.shape[1:3]
    size = _preview_size(width, height, max_side)
    images = [Image.fromarray(frame) for frame in frames]
    if size != (width, height):
        images = [image.resize(size, Image.Resampling.LANCZOS) for image in images]

    def write(file: BinaryIO) -> None:
        images[0].save(
            file,
            format="WEBP",
            save_all=True,
            append_images=images[1:],
            duration=round(1000 / fps),
            loop=0,
            lossless=False,
            quality=PREVIEW_QUALITY,
            method=PREVIEW_METHOD,
        )

    return _write_atomically(path, write)


def write_frames_zip(frames: np.ndarray, path: str | Path) -> Path:
    """Write every frame as a PNG, frame_0000.png first, into a ZIP; returns the path.

    The PNGs are stored as they are (ZIP_STORED): PNG is already compressed, deflating it again only costs time.
    """
    _check_frames(frames)

    def write(file: BinaryIO) -> None:
        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED) as archive:
            for index, frame in enumerate(frames):
                buffer = io.BytesIO()
                Image.fromarray(frame).save(buffer, format="PNG")
                archive.writestr(f"frame_{index:04d}.png", buffer.getvalue())

    return _write_atomically(path, write)


def keyframe_png(image: np.ndarray, text: Mapping[str, str]) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 RGB image with each text item as a PNG text chunk.

    Keys are 1 to 79 printable ASCII characters (PNG keywords); values may be any Unicode: Latin-1 text goes
    in a tEXt chunk, anything else in a UTF-8 iTXt one. They read back as `Image.open(...).text`.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise InvalidInputError("image must be an (H, W, 3) uint8 RGB array.")
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        if not 1 <= len(key) <= 79 or not key.isascii() or not key.isprintable():
            raise InvalidInputError(f"PNG text keys are 1 to 79 printable ASCII characters, got {key!r}.")
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


# The file name and media type of each kind of output (RenderSettings.outputs), beside video.mp4.
OUTPUT_FILES = {"preview": ("preview.webp", PREVIEW_MEDIA_TYPE), "frames": ("frames.zip", FRAMES_MEDIA_TYPE)}


def write_outputs(
    frames: np.ndarray, folder: Path, kinds: Sequence[str], *, fps: int, prefix: str = ""
) -> dict[str, Path]:
    """Write the outputs `kinds` ("preview", "frames") of a video's frames into folder, under OUTPUT_FILES' names
    after `prefix` (the CLI's "drawing_" writes drawing_preview.webp beside drawing.mp4)."""
    paths = {}
    for kind in kinds:
        path = folder / f"{prefix}{OUTPUT_FILES[kind][0]}"
        paths[kind] = write_preview(frames, path, fps=fps) if kind == "preview" else write_frames_zip(frames, path)
    return paths
