"""Typed progress events of a render, in the order a render emits them.

Every event carries the overall `progress` (0..1, never decreasing, exactly 1.0 on the last event)
and `eta_seconds` (None until there is a rate to extrapolate from). Light: no torch.
"""

from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class Stage(StrEnum):
    """The stages of a render, in order. Tagging is skipped when the settings give a prompt."""

    TAGGING = "tagging"
    KEYFRAMES = "keyframes"
    INTERPOLATION = "interpolation"
    ENCODING = "encoding"


@dataclass(frozen=True, kw_only=True)
class RenderEvent:
    progress: float
    eta_seconds: float | None


@dataclass(frozen=True, kw_only=True)
class StageStarted(RenderEvent):
    stage: Stage


@dataclass(frozen=True, kw_only=True)
class StageFinished(RenderEvent):
    stage: Stage
    seconds: float


@dataclass(frozen=True, kw_only=True)
class StepFinished(RenderEvent):
    """Step `step` (1-based) of `total` within a stage: sampler steps, or frames written when encoding."""

    stage: Stage
    step: int
    total: int


@dataclass(frozen=True, kw_only=True)
class PromptReady(RenderEvent):
    """The keyframe prompt the render uses: the settings' own, or the tagger's."""

    prompt: str


@dataclass(frozen=True, kw_only=True)
class KeyframeReady(RenderEvent):
    """Keyframe `index` (the settings' undo_steps order), an (height, width, 3) uint8 RGB picture."""

    index: int
    undo_step: int
    image: np.ndarray


@dataclass(frozen=True, kw_only=True)
class ClipReady(RenderEvent):
    """Clip `index`, from picture `index` to `index + 1` of [finished picture, keyframes..., blank canvas].

    frames: (16, H, W, 3) uint8 RGB in generation order (undoing: finished first).
    """

    index: int
    frames: np.ndarray
