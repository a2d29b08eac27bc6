"""The interpolation UNet: upstream's `UNet3DModel` (VideoCrafter, DynamiCrafter and ToonCrafter lineage).

A 2D UNet over every frame of a clip, with the frames folded into the batch as `(b t)`, plus
layers that mix frames: a temporal convolution after each residual block and a temporal
transformer after each spatial one. The spatial transformers cross-attend to the prompt and, in
parallel, to per-frame image tokens (IP-Adapter style). The timestep and the frame stride (`fs`)
are both sinusoid-embedded and summed. The input is the noisy latent concatenated with the
conditioning latents (first and last keyframe, zeros in between): 8 channels.

`InterpolationUNetConfig` holds upstream's config.json keys, so a published config builds this class
directly. Options the reference cannot run (causal temporal attention, text-only cross-attention,
3D convolutions) are refused by name.
"""

import math
from dataclasses import dataclass
from typing import Any

import einops
import torch
import torch.nn.functional as F
from torch import nn

from model_core.attention import (
    AttentionBackend,
    TemporalWindow,
    check_backend,
    multi_head_attention,
    temporal_window,
)
from model_core.checkpoints import constructor_kwargs

# Upstream normalises with 32 groups everywhere, so every channel width must be a multiple of it.
NORM_GROUPS = 32
# Where upstream has a Dropout: no parameters, but it keeps the layer indices (so the state-dict keys).
# This is an inference implementation, so the slot does nothing.
DROPOUT_SLOT = nn.Identity()
# The most values a feed-forward's widest activation (the GEGLU projection) holds at once. Unsliced, the
# default job's first level (14 x 16 frames x 2,688 pixels) would make a 2.5e9-value tensor (4.6 GiB in
# bfloat16), more than 2^31 values, in the first temporal transformer; 2^27 is 256 MiB.
FEED_FORWARD_CHUNK_ELEMENTS = 2**27
# Heads of the temporal transformer applied to the first block's output (`init_attn`), fixed upstream.
INIT_ATTENTION_HEADS = 8


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos(t f_k), sin(t f_k)], f_k = max_period^(-k / (dim/2)). (B,) -> (B, dim) float32."""
    half = dim // 2
    # Made on the timesteps' device: a host tensor copied there would wait for the GPU on every call.
    steps = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(-math.log(max_period) * steps / half)
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(embedding, (0, dim % 2))


@dataclass
class UNetContext:
    """What every layer of the UNet may need besides its input."""

    emb: torch.Tensor  # (B*T, time_embed_dim): timestep + frame-stride embedding, per frame
    text: torch.Tensor  # (B*T, L_text, context_dim)
    image: torch.Tensor  # (B*T, L_image, context_dim): each frame's own image tokens
    frames: int  # T


def group_norm(channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    return nn.GroupNorm(NORM_GROUPS, channels, eps=eps)


class TemporalConvBlock(nn.Module):
    """Four GroupNorm-SiLU-Conv3d layers over time (kernel 3 along T, zero-padded), added to the input."""

    def __init__(self, channels: int, spatial_aware: bool):
        super().__init__()
        # With `spatial_aware` (upstream's tempspatial_aware) the kernels also reach across H or W.
        along_h, pad_h = ((3, 3, 1), (1, 1, 0)) if spatial_aware else ((3, 1, 1), (1, 0, 0))
        along_w, pad_w = ((3, 1, 3), (1, 0, 1)) if spatial_aware else ((3, 1, 1), (1, 0, 0))
        self.conv1 = nn.Sequential(
            group_norm(channels), nn.SiLU(), nn.Conv3d(channels, channels, along_h, padding=pad_h)
        )
        self.conv2 = self._layer(channels, along_w, pad_w)
        self.conv3 = self._layer(channels, along_h, pad_h)
        self.conv4 = self._layer(channels, along_w, pad_w)

    @staticmethod
    def _layer(channels: int, kernel: tuple[int, ...], padding: tuple[int, ...]) -> nn.Sequential:
        return nn.Sequential(
            group_norm(channels), nn.SiLU(), DROPOUT_SLOT, nn.Conv3d(channels, channels, kernel, padding=padding)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T, H, W) -> same. GroupNorm statistics span all frames of a clip."""
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice with the time embedding added in between, a skip, then the temporal conv."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int,
        *,
        scale_shift_norm: bool,
        temporal_conv: bool = False,
        spatial_aware_temporal_conv: bool = False,
        resample: str | None = None,
    ):
        super().__init__()
        self.scale_shift_norm = scale_shift_norm
        self.resample = resample  # "up" or "down" for upstream's resblock_updown; None otherwise
        self.in_layers = nn.Sequential(group_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            group_norm(out_channels), nn.SiLU(), DROPOUT_SLOT, nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        if temporal_conv:
            self.temopral_conv = TemporalConvBlock(out_channels, spatial_aware_temporal_conv)  # sic: upstream's key

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.resample == "down":
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        return x

    def forward(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        """x: (B*T, C, H, W) -> (B*T, C_out, H', W')."""
        norm_act, conv = self.in_layers[:-1], self.in_layers[-1]
        h = conv(self._resample(norm_act(x)))
        x = self._resample(x)
        emb = self.emb_layers(ctx.emb).to(h.dtype)[:, :, None, None]
        if self.scale_shift_norm:
            scale, shift = emb.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb)
        h = self.skip_connection(x) + h
        if hasattr(self, "temopral_conv"):
            h = einops.rearrange(h, "(b t) c h w -> b c t h w", t=ctx.frames)
            h = einops.rearrange(self.temopral_conv(h), "b c t h w -> (b t) c h w")
        return h


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        if use_conv:
            self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        else:
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then an optional 3x3 convolution."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if hasattr(self, "conv") else x


class RelativePositionTable(nn.Module):
    """Relative-position embeddings some checkpoints carry. The reference never uses them; kept for the layout."""

    def __init__(self, dim_head: int, max_distance: int):
        super().__init__()
        self.embeddings_table = nn.Parameter(torch.zeros(2 * max_distance + 1, dim_head))


class Attention(nn.Module):
    """Multi-head attention with bias-free q/k/v projections.

    Self-attention when called without context. With `image_cross_attention`, cross-attention
    attends to the text and, separately, to the image tokens (`to_k_ip`, `to_v_ip`), and the two
    results are summed (the image part scaled by tanh(alpha) + 1 when alpha is learned).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        context_dim: int | None = None,
        *,
        image_cross_attention: bool = False,
        image_scale_learnable: bool = False,
        relative_position_length: int | None = None,
    ):
        super().__init__()
        inner, context_dim = heads * dim_head, context_dim or dim
        self.heads = heads
        self.backend = AttentionBackend.SDPA
        self.window: TemporalWindow | None = None  # only ever set on spatial self-attention
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), DROPOUT_SLOT)
        if image_cross_attention:
            self.to_k_ip = nn.Linear(context_dim, inner, bias=False)
            self.to_v_ip = nn.Linear(context_dim, inner, bias=False)
            if image_scale_learnable:
                self.alpha = nn.Parameter(torch.zeros(()))
        if relative_position_length is not None:
            self.relative_position_k = RelativePositionTable(dim_head, relative_position_length)
            self.relative_position_v = RelativePositionTable(dim_head, relative_position_length)

    def forward(
        self,
        x: torch.Tensor,
        text: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
        frames: int | None = None,
    ) -> torch.Tensor:
        """x: (N, L, dim); text: (N, L_text, context_dim) and image: (N, L_image, context_dim) or None."""
        q = self.to_q(x)
        if text is None:
            k, v = self.to_k(x), self.to_v(x)
            if self.window is not None:
                k, v = temporal_window(k, frames, self.window), temporal_window(v, frames, self.window)
            return self.to_out(multi_head_attention(q, k, v, self.heads, self.backend))
        out = multi_head_attention(q, self.to_k(text), self.to_v(text), self.heads, self.backend)
        out_image = multi_head_attention(q, self.to_k_ip(image), self.to_v_ip(image), self.heads, self.backend)
        if hasattr(self, "alpha"):
            out_image = out_image * (torch.tanh(self.alpha) + 1)
        return self.to_out(out + out_image)


class FeedForward(nn.Module):
    """GEGLU: Linear to 2 x 4C, value * GELU(gate), Linear back to C.

    Tokens are independent, so they run in slices whose GEGLU projection holds at most
    FEED_FORWARD_CHUNK_ELEMENTS values: the same result, without the full (tokens, 8C) tensor.
    """

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), DROPOUT_SLOT, nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., dim) -> same."""
        tokens = x.reshape(-1, x.shape[-1])
        chunk = max(1, FEED_FORWARD_CHUNK_ELEMENTS // self.net[0].proj.out_features)
        if tokens.shape[0] <= chunk:
            return self.net(x)
        out = torch.empty_like(tokens)
        for start in range(0, tokens.shape[0], chunk):
            out[start : start + chunk] = self.net(tokens[start : start + chunk])
        return out.view(x.shape)


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class TransformerBlock(nn.Module):
    """x + attn1(LN x); x + attn2(LN x, context); x + ff(LN x).

    In spatial blocks attn2 cross-attends to text and image tokens; in temporal blocks it is a
    second self-attention (upstream's temporal layers ignore their context).
    """

    def __init__(self, attn1: Attention, attn2: Attention, dim: int):
        super().__init__()
        self.attn1 = attn1
        self.ff = FeedForward(dim)
        self.attn2 = attn2
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, text: torch.Tensor | None = None, image: torch.Tensor | None = None, frames: int = 1
    ) -> torch.Tensor:
        """x: (N, L, dim) -> same."""
        x = x + self.attn1(self.norm1(x), frames=frames)
        x = x + self.attn2(self.norm2(x), text, image, frames=frames)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Per-frame transformer over the H*W tokens: self-attention, then text + image cross-attention."""

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        *,
        depth: int,
        context_dim: int,
        use_linear: bool,
        image_scale_learnable: bool,
    ):
        super().__init__()
        inner = heads * dim_head
        self.use_linear = use_linear
        self.norm = group_norm(channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if use_linear else nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(
                Attention(inner, heads, dim_head),
                Attention(
                    inner,
                    heads,
                    dim_head,
                    context_dim,
                    image_cross_attention=True,
                    image_scale_learnable=image_scale_learnable,
                ),
                inner,
            )
            for _ in range(depth)
        )
        self.proj_out = nn.Linear(inner, channels) if use_linear else nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        """x: (B*T, C, H, W) -> same."""
        height = x.shape[2]
        h = self.norm(x)
        if not self.use_linear:
            h = self.proj_in(h)
        h = einops.rearrange(h, "n c h w -> n (h w) c")
        if self.use_linear:
            h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h, ctx.text, ctx.image, frames=ctx.frames)
        if self.use_linear:
            h = self.proj_out(h)
        h = einops.rearrange(h, "n (h w) c -> n c h w", h=height)
        if not self.use_linear:
            h = self.proj_out(h)
        return x + h


class TemporalTransformer(nn.Module):
    """Per-pixel transformer over the T frames of a clip (self-attention only, no positional encoding)."""

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        *,
        depth: int,
        use_linear: bool,
        relative_position_length: int | None,
    ):
        super().__init__()
        inner = heads * dim_head
        self.use_linear = use_linear
        self.norm = group_norm(channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if use_linear else nn.Conv1d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(
                Attention(inner, heads, dim_head, relative_position_length=relative_position_length),
                Attention(inner, heads, dim_head, relative_position_length=relative_position_length),
                inner,
            )
            for _ in range(depth)
        )
        self.proj_out = nn.Linear(inner, channels) if use_linear else nn.Conv1d(inner, channels, 1)

    def forward(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        """x: (B*T, C, H, W) -> same. GroupNorm statistics span all frames of a clip."""
        x = einops.rearrange(x, "(b t) c h w -> b c t h w", t=ctx.frames)
        batch, _, frames, height, width = x.shape
        h = einops.rearrange(self.norm(x), "b c t h w -> (b h w) c t")
        h = einops.rearrange(h if self.use_linear else self.proj_in(h), "n c t -> n t c")
        if self.use_linear:
            h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h)
        h = (
            self.proj_out(h)
            if self.use_linear
            else einops.rearrange(self.proj_out(h.transpose(1, 2)), "n c t -> n t c")
        )
        h = einops.rearrange(h, "(b h w) t c -> b c t h w", b=batch, h=height, w=width)
        return einops.rearrange(x + h, "b c t h w -> (b t) c h w")


class Stage(nn.ModuleList):
    """Layers applied in order, each given the shared context (upstream's TimestepEmbedSequential)."""

    def forward(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        for layer in self:
            x = layer(x, ctx)
        return x


class ConvIn(nn.Conv2d):
    def forward(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        return super().forward(x)


@dataclass
class DeepCache:
    """Step caching for the video UNet (DeepCache, Ma et al., CVPR 2024), strictly opt-in.

    Adjacent denoising steps change the deep, low-resolution features of the UNet very little. A full
    step (`forward(..., cache=cache)`) runs the whole network and keeps the decoder's feature just before
    the `branch` shallowest output blocks. A cached step (`forward(..., cache=cache, reuse=True)`) runs
    only the `branch` shallowest input blocks and their paired output blocks, on that kept feature and
    the fresh shallow skips. A cached step is cheaper but only approximates a full one, and the error
    grows with the number of cached steps since the last full one; a larger `branch` recomputes more,
    so it costs more and usually errs less. The caller chooses which steps are full.

    `branch` must stay the same for the life of a cache: start a new one to change it.
    """

    branch: int = 1  # skip levels recomputed on cached steps: 1 .. len(unet.input_blocks) - 1
    # (B, C, T, h', w'): what enters output block -branch, from the last full step; None before one.
    deep_features: torch.Tensor | None = None


@dataclass(frozen=True, kw_only=True)
class InterpolationUNetConfig:
    """The video UNet's shape, as upstream's config.json states it (every key is a field of the same name).

    `dropout` only matters in training, and upstream ignores `temporal_selfatt_only` (temporal attention
    is always self-attention); both are accepted for that reason. Values the reference cannot run, or
    that would build a broken network, are refused by name when the config is made.
    """

    in_channels: int
    model_channels: int
    out_channels: int
    num_res_blocks: int
    attention_resolutions: tuple[int, ...]  # downsampling factors whose levels get transformers
    dropout: float = 0.0
    channel_mult: tuple[int, ...] = (1, 2, 4, 8)
    conv_resample: bool = True
    dims: int = 2
    context_dim: int | None = None
    use_scale_shift_norm: bool = False
    resblock_updown: bool = False
    num_heads: int = -1  # exactly one of num_heads and num_head_channels is set (the other -1)
    num_head_channels: int = -1
    transformer_depth: int = 1
    use_linear: bool = False
    temporal_conv: bool = False
    tempspatial_aware: bool = False
    temporal_attention: bool = True
    use_relative_position: bool = True
    use_causal_attention: bool = False
    temporal_length: int | None = None
    addition_attention: bool = False
    temporal_selfatt_only: bool = True
    image_cross_attention: bool = False
    image_cross_attention_scale_learnable: bool = False
    default_fs: int = 4
    fs_condition: bool = False

    def __post_init__(self) -> None:
        # config.json holds lists; a frozen config holds tuples.
        object.__setattr__(self, "attention_resolutions", tuple(self.attention_resolutions))
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        self._check()

    @classmethod
    def from_json(cls, config: dict[str, Any]) -> "InterpolationUNetConfig":
        """From a config.json dict; keys starting with "_" are metadata, any other unknown key is refused."""
        return cls(**constructor_kwargs(cls, config))

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels

    @property
    def widths(self) -> list[int]:
        """Channel width of each level."""
        return [self.model_channels * mult for mult in self.channel_mult]

    @property
    def relative_position_length(self) -> int | None:
        return self.temporal_length if self.use_relative_position else None

    def heads_for(self, channels: int) -> tuple[int, int]:
        """(heads, width per head) of the transformers at a level `channels` wide."""
        if self.num_head_channels == -1:
            return self.num_heads, channels // self.num_heads
        return channels // self.num_head_channels, self.num_head_channels

    def _check(self) -> None:
        if self.dims != 2:
            raise ValueError(
                f"dims={self.dims} is not supported: the UNet runs frames as a batch of 2D images (dims=2)."
            )
        if not self.image_cross_attention:
            raise ValueError(
                "image_cross_attention=False is not supported: the reference refuses text-only cross-attention."
            )
        if self.use_causal_attention:
            raise ValueError(
                "use_causal_attention=True is not supported: the reference's temporal attention takes no mask."
            )
        if self.context_dim is None:
            raise ValueError("context_dim is required: the UNet cross-attends to text and image tokens.")
        if (self.num_heads == -1) == (self.num_head_channels == -1):
            raise ValueError(
                f"set exactly one of num_heads={self.num_heads} and num_head_channels={self.num_head_channels}."
            )
        if self.addition_attention and self.num_head_channels == -1:
            raise ValueError("addition_attention=True needs num_head_channels (its 8 heads take that width).")
        if self.use_relative_position and self.temporal_length is None:
            raise ValueError("use_relative_position=True needs temporal_length (the size of its tables).")
        if any(width % NORM_GROUPS for width in self.widths):
            raise ValueError(
                f"model_channels * channel_mult = {self.widths} must be multiples of {NORM_GROUPS} (GroupNorm groups)."
            )
        for name, value in (("num_head_channels", self.num_head_channels), ("num_heads", self.num_heads)):
            if value != -1 and any(width % value for width in self.widths):
                raise ValueError(f"channel widths {self.widths} must be multiples of {name}={value}.")


class _Layers:
    """Makes the UNet's layers as its config shapes them (upstream's inline closures, as methods)."""

    def __init__(self, config: InterpolationUNetConfig):
        self.config = config

    def embedding(self) -> nn.Sequential:
        """Sinusoid features -> the time-embedding width (for the timestep and the frame stride)."""
        width = self.config.time_embed_dim
        return nn.Sequential(nn.Linear(self.config.model_channels, width), nn.SiLU(), nn.Linear(width, width))

    def resblock(self, channels: int, out: int) -> ResBlock:
        c = self.config
        return ResBlock(
            channels,
            c.time_embed_dim,
            out,
            scale_shift_norm=c.use_scale_shift_norm,
            temporal_conv=c.temporal_conv,
            spatial_aware_temporal_conv=c.tempspatial_aware,
        )

    def attention(self, channels: int) -> list[nn.Module]:
        """The spatial transformer of a level, and its temporal transformer when the config has them."""
        c = self.config
        heads, dim_head = c.heads_for(channels)
        layers: list[nn.Module] = [
            SpatialTransformer(
                channels,
                heads,
                dim_head,
                depth=c.transformer_depth,
                context_dim=c.context_dim,
                use_linear=c.use_linear,
                image_scale_learnable=c.image_cross_attention_scale_learnable,
            )
        ]
        if c.temporal_attention:
            layers.append(
                TemporalTransformer(
                    channels,
                    heads,
                    dim_head,
                    depth=c.transformer_depth,
                    use_linear=c.use_linear,
                    relative_position_length=c.relative_position_length,
                )
            )
        return layers

    def init_attention(self) -> "Stage":
        """The temporal transformer after the first block: upstream builds it without use_linear, with 8 heads."""
        c = self.config
        return Stage(
            [
                TemporalTransformer(
                    c.model_channels,
                    INIT_ATTENTION_HEADS,
                    c.num_head_channels,
                    depth=c.transformer_depth,
                    use_linear=False,
                    relative_position_length=c.relative_position_length,
                )
            ]
        )

    def resample(self, channels: int, direction: str) -> nn.Module:
        c = self.config
        if c.resblock_updown:
            return ResBlock(
                channels, c.time_embed_dim, channels, scale_shift_norm=c.use_scale_shift_norm, resample=direction
            )
        return Downsample(channels, c.conv_resample) if direction == "down" else Upsample(channels, c.conv_resample)

    def input_blocks(self) -> tuple[nn.ModuleList, list[int]]:
        """The encoder's blocks, and the channels of each block's output (the skips, in order)."""
        c = self.config
        blocks = nn.ModuleList([Stage([ConvIn(c.in_channels, c.model_channels, 3, padding=1)])])
        skip_channels, ch, downsampling = [c.model_channels], c.model_channels, 1
        for level, width in enumerate(c.widths):
            for _ in range(c.num_res_blocks):
                layers, ch = [self.resblock(ch, width)], width
                if downsampling in c.attention_resolutions:
                    layers += self.attention(ch)
                blocks.append(Stage(layers))
                skip_channels.append(ch)
            if level != len(c.widths) - 1:
                blocks.append(Stage([self.resample(ch, "down")]))
                skip_channels.append(ch)
                downsampling *= 2
        return blocks, skip_channels

    def middle_block(self) -> "Stage":
        ch = self.config.widths[-1]
        return Stage([self.resblock(ch, ch), *self.attention(ch), self.resblock(ch, ch)])

    def output_blocks(self, skip_channels: list[int]) -> nn.ModuleList:
        """The decoder's blocks, each taking the deepest skip not yet consumed."""
        c = self.config
        skip_channels = list(skip_channels)
        blocks, ch, downsampling = nn.ModuleList(), c.widths[-1], 2 ** (len(c.widths) - 1)
        for level, width in reversed(list(enumerate(c.widths))):
            for i in range(c.num_res_blocks + 1):
                layers, ch = [self.resblock(ch + skip_channels.pop(), width)], width
                if downsampling in c.attention_resolutions:
                    layers += self.attention(ch)
                if level and i == c.num_res_blocks:
                    layers.append(self.resample(ch, "up"))
                    downsampling //= 2
                blocks.append(Stage(layers))
        return blocks

    def out(self) -> nn.Sequential:
        c = self.config
        return nn.Sequential(
            group_norm(c.model_channels), nn.SiLU(), nn.Conv2d(c.model_channels, c.out_channels, 3, padding=1)
        )


class InterpolationUNet(nn.Module):
    """v-prediction video UNet; forward returns (B, out_channels, T, h, w)."""

    def __init__(self, config: InterpolationUNetConfig):
        super().__init__()
        self.config = config
        self.downsampling_factor = 2 ** (len(config.channel_mult) - 1)
        layers = _Layers(config)
        self.time_embed = layers.embedding()
        if config.fs_condition:
            self.fps_embedding = layers.embedding()
        self.input_blocks, skip_channels = layers.input_blocks()
        if config.addition_attention:
            self.init_attn = layers.init_attention()
        self.middle_block = layers.middle_block()
        self.output_blocks = layers.output_blocks(skip_channels)
        self.out = layers.out()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "InterpolationUNet":
        """Build from a config.json dict; keys starting with "_" are metadata, any other unknown key is refused."""
        return cls(InterpolationUNetConfig.from_json(config))

    def configure_attention(
        self, backend: AttentionBackend = AttentionBackend.SDPA, temporal_window: TemporalWindow | None = None
    ) -> None:
        """Choose the attention kernel, and optionally upstream's temporal window for spatial self-attention."""
        check_backend(backend)
        for module in self.modules():
            if isinstance(module, Attention):
                module.backend = AttentionBackend(backend)
        for module in self.modules():
            if isinstance(module, SpatialTransformer):
                for block in module.transformer_blocks:
                    block.attn1.window = TemporalWindow(temporal_window) if temporal_window else None

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        text: torch.Tensor,
        image: torch.Tensor,
        concat_cond: torch.Tensor,
        fs: torch.Tensor | None = None,
        *,
        cache: DeepCache | None = None,
        reuse: bool = False,
    ) -> torch.Tensor:
        """Predict v.

        x, concat_cond: (B, 4, T, h, w); timesteps: (B,) (float allowed); text: (B, L_text, context_dim);
        image: (B, T, L_image, context_dim); fs: (B,) int64 frame stride (the config's default_fs if None).
        Returns (B, out_channels, T, h, w).

        Without `cache` this is the exact network. With `cache`, a full step also fills it, and
        `reuse=True` makes this a cached step that reads it instead of running the deep blocks (see DeepCache).
        """
        if cache is not None:
            self._check_cache(cache, reuse)
        elif reuse:
            raise ValueError("reuse=True needs a cache: pass cache=DeepCache(...) filled by a full step.")
        frames = x.shape[2]
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(x.dtype))
        if self.config.fs_condition:
            if fs is None:
                fs = torch.full((x.shape[0],), self.config.default_fs, dtype=torch.long, device=x.device)
            emb = emb + self.fps_embedding(timestep_embedding(fs, self.config.model_channels).to(x.dtype))
        ctx = UNetContext(
            emb=emb.repeat_interleave(frames, dim=0),
            text=text.repeat_interleave(frames, dim=0),
            image=einops.rearrange(image, "b t l c -> (b t) l c"),
            frames=frames,
        )
        h = einops.rearrange(torch.cat([x, concat_cond], dim=1), "b c t h w -> (b t) c h w")
        # Output block i consumes the skip of input block len - 1 - i, so the last `shallow` output blocks
        # consume exactly the skips of the first `shallow` input blocks.
        shallow = cache.branch if cache is not None else 0
        deep_end = len(self.output_blocks) - shallow
        if reuse:
            skips = self._encode(h, ctx, self.input_blocks[:shallow])
            h = self._cached_features(cache, skips[-1], frames)
        else:
            skips = self._encode(h, ctx, self.input_blocks)
            h = self._decode(self.middle_block(skips[-1], ctx), skips, ctx, self.output_blocks[:deep_end])
            if cache is not None:
                cache.deep_features = einops.rearrange(h, "(b t) c h w -> b c t h w", t=frames)
        h = self._decode(h, skips, ctx, self.output_blocks[deep_end:])
        return einops.rearrange(self.out(h), "(b t) c h w -> b c t h w", t=frames)

    def _encode(self, h: torch.Tensor, ctx: UNetContext, blocks: nn.ModuleList) -> list[torch.Tensor]:
        """Run input blocks from the first one on; returns every block's output (the skips)."""
        skips = []
        for i, block in enumerate(blocks):
            h = block(h, ctx)
            if i == 0 and hasattr(self, "init_attn"):
                h = self.init_attn(h, ctx)
            skips.append(h)
        return skips

    def _decode(
        self, h: torch.Tensor, skips: list[torch.Tensor], ctx: UNetContext, blocks: nn.ModuleList
    ) -> torch.Tensor:
        """Run output blocks, each on h and the deepest skip not yet consumed (popped from `skips`)."""
        for block in blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), ctx)
        return h

    def _check_cache(self, cache: DeepCache, reuse: bool) -> None:
        # At least one input block must be skipped, or a cached step would save only the middle block.
        most = len(self.input_blocks) - 1
        if not 1 <= cache.branch <= most:
            raise ValueError(f"DeepCache branch={cache.branch} is out of range: this UNet allows 1 to {most}.")
        if reuse and cache.deep_features is None:
            raise ValueError("reuse=True needs a full step first: the cache holds no deep features yet.")

    @staticmethod
    def _cached_features(cache: DeepCache, skip: torch.Tensor, frames: int) -> torch.Tensor:
        """The cached deep features in the (b t) layout, checked against the skip they will be paired with."""
        deep = cache.deep_features
        cached = (deep.shape[0], deep.shape[2], *deep.shape[3:])
        needed = (skip.shape[0] // frames, frames, *skip.shape[2:])
        if cached != needed:
            raise ValueError(
                f"the cached deep features are for (batch, frames, height, width) = {cached}, but this call "
                f"needs {needed}: run a full step (reuse=False) on these inputs first."
            )
        return einops.rearrange(deep, "b c t h w -> (b t) c h w")
