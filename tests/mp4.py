"""Reading MP4s back in tests: frames through the bundled ffmpeg, and the top-level box order."""

import struct
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np


def read_mp4(path: str | Path) -> tuple[dict[str, Any], np.ndarray]:
    """Decode a video with the bundled ffmpeg: its metadata (codec, pix_fmt, fps, size as (width, height),
    duration) and its (T, H, W, 3) uint8 RGB frames."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return meta, np.stack([np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader])


def mp4_boxes(path: str | Path) -> list[str]:
    """The types of an MP4's top-level boxes, in file order ("moov" before "mdat" means faststart)."""
    data, boxes, offset = Path(path).read_bytes(), [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:  # a 64-bit size follows the type
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
        if size < 8:
            raise ValueError(f"{path}: bad MP4 box size {size} at byte {offset}.")
        boxes.append(kind.decode("ascii"))
        offset += size
    return boxes
