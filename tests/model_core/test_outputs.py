import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from model_core.errors import InvalidInputError
from model_core.outputs import keyframe_png, write_frames_zip, write_preview


def drifting_gradient(count: int, height: int, width: int) -> np.ndarray:
    """A smooth gradient that gets brighter every frame, so frame order shows in the pixels."""
    t, y, x = np.mgrid[0:count, 0:height, 0:width]
    video = np.stack([x * 200 / width + t * 8, y * 200 / height + t * 8, 60 + t * 20 + 0 * x], axis=-1)
    return video.clip(0, 255).astype(np.uint8)


def decode_webp(path: Path) -> tuple[Image.Image, list[np.ndarray], list[int]]:
    image = Image.open(path)
    frames, durations = [], []
    for frame in ImageSequence.Iterator(image):
        frames.append(np.asarray(frame.convert("RGB")))
        durations.append(frame.info["duration"])
    return image, frames, durations


def test_preview_is_a_looping_animation_scaled_to_512_with_the_aspect_kept(tmp_path):
    frames = drifting_gradient(6, 300, 600)
    path = write_preview(frames, tmp_path / "preview.webp", fps=4)
    assert path == tmp_path / "preview.webp"
    image, decoded, durations = decode_webp(path)
    assert image.format == "WEBP" and image.is_animated and image.n_frames == 6
    assert image.info["loop"] == 0
    assert image.size == (512, 256)
    assert durations == [250] * 6
    # Lossy but close to the scaled-down frames, in video order.
    expected = [np.asarray(Image.fromarray(frame).resize((512, 256), Image.Resampling.LANCZOS)) for frame in frames]
    errors = [[np.abs(got.astype(int) - want).mean() for want in expected] for got in decoded]
    assert [int(np.argmin(row)) for row in errors] == list(range(6))
    assert max(min(row) for row in errors) < 4


def test_preview_of_a_small_video_is_not_upscaled_and_keeps_odd_sizes(tmp_path):
    image, decoded, durations = decode_webp(write_preview(drifting_gradient(3, 45, 70), tmp_path / "p.webp", fps=3))
    assert image.size == (70, 45) and len(decoded) == 3
    assert durations == [333] * 3  # WebP counts whole milliseconds


def test_preview_max_side_applies_to_the_long_side_of_a_portrait_video(tmp_path):
    image = Image.open(write_preview(drifting_gradient(2, 640, 512), tmp_path / "p.webp", fps=4, max_side=320))
    assert image.size == (256, 320)


def test_frames_zip_holds_every_frame_exactly_in_order_uncompressed(tmp_path):
    frames = drifting_gradient(12, 40, 56)
    path = write_frames_zip(frames, tmp_path / "frames.zip")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert names == [f"frame_{index:04d}.png" for index in range(12)]
        assert {entry.compress_type for entry in archive.infolist()} == {zipfile.ZIP_STORED}
        decoded = np.stack([np.asarray(Image.open(io.BytesIO(archive.read(name)))) for name in names])
    np.testing.assert_array_equal(decoded, frames)


def test_keyframe_png_carries_its_text_and_exact_pixels():
    image = drifting_gradient(1, 48, 64)[0]
    text = {"prompt": "1girl, café, 桜の木", "undo_step": "400", "keyframe_seed": "12345", "models": "a/b, c/d"}
    data = keyframe_png(image, text)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "PNG"
    assert decoded.text == text
    np.testing.assert_array_equal(np.asarray(decoded), image)


@pytest.mark.parametrize("key", ["", "x" * 80, "naïve", "tab\there"])
def test_keyframe_png_refuses_keys_png_cannot_hold(key):
    with pytest.raises(InvalidInputError, match="PNG text keys"):
        keyframe_png(np.zeros((4, 4, 3), np.uint8), {key: "value"})


@pytest.mark.parametrize(
    "write", [lambda frames, path: write_preview(frames, path, fps=4), write_frames_zip], ids=["preview", "zip"]
)
def test_a_failed_write_leaves_nothing_behind(tmp_path, write):
    frames = drifting_gradient(2, 16, 16)
    with pytest.raises(FileNotFoundError):
        write(frames, tmp_path / "missing" / "out")
    # The file is complete before the rename fails (the target is a folder): the temp file goes too.
    (tmp_path / "taken").mkdir()
    with pytest.raises(IsADirectoryError):
        write(frames, tmp_path / "taken")
    assert [path.name for path in tmp_path.iterdir()] == ["taken"]
    assert list((tmp_path / "taken").iterdir()) == []


INVALID = [
    ("float frames", np.zeros((2, 8, 8, 3), np.float32)),
    ("no time axis", np.zeros((8, 8, 3), np.uint8)),
    ("four channels", np.zeros((2, 8, 8, 4), np.uint8)),
    ("zero frames", np.zeros((0, 8, 8, 3), np.uint8)),
]  # fmt: skip


@pytest.mark.parametrize("frames", [case[1] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_frames_are_refused_before_writing(tmp_path, frames):
    with pytest.raises(InvalidInputError, match="frames must be"):
        write_preview(frames, tmp_path / "p.webp", fps=4)
    with pytest.raises(InvalidInputError, match="frames must be"):
        write_frames_zip(frames, tmp_path / "f.zip")
    assert list(tmp_path.iterdir()) == []


def test_preview_refuses_fps_zero(tmp_path):
    with pytest.raises(InvalidInputError, match="fps"):
        write_preview(drifting_gradient(2, 8, 8), tmp_path / "p.webp", fps=0)
