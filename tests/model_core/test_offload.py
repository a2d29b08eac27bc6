"""Low-memory mode: every module is brought to the device before it runs, and the others leave it."""

import numpy as np
import pytest
import torch
from torch import nn

from model_core.offload import ModelPlacement, placement_for
from model_core.pipeline import PaintsUndoPipeline
from model_core.settings import RenderSettings
from model_core.tiny import write_tiny_models


class Movable(nn.Module):
    """Records where it was sent instead of moving (this machine may have no second device)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.moves: list[str] = []

    def to(self, *args, **kwargs):
        if args and isinstance(args[0], torch.device | str):
            self.moves.append(str(args[0]))
            return self
        return super().to(*args, **kwargs)


def test_use_sends_the_other_modules_to_the_cpu_before_bringing_the_wanted_ones():
    placement = ModelPlacement("cuda:0", offload=True)  # Movable records the moves, so no GPU is needed
    a, b, c = (placement.adopt(Movable(), torch.float32) for _ in range(3))
    assert (a.moves, b.moves, c.moves) == (["cpu"], ["cpu"], ["cpu"])  # adopted modules wait in CPU memory
    placement.use(b, c)
    assert (a.moves[1:], b.moves[1:], c.moves[1:]) == (["cpu"], ["cuda:0"], ["cuda:0"])
    placement.use(a)
    assert (a.moves[-1], b.moves[-1], c.moves[-1]) == ("cuda:0", "cpu", "cpu")


def test_resident_placement_puts_modules_on_the_device_once_and_never_moves_them():
    placement = ModelPlacement("cuda:0")
    module = placement.adopt(Movable(), torch.float32)
    placement.use(module)
    assert module.moves == ["cuda:0"]
    assert ModelPlacement("cpu", offload=True).offload is False  # nowhere to offload to


def test_a_model_takes_only_a_placement_for_its_own_device():
    assert placement_for(torch.device("cpu"), None).offload is False
    with pytest.raises(ValueError, match="placement is for cuda:0, the model for cpu"):
        placement_for(torch.device("cpu"), ModelPlacement("cuda:0", offload=True))


class TrackingPlacement(ModelPlacement):
    """Offloading logic on the CPU: records which modules were brought in, and checks each forward against it."""

    def __init__(self):
        super().__init__("cpu")
        self.offload = True  # the offload code path, with the CPU standing in for the GPU
        self.in_use: set[int] = set()
        self.violations: list[str] = []

    def adopt(self, module, dtype):
        module = super().adopt(module, dtype)
        module.register_forward_pre_hook(self._check)
        return module

    def use(self, *modules):
        super().use(*modules)
        self.in_use = {id(module) for module in modules}

    def _check(self, module, args):
        if id(module) not in self.in_use:
            self.violations.append(type(module).__name__)


@pytest.fixture(scope="module")
def tiny_sources(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("models"))


def _pipeline(sources, placement, max_batch):
    from model_core.configs import TINY_BUCKETS
    from model_core.interpolation import InterpolationModel
    from model_core.keyframes import KeyframeModel
    from model_core.tagger import Tagger

    return PaintsUndoPipeline(
        Tagger.from_pretrained(sources.tagger),
        KeyframeModel.from_pretrained(sources.keyframe_model, placement=placement),
        InterpolationModel.from_pretrained(sources.interpolation_model, placement=placement),
        buckets=TINY_BUCKETS,
        max_batch=max_batch,
    )


def test_low_memory_render_runs_every_module_only_after_bringing_it_in_and_matches_resident(
    tiny_sources, picture, tmp_path
):
    settings = RenderSettings(undo_steps=[400, 900], width=256, height=256, keyframe_steps=2, video_steps=2)
    placement = TrackingPlacement()
    low = _pipeline(tiny_sources, placement, max_batch=1).render(picture, tmp_path / "low.mp4", settings)
    assert placement.violations == []
    assert low.keyframes[0].shape == (256, 256, 3)
    assert low.frames.shape[0] == 3 * 15
    resident = _pipeline(tiny_sources, None, max_batch=8).render(picture, tmp_path / "resident.mp4", settings)
    # Keyframes decoded one at a time and clips sampled one at a time, vs in batches: the same noise
    # per picture, so the batch size changes results by float rounding only.
    for ours, theirs in zip(low.keyframes, resident.keyframes, strict=True):
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    assert np.abs(low.frames.astype(int) - resident.frames.astype(int)).max() <= 2


def test_the_tracker_catches_a_module_run_without_being_brought_in(tiny_sources, picture):
    placement = TrackingPlacement()
    model = _pipeline(tiny_sources, placement, max_batch=1).keyframe_model
    placement.use(model.vae)
    model.text_encoder(torch.zeros(1, 77, dtype=torch.long))
    assert placement.violations == ["CLIPTextModel"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_low_memory_on_cuda_keeps_idle_models_off_the_gpu_and_matches_resident(tiny_sources, picture, tmp_path):
    from model_core.configs import TINY_BUCKETS

    settings = RenderSettings(undo_steps=[400, 900], width=256, height=256, keyframe_steps=2, video_steps=2)

    def render(low_memory: bool):
        """The result, and where the keyframe UNet was at each event."""
        pipeline = PaintsUndoPipeline.from_pretrained(
            tiny_sources, device="cuda", low_memory=low_memory, buckets=TINY_BUCKETS
        )
        unet = pipeline.keyframe_model.unet
        places = []
        result = pipeline.render(
            picture,
            tmp_path / f"{low_memory}.mp4",
            settings,
            on_event=lambda event: places.append(next(unet.parameters()).device.type),
        )
        return result, places

    (low, low_places), (resident, resident_places) = render(True), render(False)
    assert "cpu" in low_places and set(resident_places) == {"cuda"}
    for ours, theirs in zip(low.keyframes, resident.keyframes, strict=True):
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 2
