"""Image reading and conversions shared by the models: validation, resize-and-crop, array <-> tensor."""

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from model_core.errors import InvalidInputError


def read_image(source: str | Path | BinaryIO) -> np.ndarray:
    """RGB uint8 array of an image file, upright per its EXIF orientation, alpha dropped (as the reference's UI)."""
    try:
        with Image.open(source) as image:
            return np.array(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise InvalidInputError(f"Cannot read {source} as an image: {error}") from error


def check_rgb_image(image: np.ndarray, name: str = "image") -> None:
    """Require an (H, W, 3) uint8 RGB array."""
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"{name} must be a numpy array of shape (H, W, 3), got {type(image).__name__}.")
    if image.dtype != np.uint8:
        raise InvalidInputError(f"{name} must have dtype uint8 (0..255 RGB), got {image.dtype}.")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInputError(f"{name} must have shape (H, W, 3) RGB, got {image.shape}.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInputError(f"{name} is empty: shape {image.shape}.")


def resize_and_center_crop(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale `image` to cover width x height (area interpolation), then crop the centre."""
    in_height, in_width = image.shape[:2]
    scale = max(height / in_height, width / in_width)
    new_width, new_height = int(round(in_width * scale)), int(round(in_height * scale))
    resized = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
    x0, y0 = (new_width - width) // 2, (new_height - height) // 2
    return resized[y0 : y0 + height, x0 : x0 + width]


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 arrays -> (N, 3, H, W) float32 in [-1, 1]."""
    return (torch.from_numpy(np.stack(images)).float() / 127.5 - 1.0).movedim(-1, 1)


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """(N, 3, H, W) in [-1, 1] -> (H, W, 3) uint8 arrays; values are truncated, not rounded, as upstream."""
    pixels = (images.movedim(1, -1).float() * 127.5 + 127.5).cpu().numpy()
    return list(pixels.clip(0, 255).astype(np.uint8))


def find_best_bucket(height: int, width: int, buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The (height, width) bucket closest in aspect ratio to height x width, by |h * bw - w * bh|.

    Ties go to the later bucket, as in the reference (a square picture gets 448x384 of its four).
    """
    return min(reversed(buckets), key=lambda bucket: abs(height * bucket[1] - width * bucket[0]))
