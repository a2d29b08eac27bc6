"""Tiny checkpoints with other config values: the model built from config.json follows each of them."""

import json
import shutil

import numpy as np
import pytest
from torch import nn

from model_core.errors import CheckpointError
from model_core.keyframes import KeyframeModel
from model_core.tiny import write_keyframe_checkpoint


def first_transformer(model: KeyframeModel):
    return model.unet.down_blocks[0].attentions[0]


VARIANTS = {
    "linear projection": (
        {"unet": {"use_linear_projection": True}},
        lambda m: isinstance(first_transformer(m).proj_in, nn.Linear),
    ),
    "heads per level": (
        {"unet": {"attention_head_dim": [2, 4, 8]}},
        lambda m: m.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.heads == 4,
    ),
    "two transformer layers": (
        {"unet": {"transformer_layers_per_block": 2}},
        lambda m: len(first_transformer(m).transformer_blocks) == 2,
    ),
    "two resnets per block": (
        {"unet": {"layers_per_block": 2, "norm_eps": 1e-6}},
        lambda m: len(m.unet.down_blocks[0].resnets) == 2 and m.unet.conv_norm_out.eps == 1e-6,
    ),
    "scale-shift time conditioning": (
        {"unet": {"resnet_time_scale_shift": "scale_shift"}},
        lambda m: m.unet.down_blocks[0].resnets[0].time_emb_proj.out_features == 2 * 32,
    ),
    "wider conv_in kernel": (
        {"unet": {"conv_in_kernel": 5}},
        lambda m: m.unet.conv_in.kernel_size == (5, 5) and m.unet.conv_in.in_channels == 8,
    ),
    "activated time embedding": (
        {"unet": {"time_embedding_act_fn": "silu"}},
        lambda m: m.unet.time_embed_act is not None,
    ),
    "gelu text encoder": (
        {"text_encoder": {"hidden_act": "gelu", "num_hidden_layers": 3}},
        lambda m: len(m.text_encoder.text_model.encoder.layers) == 3,
    ),
    "vae with more groups": (
        {"vae": {"norm_num_groups": 8, "scaling_factor": 0.5}},
        lambda m: m.vae.encoder.conv_norm_out.num_groups == 8 and m.vae.config.scaling_factor == 0.5,
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_loads_strictly_and_generates(variant, tmp_path, picture):
    overrides, follows_config = VARIANTS[variant]
    model = KeyframeModel.from_pretrained(write_keyframe_checkpoint(tmp_path / "ckpt", seed=1, **overrides))
    assert follows_config(model)
    args = dict(prompt="smile", negative_prompt="", undo_steps=[0, 999], width=64, height=64, steps=2, cfg=2.0, seed=5)
    first, second = model.generate(picture, **args), model.generate(picture, **args)
    assert all(np.array_equal(a, b) and a.shape == (64, 64, 3) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize(
    ("component", "config", "message"),
    [
        ("unet", {"class_embed_type": "timestep"}, "class_embed_type='timestep'; only None is supported"),
        ("text_encoder", {"hidden_act": "tanhshrink"}, "hidden_act='tanhshrink' is not supported"),
        ("unet", {"block_out_channels": [32, 48]}, "cannot be built"),
    ],
)
def test_configs_we_cannot_run_are_refused(keyframe_checkpoint, tmp_path, component, config, message):
    checkpoint = shutil.copytree(keyframe_checkpoint, tmp_path / "ckpt")
    path = checkpoint / component / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | config))
    with pytest.raises(CheckpointError, match=message):
        KeyframeModel.from_pretrained(checkpoint)
