"""`RenderSettings`: what one render may ask for, validated; the same model the API accepts.

Light on purpose (pydantic only, no torch), so the API process can import it.
Defaults and bounds are the reference app's; seeds are bounded to 32 bits so that JSON clients
in any language hold them exactly.
"""

from typing import Annotated, TypedDict

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 2000  # the text encoders read 77 tokens; this only bounds what a job record holds
MAX_UNDO_STEP = 999
MAX_KEYFRAMES = 20
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


def _distinct(steps: list[int]) -> list[int]:
    if len(set(steps)) != len(steps):
        raise ValueError("undo steps must be distinct")
    return steps


Prompt = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
UndoStep = Annotated[int, Field(ge=0, le=MAX_UNDO_STEP)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Side = Annotated[int, Field(ge=256, le=1024, multiple_of=64)]


class RenderSettings(BaseModel):
    """Settings of one render: keyframes from the finished picture, then the clips between them.

    Strict: numbers must be numbers (no "50" strings, no booleans), and unknown fields are refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    prompt: Prompt | None = Field(
        None, description="Prompt of the keyframe model; null lets the tagger describe the picture."
    )
    negative_prompt: Prompt = Field(
        "lowres, bad anatomy, bad hands, cropped, worst quality",
        description="Negative prompt of the keyframe model.",
    )
    undo_steps: Annotated[list[UndoStep], Field(min_length=1, max_length=MAX_KEYFRAMES), AfterValidator(_distinct)] = (
        Field(
            [400, 600, 800, 900, 950, 999],
            description=(
                "Operation steps of the keyframes: how many Ctrl+Z back from the finished picture, 0..999 "
                "(999 is nearly a blank canvas). 1..20 distinct values, used in the order given: the video "
                "runs from the last one to the finished picture, so give them in increasing order."
            ),
        )
    )
    width: Side = Field(512, description="Keyframe width in pixels: 256..1024, a multiple of 64.")
    height: Side = Field(640, description="Keyframe height in pixels: 256..1024, a multiple of 64.")
    keyframe_steps: int = Field(50, ge=1, le=100, description="Sampler steps of the keyframe model (DPM++ 2M).")
    keyframe_cfg: float = Field(3.0, ge=1, le=32, description="Classifier-free guidance scale of the keyframe model.")
    keyframe_seed: Seed = Field(12345, description="Seed of the keyframes' initial noise, 0..2^32-1.")
    video_prompt: Prompt = Field(
        "1girl, masterpiece, best quality",
        description="Prompt of the interpolation model (the reference advises against the tagger's prompt here).",
    )
    video_steps: int = Field(50, ge=1, le=60, description="Sampler steps of the interpolation model (DDIM).")
    video_cfg: float = Field(7.5, ge=1, le=15, description="Classifier-free guidance scale of the interpolation model.")
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
    fps: int = Field(4, ge=1, le=30, description="Frames per second of the video.")

    @property
    def frame_count(self) -> int:
        """Frames of the video: 15 per clip, one clip per keyframe plus one to the blank canvas."""
        return (CLIP_FRAMES - 1) * (len(self.undo_steps) + 1)

    def keyframe_arguments(self, prompt: str) -> KeyframeArguments:
        """`KeyframeModel.generate`'s arguments. prompt: `self.prompt`, or the tagger's when that is None."""
        return KeyframeArguments(
            prompt=prompt,
            negative_prompt=self.negative_prompt,
            undo_steps=list(self.undo_steps),
            width=self.width,
            height=self.height,
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
