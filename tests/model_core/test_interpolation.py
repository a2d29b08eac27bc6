"""InterpolationModel through from_pretrained on tiny random-weight checkpoints in the published layout."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from model_core.configs import TINY_BUCKETS
from model_core.errors import CheckpointError, InvalidInputError
from model_core.images import resize_and_center_crop
from model_core.interpolation import SUBFOLDERS, InterpolationModel
from model_core.samplers import SamplerStep
from model_core.tiny import write_interpolation_checkpoint

ARGS = dict(prompt="1girl, masterpiece", steps=3, cfg=7.5, buckets=TINY_BUCKETS)
COMPONENTS = ("text_encoder", "image_encoder", "vae", "image_projection", "unet")


@pytest.fixture(scope="module")
def last(picture) -> np.ndarray:
    """A second keyframe of the same size: the picture, inverted and shifted."""
    return np.roll(255 - picture, 7, axis=1)


def interpolate(model, first, last, **overrides):
    return model.interpolate(first, last, **(ARGS | {"seed": 123} | overrides))


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_holds_exactly_the_tensors_of_its_file(interpolation_model, interpolation_checkpoint, component):
    module = getattr(interpolation_model, component)
    assert isinstance(module, torch.nn.Module)
    saved = load_file(interpolation_checkpoint / component / "model.safetensors")
    ours = module.state_dict()
    assert {key: tuple(value.shape) for key, value in ours.items()} == {k: tuple(v.shape) for k, v in saved.items()}
    assert all(torch.equal(ours[key], saved[key]) for key in saved)


def test_a_clip_has_16_frames_at_the_bucket_of_the_first_picture(interpolation_model, picture, last):
    clip = interpolate(interpolation_model, picture, last)
    # 96x80 (H x W) is closest in aspect to the 40x40 bucket of the tiny preset.
    assert clip.shape == (16, 40, 40, 3) and clip.dtype == np.uint8
    assert clip.std() > 1  # random weights give noise, but not a constant (e.g. NaN-black) clip
    # The bucket follows the first picture only: 50x80 is closest to 32x48; the last is cropped to it.
    wide_clip = interpolate(interpolation_model, picture[:50], last[:50])
    assert wide_clip.shape[1:3] == (32, 48)


def test_a_last_picture_of_another_size_is_cropped_to_the_first_pictures_bucket(interpolation_model, picture, last):
    # As the reference does: supplied keyframes need not match the picture's size.
    other = np.ascontiguousarray(last[10:70, ::2])  # 60x40, closest to another bucket (48x32)
    clip = interpolate(interpolation_model, picture, other)
    assert clip.shape == (16, 40, 40, 3)  # the first picture's bucket
    cropped = resize_and_center_crop(other, 40, 40)
    assert np.array_equal(interpolate(interpolation_model, picture, cropped), clip)


def test_clips_are_deterministic_per_seed_and_leave_the_global_rng_alone(interpolation_model, picture, last):
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    first = interpolate(interpolation_model, picture, last)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert np.array_equal(first, interpolate(interpolation_model, picture, last))
    assert not np.array_equal(first, interpolate(interpolation_model, picture, last, seed=124))


def test_interpolate_many_gives_each_clip_its_clip_by_clip_frames(interpolation_model, picture, last):
    pairs = [(picture, last), (last, picture), (picture, picture)]
    together = interpolation_model.interpolate_many(pairs, **ARGS, seed=40)
    in_twos = interpolation_model.interpolate_many(pairs, **ARGS, seed=40, max_batch=2)
    for i, (first, end) in enumerate(pairs):
        alone = interpolate(interpolation_model, first, end, seed=40 + i)
        for batched in (together[i], in_twos[i]):
            # Same noise, same conditions; only the batch size of the kernels differs (float noise).
            difference = np.abs(batched.astype(int) - alone)
            assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
    assert not np.array_equal(together[0], together[2])


def test_interpolate_many_runs_each_bucket_in_its_own_batch(interpolation_model, picture, last):
    wide, wide_last = picture[:50], last[:50]
    clips = interpolation_model.interpolate_many([(picture, last), (wide, wide_last)], **ARGS, seed=1)
    assert [clip.shape[1:3] for clip in clips] == [(40, 40), (32, 48)]
    difference = np.abs(clips[1].astype(int) - interpolate(interpolation_model, wide, wide_last, seed=2))
    assert difference.max() <= 1


def test_progress_counts_the_steps_of_all_batches_and_a_raising_callback_aborts(interpolation_model, picture, last):
    reported = []
    pairs = [(picture, last)] * 3
    interpolation_model.interpolate_many(pairs, **ARGS, seed=0, max_batch=2, callback=reported.append)
    assert reported == [SamplerStep(index=i, total=6) for i in range(6)]

    class Stop(Exception):
        pass

    def stop_at_second(step):
        if step.index == 1:
            raise Stop

    with pytest.raises(Stop):
        interpolate(interpolation_model, picture, last, callback=stop_at_second)


def test_each_clip_is_handed_over_as_soon_as_it_is_decoded(interpolation_model, picture, last):
    steps_then_clips = []
    pairs = [(picture, last), (last, picture), (picture, picture)]
    clips = interpolation_model.interpolate_many(
        pairs,
        **ARGS,
        seed=3,
        max_batch=2,
        callback=lambda step: steps_then_clips.append(("step", step.index)),
        clip_callback=lambda index, frames: steps_then_clips.append(("clip", index, frames)),
    )
    order = [entry[:2] for entry in steps_then_clips]
    # The first batch's two clips arrive before the second batch samples.
    first_batch = [("step", 0), ("step", 1), ("step", 2), ("clip", 0), ("clip", 1)]
    assert order == first_batch + [("step", 3), ("step", 4), ("step", 5), ("clip", 2)]
    handed = {entry[1]: entry[2] for entry in steps_then_clips if entry[0] == "clip"}
    assert all(np.array_equal(handed[i], clips[i]) for i in range(3))

    def refuse(index, frames):
        raise RuntimeError("receiver failed")

    with pytest.raises(RuntimeError, match="receiver failed"):
        interpolation_model.interpolate_many(pairs, **ARGS, seed=3, clip_callback=refuse)


def test_bfloat16_runs_close_to_float32(interpolation_checkpoint, interpolation_model, picture, last):
    model = InterpolationModel.from_pretrained(interpolation_checkpoint, dtype=torch.bfloat16)
    assert model.unet.out[2].weight.dtype == torch.bfloat16
    clip = interpolate(model, picture, last)
    reference = interpolate(interpolation_model, picture, last)
    assert clip.shape == reference.shape
    assert np.abs(clip.astype(float) - reference).mean() < 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"first": np.zeros((96, 80, 3), np.float32)}, "dtype uint8"),
        ({"last": np.zeros((96, 80, 4), np.uint8)}, r"shape \(H, W, 3\)"),
        ({"fs": 0}, "fs must be an integer in 1..1000"),
        ({"fs": 1001}, "fs must be an integer in 1..1000"),
        ({"fs": 3.0}, "fs must be an integer"),
        ({"steps": 0}, "steps must be an integer in 1..1000"),
        ({"cfg": float("inf")}, "cfg must be a finite non-negative number"),
        ({"seed": -5}, "seed must be an integer in 0.."),
        ({"prompt": None}, "prompt must be a string"),
        ({"buckets": [(36, 48)]}, "positive multiples of 8"),
        ({"buckets": []}, "buckets must be a non-empty list"),
        ({"cache_interval": 0}, "cache_interval must be an integer in 1..10"),
    ],
)
def test_bad_input_is_refused_clearly(interpolation_model, picture, last, args, message):
    call = {"first": picture, "last": last} | args
    with pytest.raises(InvalidInputError, match=message):
        interpolate(interpolation_model, call.pop("first"), call.pop("last"), **call)


def test_step_caching_runs_the_full_unet_every_nth_step_and_stays_close_to_exact(interpolation_model, picture, last):
    calls = []
    hook = interpolation_model.unet.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs["reuse"]), with_kwargs=True
    )
    try:
        cached = interpolate(interpolation_model, picture, last, steps=5, cache_interval=2)
        every_step = interpolate(interpolation_model, picture, last, steps=5, cache_interval=1)
    finally:
        hook.remove()
    assert calls == [False, True, False, True, False] + [False] * 5
    assert np.array_equal(cached, interpolate(interpolation_model, picture, last, steps=5, cache_interval=2))
    assert not np.array_equal(cached, every_step)
    # Approximate, not a different clip: much closer to the exact clip than another seed is.
    error = np.abs(cached.astype(int) - every_step).mean()
    other_seed = np.abs(interpolate(interpolation_model, picture, last, steps=5, seed=999).astype(int) - every_step)
    assert error < 0.5 * other_seed.mean()


def test_bad_batch_arguments_are_refused(interpolation_model, picture, last):
    with pytest.raises(InvalidInputError, match="non-empty list"):
        interpolation_model.interpolate_many([], **ARGS, seed=0)
    with pytest.raises(InvalidInputError, match="max_batch must be an integer"):
        interpolation_model.interpolate_many([(picture, last)], **ARGS, seed=0, max_batch=0)
    with pytest.raises(InvalidInputError, match=r"pairs\[1\]"):
        interpolation_model.interpolate_many([(picture, last), (picture,)], **ARGS, seed=0)


def _copy(source, destination):
    for name in SUBFOLDERS:
        (destination / name).mkdir(parents=True)
        for file in (source / name).iterdir():
            (destination / name / file.name).write_bytes(file.read_bytes())
    return destination


def test_a_weight_file_that_does_not_match_its_config_is_refused_by_key(interpolation_checkpoint, tmp_path):
    folder = _copy(interpolation_checkpoint, tmp_path / "edited")
    path = folder / "unet" / "model.safetensors"
    weights = load_file(path)
    weights.pop("out.2.bias")
    weights["input_blocks.0.0.weight"] = weights["input_blocks.0.0.weight"][:, :4].contiguous()
    weights["extra.weight"] = torch.zeros(1)
    save_file(weights, path)
    with pytest.raises(CheckpointError) as error:
        InterpolationModel.from_pretrained(folder)
    message = str(error.value)
    assert "out.2.bias" in message and "extra.weight" in message and "input_blocks.0.0.weight" in message


def test_a_config_key_we_do_not_know_or_a_missing_folder_is_refused(interpolation_checkpoint, tmp_path):
    folder = _copy(interpolation_checkpoint, tmp_path / "unknown")
    config = json.loads((folder / "vae" / "config.json").read_text())
    (folder / "vae" / "config.json").write_text(json.dumps(config | {"decoder_heads": 4}))
    with pytest.raises(CheckpointError, match="decoder_heads"):
        InterpolationModel.from_pretrained(folder)
    (folder / "image_projection" / "config.json").unlink()
    for file in (folder / "image_projection").iterdir():
        file.unlink()
    (folder / "image_projection").rmdir()
    with pytest.raises(CheckpointError, match="image_projection"):
        InterpolationModel.from_pretrained(folder)


@pytest.mark.parametrize(
    "overrides",
    [
        {"unet": {"use_linear": False, "use_relative_position": True, "image_cross_attention_scale_learnable": True}},
        {"unet": {"num_heads": 2, "num_head_channels": -1, "addition_attention": False, "resblock_updown": True}},
        {"unet": {"use_scale_shift_norm": True, "tempspatial_aware": True, "conv_resample": False}},
        {"unet": {"temporal_conv": False, "temporal_attention": False, "fs_condition": False, "transformer_depth": 2}},
        {"vae": {"num_res_blocks": 2, "attn_resolutions": [64], "merge_strategy": "fixed", "alpha": 0.25}},
        {"vae": {"refinement_attention_levels": [0], "video_kernel_size": [3, 3, 3], "scale_factor": 0.5}},
        {"image_projection": {"depth": 2, "num_queries": 2, "heads": 4}, "image_encoder": {"hidden_act": "quick_gelu"}},
        {"text_encoder": {"num_hidden_layers": 3, "hidden_act": "gelu_new"}, "pad_token": "<|endoftext|>"},
    ],
    ids=["unet-conv-relpos-alpha", "unet-heads-updown", "unet-scaleshift-tempspatial", "unet-plain", "vae-attn-fixed",
         "vae-refinement", "resampler-vision", "text"],
)  # fmt: skip
def test_config_variants_load_strictly_and_change_the_clip(tmp_path, interpolation_model, picture, last, overrides):
    folder = write_interpolation_checkpoint(tmp_path / "variant", seed=0, **overrides)
    model = InterpolationModel.from_pretrained(folder)
    clip = interpolate(model, picture, last, steps=2)
    assert clip.shape == (16, 40, 40, 3)
    assert not np.array_equal(clip, interpolate(interpolation_model, picture, last, steps=2))


def test_the_tokenizer_pads_with_its_own_pad_token(interpolation_model, tmp_path):
    # SD2.1's tokenizer pads with "!", not the end-of-text token; the tiny preset does the same.
    ids = interpolation_model.tokenizer("1girl", padding="max_length", max_length=77).input_ids
    assert ids[-1] == interpolation_model.tokenizer.convert_tokens_to_ids("!")
