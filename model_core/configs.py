"""Component configs of the keyframe and interpolation models: the published sizes, and tiny presets.

The published sizes are the reference's inferred values (Stable Diffusion 1.5 for the keyframe
model; ToonCrafter, SD2.1 and CLIP ViT-H for the interpolation model), kept here in one place. The
config.json files of a real checkpoint are what `from_pretrained` reads, so they override every
value; these serve the full-size layout checks and benchmarks, which build the networks without
weights. The tiny presets exist for tests, demos and CI. The keyframe one varies options a real
checkpoint never changes, so that tests prove each is honoured, while staying loadable by the
reference implementation (its operation-step embedding is hard-wired to 1280 wide, hence
`time_embedding_dim` 1280).
"""

from typing import Any

KEYFRAME_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "only_cross_attention": False,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-05,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "use_linear_projection": False,
    "upcast_attention": False,
}

KEYFRAME_TEXT_ENCODER: dict[str, Any] = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    # CLIP ViT-L/14 has 12 layers; the last is removed for good ("CLIP skip 2" built in).
    "num_hidden_layers": 11,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-05,
    "projection_dim": 768,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

KEYFRAME_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

TINY_KEYFRAME_UNET: dict[str, Any] = KEYFRAME_UNET | {
    "sample_size": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 48, 64],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "cross_attention_dim": 32,
    "attention_head_dim": 4,
    "time_embedding_dim": 1280,
}

TINY_KEYFRAME_TEXT_ENCODER: dict[str, Any] = KEYFRAME_TEXT_ENCODER | {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "projection_dim": 32,
}

TINY_KEYFRAME_VAE: dict[str, Any] = KEYFRAME_VAE | {
    "block_out_channels": [8, 16, 16, 16],
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": 64,
}


# Interpolation model (`lllyasviel/paints_undo_multi_frame`). The reference marks all of these as
# inferred from ToonCrafter/DynamiCrafter, SD2.1 and CLIP ViT-H/14; a real checkpoint's config.json
# files are what `from_pretrained` reads, so they override every value here.
INTERPOLATION_UNET: dict[str, Any] = {
    "in_channels": 8,
    "out_channels": 4,
    "model_channels": 320,
    "attention_resolutions": [4, 2, 1],
    "num_res_blocks": 2,
    "channel_mult": [1, 2, 4, 4],
    "dropout": 0.1,
    "conv_resample": True,
    "dims": 2,
    "context_dim": 1024,
    "use_scale_shift_norm": False,
    "resblock_updown": False,
    "num_heads": -1,
    "num_head_channels": 64,
    "transformer_depth": 1,
    "use_linear": True,
    "temporal_conv": True,
    "tempspatial_aware": False,
    "temporal_attention": True,
    "use_relative_position": False,
    "use_causal_attention": False,
    "temporal_length": 16,
    "addition_attention": True,
    "temporal_selfatt_only": True,
    "image_cross_attention": True,
    "image_cross_attention_scale_learnable": False,
    "default_fs": 24,
    "fs_condition": True,
}

INTERPOLATION_VAE: dict[str, Any] = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}

INTERPOLATION_TEXT_ENCODER: dict[str, Any] = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "vocab_size": 49408,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    # OpenCLIP ViT-H/14 has 24 layers; SD2.1 uses the penultimate one's output.
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-05,
    "projection_dim": 512,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}

INTERPOLATION_IMAGE_ENCODER: dict[str, Any] = {
    "architectures": ["ImprovedCLIPVisionModelWithProjection"],
    "model_type": "clip_vision_model",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "projection_dim": 1024,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-05,
}

INTERPOLATION_IMAGE_PROJECTION: dict[str, Any] = {
    "dim": 1024,
    "depth": 4,
    "dim_head": 64,
    "heads": 12,
    "num_queries": 16,
    "embedding_dim": 1280,
    "output_dim": 1024,
    "ff_mult": 4,
    "video_length": 16,
    "input_frames_length": 2,
}

# Tiny preset: 32-wide networks (the reference's GroupNorms have 32 groups), two UNet levels and a
# 4x VAE, so a 16-frame clip at 32x48 pixels samples in well under a second per step on a CPU.
# It also takes our own config keys (smaller decoder attention), which the reference would ignore.
TINY_INTERPOLATION_UNET: dict[str, Any] = INTERPOLATION_UNET | {
    "model_channels": 32,
    "attention_resolutions": [1, 2],
    "num_res_blocks": 1,
    "channel_mult": [1, 2],
    "num_head_channels": 16,
    "context_dim": 32,
}

TINY_INTERPOLATION_VAE: dict[str, Any] = INTERPOLATION_VAE | {
    "ch": 32,
    "ch_mult": [1, 1, 2],
    "num_res_blocks": 1,
    "refinement_attention_levels": [1, 2],
    "refinement_heads": 2,
    "refinement_head_dim": 16,
}

TINY_INTERPOLATION_TEXT_ENCODER: dict[str, Any] = INTERPOLATION_TEXT_ENCODER | {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "projection_dim": 32,
}

TINY_INTERPOLATION_IMAGE_ENCODER: dict[str, Any] = INTERPOLATION_IMAGE_ENCODER | {
    "hidden_size": 32,
    "intermediate_size": 64,
    "projection_dim": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 16,
    "patch_size": 4,
}

TINY_INTERPOLATION_IMAGE_PROJECTION: dict[str, Any] = INTERPOLATION_IMAGE_PROJECTION | {
    "dim": 32,
    "depth": 1,
    "dim_head": 8,
    "heads": 2,
    "num_queries": 4,
    "embedding_dim": 32,
    "output_dim": 32,
    "ff_mult": 2,
}

# Clip sizes (height, width) for the tiny preset: multiples of its 8x downsampling (VAE 4, UNet 2).
TINY_BUCKETS = ((32, 48), (40, 40), (48, 32))
