"""What the GPU path relies on, checked on the CPU: cuDNN autotuning while shapes are fixed."""

import torch

from model_core.devices import fixed_shapes


def test_fixed_shapes_turns_cudnn_autotuning_on_and_restores_it():
    before = torch.backends.cudnn.benchmark
    with fixed_shapes():
        assert torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.benchmark == before


def _seen_during_sampling(run) -> set[bool]:
    seen = set()
    torch.backends.cudnn.benchmark = False
    run(lambda step: seen.add(torch.backends.cudnn.benchmark))
    assert not torch.backends.cudnn.benchmark  # restored after the loop
    return seen


def test_both_sampler_loops_run_with_cudnn_autotuning(keyframe_model, interpolation_model, picture):
    keyframes = _seen_during_sampling(
        lambda callback: keyframe_model.generate(
            picture,
            prompt="1girl",
            negative_prompt="",
            undo_steps=[400],
            width=64,
            height=64,
            steps=2,
            cfg=3.0,
            seed=1,
            callback=callback,
        )  # fmt: skip
    )
    clips = _seen_during_sampling(
        lambda callback: interpolation_model.interpolate(
            picture, picture, prompt="1girl", steps=2, cfg=7.5, seed=1, buckets=[(32, 48)], callback=callback
        )
    )
    assert keyframes == clips == {True}
