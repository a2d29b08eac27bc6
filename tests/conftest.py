"""Shared fixtures: tiny random-weight checkpoints written once per test session."""

from pathlib import Path

import numpy as np
import pytest

from model_core.interpolation import InterpolationModel
from model_core.keyframes import KeyframeModel
from model_core.tiny import write_interpolation_checkpoint, write_keyframe_checkpoint, write_tiny_tagger


@pytest.fixture(scope="session")
def keyframe_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_keyframe_checkpoint(tmp_path_factory.mktemp("keyframe") / "paints_undo_single_frame", seed=0)


@pytest.fixture(scope="session")
def tagger_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_tagger(tmp_path_factory.mktemp("tagger") / "wd-v1-4-moat-tagger-v2", seed=0)


@pytest.fixture(scope="session")
def keyframe_model(keyframe_checkpoint: Path) -> KeyframeModel:
    return KeyframeModel.from_pretrained(keyframe_checkpoint)


@pytest.fixture(scope="session")
def interpolation_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("interpolation") / "paints_undo_multi_frame"
    return write_interpolation_checkpoint(folder, seed=0)


@pytest.fixture(scope="session")
def interpolation_model(interpolation_checkpoint: Path) -> InterpolationModel:
    return InterpolationModel.from_pretrained(interpolation_checkpoint)


@pytest.fixture(scope="session")
def picture() -> np.ndarray:
    """A 96x80 RGB picture: a colour gradient with a dark square, so crops and resizes are visible."""
    y, x = np.mgrid[0:96, 0:80]
    image = np.stack([x * 3, y * 2, (x + y) % 256], axis=-1).astype(np.uint8)
    image[20:50, 30:60] = 20
    return image
