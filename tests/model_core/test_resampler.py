"""The two-frame resampler: upstream's key layout, shapes, which inputs reach which outputs, and its config."""

import pytest
import torch
import torch.nn.functional as F

from model_core.errors import InvalidInputError
from model_core.resampler import PerceiverAttention, Resampler

TINY = {
    "dim": 64,
    "depth": 2,
    "dim_head": 16,
    "heads": 3,
    "num_queries": 4,
    "embedding_dim": 32,
    "output_dim": 48,
    "ff_mult": 2,
    "video_length": 5,
    "input_frames_length": 2,
}


@pytest.fixture(scope="module")
def resampler() -> Resampler:
    torch.manual_seed(0)
    model = Resampler(**TINY).eval()
    # input_pos starts at zero; make it count, as trained weights do.
    with torch.no_grad():
        model.input_pos.normal_()
    return model


def test_state_dict_has_upstreams_keys_and_shapes(resampler):
    expected = {
        "latents": (1, 4 * 5, 64),
        "input_pos": (1, 2, 1, 32),
        "proj_in.weight": (64, 32),
        "proj_in.bias": (64,),
        "proj_out.weight": (48, 64),
        "proj_out.bias": (48,),
        "norm_out.weight": (48,),
        "norm_out.bias": (48,),
    }
    for i in range(2):
        expected |= {
            f"layers.{i}.0.norm1.weight": (64,),
            f"layers.{i}.0.norm1.bias": (64,),
            f"layers.{i}.0.norm2.weight": (64,),
            f"layers.{i}.0.norm2.bias": (64,),
            f"layers.{i}.0.to_q.weight": (48, 64),
            f"layers.{i}.0.to_kv.weight": (96, 64),
            f"layers.{i}.0.to_out.weight": (64, 48),
            f"layers.{i}.1.0.weight": (64,),
            f"layers.{i}.1.0.bias": (64,),
            f"layers.{i}.1.1.weight": (128, 64),
            f"layers.{i}.1.3.weight": (64, 128),
        }
    assert {key: tuple(value.shape) for key, value in resampler.state_dict().items()} == expected


@pytest.mark.parametrize("tokens", [17, 25])
def test_output_has_num_queries_tokens_per_video_frame(resampler, tokens):
    with torch.no_grad():
        assert resampler(torch.randn(3, 2, tokens, 32)).shape == (3, 5, 4, 48)


@pytest.mark.parametrize("frame", [0, 1])
def test_every_output_frame_depends_on_each_input_frame(resampler, frame):
    x = torch.randn(1, 2, 9, 32)
    changed = x.clone()
    changed[:, frame] += torch.randn(9, 32)
    with torch.no_grad():
        difference = (resampler(x) - resampler(changed)).abs().amax(dim=(0, 2, 3))
    assert (difference > 1e-4).all(), difference


def test_the_input_frames_are_told_apart(resampler):
    """input_pos tags each frame, so swapping the two frames changes the output."""
    x = torch.randn(1, 2, 9, 32)
    with torch.no_grad():
        assert not torch.allclose(resampler(x), resampler(x.flip(1)), atol=1e-4)


def test_batch_items_are_independent(resampler):
    x = torch.randn(2, 2, 9, 32)
    with torch.no_grad():
        assert torch.allclose(resampler(x)[:1], resampler(x[:1]), atol=1e-6)


def test_attention_is_standard_scaled_dot_product_attention():
    """Splitting the 1/sqrt(dim_head) scale between q and k changes nothing but rounding."""
    torch.manual_seed(0)
    attention = PerceiverAttention(dim=64, dim_head=16, heads=3)
    x, latents = torch.randn(2, 7, 64), torch.randn(2, 5, 64)
    x_norm, latents_norm = attention.norm1(x), attention.norm2(latents)
    kv = attention.to_kv(torch.cat([x_norm, latents_norm], dim=1))
    q, k, v = (t.unflatten(-1, (3, 16)).transpose(1, 2) for t in (attention.to_q(latents_norm), *kv.chunk(2, -1)))
    expected = attention.to_out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))
    with torch.no_grad():
        assert torch.allclose(attention(x, latents), expected, atol=1e-5)


def test_input_of_another_frame_count_or_width_is_refused(resampler):
    with pytest.raises(InvalidInputError, match=r"\(B, 2, tokens, 32\)"):
        resampler(torch.randn(1, 1, 9, 32))  # would otherwise broadcast against input_pos
    with pytest.raises(InvalidInputError, match=r"\(B, 2, tokens, 32\)"):
        resampler(torch.randn(1, 2, 9, 16))


def test_from_config_ignores_bookkeeping_keys_and_refuses_unknown_ones():
    model = Resampler.from_config(TINY | {"_name_or_path": "x"})
    assert model.latents.shape == (1, 20, 64)
    with pytest.raises(ValueError, match="unknown config keys \\['num_frames'\\]"):
        Resampler.from_config(TINY | {"num_frames": 16})


@pytest.mark.parametrize(("name", "value"), [("heads", 0), ("dim", 1.5), ("depth", True), ("video_length", -1)])
def test_invalid_arguments_are_refused_by_name(name, value):
    with pytest.raises(ValueError, match=f"Resampler {name} must be a positive integer"):
        Resampler(**TINY | {name: value})
