"""The sampler loops queue device work without waiting for it: no value comes back to the host mid-loop.

A host sync is any read of a tensor's value by Python (`.item()`, `bool(t)`, `.tolist()`, data-dependent
shapes), or a copy of a host tensor to the device (pageable host memory waits for the GPU); on a GPU
each one stalls the CPU until the queue drains. On CPU we catch every such read with a dispatch mode.
Copies from the host are invisible on CPU (host and device are one), so the models also run on the
meta device (shapes only, no values), where any op that touches a CPU tensor in the loop is one, and
any read of a value fails. On CUDA, torch's sync debug mode also catches device-to-host copies.
Syncs before the loop (working out the schedule) and after it (decoding to uint8) are expected;
the checks cover the steps after the first callback up to the last one.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from model_core.interpolation import InterpolationModel
from model_core.keyframes import KeyframeModel

# ATen ops that hand a tensor's value, or a shape that depends on it, to the host. Under inference
# mode `.item()` and `bool()` arrive undecomposed, as item and is_nonzero.
HOST_READS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.item.default,
    torch.ops.aten.is_nonzero.default,
    torch.ops.aten.nonzero.default,
    torch.ops.aten.equal.default,
}


class LoopWatch(TorchDispatchMode):
    """Records, while `in_loop` is True, the host reads (`reads`) and the ops given or making a CPU tensor
    (`host_tensors`: copies from the host when the models are on the meta device)."""

    def __init__(self):
        super().__init__()
        self.in_loop = False
        self.reads: list[str] = []
        self.host_tensors: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.in_loop:
            if func in HOST_READS:
                self.reads.append(str(func))
            tensors = [t for t in tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
            if any(t.device.type == "cpu" for t in tensors):
                self.host_tensors.append(str(func))
        return out


def _loop_marker(steps: int, on_enter, on_leave):
    """A sampler callback that enters the loop after step 0 and leaves it at the last step."""

    def callback(step):
        if step.index == 0:
            on_enter()
        if step.index == steps - 1:
            on_leave()

    return callback


def _generate_keyframes(model, picture, callback):
    return model.generate(
        picture,
        prompt="1girl",
        negative_prompt="lowres",
        undo_steps=[400, 900],
        width=64,
        height=64,
        steps=4,
        cfg=3.0,
        seed=1,
        callback=callback,
    )


def _interpolate(model, picture, callback):
    return model.interpolate_many(
        [(picture, picture[::-1].copy()), (picture[::-1].copy(), picture)],
        prompt="1girl",
        steps=4,
        cfg=7.5,
        seed=1,
        buckets=[(32, 48)],
        callback=callback,
    )


@pytest.mark.parametrize("run", [_generate_keyframes, _interpolate], ids=["keyframes", "interpolation"])
def test_sampler_loops_read_nothing_back_on_cpu(run, request, picture):
    model = request.getfixturevalue("keyframe_model" if run is _generate_keyframes else "interpolation_model")
    mode = LoopWatch()

    def enter():
        mode.in_loop = True

    def leave():
        mode.in_loop = False

    with mode:
        run(model, picture, _loop_marker(4, enter, leave))
    assert mode.reads == []


class _LoopDone(Exception):
    """Raised from the callback at the last step: decoding meta tensors to pictures is not possible."""


@pytest.mark.parametrize("kind", ["keyframes", "interpolation"])
def test_sampler_loops_copy_nothing_from_the_host_on_the_meta_device(
    kind, keyframe_checkpoint, interpolation_checkpoint, picture
):
    if kind == "keyframes":
        model = KeyframeModel.from_pretrained(keyframe_checkpoint, device="meta")
        run = _generate_keyframes
    else:
        model = InterpolationModel.from_pretrained(interpolation_checkpoint, device="meta")
        run = _interpolate
    mode = LoopWatch()

    def enter():
        mode.in_loop = True

    def leave():
        mode.in_loop = False
        raise _LoopDone

    with mode, pytest.raises(_LoopDone):  # a read of a meta tensor's value would raise something else
        run(model, picture, _loop_marker(4, enter, leave))
    assert mode.host_tensors == [] and mode.reads == []


def test_the_detector_sees_a_host_tensor_copied_to_the_meta_device():
    mode = LoopWatch()
    mode.in_loop = True
    with mode:
        torch.ones(3, device="meta") * torch.arange(3).to("meta")
    assert mode.host_tensors


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_the_detector_sees_host_reads(context):
    mode = LoopWatch()
    mode.in_loop = True
    with context(), mode:
        x = torch.ones(3)
        if (x > 0).all():  # bool() of a tensor: a host read
            pass
        x.sum().item()
        x.nonzero()
    assert len(mode.reads) == 3


@pytest.mark.parametrize("run", [_generate_keyframes, _interpolate], ids=["keyframes", "interpolation"])
def test_sampler_loops_run_with_cudnn_autotuning_and_restore_it(run, request, picture):
    # Every step has the same shapes, so cuDNN may time its algorithms once and keep the fastest.
    model = request.getfixturevalue("keyframe_model" if run is _generate_keyframes else "interpolation_model")
    seen = set()
    torch.backends.cudnn.benchmark = False
    run(model, picture, lambda step: seen.add(torch.backends.cudnn.benchmark))
    assert seen == {True}
    assert not torch.backends.cudnn.benchmark


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", ["keyframes", "interpolation"])
def test_sampler_loops_never_sync_on_cuda(kind, keyframe_checkpoint, interpolation_checkpoint, picture):
    def enter():
        torch.cuda.set_sync_debug_mode("error")

    def leave():
        torch.cuda.set_sync_debug_mode(0)

    try:
        if kind == "keyframes":
            model = KeyframeModel.from_pretrained(keyframe_checkpoint, device="cuda", dtype=torch.bfloat16)
            _generate_keyframes(model, picture, _loop_marker(4, enter, leave))
        else:
            model = InterpolationModel.from_pretrained(interpolation_checkpoint, device="cuda", dtype=torch.bfloat16)
            _interpolate(model, picture, _loop_marker(4, enter, leave))
    finally:
        torch.cuda.set_sync_debug_mode(0)
