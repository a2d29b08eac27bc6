"""PaintsUndoPipeline on the tiny checkpoints: the video, its composition, events and cancellation."""

import inspect

import numpy as np
import pytest
from mp4 import mp4_boxes, read_mp4

from model_core.configs import TINY_BUCKETS
from model_core.errors import CheckpointError, InvalidInputError, RenderCanceled
from model_core.events import (
    ClipReady,
    KeyframeReady,
    PromptReady,
    Stage,
    StageFinished,
    StageStarted,
    StepFinished,
)
from model_core.images import find_best_bucket, resize_and_center_crop
from model_core.interpolation import InterpolationModel
from model_core.keyframes import KeyframeModel
from model_core.pipeline import ModelSources, PaintsUndoPipeline
from model_core.settings import RenderSettings
from model_core.tagger import Tagger

SETTINGS = RenderSettings(
    undo_steps=[300, 700, 999], width=256, height=320, keyframe_steps=2, video_steps=2, fps=5, video_seed=7
)


@pytest.fixture(scope="module")
def pipeline(tagger_checkpoint, keyframe_model, interpolation_model) -> PaintsUndoPipeline:
    tagger = Tagger.from_pretrained(tagger_checkpoint)
    return PaintsUndoPipeline(tagger, keyframe_model, interpolation_model, buckets=TINY_BUCKETS)


@pytest.fixture(scope="module")
def rendered(pipeline, picture, tmp_path_factory):
    """One render with the events it sent."""
    events = []
    result = pipeline.render(
        picture, tmp_path_factory.mktemp("render") / "drawing.mp4", SETTINGS, on_event=events.append
    )
    return result, events


def test_video_is_a_browser_playable_h264_mp4_of_every_frame(rendered):
    result, _ = rendered
    meta, frames = read_mp4(result.video)
    clip_height, clip_width = find_best_bucket(SETTINGS.height, SETTINGS.width, TINY_BUCKETS)
    assert len(frames) == 15 * (len(SETTINGS.undo_steps) + 1) == SETTINGS.frame_count == len(result.frames)
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert meta["fps"] == SETTINGS.fps and meta["size"] == (clip_width, clip_height)
    assert (result.width, result.height) == (clip_width, clip_height)
    assert mp4_boxes(result.video).index("moov") < mp4_boxes(result.video).index("mdat")
    # Lossy, but the same pictures: the tiny models' noise is the hardest case for the encoder.
    assert np.abs(frames.astype(int) - result.frames).mean() < 12


def test_frames_equal_the_model_calls_composed_by_hand(pipeline, rendered, picture):
    result, _ = rendered
    prompt = pipeline.tagger.tag(picture)
    keyframes = pipeline.keyframe_model.generate(picture, **SETTINGS.keyframe_arguments(prompt))
    finished = resize_and_center_crop(picture, SETTINGS.width, SETTINGS.height)
    pictures = [finished, *keyframes, np.full_like(finished, 255)]
    clips = pipeline.interpolation_model.interpolate_many(
        [(pictures[i], pictures[i + 1]) for i in range(len(pictures) - 1)],
        **SETTINGS.video_arguments(),
        buckets=TINY_BUCKETS,
    )
    by_hand = []
    for clip in reversed(clips):
        by_hand += list(clip[:15][::-1])
    assert result.prompt == prompt
    assert all(np.array_equal(a, b) for a, b in zip(result.keyframes, keyframes, strict=True))
    assert np.array_equal(result.frames, np.stack(by_hand))
    # Blank canvas first: the first frame is the end of the clip into the white canvas.
    assert np.array_equal(result.frames[0], clips[-1][14])


def test_the_settings_arguments_are_the_model_calls_parameters(picture):
    """Every key of `keyframe_arguments`/`video_arguments` is a parameter of the call it is for."""
    generate = inspect.signature(KeyframeModel.generate)
    generate.bind(None, picture, **SETTINGS.keyframe_arguments("a prompt"), callback=None)
    interpolate_many = inspect.signature(InterpolationModel.interpolate_many)
    interpolate_many.bind(None, [(picture, picture)], **SETTINGS.video_arguments(), max_batch=1)


def test_events_come_in_stage_order_with_progress_rising_to_one(rendered):
    result, events = rendered
    kinds = [(type(e).__name__, getattr(e, "stage", None)) for e in events]
    steps = SETTINGS.keyframe_steps
    clips = len(SETTINGS.undo_steps) + 1
    expected = (
        [("StageStarted", Stage.TAGGING), ("StageFinished", Stage.TAGGING), ("PromptReady", None)]
        + [("StageStarted", Stage.KEYFRAMES)]
        + [("StepFinished", Stage.KEYFRAMES)] * steps
        + [("KeyframeReady", None)] * len(SETTINGS.undo_steps)
        + [("StageFinished", Stage.KEYFRAMES), ("StageStarted", Stage.INTERPOLATION)]
        + [("StepFinished", Stage.INTERPOLATION)] * SETTINGS.video_steps
        + [("ClipReady", None)] * clips
        + [("StageFinished", Stage.INTERPOLATION), ("StageStarted", Stage.ENCODING)]
        + [("StepFinished", Stage.ENCODING)] * SETTINGS.frame_count
        + [("StageFinished", Stage.ENCODING)]
    )
    assert kinds == expected
    progress = [event.progress for event in events]
    assert all(0 <= p <= 1 for p in progress) and progress == sorted(progress)
    assert progress[0] == 0 and progress[-1] == 1.0
    assert events[-1].eta_seconds == 0 and all(e.eta_seconds is not None for e in events if e.progress > 0)

    prompt = next(e for e in events if isinstance(e, PromptReady)).prompt
    assert prompt == result.prompt
    keyframes = [e for e in events if isinstance(e, KeyframeReady)]
    assert [e.undo_step for e in keyframes] == SETTINGS.undo_steps
    assert all(np.array_equal(e.image, k) for e, k in zip(keyframes, result.keyframes, strict=True))
    clip_events = sorted((e for e in events if isinstance(e, ClipReady)), key=lambda e: e.index)
    assert [e.index for e in clip_events] == list(range(clips))
    joined = np.concatenate([e.frames[:15] for e in clip_events])[::-1]
    assert np.array_equal(joined, result.frames)
    steps_seen = [(e.step, e.total) for e in events if isinstance(e, StepFinished) and e.stage is Stage.KEYFRAMES]
    assert steps_seen == [(i, steps) for i in range(1, steps + 1)]
    finished = [e for e in events if isinstance(e, StageFinished)]
    assert all(e.seconds >= 0 for e in finished)


def test_a_given_prompt_skips_the_tagger(pipeline, picture, tmp_path):
    events = []
    settings = SETTINGS.model_copy(update={"prompt": "sketch, 1girl", "undo_steps": [999]})
    result = pipeline.render(picture, tmp_path / "v.mp4", settings, on_event=events.append)
    assert result.prompt == "sketch, 1girl"
    assert not any(getattr(e, "stage", None) is Stage.TAGGING for e in events)
    assert [e.prompt for e in events if isinstance(e, PromptReady)] == ["sketch, 1girl"]
    assert len(result.frames) == 30


@pytest.mark.parametrize(
    ("stage", "after_steps"),
    [(Stage.KEYFRAMES, 1), (Stage.INTERPOLATION, 1), (Stage.ENCODING, 10)],
)
def test_cancellation_stops_within_one_sampler_step(pipeline, picture, tmp_path, stage, after_steps):
    """The cancel request comes while step `after_steps` of `stage` is reported; no later step runs."""
    settings = SETTINGS.model_copy(update={"keyframe_steps": 3, "video_steps": 3})
    requested, steps = [], []

    def on_event(event):
        if isinstance(event, StepFinished):
            steps.append((event.stage, event.step))
            if (event.stage, event.step) == (stage, after_steps):
                requested.append(True)

    with pytest.raises(RenderCanceled):
        pipeline.render(picture, tmp_path / "v.mp4", settings, on_event=on_event, should_cancel=lambda: bool(requested))
    assert steps[-1] == (stage, after_steps)
    assert list(tmp_path.iterdir()) == []  # no video, not even a partial one


def test_a_cancel_requested_before_the_start_runs_nothing(pipeline, picture, tmp_path):
    events = []
    with pytest.raises(RenderCanceled):
        pipeline.render(picture, tmp_path / "v.mp4", SETTINGS, on_event=events.append, should_cancel=lambda: True)
    assert events == []


def test_bad_calls_are_refused_before_any_work(pipeline, picture, tmp_path):
    events = []
    with pytest.raises(InvalidInputError, match="ending in .mp4"):
        pipeline.render(picture, tmp_path / "v.avi", SETTINGS, on_event=events.append)
    with pytest.raises(InvalidInputError, match="does not exist"):
        pipeline.render(picture, tmp_path / "absent" / "v.mp4", SETTINGS, on_event=events.append)
    with pytest.raises(InvalidInputError, match="RenderSettings"):
        pipeline.render(picture, tmp_path / "v.mp4", {"fps": 4}, on_event=events.append)
    with pytest.raises(InvalidInputError, match="uint8"):
        pipeline.render(picture.astype(np.float32), tmp_path / "v.mp4", SETTINGS, on_event=events.append)
    assert events == [] and list(tmp_path.iterdir()) == []


def snapshots(picture: np.ndarray) -> list[np.ndarray]:
    """Two earlier states of `picture` in drawing order, in other sizes than the picture (they get cropped)."""
    sketch = np.full((120, 90, 3), 255, np.uint8)
    sketch[30:90, 20:70] = 40
    return [sketch, np.ascontiguousarray(picture[::-1, :, :])]


def test_supplied_keyframes_replace_the_keyframe_model(pipeline, picture, tmp_path):
    events = []
    supplied = snapshots(picture)
    settings = SETTINGS.model_copy(update={"undo_steps": None})
    result = pipeline.render(picture, tmp_path / "v.mp4", settings, keyframes=supplied, on_event=events.append)

    assert result.prompt is None
    assert not any(isinstance(e, PromptReady | KeyframeReady) for e in events)
    assert {e.stage for e in events if isinstance(e, StageStarted)} == {Stage.INTERPOLATION, Stage.ENCODING}
    assert events[-1].progress == 1.0
    cropped = [resize_and_center_crop(k, SETTINGS.width, SETTINGS.height) for k in supplied]
    assert all(np.array_equal(a, b) for a, b in zip(result.keyframes, cropped, strict=True))
    # Undoing runs from the finished picture through the latest snapshot to the earliest, then the blank canvas.
    finished = resize_and_center_crop(picture, SETTINGS.width, SETTINGS.height)
    sequence = [finished, cropped[1], cropped[0], np.full_like(finished, 255)]
    clips = pipeline.interpolation_model.interpolate_many(
        list(zip(sequence[:-1], sequence[1:], strict=True)), **SETTINGS.video_arguments(), buckets=TINY_BUCKETS
    )
    assert np.array_equal(result.frames, np.concatenate([clip[:15] for clip in clips])[::-1])
    assert len(read_mp4(result.video)[1]) == 45


def test_stop_after_keyframes_makes_the_keyframes_and_no_video(pipeline, rendered, picture, tmp_path):
    events = []
    settings = SETTINGS.model_copy(update={"stop_after": "keyframes"})
    result = pipeline.render(picture, None, settings, on_event=events.append)

    assert result.video is None and result.frames is None
    full, _ = rendered  # the same settings without stop_after: the same prompt and keyframes
    assert result.prompt == full.prompt
    assert all(np.array_equal(a, b) for a, b in zip(result.keyframes, full.keyframes, strict=True))
    assert len(result.keyframes) == len(SETTINGS.undo_steps)
    assert [e.stage for e in events if isinstance(e, StageStarted)] == [Stage.TAGGING, Stage.KEYFRAMES]
    assert events[-1] == StageFinished(progress=1.0, eta_seconds=0.0, stage=Stage.KEYFRAMES, seconds=events[-1].seconds)
    assert list(tmp_path.iterdir()) == []


def test_bad_supplied_keyframes_are_refused_before_any_work(pipeline, picture, tmp_path):
    events = []
    supplied = snapshots(picture)
    no_steps = SETTINGS.model_copy(update={"undo_steps": None})
    cases = [
        (SETTINGS, supplied, "undo_steps must be absent"),
        (no_steps, [supplied[0], supplied[1][..., :2]], r"keyframes\[1\] must have shape"),
        (no_steps, [], "Supply 1 to 20 keyframes"),
        (no_steps, supplied * 11, "Supply 1 to 20 keyframes"),
        (no_steps.model_copy(update={"stop_after": "keyframes"}), supplied, "nothing to do"),
    ]
    for settings, keyframes, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            pipeline.render(picture, tmp_path / "v.mp4", settings, keyframes=keyframes, on_event=events.append)
    with pytest.raises(InvalidInputError, match="writes no video"):
        pipeline.render(picture, tmp_path / "v.mp4", SETTINGS.model_copy(update={"stop_after": "keyframes"}))
    assert events == [] and list(tmp_path.iterdir()) == []


def test_sources_from_a_folder_name_each_repo_and_missing_ones_fail_clearly(tmp_path):
    sources = ModelSources.from_folder(tmp_path)
    assert sources.tagger == tmp_path / "wd-v1-4-moat-tagger-v2"
    assert sources.keyframe_model == tmp_path / "paints_undo_single_frame"
    assert sources.interpolation_model == tmp_path / "paints_undo_multi_frame"
    with pytest.raises(CheckpointError, match="wd-v1-4-moat-tagger-v2"):
        PaintsUndoPipeline.from_pretrained(sources, device="cpu")


def test_stage_events_bracket_their_stage(rendered):
    _, events = rendered
    open_stage = None
    for event in events:
        if isinstance(event, StageStarted):
            assert open_stage is None
            open_stage = event.stage
        elif isinstance(event, StageFinished):
            assert event.stage is open_stage
            open_stage = None
        elif isinstance(event, StepFinished):
            assert event.stage is open_stage
    assert open_stage is None
