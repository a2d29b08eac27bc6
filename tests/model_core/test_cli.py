"""The `paints-undo` console script, run as a user runs it."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import c2pa
import imageio_ffmpeg
import numpy as np
from c2pa_certs import make_signing_chain
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


def manifest(path: Path, media_type: str) -> dict:
    """The active C2PA manifest of a file, after checking that its signature validates."""
    with c2pa.Reader(media_type, io.BytesIO(path.read_bytes())) as reader:
        assert reader.get_validation_state() == "Valid"
        store = json.loads(reader.json())
    return store["manifests"][store["active_manifest"]]


def test_render_through_supplied_keyframes_with_outputs_and_credentials(tmp_path, picture):
    Image.fromarray(picture).save(tmp_path / "picture.png")
    Image.new("RGB", (60, 80), "white").save(tmp_path / "sketch.png")
    Image.new("RGB", (80, 60), "gray").save(tmp_path / "colours.png")
    chain = make_signing_chain(tmp_path / "chain")
    output = tmp_path / "drawing.mp4"
    result = run(
        "render", str(tmp_path / "picture.png"), "-o", str(output), "--tiny",
        "--keyframes", str(tmp_path / "sketch.png"), str(tmp_path / "colours.png"),
        "--width", "256", "--height", "256", "--video-steps", "2", "--outputs", "preview,frames",
        "--c2pa-cert", str(chain.cert), "--c2pa-key", str(chain.key),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sum(1 for _ in imageio_ffmpeg.read_frames(str(output))) - 1 == 45  # 3 clips: 2 snapshots + the canvas
    assert list((tmp_path / "drawing_keyframes").iterdir()) == []  # no keyframe model ran
    with zipfile.ZipFile(tmp_path / "drawing_frames.zip") as frames:
        assert len(frames.namelist()) == 45
    for path, media_type in [(output, "video/mp4"), (tmp_path / "drawing_preview.webp", "image/webp")]:
        signed = manifest(path, media_type)
        (created,) = next(a for a in signed["assertions"] if a["label"] == "c2pa.actions.v2")["data"]["actions"]
        assert created["digitalSourceType"].endswith("/trainedAlgorithmicMedia")
        assert signed["ingredients"][0]["title"] == "picture.png"


def test_render_can_stop_after_signed_keyframes_that_say_how_they_were_made(tmp_path, picture, monkeypatch):
    Image.fromarray(picture).save(tmp_path / "picture.png")
    chain = make_signing_chain(tmp_path / "chain")
    monkeypatch.setenv("PAINTS_UNDO_C2PA_CERT", str(chain.cert))  # the service's variables work here too
    monkeypatch.setenv("PAINTS_UNDO_C2PA_KEY", str(chain.key))
    output = tmp_path / "drawing.mp4"
    result = run(
        "render", str(tmp_path / "picture.png"), "-o", str(output), "--tiny", "--stop-after", "keyframes",
        "--undo-steps", "400,999", "--width", "256", "--height", "256", "--keyframe-steps", "2", "--prompt", "1girl",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not output.exists() and result.stdout.strip() == str(tmp_path / "drawing_keyframes")
    first, last = sorted((tmp_path / "drawing_keyframes").iterdir())
    text = Image.open(first).text
    assert (text["prompt"], text["undo_step"], text["keyframe_seed"]) == ("1girl", "400", "12345")
    assert "tiny preset" in text["models"]
    assert manifest(last, "image/png")["ingredients"][0]["title"] == "picture.png"


def test_supplied_keyframes_with_undo_steps_or_half_credentials_are_refused_before_loading(tmp_path, picture):
    Image.fromarray(picture).save(tmp_path / "picture.png")
    output = str(tmp_path / "drawing.mp4")
    both = run(
        "render",
        str(tmp_path / "picture.png"),
        "-o",
        output,
        "--tiny",
        "--keyframes",
        str(tmp_path / "picture.png"),
        "--undo-steps",
        "400",
    )
    assert both.returncode == 2 and "undo_steps must be absent" in both.stderr
    half = run(
        "render", str(tmp_path / "picture.png"), "-o", output, "--tiny", "--c2pa-cert", str(tmp_path / "cert.pem")
    )
    assert half.returncode == 2 and "--c2pa-key" in half.stderr
    assert "models loaded" not in both.stderr + half.stderr
