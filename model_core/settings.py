"""`RenderSettings`: what one render may ask for, validated; the same model the API accepts.

Light on purpose (pydantic only, no torch), so the API process can import it.
Defaults and bounds are the reference app's; seeds are bounded to 32 bits so that JSON clients
in any language hold them exactly.
"""

import math
from typing import Annotated, Literal, TypedDict

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 2000  # the text encoders read 77 tokens; this only bounds what a job record holds
MAX_UNDO_STEP = 999
MAX_KEYFRAMES = 20  # generated (undo_steps) or supplied
DEFAULT_UNDO_STEPS = (400, 600, 800, 900, 950, 999)  # the reference app's
MAX_CACHE_INTERVAL = 10
# Frames the interpolation model makes per pair of pictures; the video keeps all but the last of each.
CLIP_FRAMES = 16


class KeyframeArguments(TypedDict):
    """The keyword arguments of `KeyframeModel.generate` that a render's settings give."""

    prompt: str
    negative_prompt: str
    undo_steps: list[int]
    width: int
    height: int
    steps: int
    cfg: float
    seed: int


class VideoArguments(TypedDict):
    """The keyword arguments of `InterpolationModel.interpolate_many` that a render's settings give."""

    prompt: str
    steps: int
    cfg: float
    seed: int
    cache_interval: int


def _distinct(items: list) -> list:
    if len(set(items)) != len(items):
        raise ValueError("values must be distinct")
    return items


Prompt = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
UndoStep = Annotated[int, Field(ge=0, le=MAX_UNDO_STEP)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
UndoSteps = Annotated[list[UndoStep], Field(min_length=1, max_length=MAX_KEYFRAMES), AfterValidator(_distinct)]
# Files made from the video besides the MP4 (model_core.outputs).
OutputKind = Literal["preview", "frames"]
MIN_SIDE, MAX_SIDE, SIDE_STEP = 256, 1024, 64
# The reference's keyframe size; an automatic size has about its pixel count.
REFERENCE_SIZE = (512, 640)


def _side_or_auto(value: object) -> int | Literal["auto"]:
    """A keyframe side: "auto", or an integer 256..1024 that is a multiple of 64 (one error, naming both)."""
    if value == "auto" and isinstance(value, str):
        return "auto"
    expected = f'"auto" or an integer {MIN_SIDE}..{MAX_SIDE} that is a multiple of {SIDE_STEP}'
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"must be {expected}, not {type(value).__name__} {value!r:.40}")
    if not MIN_SIDE <= value <= MAX_SIDE or value % SIDE_STEP:
        raise ValueError(f"must be {expected}, not {value}")
    return value


SIDE_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": MIN_SIDE, "maximum": MAX_SIDE, "multipleOf": SIDE_STEP},
        {"type": "string", "const": "auto"},
    ]
}
SideOrAuto = Annotated[int | Literal["auto"], PlainValidator(_side_or_auto), WithJsonSchema(SIDE_SCHEMA)]


def _auto_sizes() -> list[tuple[int, int]]:
    """(width, height) candidates of the automatic size: for each width, the height whose area is nearest the
    reference's 512x640 (ties: the smaller), and the same sizes turned: 512x640, 576x576, 768x448, 448x768..."""
    target = REFERENCE_SIZE[0] * REFERENCE_SIZE[1]
    sides = range(MIN_SIDE, MAX_SIDE + 1, SIDE_STEP)
    landscape = {(width, min(sides, key=lambda height: abs(width * height - target))) for width in sides}
    return sorted(landscape | {(height, width) for width, height in landscape})


AUTO_SIZES = _auto_sizes()


def _nearest_side(length: float) -> int:
    return min(max(round(length / SIDE_STEP) * SIDE_STEP, MIN_SIDE), MAX_SIDE)


def keyframe_size(
    width: int | Literal["auto"], height: int | Literal["auto"], picture_width: int, picture_height: int
) -> tuple[int, int]:
    """The keyframe (width, height) for a picture of picture_width x picture_height pixels.

    Explicit sides are kept as they are. Both "auto": of the sizes with about 512x640 pixels (multiples of 64,
    256..1024 a side), the one whose aspect ratio is nearest the picture's (by log ratio; ties: the larger
    area), so a 960x540 picture gets 768x448 and a square one 576x576. One "auto": the multiple of 64 that
    keeps the picture's aspect best next to the given side. The picture is scaled to cover the size and
    center-cropped, so only an aspect ratio that differs from the picture's loses its edges.
    """
    if picture_width <= 0 or picture_height <= 0:
        raise ValueError(f"picture size must be positive, got {picture_width}x{picture_height}")
    aspect = picture_width / picture_height
    if width == "auto" and height == "auto":
        return min(AUTO_SIZES, key=lambda size: (abs(math.log(size[0] / size[1] / aspect)), -size[0] * size[1]))
    if width == "auto":
        assert height != "auto"
        return _nearest_side(height * aspect), height
    if height == "auto":
        return width, _nearest_side(width / aspect)
    return width, height


class RenderSettings(BaseModel):
    """Settings of one render: keyframes from the finished picture, then the clips between them.

    Strict: numbers must be numbers (no "50" strings, no booleans), and unknown fields are refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    prompt: Prompt | None = Field(
        None,
        description="Prompt of the keyframe model; null lets the tagger describe the picture.",
    )
    negative_prompt: Prompt = Field(
        "lowres, bad anatomy, bad hands, cropped, worst quality",
        description="Negative prompt of the keyframe model.",
    )
    undo_steps: UndoSteps | None = Field(
        None,
        description=(
            "Operation steps of the keyframes the keyframe model makes: how many Ctrl+Z back from the finished "
            "picture, 0..999 (999 is nearly a blank canvas). 1..20 distinct values, used in the order given: the "
            "video runs from the last one to the finished picture, so give them in increasing order. null (the "
            "default) is [400, 600, 800, 900, 950, 999], and a job shows the steps it used. Must be absent when "
            "the request supplies its own keyframes."
        ),
        examples=[list(DEFAULT_UNDO_STEPS)],
    )
    width: SideOrAuto = Field(
        "auto",
        description=(
            'Keyframe width in pixels: 256..1024, a multiple of 64, or "auto" (the default). With both sides '
            '"auto" the size has about the reference\'s 512x640 pixels and the aspect ratio nearest the '
            'picture\'s (a 960x540 picture gets 768x448, a square one 576x576); with one side given, "auto" '
            "keeps the picture's aspect next to it. The picture is scaled to cover the size and center-cropped: "
            "what lies outside that aspect ratio is cut. The video's frames have the aspect of the keyframes."
        ),
        examples=["auto", 512],
    )
    height: SideOrAuto = Field(
        "auto",
        description='Keyframe height in pixels: 256..1024, a multiple of 64, or "auto" (the default); see width.',
        examples=["auto", 640],
    )
    keyframe_steps: int = Field(50, ge=1, le=100, description="Sampler steps of the keyframe model (DPM++ 2M).")
    keyframe_cfg: float = Field(
        3.0, ge=1, le=32, title="Keyframe CFG", description="Classifier-free guidance scale of the keyframe model."
    )
    keyframe_seed: Seed = Field(12345, description="Seed of the keyframes' initial noise, 0..2^32-1.")
    video_prompt: Prompt = Field(
        "1girl, masterpiece, best quality",
        description="Prompt of the interpolation model (the reference advises against the tagger's prompt here).",
    )
    video_steps: int = Field(50, ge=1, le=60, description="Sampler steps of the interpolation model (DDIM).")
    video_cfg: float = Field(
        7.5, ge=1, le=15, title="Video CFG", description="Classifier-free guidance scale of the interpolation model."
    )
    video_seed: Seed = Field(123, description="Seed of the first clip, 0..2^32-1; clip i uses video_seed + i.")
    video_cache_interval: int = Field(
        1,
        ge=1,
        le=MAX_CACHE_INTERVAL,
        description=(
            "Step caching (DeepCache) in the interpolation model: run its UNet in full every N steps and, in "
            "between, only its outermost blocks on the deep features of the last full step. 1 (the default) is "
            "off and exact; 2 or 3 make video sampling faster (a cached step costs about a tenth of a full one) "
            "and change the video. Measured gains: bench/RESULTS.md."
        ),
    )
    fps: int = Field(4, ge=1, le=30, title="FPS", description="Frames per second of the video (and of the preview).")
    stop_after: Literal["keyframes"] | None = Field(
        None,
        description=(
            '"keyframes": stop once the keyframes are made; the job succeeds with its keyframes and no video. '
            "Pick or edit them, then submit them as the next job's supplied keyframes. null (the default): "
            "render the video."
        ),
    )
    outputs: Annotated[list[OutputKind], AfterValidator(_distinct)] = Field(
        [],
        description=(
            'Files to make besides the MP4, which is always made: "preview", an animated WebP at most 512 px on '
            'its long side that loops (for feeds and thumbnails), and "frames", every frame as a PNG in one ZIP.'
        ),
        examples=[["preview"]],
    )

    @model_validator(mode="after")
    def _outputs_need_a_video(self) -> "RenderSettings":
        if self.stop_after == "keyframes" and self.outputs:
            raise ValueError('outputs are made from the video; a render with stop_after "keyframes" makes none')
        return self

    def with_size(self, picture_width: int, picture_height: int) -> "RenderSettings":
        """These settings with width and height in pixels for a picture of that size (see `keyframe_size`)."""
        width, height = keyframe_size(self.width, self.height, picture_width, picture_height)
        return self.model_copy(update={"width": width, "height": height})

    def size(self) -> tuple[int, int]:
        """(width, height) in pixels; ValueError while one is still "auto" (resolve it with `with_size`)."""
        if self.width == "auto" or self.height == "auto":
            raise ValueError('the keyframe size is "auto": resolve it for the picture with with_size() first')
        return self.width, self.height

    @property
    def frame_count(self) -> int:
        """Frames of the video when the keyframe model makes the keyframes: 15 per clip, one clip per keyframe plus
        one to the blank canvas (with supplied keyframes, their count takes the place of the undo steps')."""
        return (CLIP_FRAMES - 1) * (len(self.keyframe_undo_steps) + 1)

    @property
    def keyframe_undo_steps(self) -> list[int]:
        """The undo steps of the keyframes the keyframe model makes: undo_steps, or the default ones when null."""
        return list(DEFAULT_UNDO_STEPS if self.undo_steps is None else self.undo_steps)

    def with_undo_steps(self) -> "RenderSettings":
        """These settings with undo_steps given, for a render whose keyframe model runs; a job records these, so
        that it shows the steps it used."""
        return self.model_copy(update={"undo_steps": self.keyframe_undo_steps})

    def keyframe_arguments(self, prompt: str) -> KeyframeArguments:
        """`KeyframeModel.generate`'s arguments. prompt: `self.prompt`, or the tagger's when that is None."""
        width, height = self.size()
        return KeyframeArguments(
            prompt=prompt,
            negative_prompt=self.negative_prompt,
            undo_steps=self.keyframe_undo_steps,
            width=width,
            height=height,
            steps=self.keyframe_steps,
            cfg=self.keyframe_cfg,
            seed=self.keyframe_seed,
        )

    def video_arguments(self) -> VideoArguments:
        """`InterpolationModel.interpolate_many`'s arguments (clip i is seeded `video_seed + i`)."""
        return VideoArguments(
            prompt=self.video_prompt,
            steps=self.video_steps,
            cfg=self.video_cfg,
            seed=self.video_seed,
            cache_interval=self.video_cache_interval,
        )


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming its field: `undo_steps.2: Input should be less than or equal to 999`."""
    lines = []
    for problem in error.errors(include_url=False):
        field = ".".join(str(part) for part in problem["loc"]) or "settings"
        lines.append(f"{field}: {problem['msg']}")
    return "\n".join(lines)
