"""The video UNet and its attention kernels, on tiny configs."""

import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from model_core import configs, unet3d
from model_core.attention import (
    AttentionBackend,
    TemporalWindow,
    check_backend,
    multi_head_attention,
    temporal_window,
    xformers_ops,
)
from model_core.unet3d import InterpolationUNet, InterpolationUNetConfig

FRAMES = 6


def build(**overrides) -> InterpolationUNet:
    torch.manual_seed(0)
    model = InterpolationUNet.from_config(configs.TINY_INTERPOLATION_UNET | overrides).eval()
    with torch.no_grad():  # random, non-zero everywhere, so every path shows in the output
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


def inputs(batch: int = 1, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(batch, 4, FRAMES, 4, 6, generator=g),
        timesteps=torch.full((batch,), 999.0),
        text=torch.randn(batch, 77, 32, generator=g),
        image=torch.randn(batch, FRAMES, 4, 32, generator=g),
        concat_cond=torch.randn(batch, 4, FRAMES, 4, 6, generator=g),
        fs=torch.full((batch,), 3),
    )


def test_multi_head_attention_is_softmax_attention_per_head():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, length, 3 * 8, generator=g) for length in (5, 7, 7))
    out = multi_head_attention(q, k, v, heads=3)
    split = [t.view(2, -1, 3, 8).transpose(1, 2) for t in (q, k, v)]
    weights = torch.softmax(split[0] @ split[1].transpose(-1, -2) / 8**0.5, dim=-1)
    assert torch.allclose(out, (weights @ split[2]).transpose(1, 2).reshape(2, 5, 24), atol=1e-6)


def test_temporal_windows_add_the_neighbouring_frames_tokens():
    x = torch.arange(2 * 4).float().view(2 * 4, 1, 1)  # 2 clips x 4 frames, one token each, value = frame id
    prv = temporal_window(x, 4, TemporalWindow.PREVIOUS).view(2, 4, 2)
    assert prv[0].tolist() == [[0, 0], [1, 0], [2, 1], [3, 2]]  # frame 0 sees itself twice
    assert temporal_window(x, 4, TemporalWindow.FIRST).view(2, 4, 2)[1].tolist() == [[4, 4], [5, 4], [6, 4], [7, 4]]
    roll = temporal_window(x, 4, TemporalWindow.ROLL).view(2, 4, 3)
    assert roll[0].tolist() == [[3, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 0]]  # cyclic


@pytest.mark.skipif(xformers_ops is not None, reason="xformers is installed")
def test_the_xformers_backend_without_xformers_is_a_clear_error():
    with pytest.raises(ValueError, match="pip install 'paints-undo\\[xformers\\]'"):
        check_backend(AttentionBackend.XFORMERS)
    with pytest.raises(ValueError, match="xformers"):
        build().configure_attention(AttentionBackend.XFORMERS)


@torch.no_grad()
def test_temporal_windows_are_off_by_default_and_change_the_output_when_on():
    model = build()
    plain = model(**inputs())
    model.configure_attention(temporal_window=TemporalWindow.PREVIOUS)
    windowed = model(**inputs())
    assert windowed.shape == plain.shape == (1, 4, FRAMES, 4, 6)
    assert not torch.allclose(windowed, plain)
    model.configure_attention()
    assert torch.equal(model(**inputs()), plain)


@torch.no_grad()
def test_frames_mix_only_through_the_temporal_layers():
    changed = inputs()
    changed["x"][:, :, 0] += 1.0  # perturb frame 0 only
    for temporal, expect_mixing in ((True, True), (False, False)):
        model = build(temporal_conv=temporal, temporal_attention=temporal, addition_attention=temporal)
        effect = (model(**changed) - model(**inputs())).abs().amax(dim=(0, 1, 3, 4))
        assert effect[0] > 0
        assert bool((effect[1:] > 1e-6).all()) == expect_mixing


@torch.no_grad()
def test_samples_of_a_batch_are_independent():
    model = build()
    both = model(**inputs(batch=2))
    first = model(**{name: value[:1] for name, value in inputs(batch=2).items()})
    assert torch.allclose(both[:1], first, atol=1e-5)


@torch.no_grad()
def test_the_frame_stride_condition_changes_the_prediction_and_defaults_to_the_config():
    model = build(default_fs=7)
    args = inputs()
    assert not torch.allclose(model(**args), model(**(args | {"fs": torch.tensor([10])})))
    assert torch.equal(model(**(args | {"fs": None})), model(**(args | {"fs": torch.tensor([7])})))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dims": 3}, "dims=3 is not supported"),
        ({"image_cross_attention": False}, "image_cross_attention=False"),
        ({"use_causal_attention": True}, "use_causal_attention=True"),
        ({"context_dim": None}, "context_dim is required"),
        ({"num_heads": 4}, "exactly one of num_heads"),
        ({"num_heads": 2, "num_head_channels": -1, "addition_attention": True}, "addition_attention=True needs"),
        ({"use_relative_position": True, "temporal_length": None}, "needs temporal_length"),
        ({"model_channels": 48}, "multiples of 32"),
        ({"num_head_channels": 24}, "multiples of num_head_channels=24"),
        ({"num_frames": 16}, r"unknown config keys \['num_frames'\]"),
    ],
)
def test_configs_the_reference_cannot_run_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        InterpolationUNet.from_config(configs.TINY_INTERPOLATION_UNET | overrides)


def test_config_metadata_keys_are_ignored():
    model = InterpolationUNet.from_config(configs.TINY_INTERPOLATION_UNET | {"_class_name": "UNet3DModel"})
    assert model.downsampling_factor == 2


def test_the_config_is_frozen_holds_every_published_key_and_is_checked_when_made():
    config = InterpolationUNetConfig.from_json(configs.INTERPOLATION_UNET)
    assert dataclasses.asdict(config) == configs.INTERPOLATION_UNET | {
        "attention_resolutions": (4, 2, 1),
        "channel_mult": (1, 2, 4, 4),
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model_channels = 64
    with pytest.raises(ValueError, match="num_head_channels=48"):
        dataclasses.replace(config, num_head_channels=48)
    tiny = InterpolationUNetConfig.from_json(configs.TINY_INTERPOLATION_UNET)
    assert InterpolationUNet(tiny).config is tiny


@torch.no_grad()
def test_feed_forwards_in_slices_give_the_same_prediction(monkeypatch):
    model, args = build(), inputs(batch=2)
    whole = model(**args)
    monkeypatch.setattr(unet3d, "FEED_FORWARD_CHUNK_ELEMENTS", 1000)  # a few dozen tokens per slice
    torch.testing.assert_close(model(**args), whole, rtol=0, atol=1e-5)


class LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sizes = [t.numel() for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        self.numel = max([self.numel, *sizes])
        return out


@torch.inference_mode()
def test_no_tensor_of_the_default_jobs_unet_call_passes_2_to_the_31_values():
    meta = torch.device("meta")
    with meta:
        model = InterpolationUNet.from_config(configs.INTERPOLATION_UNET).eval()
    batch = 14  # the default job's 7 clips, positive and negative, at 448x384 (56x48 latents)
    x = torch.empty(batch, 4, 16, 56, 48, device=meta)
    with LargestTensor() as largest:
        model(
            x,
            torch.zeros(batch, device=meta),
            torch.empty(batch, 77, 1024, device=meta),
            torch.empty(batch, 16, 16, 1024, device=meta),
            x,
            torch.zeros(batch, dtype=torch.long, device=meta),
        )
    # The widest is now a skip concatenation (224 frames x 960 channels x 2,688 pixels); the unsliced
    # feed-forward made 2.5e9 values.
    assert 0 < largest.numel < 2**30
