"""Paints-UNDO's image-prompt resampler: a perceiver from two frames' CLIP-vision tokens to per-frame tokens.

The CLIP-vision tokens of the two input frames (each tagged with a learned per-frame offset) are
read by `num_queries * video_length` learned latents through `depth` rounds of cross-attention and
feed-forward; the latents come out as `num_queries` conditioning tokens for each of the
`video_length` frames of the video UNet. Keys and numerics follow upstream's `Resampler`
(diffusers_vdm/projection.py, after IP-Adapter's), whose config.json holds the constructor arguments.
"""

from typing import Any, Self

import torch
from einops import rearrange
from torch import nn

from model_core.checkpoints import constructor_kwargs
from model_core.errors import InvalidInputError


class PerceiverAttention(nn.Module):
    """Latents attend to the image tokens and to themselves (keys and values from both)."""

    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        self.heads = heads
        # Applied to q and k separately rather than dim_head**-0.5 once: keeps fp16 products in range.
        self.scale = dim_head**-0.25
        inner = heads * dim_head
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """x: image tokens (B, N, dim); latents: (B, L, dim) -> update of the latents (B, L, dim)."""
        x, latents = self.norm1(x), self.norm2(latents)
        q = rearrange(self.to_q(latents), "b l (h d) -> b h l d", h=self.heads)
        k, v = (
            rearrange(t, "b n (h d) -> b h n d", h=self.heads)
            for t in self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        )
        weight = (q * self.scale) @ (k * self.scale).transpose(-2, -1)
        weight = weight.float().softmax(dim=-1).to(weight.dtype)
        return self.to_out(rearrange(weight @ v, "b h l d -> b l (h d)"))


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    """LayerNorm, Linear up, GELU (exact), Linear down; a Sequential so that keys are `0`, `1`, `3`."""
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )


class Resampler(nn.Module):
    """Two frames' CLIP-vision tokens -> `num_queries` tokens for each of `video_length` frames.

    Arguments (upstream's names and defaults): dim, the latent width; depth, attention + feed-forward
    rounds; dim_head and heads of the attention; num_queries, tokens per output frame; embedding_dim,
    the CLIP-vision hidden size; output_dim, the width of the output tokens; ff_mult, the feed-forward
    expansion; video_length, output frames; input_frames_length, input frames.
    """

    def __init__(
        self,
        *,
        dim: int = 1024,
        depth: int = 8,
        dim_head: int = 64,
        heads: int = 16,
        num_queries: int = 8,
        embedding_dim: int = 768,
        output_dim: int = 1024,
        ff_mult: int = 4,
        video_length: int = 16,
        input_frames_length: int = 2,
    ):
        super().__init__()
        arguments = {
            "dim": dim, "depth": depth, "dim_head": dim_head, "heads": heads, "num_queries": num_queries,
            "embedding_dim": embedding_dim, "output_dim": output_dim, "ff_mult": ff_mult,
            "video_length": video_length, "input_frames_length": input_frames_length,
        }  # fmt: skip
        for name, value in arguments.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Resampler {name} must be a positive integer, got {value!r}.")
        self.video_length = video_length
        self.input_frames_length = input_frames_length
        self.embedding_dim = embedding_dim
        self.latents = nn.Parameter(torch.randn(1, num_queries * video_length, dim) / dim**0.5)
        self.input_pos = nn.Parameter(torch.zeros(1, input_frames_length, 1, embedding_dim))
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, dim_head, heads), feed_forward(dim, ff_mult)]) for _ in range(depth)
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Self:
        """Build from the saved config.json dict; bookkeeping keys (`_...`) are ignored, unknown keys refused."""
        return cls(**constructor_kwargs(cls, config))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, input_frames_length, tokens, embedding_dim) -> (B, video_length, num_queries, output_dim)."""
        expected = (self.input_frames_length, self.embedding_dim)
        if x.ndim != 4 or (x.shape[1], x.shape[3]) != expected:
            raise InvalidInputError(
                f"Resampler input must have shape (B, {expected[0]}, tokens, {expected[1]}), got {tuple(x.shape)}."
            )
        x = rearrange(x + self.input_pos, "b f n c -> b (f n) c")
        x = self.proj_in(x)
        latents = self.latents.expand(x.shape[0], -1, -1)
        for attention, ff in self.layers:
            latents = attention(x, latents) + latents
            latents = ff(latents) + latents
        latents = self.norm_out(self.proj_out(latents))
        return rearrange(latents, "b (f q) c -> b f q c", f=self.video_length)
