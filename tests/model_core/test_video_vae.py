"""The video VAE: tensor layout, the reference combiners, and the decode quirks of ToonCrafter's VAE."""

import math

import pytest
import torch
from einops import rearrange

from model_core.video_vae import AttentionCombiner, ConvCombiner, VideoAutoencoder, VideoResBlock

# Two levels (latents 2x smaller); level 1 combines the reference by attention, level 0 and the output by conv.
TINY = {
    "ch": 32,
    "ch_mult": (1, 2),
    "num_res_blocks": 1,
    "resolution": 32,
    "refinement_attention_levels": (1,),
    "refinement_heads": 2,
    "refinement_head_dim": 8,
}
CLIPS, FRAMES, HEIGHT, WIDTH = 2, 4, 16, 12


def tiny_vae(seed: int = 0, **overrides) -> VideoAutoencoder:
    torch.manual_seed(seed)
    return VideoAutoencoder(**(TINY | overrides)).eval()


def encode_clips(vae: VideoAutoencoder, seed: int = 1) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Encode CLIPS random clips of FRAMES frames as the pipeline does: (latents (B, z, T, h, w), reference)."""
    torch.manual_seed(seed)
    pixels = torch.rand(CLIPS * FRAMES, 3, HEIGHT, WIDTH) * 2 - 1
    with torch.no_grad():
        encoded = vae.encode(pixels)
    latents = rearrange(encoded.latents, "(b t) c h w -> b c t h w", b=CLIPS)
    reference = [rearrange(f, "(b t) c h w -> b c t h w", b=CLIPS)[:, :, [0, -1]] for f in encoded.features]
    return latents, reference


def conv(name: str) -> set[str]:
    return {f"{name}.weight", f"{name}.bias"}


def resnet_keys(prefix: str, in_channels: int, out_channels: int) -> set[str]:
    names = ["norm1", "conv1", "norm2", "conv2"] + (["nin_shortcut"] if in_channels != out_channels else [])
    return {f"{prefix}.{name}.{kind}" for name in names for kind in ("weight", "bias")}


def video_resnet_keys(prefix: str, in_channels: int, out_channels: int) -> set[str]:
    parts = ("in_layers.0", "in_layers.2", "out_layers.0", "out_layers.3")
    time_stack = set().union(*(conv(f"{prefix}.time_stack.{part}") for part in parts))
    return resnet_keys(prefix, in_channels, out_channels) | time_stack | {f"{prefix}.mix_factor"}


def attention_keys(prefix: str) -> set[str]:
    return {f"{prefix}.{name}.{kind}" for name in ("norm", "q", "k", "v", "proj_out") for kind in ("weight", "bias")}


def expected_tiny_keys() -> set[str]:
    """The reference's tensor names for TINY, written out from its layout (paints-undo-reference.md section 4.2)."""
    keys = conv("quant_conv") | conv("post_quant_conv")
    keys |= conv("encoder.conv_in") | conv("encoder.norm_out") | conv("encoder.conv_out")
    keys |= resnet_keys("encoder.down.0.block.0", 32, 32) | conv("encoder.down.0.downsample.conv")
    keys |= resnet_keys("encoder.down.1.block.0", 32, 64)
    keys |= resnet_keys("encoder.mid.block_1", 64, 64) | attention_keys("encoder.mid.attn_1")
    keys |= resnet_keys("encoder.mid.block_2", 64, 64)
    keys |= conv("decoder.conv_in") | conv("decoder.norm_out")
    keys |= conv("decoder.conv_out") | conv("decoder.conv_out.time_mix_conv")
    keys |= video_resnet_keys("decoder.mid.block_1", 64, 64) | attention_keys("decoder.mid.attn_1")
    keys |= video_resnet_keys("decoder.mid.block_2", 64, 64)
    keys |= video_resnet_keys("decoder.up.1.block.0", 64, 64) | video_resnet_keys("decoder.up.1.block.1", 64, 64)
    keys |= conv("decoder.up.1.upsample.conv")
    keys |= video_resnet_keys("decoder.up.0.block.0", 64, 32) | video_resnet_keys("decoder.up.0.block.1", 32, 32)
    keys |= conv("decoder.attn_refinement.0.conv") | conv("decoder.attn_refinement.2.conv")
    keys |= {f"decoder.attn_refinement.1.{name}.weight" for name in ("to_q", "to_k", "to_v", "to_out.0", "norm")}
    keys |= {"decoder.attn_refinement.1.to_out.0.bias", "decoder.attn_refinement.1.norm.bias"}
    return keys


def test_tiny_state_dict_has_the_reference_tensor_names_and_shapes():
    state_dict = tiny_vae().state_dict()
    assert set(state_dict) == expected_tiny_keys()
    shapes = {
        "decoder.up.1.block.0.time_stack.in_layers.2.weight": (64, 64, 3, 1, 1),
        "decoder.up.0.block.0.mix_factor": (1,),
        "decoder.up.0.block.0.nin_shortcut.weight": (32, 64, 1, 1),
        "decoder.attn_refinement.1.to_q.weight": (16, 64),
        "decoder.attn_refinement.1.to_out.0.weight": (64, 16),
        "decoder.attn_refinement.2.conv.weight": (32, 32, 1, 1),
        "decoder.conv_out.weight": (3, 32, 3, 3),
        "decoder.conv_out.time_mix_conv.weight": (3, 3, 3, 1, 1),
        "encoder.down.0.downsample.conv.weight": (32, 32, 3, 3),
        "encoder.conv_out.weight": (8, 64, 3, 3),
        "quant_conv.weight": (8, 8, 1, 1),
        "post_quant_conv.weight": (4, 4, 1, 1),
    }
    assert {key: tuple(state_dict[key].shape) for key in shapes} == shapes


def test_full_size_default_matches_the_published_checkpoint_size():
    with torch.device("meta"):
        state_dict = VideoAutoencoder().state_dict()
    # 396 tensors and 99,941,907 numbers: the reference's VideoAutoencoderKL with ch_mult [1, 2, 4, 4].
    assert len(state_dict) == 396
    assert sum(tensor.numel() for tensor in state_dict.values()) == 99_941_907
    assert state_dict["decoder.attn_refinement.2.to_q.weight"].shape == (512, 512)
    assert state_dict["decoder.attn_refinement.3.to_k.weight"].shape == (512, 512)
    assert state_dict["decoder.attn_refinement.4.conv.weight"].shape == (128, 128, 1, 1)
    assert state_dict["decoder.up.3.block.0.time_stack.out_layers.3.weight"].shape == (512, 512, 3, 1, 1)
    assert state_dict["decoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)


def test_encode_and_decode_shapes():
    vae = tiny_vae()
    pixels = torch.rand(3, 3, HEIGHT, WIDTH) * 2 - 1
    with torch.no_grad():
        encoded = vae.encode(pixels)
    assert encoded.latents.shape == (3, 4, HEIGHT // 2, WIDTH // 2)
    # Level 0 and 1 outputs before downsampling, then the conv_in output.
    assert [tuple(f.shape) for f in encoded.features] == [(3, 32, 16, 12), (3, 64, 8, 6), (3, 32, 16, 12)]

    latents, reference = encode_clips(vae)
    with torch.no_grad():
        video = vae.decode(latents, reference)
    assert video.shape == (CLIPS, 3, FRAMES, HEIGHT, WIDTH)
    assert torch.isfinite(video).all()


def test_latents_are_the_scaled_posterior_mean():
    vae = tiny_vae()
    pixels = torch.rand(2, 3, HEIGHT, WIDTH) * 2 - 1
    with torch.no_grad():
        moments = vae.quant_conv(vae.encoder(pixels)[0])
        latents = vae.encode(pixels).latents
    torch.testing.assert_close(latents, moments[:, :4] * 0.18215)


def naive_attention_combiner(module: AttentionCombiner, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v written out frame by frame, each frame with its own copy of the keys."""
    clips, channels, _, height, width = reference.shape
    frames, heads = x.shape[0] // clips, module.heads
    normed, out = module.norm(x), torch.empty_like(x)
    for b in range(clips):
        context = reference[b].permute(1, 2, 3, 0).reshape(2 * height * width, channels)
        for t in range(frames):
            frame = b * frames + t
            q = module.to_q(normed[frame].reshape(channels, -1).T)
            k, v = module.to_k(context), module.to_v(context)
            q, k, v = (m.reshape(m.shape[0], heads, -1).transpose(0, 1) for m in (q, k, v))
            weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
            attended = (weights @ v).transpose(0, 1).reshape(height * width, -1)
            out[frame] = x[frame] + module.to_out(attended).T.reshape(channels, height, width)
    return out


def test_attention_combiner_equals_explicit_attention_with_per_frame_keys():
    torch.manual_seed(0)
    combiner = AttentionCombiner(32, heads=2, head_dim=8)
    x = torch.randn(CLIPS * 3, 32, 5, 4)
    reference = torch.randn(CLIPS, 32, 2, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(combiner(x, reference), naive_attention_combiner(combiner, x, reference),
                                   rtol=0, atol=1e-5)  # fmt: skip


def test_conv_combiner_adds_the_reference_to_the_first_and_last_frame_only():
    torch.manual_seed(0)
    combiner = ConvCombiner(32)
    x = torch.randn(CLIPS * 4, 32, 3, 2)
    reference = torch.randn(CLIPS, 32, 2, 3, 2)
    original = x.clone()
    with torch.no_grad():
        out = rearrange(combiner(x, reference), "(b t) c h w -> b c t h w", b=CLIPS)
        added = rearrange(combiner.conv(rearrange(reference, "b c l h w -> (b l) c h w")), "(b l) c h w -> b c l h w",
                          b=CLIPS)  # fmt: skip
    frames = rearrange(original, "(b t) c h w -> b c t h w", b=CLIPS)
    torch.testing.assert_close(out[:, :, 0], frames[:, :, 0] + added[:, :, 0])
    torch.testing.assert_close(out[:, :, -1], frames[:, :, -1] + added[:, :, 1])
    assert torch.equal(out[:, :, 1:-1], frames[:, :, 1:-1])
    assert torch.equal(x, original), "the input must not be modified in place"


def changed_frames(vae: VideoAutoencoder, level: int, reference_frame: int) -> list[bool]:
    """Which decoded frames (of clip 0) change when reference[level] of one reference frame changes."""
    latents, reference = encode_clips(vae)
    changed = [r.clone() for r in reference]
    changed[level][:, :, reference_frame] += 1.0
    with torch.no_grad():
        before, after = vae.decode(latents, reference), vae.decode(latents, changed)
    return [not torch.equal(before[0, :, t], after[0, :, t]) for t in range(FRAMES)]


# Without temporal mixing (time stacks weighted 0, 1-frame time kernels), frames only interact through the reference.
PER_FRAME = {"merge_strategy": "fixed", "alpha": 0.0, "video_kernel_size": (1, 1, 1)}


@pytest.mark.parametrize("level", [0, 2])
def test_a_conv_combined_reference_reaches_only_its_own_end_frame(level):
    vae = tiny_vae(**PER_FRAME)
    assert changed_frames(vae, level, reference_frame=0) == [True, False, False, False]
    assert changed_frames(vae, level, reference_frame=1) == [False, False, False, True]


def test_an_attention_combined_reference_reaches_every_frame():
    vae = tiny_vae(**PER_FRAME)
    assert changed_frames(vae, 1, reference_frame=0) == [True] * FRAMES
    assert changed_frames(vae, 1, reference_frame=1) == [True] * FRAMES


def test_time_stacks_mix_neighbouring_frames():
    vae = tiny_vae()  # learned, alpha 0: half temporal, half spatial
    latents, reference = encode_clips(vae)
    changed = latents.clone()
    changed[:, :, 1] += 1.0
    with torch.no_grad():
        before, after = vae.decode(latents, reference), vae.decode(changed, reference)
    assert [not torch.equal(before[0, :, t], after[0, :, t]) for t in range(FRAMES)] == [True] * FRAMES


def test_decode_does_not_use_post_quant_conv():
    vae = tiny_vae()
    latents, reference = encode_clips(vae)
    with torch.no_grad():
        before = vae.decode(latents, reference)
        vae.post_quant_conv.weight.normal_()
        vae.post_quant_conv.bias.normal_()
        assert torch.equal(vae.decode(latents, reference), before)


def block_output_and_parts(block: VideoResBlock, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The block's output, and its spatial and temporal paths computed separately, all as (B, C, T, H, W)."""
    with torch.no_grad():
        spatial = rearrange(super(VideoResBlock, block).forward(x), "(b t) c h w -> b c t h w", t=3)
        temporal = block.time_stack(spatial)
        out = rearrange(block(x, frames=3), "(b t) c h w -> b c t h w", t=3)
    return out, spatial, temporal


@pytest.mark.parametrize(
    ("merge_strategy", "alpha", "mix"),
    [("learned", 0.0, 0.5), ("learned", 2.0, 1 / (1 + math.exp(-2.0))), ("fixed", 0.3, 0.3), ("fixed", 0.0, 0.0)],
)
def test_merge_strategy_sets_how_temporal_and_spatial_paths_blend(merge_strategy, alpha, mix):
    torch.manual_seed(0)
    block = VideoResBlock(32, 32, dropout=0.0, kernel_size=(3, 1, 1), merge_strategy=merge_strategy, alpha=alpha)
    out, spatial, temporal = block_output_and_parts(block, torch.randn(2 * 3, 32, 4, 4))
    assert not torch.allclose(temporal, spatial)
    torch.testing.assert_close(out, mix * temporal + (1 - mix) * spatial)
    # "learned" trains mix_factor; "fixed" keeps it as a buffer. Both save it under the same name.
    assert ("mix_factor" in dict(block.named_parameters())) == (merge_strategy == "learned")
    assert "mix_factor" in block.state_dict()


def test_from_config_reads_the_published_config():
    config = {
        "_class_name": "VideoAutoencoderKL",
        "double_z": True,
        "z_channels": 4,
        "resolution": 256,
        "in_channels": 3,
        "out_ch": 3,
        "ch": 32,
        "ch_mult": [1, 2],
        "num_res_blocks": 1,
        "attn_resolutions": [],
        "dropout": 0.0,
        "refinement_attention_levels": [1],
    }
    vae = VideoAutoencoder.from_config(config)
    assert isinstance(vae.decoder.attn_refinement[1], AttentionCombiner)
    assert isinstance(vae.decoder.attn_refinement[0], ConvCombiner)


def test_from_config_refuses_unknown_keys():
    with pytest.raises(ValueError, match="use_linear_attn"):
        VideoAutoencoder.from_config(TINY | {"use_linear_attn": True})


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"merge_strategy": "average"}, "merge_strategy"),
        ({"ch_mult": ()}, "ch_mult"),
        ({"ch": 48}, "ch=48"),
        ({"refinement_attention_levels": (2,)}, "refinement_attention_levels"),
        ({"video_kernel_size": (2, 1, 1)}, "video_kernel_size"),
        ({"double_z": False}, "double_z"),
        ({"num_res_blocks": 0}, "num_res_blocks"),
    ],
)
def test_invalid_settings_are_refused_by_name(overrides, named):
    with pytest.raises(ValueError, match=named):
        VideoAutoencoder(**(TINY | overrides))


def test_decode_refuses_a_reference_of_the_wrong_layout():
    vae = tiny_vae()
    latents, reference = encode_clips(vae)
    with pytest.raises(ValueError, match="3 reference feature maps"):
        vae.decode(latents, reference[:2])
    with pytest.raises(ValueError, match=r"reference\[0\]"):
        vae.decode(latents, [reference[0][:, :, :1], *reference[1:]])
    with pytest.raises(ValueError, match=r"\(B, z, T, h, w\)"):
        vae.decode(rearrange(latents, "b c t h w -> (b t) c h w"), reference)
