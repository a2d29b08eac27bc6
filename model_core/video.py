"""MP4 writing: H.264, yuv420p, moov atom first, through the ffmpeg binary imageio-ffmpeg bundles.

H.264 in yuv420p with the index at the front ("faststart") is what every browser plays, and
starts playing before the whole file has arrived.
"""

import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from model_core.checks import check_int_range
from model_core.errors import InvalidInputError, VideoEncodingError

# x264's constant rate factor: 18 is visually lossless for drawings; the reference's 1 makes
# files several times larger for differences no one sees once yuv420p has halved the colour.
DEFAULT_CRF = 18
MP4_MEDIA_TYPE = "video/mp4"
MAX_FPS = 240

FrameCallback = Callable[[int, int], None]  # (frames written, total)


def check_mp4_path(path: str | Path) -> Path:
    """The path as a Path, if it names an .mp4 file (checked before a render, not after it)."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise InvalidInputError(f"The video is written as MP4: give an output path ending in .mp4, got {path}.")
    return path


def write_mp4(
    frames: np.ndarray,
    path: str | Path,
    *,
    fps: int,
    crf: int = DEFAULT_CRF,
    callback: FrameCallback | None = None,
) -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames as an H.264 MP4 at `fps`; returns the path.

    H and W must be even (yuv420p halves both for colour). The file appears only once complete:
    it is written beside `path` and renamed, so a failed or aborted encode leaves nothing behind.
    callback: called after each frame is sent; raising from it aborts the encode.
    Raises VideoEncodingError with ffmpeg's own message when ffmpeg fails (a missing folder, a full disk).
    """
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InvalidInputError("frames must be a (T, H, W, 3) uint8 RGB array.")
    count, height, width = frames.shape[:3]
    if count == 0 or height % 2 or width % 2 or height == 0 or width == 0:
        raise InvalidInputError(f"frames must be non-empty with an even height and width, got {frames.shape}.")
    check_int_range("fps", fps, 1, MAX_FPS)
    check_int_range("crf", crf, 0, 51)

    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(int(fps)), "-i", "-",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf), "-movflags", "+faststart",
        "-f", "mp4", str(partial),
    ]  # fmt: skip
    # ffmpeg's messages go to a file, not a pipe: a pipe nobody reads could fill up and stall it.
    with tempfile.TemporaryFile() as messages:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=messages)
        try:
            for index, frame in enumerate(frames):
                process.stdin.write(np.ascontiguousarray(frame).tobytes())
                if callback is not None:
                    callback(index + 1, count)
            process.stdin.close()
            returncode = process.wait()
        except BrokenPipeError:  # ffmpeg stopped reading: it failed, and says why below
            returncode = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            partial.unlink(missing_ok=True)
            raise
        if returncode != 0:
            partial.unlink(missing_ok=True)
            messages.seek(0)
            detail = messages.read().decode(errors="replace").strip()
            raise VideoEncodingError(f"ffmpeg could not write {path} (exit code {returncode}): {detail}")
    os.replace(partial, path)
    return path
