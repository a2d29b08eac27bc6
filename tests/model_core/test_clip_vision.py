"""The CLIP image tower: published key layout, Paints-UNDO's any-aspect input handling, and parity with transformers."""

import dataclasses

import pytest
import torch
from transformers import CLIPVisionConfig as HFCLIPVisionConfig
from transformers import CLIPVisionModelWithProjection as HFCLIPVisionModelWithProjection

from model_core import configs
from model_core.clip import CLIP_MEAN, CLIP_STD, CLIPVisionConfig, CLIPVisionModelWithProjection, prepare_pixels

# The tiny preset's network keys: a native grid of 4x4 patches of 4 pixels.
TINY = dataclasses.asdict(CLIPVisionConfig.from_dict(configs.TINY_INTERPOLATION_IMAGE_ENCODER))


@pytest.fixture(scope="module")
def model() -> CLIPVisionModelWithProjection:
    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY)).eval()


def test_state_dict_has_the_published_keys_and_shapes(model):
    expected = {
        "vision_model.embeddings.class_embedding": (32,),
        "vision_model.embeddings.patch_embedding.weight": (32, 3, 4, 4),
        "vision_model.embeddings.position_embedding.weight": (17, 32),
        "vision_model.pre_layrnorm.weight": (32,),
        "vision_model.pre_layrnorm.bias": (32,),
        "vision_model.post_layernorm.weight": (32,),
        "vision_model.post_layernorm.bias": (32,),
        "visual_projection.weight": (16, 32),
    }
    for i in range(2):
        layer = f"vision_model.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            expected |= {f"{layer}.self_attn.{proj}.weight": (32, 32), f"{layer}.self_attn.{proj}.bias": (32,)}
        for norm in ("layer_norm1", "layer_norm2"):
            expected |= {f"{layer}.{norm}.weight": (32,), f"{layer}.{norm}.bias": (32,)}
        expected |= {
            f"{layer}.mlp.fc1.weight": (64, 32),
            f"{layer}.mlp.fc1.bias": (64,),
            f"{layer}.mlp.fc2.weight": (32, 64),
            f"{layer}.mlp.fc2.bias": (32,),
        }
    assert {key: tuple(value.shape) for key, value in model.state_dict().items()} == expected


@pytest.mark.parametrize(
    ("height", "width", "grid"),
    [
        (16, 16, (4, 4)),
        (40, 64, (4, 6)),  # 4 / 40 * 64 = 6.4
        (64, 40, (6, 4)),
        (48, 60, (4, 5)),  # 4 / 48 * 60 = 5.0
        (8, 9, (4, 4)),  # 4 / 8 * 9 = 4.5 rounds half to even, as Python's round in the reference
        (30, 100, (4, 13)),  # 13.33
    ],
)
def test_tokens_follow_the_aspect_ratio(model, height, width, grid):
    pixels = torch.rand(1, 3, height, width) * 2 - 1
    assert prepare_pixels(pixels, 4, 4).shape == (1, 3, 4 * grid[0], 4 * grid[1])
    assert model(pixels).shape == (1, 1 + grid[0] * grid[1], 32)


def test_pixels_are_mapped_from_the_vae_range_and_normalised():
    pixels = torch.full((1, 3, 20, 30), -1.0)
    pixels[:, 1] = 0.0
    pixels[:, 2] = 1.0
    prepared = prepare_pixels(pixels, 4, 4)
    expected = [(value - mean) / std for value, mean, std in zip((0.0, 0.5, 1.0), CLIP_MEAN, CLIP_STD, strict=True)]
    assert torch.allclose(prepared.mean(dim=(0, 2, 3)), torch.tensor(expected), atol=1e-5)
    assert torch.allclose(prepared.std(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)


def test_the_native_grid_uses_the_position_table_as_it_is(model):
    embeddings = model.vision_model.embeddings
    assert torch.equal(embeddings.positions(4, 4), embeddings.position_embedding.weight)


def test_a_wider_grid_repeats_table_columns_nearest(model):
    embeddings = model.vision_model.embeddings
    table = embeddings.position_embedding.weight
    positions = embeddings.positions(4, 8)
    assert positions.shape == (1 + 4 * 8, 32)
    assert torch.equal(positions[0], table[0])
    grid, widened = table[1:].reshape(4, 4, 32), positions[1:].reshape(4, 8, 32)
    assert torch.equal(widened, grid.repeat_interleave(2, dim=1))


def test_native_size_matches_transformers(model):
    """At the native size no resize happens, so the output equals stock CLIP's last hidden state."""
    reference = HFCLIPVisionModelWithProjection(HFCLIPVisionConfig(**TINY)).eval()
    reference.load_state_dict(model.state_dict(), strict=True)
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    normalised = (pixels * 0.5 + 0.5 - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
    with torch.no_grad():
        expected = reference(pixel_values=normalised).last_hidden_state
        assert torch.allclose(model(pixels), expected, atol=1e-5)


def test_batch_items_are_independent(model):
    pixels = torch.rand(2, 3, 40, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model(pixels)[:1], model(pixels[:1]), atol=1e-6)


def test_from_dict_ignores_keys_that_do_not_shape_the_network():
    saved = TINY | {
        "model_type": "clip_vision_model",
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "initializer_factor": 1.0,
        "torch_dtype": "float32",
        "transformers_version": "4.41.1",
    }
    assert CLIPVisionConfig.from_dict(saved) == CLIPVisionConfig(**TINY)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden_act": "tanh"}, "hidden_act='tanh'"),
        ({"num_attention_heads": 5}, "num_attention_heads=5"),
        ({"num_channels": 4}, "num_channels=4"),
        ({"patch_size": 32}, "patch_size=32"),
    ],
)
def test_invalid_configs_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        CLIPVisionConfig(**TINY | change)
