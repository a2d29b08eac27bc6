"""The `paints-undo` console script, run as a user runs it."""

import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
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


def test_render_with_tiny_checkpoints_writes_the_video_and_keyframes(tmp_path, picture):
    Image.fromarray(picture).save(tmp_path / "picture.png")
    (tmp_path / "settings.json").write_text('{"video_steps": 40, "fps": 9, "video_seed": 5}')
    output = tmp_path / "out" / "drawing.mp4"
    result = run(
        "render", str(tmp_path / "picture.png"), "-o", str(output), "--tiny",
        "--settings", str(tmp_path / "settings.json"), "--video-steps", "2", "--keyframe-steps", "2",
        "--undo-steps", "500,999", "--width", "256", "--height", "256",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "random-weight test checkpoints" in result.stderr and "interpolation" in result.stderr
    assert result.stdout.strip() == str(output)
    meta = next(imageio_ffmpeg.read_frames(str(output)))
    assert meta["codec"] == "h264" and meta["fps"] == 9  # fps from the file, steps from the flag
    assert sum(1 for _ in imageio_ffmpeg.read_frames(str(output))) - 1 == 45
    keyframes = sorted((tmp_path / "out" / "drawing_keyframes").iterdir())
    assert [path.name for path in keyframes] == ["keyframe_00_undo500.png", "keyframe_01_undo999.png"]
    assert all(np.array(Image.open(path)).shape == (256, 256, 3) for path in keyframes)


def test_render_refuses_bad_settings_naming_the_field_before_loading_models(tmp_path, picture):
    Image.fromarray(picture).save(tmp_path / "picture.png")
    output = str(tmp_path / "drawing.mp4")
    too_many_steps = run(
        "render", str(tmp_path / "picture.png"), "-o", output, "--tiny", "--settings", '{"video_steps": 61}'
    )
    assert too_many_steps.returncode == 2 and "video_steps:" in too_many_steps.stderr
    unknown = run("render", str(tmp_path / "picture.png"), "-o", output, "--tiny", "--settings", '{"steps": 5}')
    assert unknown.returncode == 2 and "steps: Extra inputs are not permitted" in unknown.stderr
    repeated = run("render", str(tmp_path / "picture.png"), "-o", output, "--tiny", "--undo-steps", "900,900")
    assert repeated.returncode == 2 and "undo_steps:" in repeated.stderr
    not_mp4 = run("render", str(tmp_path / "picture.png"), "-o", str(tmp_path / "drawing.gif"), "--tiny")
    assert not_mp4.returncode == 2 and ".mp4" in not_mp4.stderr
    missing = run("render", str(tmp_path / "picture.png"), "-o", output, "--model-dir", str(tmp_path / "models"))
    assert missing.returncode == 3 and "wd-v1-4-moat-tagger-v2" in missing.stderr
    assert "models loaded" not in too_many_steps.stderr + unknown.stderr + repeated.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["picture.png"]
