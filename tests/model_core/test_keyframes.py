import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from model_core.clip import clean_prompt
from model_core.errors import CheckpointError, InvalidInputError
from model_core.keyframes import KeyframeModel
from model_core.samplers import SamplerStep

ARGS = dict(prompt="1girl, masterpiece", negative_prompt="lowres, bad anatomy", width=64, height=128, steps=4, cfg=3.0)


def generate(model: KeyframeModel, picture: np.ndarray, **overrides) -> list[np.ndarray]:
    kwargs = ARGS | {"undo_steps": [400, 999], "seed": 12345} | overrides
    return model.generate(picture, **kwargs)


@pytest.mark.parametrize(
    ("component", "weights"),
    [
        ("unet", "diffusion_pytorch_model.safetensors"),
        ("vae", "diffusion_pytorch_model.safetensors"),
        ("text_encoder", "model.safetensors"),
    ],
)
def test_components_hold_exactly_the_tensors_of_their_files(keyframe_model, keyframe_checkpoint, component, weights):
    on_disk = load_file(keyframe_checkpoint / component / weights)
    loaded = getattr(keyframe_model, component).state_dict()
    assert isinstance(getattr(keyframe_model, component), torch.nn.Module)
    assert {k: tuple(v.shape) for k, v in loaded.items()} == {k: tuple(v.shape) for k, v in on_disk.items()}
    assert all(torch.equal(loaded[key], on_disk[key]) for key in on_disk)


def test_unet_takes_the_image_latent_and_the_operation_step(keyframe_model, keyframe_checkpoint):
    config = json.loads((keyframe_checkpoint / "unet" / "config.json").read_text())
    assert config["in_channels"] == 4  # as published: the config counts the noisy latent only
    assert keyframe_model.unet.conv_in.in_channels == 8
    assert keyframe_model.unet.add_embedding.linear_1.in_features == 256


def test_config_options_are_honoured(keyframe_model, keyframe_checkpoint):
    config = json.loads((keyframe_checkpoint / "unet" / "config.json").read_text())
    unet = keyframe_model.unet
    assert (
        unet.time_embedding.linear_2.out_features == config["time_embedding_dim"] != 4 * config["block_out_channels"][0]
    )
    assert unet.add_embedding.linear_2.out_features == config["time_embedding_dim"]
    assert unet.conv_norm_out.num_groups == config["norm_num_groups"]
    assert len(unet.down_blocks[0].resnets) == config["layers_per_block"]
    # diffusers' historical naming: for SD1.5-style configs "attention_head_dim" is the number of heads.
    assert unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.heads == config["attention_head_dim"]
    text_config = json.loads((keyframe_checkpoint / "text_encoder" / "config.json").read_text())
    assert len(keyframe_model.text_encoder.text_model.encoder.layers) == text_config["num_hidden_layers"]


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(checkpoint, tmp_path / "checkpoint"))


def _edit_weights(path: Path, edit) -> None:
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.pop("add_embedding.linear_1.weight"), "1 missing: add_embedding.linear_1.weight"),
        (lambda t: t.update({"extra.weight": torch.zeros(1)}), "1 unexpected: extra.weight"),
        (
            lambda t: t.update({"conv_in.weight": torch.zeros(32, 4, 3, 3)}),
            "conv_in.weight (model (32, 8, 3, 3), file (32, 4, 3, 3))",
        ),
    ],
    ids=["missing", "unexpected", "shape"],
)
def test_loading_refuses_weights_that_do_not_match(keyframe_checkpoint, tmp_path, edit, message):
    checkpoint = _copy(keyframe_checkpoint, tmp_path)
    _edit_weights(checkpoint / "unet" / "diffusion_pytorch_model.safetensors", edit)
    with pytest.raises(CheckpointError, match="does not match") as error:
        KeyframeModel.from_pretrained(checkpoint)
    assert message in str(error.value)


def test_loading_follows_the_config_so_a_different_config_no_longer_fits(keyframe_checkpoint, tmp_path):
    checkpoint = _copy(keyframe_checkpoint, tmp_path)
    config_path = checkpoint / "unet" / "config.json"
    config_path.write_text(json.dumps(json.loads(config_path.read_text()) | {"layers_per_block": 2}))
    with pytest.raises(CheckpointError, match="missing: down_blocks.0.attentions.1"):
        KeyframeModel.from_pretrained(checkpoint)


def test_loading_refuses_an_incomplete_checkpoint(keyframe_checkpoint, tmp_path):
    checkpoint = _copy(keyframe_checkpoint, tmp_path)
    (checkpoint / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model.safetensors is missing"):
        KeyframeModel.from_pretrained(checkpoint)
    shutil.rmtree(checkpoint / "vae")
    with pytest.raises(CheckpointError, match=r"missing subfolders \['vae'\]"):
        KeyframeModel.from_pretrained(checkpoint)


def test_the_tokenizer_pads_with_its_own_pad_token(keyframe_checkpoint, tmp_path):
    checkpoint = _copy(keyframe_checkpoint, tmp_path)
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = checkpoint / "tokenizer" / name
        path.write_text(json.dumps(json.loads(path.read_text()) | {"pad_token": "!"}))
    tokenizer = KeyframeModel.from_pretrained(checkpoint).tokenizer
    ids = tokenizer("smile", padding="max_length", max_length=77).input_ids
    assert ids[-1] == tokenizer.convert_tokens_to_ids("!") != tokenizer.eos_token_id


def test_generation_is_deterministic_for_a_seed(keyframe_model, picture):
    first, second = generate(keyframe_model, picture), generate(keyframe_model, picture)
    assert len(first) == 2
    assert all(a.shape == (128, 64, 3) and a.dtype == np.uint8 for a in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_seed_undo_step_and_prompt_each_change_the_output(keyframe_model, picture):
    base = generate(keyframe_model, picture)
    assert not np.array_equal(base[0], base[1])  # the undo step
    assert not np.array_equal(base[0], generate(keyframe_model, picture, seed=7)[0])
    assert not np.array_equal(base[0], generate(keyframe_model, picture, prompt="sketch")[0])


def test_keyframes_follow_the_given_order_and_do_not_depend_on_the_rest_of_the_batch(keyframe_model, picture):
    forward = generate(keyframe_model, picture, undo_steps=[400, 999])
    backward = generate(keyframe_model, picture, undo_steps=[999, 400])
    alone = generate(keyframe_model, picture, undo_steps=[999])
    # Batched matmuls may round differently by one uint8 level, no more.
    assert np.abs(forward[1].astype(int) - backward[0]).max() <= 1
    assert np.abs(forward[0].astype(int) - backward[1]).max() <= 1
    assert np.abs(alone[0].astype(int) - forward[1]).max() <= 1


def test_numpy_numbers_are_accepted_like_python_ones(keyframe_model, picture):
    as_numpy = generate(
        keyframe_model,
        picture,
        undo_steps=np.array([400, 999]),
        width=np.int64(64),
        height=np.int32(128),
        steps=np.int64(4),
        cfg=np.float32(3.0),
        seed=np.int64(12345),
    )
    assert all(np.array_equal(a, b) for a, b in zip(as_numpy, generate(keyframe_model, picture), strict=True))


def test_callback_reports_each_step_and_can_abort(keyframe_model, picture):
    steps: list[SamplerStep] = []
    generate(keyframe_model, picture, callback=steps.append)
    assert steps == [SamplerStep(index=i, total=4) for i in range(4)]

    class Stop(Exception):
        pass

    def stop_after_two(step: SamplerStep) -> None:
        if step.index == 1:
            raise Stop

    with pytest.raises(Stop):
        generate(keyframe_model, picture, callback=stop_after_two)


@pytest.mark.parametrize(
    ("image", "overrides", "message"),
    [
        (np.zeros((96, 80, 3), np.float32), {}, "dtype uint8"),
        (np.zeros((96, 80, 4), np.uint8), {}, r"shape \(H, W, 3\)"),
        (np.zeros((96, 80), np.uint8), {}, r"shape \(H, W, 3\)"),
        (None, {"width": 100}, "width must be a positive multiple of 64"),
        (None, {"height": 0}, "height must be a positive multiple of 64"),
        (None, {"undo_steps": [400, 1000]}, "integer in 0..999, got 1000"),
        (None, {"undo_steps": [-1]}, "integer in 0..999, got -1"),
        (None, {"undo_steps": [400.0]}, "integer in 0..999"),
        (None, {"undo_steps": []}, "non-empty list"),
        (None, {"steps": 0}, "steps must be a positive integer"),
        (None, {"cfg": float("nan")}, "cfg must be a finite non-negative number"),
        (None, {"seed": 1.5}, "seed must be an integer"),
        (None, {"seed": -1}, "seed must be an integer in 0.."),
        (None, {"prompt": None}, "prompt must be a string"),
    ],
)
def test_bad_input_is_refused_clearly(keyframe_model, picture, image, overrides, message):
    with pytest.raises(InvalidInputError, match=message):
        generate(keyframe_model, picture if image is None else image, **overrides)


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("1girl, long hair", "1girl, long hair"),
        ("中文 text", " 中  文  text"),  # one word per CJK ideograph
        ("ひらがな", "ひらがな"),  # kana are not split
        ("bell\x07nul\x00 \ufffdzero\u200bwidth", "bellnul zerowidth"),  # control and format characters dropped
        ("tab\tnew\nline\u3000wide", "tab new line wide"),  # every whitespace character becomes a space
    ],
)
def test_prompts_are_cleaned_like_the_reference_tokenizer(text, cleaned):
    assert clean_prompt(text) == cleaned
