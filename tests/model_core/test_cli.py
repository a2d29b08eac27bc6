"""The `paints-undo` console script, run as a user runs it."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLI = [str(Path(sys.executable).parent / "paints-undo")]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=300)


def test_keyframes_with_tiny_checkpoints_writes_one_png_per_undo_step(tmp_path, picture):
    Image.fromarray(picture).save(tmp_path / "picture.png")
    result = run(
        "keyframes", str(tmp_path / "picture.png"), "-o", str(tmp_path / "out"), "--tiny",
        "--undo-steps", "400,999", "--width", "64", "--height", "128", "--steps", "3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "random-weight test checkpoints" in result.stderr
    written = sorted((tmp_path / "out").iterdir())
    assert [path.name for path in written] == ["keyframe_00_undo400.png", "keyframe_01_undo999.png"]
    assert all(np.array(Image.open(path)).shape == (128, 64, 3) for path in written)


def test_exit_codes_tell_bad_input_from_missing_checkpoints(tmp_path, picture):
    Image.fromarray(picture).save(tmp_path / "picture.png")
    (tmp_path / "not-an-image.png").write_text("hello")
    bad_image = run("tag", str(tmp_path / "not-an-image.png"), "--tiny")
    assert bad_image.returncode == 2 and "Cannot read" in bad_image.stderr
    bad_width = run("keyframes", str(tmp_path / "picture.png"), "-o", str(tmp_path), "--tiny", "--width", "100")
    assert bad_width.returncode == 2 and "width must be a positive multiple of 64" in bad_width.stderr
    no_model = run("tag", str(tmp_path / "picture.png"), "--tagger", str(tmp_path / "absent"))
    assert no_model.returncode == 3 and "neither an existing folder" in no_model.stderr
