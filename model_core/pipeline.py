"""`PaintsUndoPipeline`: one finished picture in, an MP4 of how it might have been drawn out.

The default flow of the reference app, as one call:
1. tagging: the tagger writes the keyframe prompt (unless the settings give one);
2. keyframes: the keyframe model generates one earlier state per undo step, in one batch;
3. interpolation: the pictures [finished picture (cropped), keyframes..., blank white canvas]
   are taken in consecutive pairs and the interpolation model fills 16 frames between each pair,
   all pairs sampled together;
4. encoding: each clip's last frame (the next clip's first) is dropped, the clips are joined and
   the whole is reversed, so the video runs from the blank canvas to the finished picture.

Keyframes go from stage 2 to stage 3 as arrays; the reference's UI happens to pass them through
lossy WebP, which we do not copy.

Two variations: the artist's own snapshots can be supplied as the keyframes (stages 1 and 2 are skipped), and
`stop_after="keyframes"` ends after stage 2, for an app that shows the keyframes before it asks for the video.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_core.devices import pick_device, pick_dtype
from model_core.errors import InvalidInputError
from model_core.events import ClipReady, KeyframeReady, PromptReady, Stage
from model_core.images import check_rgb_image, find_best_bucket, resize_and_center_crop
from model_core.interpolation import BUCKETS, MAX_BATCH, InterpolationModel
from model_core.keyframes import KeyframeModel
from model_core.offload import ModelPlacement
from model_core.progress import CancelCheck, EventCallback, RenderProgress
from model_core.samplers import SamplerStep
from model_core.settings import CLIP_FRAMES, MAX_KEYFRAMES, RenderSettings
from model_core.sources import ModelSources
from model_core.tagger import Tagger
from model_core.video import check_mp4_path, write_mp4

# Shares of the work that are not sampler steps, relative to all sampling. The sampling stages
# cost about the same per pixel and step (the keyframe UNet at 640x512 and the video UNet at
# 448x384 per frame are within 15% in FLOPs), so their work is steps x pictures x pixels.
TAGGING_SHARE, ENCODING_SHARE, DECODING_SHARE = 0.005, 0.01, 0.02


@dataclass(frozen=True)
class RenderResult:
    """What a render made.

    prompt: the keyframe prompt (None when keyframes were supplied: no keyframe model ran).
    keyframes: the pictures between the blank canvas and the finished picture, at the keyframe size: the
        generated ones in undo_steps order (latest state first), or the supplied ones, cropped, in drawing order.
    frames: (T, H, W, 3) uint8 RGB, blank canvas first; video: the MP4 of them. Both None when the settings
        stop after the keyframes.
    """

    prompt: str | None
    keyframes: list[np.ndarray]
    frames: np.ndarray | None
    fps: int
    video: Path | None

    @property
    def width(self) -> int:
        return self._frame_shape[1]

    @property
    def height(self) -> int:
        return self._frame_shape[0]

    @property
    def _frame_shape(self) -> tuple[int, ...]:
        if self.frames is None:
            raise ValueError("this render stopped after its keyframes: it has no video frames")
        return self.frames.shape[1:3]


class PaintsUndoPipeline:
    """The tagger, keyframe model and interpolation model, loaded once.

    buckets: the (height, width) clip sizes to choose from; the reference's four by default.
    max_batch: clips sampled together (the default job has 7); lower it to save GPU memory.
    """

    def __init__(
        self,
        tagger: Tagger,
        keyframe_model: KeyframeModel,
        interpolation_model: InterpolationModel,
        *,
        buckets: Sequence[tuple[int, int]] = BUCKETS,
        max_batch: int = MAX_BATCH,
    ):
        self.tagger = tagger
        self.keyframe_model = keyframe_model
        self.interpolation_model = interpolation_model
        self.buckets = tuple(tuple(bucket) for bucket in buckets)
        self.max_batch = max_batch

    @classmethod
    def from_pretrained(
        cls,
        sources: ModelSources | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        buckets: Sequence[tuple[int, int]] = BUCKETS,
        max_batch: int | None = None,
        low_memory: bool = False,
        compile: bool = False,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
    ) -> "PaintsUndoPipeline":
        """Load the three models from `sources` (None: `ModelSources()`, the published Hugging Face repos).

        device: "auto" (CUDA when available, else CPU), "cpu" or "cuda[:N]".
        dtype: "auto" (bfloat16 on CUDA, float32 on CPU), "float32", "bfloat16" or "float16".
        max_batch: clips sampled together; None is 8 (all clips of the default job), or 1 in low-memory mode.
        low_memory: keep the weights in CPU memory and move each module to the GPU only for its step,
            sample the clips one at a time and decode keyframes one at a time (for 12 GB cards; slower).
            The default keeps every model resident on the GPU.
        compile: compile both UNets with `torch.compile`. Each new input shape (keyframe count, clip
            bucket, clip batch) compiles once per process, which takes minutes; a resident worker pays
            it on its first jobs. bench/RESULTS.md has the figures.
        cache_dir, local_files_only: the Hugging Face cache and whether to stay off the network, for the
            repo ids among `sources` (`ModelSources.fetch`; `sources.fetch_model_sources` takes `tiny`,
            a folder or an owner).
        """
        torch_device = pick_device(device)
        torch_dtype = pick_dtype(dtype, torch_device)
        placement = ModelPlacement(torch_device, offload=low_memory)
        models = {"device": torch_device, "dtype": torch_dtype, "placement": placement}
        # Every checkpoint is found (or downloaded) before any is loaded: a missing one fails in seconds.
        folders = (sources or ModelSources()).fetch(cache_dir=cache_dir, local_files_only=local_files_only)
        tagger = Tagger.from_pretrained(folders.tagger)
        keyframe_model = KeyframeModel.from_pretrained(folders.keyframe_model, **models)
        interpolation_model = InterpolationModel.from_pretrained(folders.interpolation_model, **models)
        if compile:
            keyframe_model.unet.compile()
            interpolation_model.unet.compile()
        if max_batch is None:
            max_batch = 1 if low_memory else MAX_BATCH
        return cls(
            tagger,
            keyframe_model,
            interpolation_model,
            buckets=buckets,
            max_batch=max_batch,
        )

    def render(
        self,
        image: np.ndarray,
        output: str | Path | None,
        settings: RenderSettings | None = None,
        *,
        keyframes: Sequence[np.ndarray] | None = None,
        on_event: EventCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> RenderResult:
        """Render the drawing process of `image` ((H, W, 3) uint8 RGB) into the MP4 file `output`.

        settings: RenderSettings() when None. With `stop_after="keyframes"` the render stops once the keyframes
            are made, and `output` must be None.
        keyframes: the artist's own earlier states, (H, W, 3) uint8 RGB, earliest first, instead of the keyframe
            model's (settings.undo_steps must then be None). Each is scaled and center-cropped to the keyframe
            size like the picture; the video runs blank canvas -> these -> the finished picture.
        on_event: receives the typed events of `model_core.events` as they happen.
        should_cancel: polled after every sampler step and event; True stops the render with
            RenderCanceled, leaving no video file behind.
        """
        check_rgb_image(image)
        settings = RenderSettings() if settings is None else settings
        if not isinstance(settings, RenderSettings):
            raise InvalidInputError(f"settings must be a RenderSettings, got {type(settings).__name__}.")
        check_supplied_keyframes(keyframes, settings)
        video_wanted = settings.stop_after != "keyframes"
        if video_wanted:
            output = check_output_folder(output)
        elif output is not None:
            raise InvalidInputError('stop_after "keyframes" writes no video: pass output=None.')

        # "auto" sides become pixels for this picture; explicit ones stay as given.
        settings = settings.with_size(image.shape[1], image.shape[0])
        clip_height, clip_width = find_best_bucket(settings.height, settings.width, self.buckets)
        generate = keyframes is None
        clip_count = 1 + (len(settings.keyframe_undo_steps) if generate else len(keyframes))
        progress = RenderProgress(
            expected_work(
                settings,
                clip_width * clip_height,
                tagging=generate and settings.prompt is None,
                generated_keyframes=len(settings.keyframe_undo_steps) if generate else 0,
                clips=clip_count if video_wanted else 0,
            ),
            on_event,
            should_cancel,
        )
        progress.check_cancel()

        if generate:
            prompt = self._tag(image, settings, progress)
            pictures = self._generate_keyframes(image, prompt, settings, progress)
        else:
            prompt = None
            pictures = [resize_and_center_crop(keyframe, settings.width, settings.height) for keyframe in keyframes]
        if not video_wanted:
            return RenderResult(prompt=prompt, keyframes=pictures, frames=None, fps=settings.fps, video=None)

        # Interpolation undoes: from the finished picture back through the keyframes to the blank canvas.
        finished = resize_and_center_crop(image, settings.width, settings.height)
        undoing = pictures if generate else pictures[::-1]
        sequence = [finished, *undoing, np.full_like(finished, 255)]
        pairs = list(zip(sequence[:-1], sequence[1:], strict=True))
        with progress.stage(Stage.INTERPOLATION):
            clips = self._interpolate(pairs, settings, progress)

        frames = assemble_video(clips)
        with progress.stage(Stage.ENCODING):
            write_mp4(
                frames,
                output,
                fps=settings.fps,
                callback=lambda written, total: progress.step(Stage.ENCODING, written, total),
            )
        return RenderResult(prompt=prompt, keyframes=pictures, frames=frames, fps=settings.fps, video=output)

    def _tag(self, image: np.ndarray, settings: RenderSettings, progress: RenderProgress) -> str:
        """The keyframe prompt: the settings' own, or the tagger's."""
        prompt = settings.prompt
        if prompt is None:
            with progress.stage(Stage.TAGGING):
                prompt = self.tagger.tag(image)
        progress.emit(Stage.TAGGING, 1.0, PromptReady, prompt=prompt)
        return prompt

    def _generate_keyframes(
        self, image: np.ndarray, prompt: str, settings: RenderSettings, progress: RenderProgress
    ) -> list[np.ndarray]:
        with progress.stage(Stage.KEYFRAMES):
            keyframes = self.keyframe_model.generate(
                image,
                **settings.keyframe_arguments(prompt),
                callback=lambda step: progress.step(Stage.KEYFRAMES, step.index + 1, step.total),
            )
            for index, (undo_step, keyframe) in enumerate(zip(settings.keyframe_undo_steps, keyframes, strict=True)):
                progress.emit(Stage.KEYFRAMES, 1.0, KeyframeReady, index=index, undo_step=undo_step, image=keyframe)
        return keyframes

    def _interpolate(
        self, pairs: list[tuple[np.ndarray, np.ndarray]], settings: RenderSettings, progress: RenderProgress
    ) -> list[np.ndarray]:
        """All clips in as few batches as max_batch allows, reporting steps and each decoded clip."""
        done = {"sampled": 0.0, "decoded": 0.0}  # fractions of the sampler steps and of the clip decodes

        def fraction() -> float:
            return (1 - DECODING_SHARE) * done["sampled"] + DECODING_SHARE * done["decoded"]

        def on_step(step: SamplerStep) -> None:
            done["sampled"] = (step.index + 1) / step.total
            progress.step(Stage.INTERPOLATION, step.index + 1, step.total, fraction())

        def on_clip(index: int, frames: np.ndarray) -> None:
            done["decoded"] += 1 / len(pairs)
            progress.emit(Stage.INTERPOLATION, fraction(), ClipReady, index=index, frames=frames)

        return self.interpolation_model.interpolate_many(
            pairs,
            **settings.video_arguments(),
            max_batch=self.max_batch,
            buckets=self.buckets,
            callback=on_step,
            clip_callback=on_clip,
        )


def assemble_video(clips: list[np.ndarray]) -> np.ndarray:
    """Drop each clip's last frame (it repeats the next clip's first), join, and reverse in time.

    clips: (16, H, W, 3) clips in generation order, finished picture first. Returns (15 * len, H, W, 3).
    """
    return np.ascontiguousarray(np.concatenate([clip[:-1] for clip in clips])[::-1])


def check_supplied_keyframes(keyframes: Sequence[np.ndarray] | None, settings: RenderSettings) -> None:
    """Supplied keyframes: 1..MAX_KEYFRAMES RGB pictures, with no undo_steps to generate and a video to make."""
    if keyframes is None:
        return
    if not 1 <= len(keyframes) <= MAX_KEYFRAMES:
        raise InvalidInputError(f"Supply 1 to {MAX_KEYFRAMES} keyframes, got {len(keyframes)}.")
    for index, keyframe in enumerate(keyframes):
        check_rgb_image(keyframe, f"keyframes[{index}]")
    if settings.undo_steps is not None:
        raise InvalidInputError(
            "undo_steps must be absent when keyframes are supplied: they are the steps of the keyframes the keyframe "
            "model makes, and it does not run."
        )
    if settings.stop_after == "keyframes":
        raise InvalidInputError('stop_after "keyframes" with supplied keyframes has nothing to do: drop one of them.')


def check_output_folder(output: str | Path | None) -> Path:
    """The MP4 path, checked before minutes of sampling rather than after."""
    if output is None:
        raise InvalidInputError("Give the path of the MP4 to write (output).")
    output = check_mp4_path(output)
    if not output.parent.is_dir():
        raise InvalidInputError(f"The folder of {output} does not exist: create it first.")
    return output


def expected_work(
    settings: RenderSettings, clip_pixels: int, *, tagging: bool, generated_keyframes: int, clips: int
) -> dict[Stage, float]:
    """Expected work of the stages that run, in order: sampler steps x pictures x pixels, plus fixed shares.

    settings: with its size resolved. generated_keyframes: 0 when keyframes are supplied; clips: 0 when the render
    stops after its keyframes.
    """
    work = {}
    keyframes = settings.keyframe_steps * generated_keyframes * settings.width * settings.height
    interpolation = settings.video_steps * clips * CLIP_FRAMES * clip_pixels
    sampling = keyframes + interpolation
    if generated_keyframes:  # the prompt is announced under tagging, whether the tagger runs or not
        work[Stage.TAGGING] = TAGGING_SHARE * sampling if tagging else 0.0
        work[Stage.KEYFRAMES] = keyframes
    if clips:
        work[Stage.INTERPOLATION] = interpolation
        work[Stage.ENCODING] = ENCODING_SHARE * sampling
    return work
