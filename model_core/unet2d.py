"""The keyframe UNet: Stable Diffusion 1.5's UNet plus two extra inputs.

Paints-UNDO's single-frame model adds to the standard `UNet2DConditionModel`:
- an image condition: the VAE latent of the finished picture, concatenated to the noisy latent
  along channels, so `conv_in` takes 8 channels where the saved config still says 4;
- the operation step (how many Ctrl+Z, 0..999), embedded like a timestep and added to the time
  embedding (SDXL-style extra embedding) through `add_time_proj` and `add_embedding`.
Both are built by the constructor and used by an explicit forward; nothing is patched at run time.
"""

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

# Width of the sinusoidal embedding of the operation step, as in the published weights.
OPERATION_STEP_EMBEDDING_DIM = 256

# UNet2DConditionModel options whose extra inputs this forward does not take. A checkpoint whose
# config sets one of them is refused rather than run with the input silently missing.
_UNSUPPORTED_OPTIONS = {
    "class_embed_type": None,
    "addition_embed_type": None,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "time_cond_proj_dim": None,
    "num_class_embeds": None,
    "attention_type": "default",
}


@dataclass
class KeyframeUNetOutput:
    sample: torch.Tensor


class KeyframeUNet(UNet2DConditionModel):
    """SD1.5-shaped UNet taking `[noisy latent, image latent]` (8 channels) and an operation step.

    Constructed from the saved diffusers config (which declares `in_channels=4`, the channels of
    the noisy latent alone); the concatenated image latent adds `in_channels` more.
    """

    def __init__(self, **config: Any):
        for key, supported in _UNSUPPORTED_OPTIONS.items():
            if config.get(key, supported) != supported:
                raise ValueError(f"Keyframe UNet config sets {key}={config[key]!r}; only {supported!r} is supported.")
        super().__init__(**config)
        latent_channels = self.config.in_channels
        self.conv_in = nn.Conv2d(
            2 * latent_channels,
            self.conv_in.out_channels,
            kernel_size=self.conv_in.kernel_size,
            padding=self.conv_in.padding,
        )
        time_embed_dim = self.time_embedding.linear_2.out_features
        self.add_time_proj = Timesteps(OPERATION_STEP_EMBEDDING_DIM, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.add_embedding = TimestepEmbedding(OPERATION_STEP_EMBEDDING_DIM, time_embed_dim)

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> "KeyframeUNet":
        """Build from a saved config.json dict. As in diffusers, bookkeeping keys (`_class_name`, ...)
        and keys unknown to the installed diffusers are ignored."""
        accepted = inspect.signature(UNet2DConditionModel.__init__).parameters
        return cls(**{key: value for key, value in (dict(config) | overrides).items() if key in accepted})

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        concat_latent: torch.Tensor,
        operation_step: torch.Tensor,
    ) -> KeyframeUNetOutput:
        """Predict the noise.

        sample: (B, 4, h, w) noisy latent, already scaled to unit variance.
        timestep: (B,) integer diffusion timesteps 0..999.
        encoder_hidden_states: (B, 77, cross_attention_dim) text embeddings.
        concat_latent: (1 or B, 4, h, w) VAE latent of the finished picture.
        operation_step: (B,) integer operation steps 0..999.
        Returns the predicted noise, (B, 4, h, w).
        """
        batch = sample.shape[0]
        # Upsamplers must be told the skip sizes when h or w is not a multiple of 2**num_upsamplers.
        up_factor = 2**self.num_upsamplers
        forward_upsample_size = any(dim % up_factor for dim in sample.shape[-2:])

        sample = torch.cat([sample, concat_latent.expand(batch, -1, -1, -1).to(sample)], dim=1)
        if self.config.center_input_sample:  # applies to the image latent too, as in the reference
            sample = 2 * sample - 1.0

        # Time embedding plus the operation-step embedding.
        t_emb = self.time_proj(timestep.expand(batch)).to(sample.dtype)
        emb = self.time_embedding(t_emb)
        step_emb = self.add_time_proj(operation_step.flatten()).reshape(batch, -1).to(emb)
        emb = emb + self.add_embedding(step_emb)
        if self.time_embed_act is not None:
            emb = self.time_embed_act(emb)

        sample = self.conv_in(sample)
        skips: tuple[torch.Tensor, ...] = (sample,)
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                sample, res = block(hidden_states=sample, temb=emb, encoder_hidden_states=encoder_hidden_states)
            else:
                sample, res = block(hidden_states=sample, temb=emb)
            skips += res

        if self.mid_block is not None:
            if getattr(self.mid_block, "has_cross_attention", False):
                sample = self.mid_block(sample, emb, encoder_hidden_states=encoder_hidden_states)
            else:
                sample = self.mid_block(sample, emb)

        for i, block in enumerate(self.up_blocks):
            res, skips = skips[-len(block.resnets) :], skips[: -len(block.resnets)]
            is_final_block = i == len(self.up_blocks) - 1
            upsample_size = skips[-1].shape[2:] if forward_upsample_size and not is_final_block else None
            if getattr(block, "has_cross_attention", False):
                sample = block(
                    hidden_states=sample,
                    temb=emb,
                    res_hidden_states_tuple=res,
                    encoder_hidden_states=encoder_hidden_states,
                    upsample_size=upsample_size,
                )
            else:
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size)

        if self.conv_norm_out is not None:
            sample = self.conv_act(self.conv_norm_out(sample))
        return KeyframeUNetOutput(sample=self.conv_out(sample))
