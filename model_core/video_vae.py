"""The video VAE of the multi-frame model: ToonCrafter's dual-reference anime VAE ("VideoAutoencoderKL").

The encoder is the standard image encoder of latent diffusion, run on single frames. The decoder
decodes a whole clip at once: its res blocks mix information across frames with 3D convolutions
over T, and at every level it looks at encoder features of the clip's first and last frames (the
"reference"), which is how the decoded in-between frames keep the line art of the keyframes.

Two quirks of the reference implementation are kept, because the published weights expect them:
- `post_quant_conv` is not applied when decoding. Upstream applies it only when `decode` is called
  without keyword arguments, and its pipeline always passes the reference, so the trained decoder
  never saw it. Its weights stay in the state dict so checkpoints load strictly.
- The reference features are the encoder's hidden states (see `EncodedFrames.features`) of frames
  0 and T-1, not latents. At the deeper levels (`refinement_attention_levels`) every frame attends
  to both reference frames; at the others, and after the last level, a 1x1 convolution of the
  reference is added to the first and last frames only.

Tensors follow the reference's state-dict names (`encoder.down.0.block.0.conv1.weight`,
`decoder.up.3.block.0.time_stack.in_layers.0.weight`, `decoder.attn_refinement.2.to_q.weight`, ...).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from model_core.attention import multi_head_attention
from model_core.checkpoints import constructor_kwargs

# Every GroupNorm of the VAE has 32 groups, so every channel count must be a multiple of it.
GROUPS = 32
# The image VAE's GroupNorms use eps 1e-6; the time stacks come from the UNet code and keep torch's 1e-5.
SPATIAL_NORM_EPS = 1e-6
TIME_NORM_EPS = 1e-5

MERGE_STRATEGIES = ("learned", "fixed")


def spatial_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(GROUPS, channels, eps=SPATIAL_NORM_EPS)


class ResnetBlock(nn.Module):
    """Pre-activation residual block without a time embedding; a 1x1 `nin_shortcut` when channels change."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.norm1 = spatial_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = spatial_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C_in, H, W) -> (N, C_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return shortcut + h


class SpatialSelfAttention(nn.Module):
    """Single-head self-attention over the pixels of each image, with 1x1 convolutions as projections."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = spatial_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> (N, C, H, W); softmax scale 1/sqrt(C)."""
        height, width = x.shape[-2:]
        h = self.norm(x)
        q, k, v = (rearrange(proj(h), "n c h w -> n (h w) c") for proj in (self.q, self.k, self.v))
        out = rearrange(multi_head_attention(q, k, v, heads=1), "n (h w) c -> n c h w", h=height, w=width)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Halve H and W: pad one zero row and column at the bottom and right, then a 3x3 stride-2 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> (N, C, H/2, W/2)."""
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour repeat, then a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> (N, C, 2H, 2W)."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TimeStack(nn.Module):
    """Residual block of 3D convolutions over (T, H, W); with kernel (3, 1, 1) it mixes neighbouring frames only."""

    def __init__(self, channels: int, kernel_size: tuple[int, int, int], dropout: float):
        super().__init__()
        padding = tuple(k // 2 for k in kernel_size)
        self.in_layers = nn.Sequential(
            nn.GroupNorm(GROUPS, channels, eps=TIME_NORM_EPS),
            nn.SiLU(),
            nn.Conv3d(channels, channels, kernel_size, padding=padding),
        )
        self.out_layers = nn.Sequential(
            nn.GroupNorm(GROUPS, channels, eps=TIME_NORM_EPS),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Conv3d(channels, channels, kernel_size, padding=padding),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T, H, W) -> (B, C, T, H, W)."""
        return x + self.out_layers(self.in_layers(x))


class VideoResBlock(ResnetBlock):
    """A per-frame ResnetBlock followed by a TimeStack, blended as `mix * temporal + (1 - mix) * spatial`.

    merge_strategy "learned": mix = sigmoid(mix_factor), a trained parameter (alpha 0 starts at 0.5);
    "fixed": mix = mix_factor, a buffer holding alpha.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dropout: float,
        kernel_size: tuple[int, int, int],
        merge_strategy: str,
        alpha: float,
    ):
        super().__init__(in_channels, out_channels, dropout)
        self.time_stack = TimeStack(out_channels, kernel_size, dropout)
        self.merge_strategy = merge_strategy
        mix_factor = torch.tensor([alpha], dtype=torch.float32)
        if merge_strategy == "learned":
            self.mix_factor = nn.Parameter(mix_factor)
        else:
            self.register_buffer("mix_factor", mix_factor)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x: (B*T, C_in, H, W), frames = T -> (B*T, C_out, H, W)."""
        spatial = rearrange(super().forward(x), "(b t) c h w -> b c t h w", t=frames)
        temporal = self.time_stack(spatial)
        mix = torch.sigmoid(self.mix_factor) if self.merge_strategy == "learned" else self.mix_factor
        return rearrange(mix * temporal + (1.0 - mix) * spatial, "b c t h w -> (b t) c h w")


class ConvCombiner(nn.Module):
    """Adds a 1x1 convolution of reference frame 0 to frame 0 and of reference frame 1 to frame T-1."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """x: (B*T, C, H, W), reference: (B, C, 2, H, W) -> (B*T, C, H, W)."""
        clips = reference.shape[0]
        reference = rearrange(
            self.conv(rearrange(reference, "b c l h w -> (b l) c h w")), "(b l) c h w -> b c l h w", b=clips
        )
        # Add to a copy: the caller's tensor is not ours to change. With T = 1 both land on the one frame.
        out = rearrange(x, "(b t) c h w -> b c t h w", b=clips).clone()
        out[:, :, 0] += reference[:, :, 0]
        out[:, :, -1] += reference[:, :, 1]
        return rearrange(out, "b c t h w -> (b t) c h w")


class AttentionCombiner(nn.Module):
    """Cross-attention from every frame (normalised) to the un-normalised features of both reference frames."""

    def __init__(self, channels: int, heads: int, head_dim: int):
        super().__init__()
        self.heads = heads
        self.norm = spatial_norm(channels)
        self.to_q = nn.Linear(channels, heads * head_dim, bias=False)
        self.to_k = nn.Linear(channels, heads * head_dim, bias=False)
        self.to_v = nn.Linear(channels, heads * head_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * head_dim, channels))

    def forward(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """x: (B*T, C, H, W), reference: (B, C, 2, H, W) -> (B*T, C, H, W); softmax scale 1/sqrt(head_dim).

        All T frames of a clip attend to the same 2*H*W reference tokens, so the frames are folded
        into one query sequence per clip instead of repeating the keys and values T times: the
        result is the same, and at full size the repeated keys would not fit in memory.
        """
        clips = reference.shape[0]
        height, width = x.shape[-2:]
        q = self.to_q(rearrange(self.norm(x), "(b t) c h w -> b (t h w) c", b=clips))
        context = rearrange(reference, "b c l h w -> b (l h w) c")
        out = multi_head_attention(q, self.to_k(context), self.to_v(context), self.heads)
        return x + rearrange(self.to_out(out), "b (t h w) c -> (b t) c h w", h=height, w=width)


class SpatioTemporalConvOut(nn.Conv2d):
    """The decoder's output layer: a 3x3 Conv2d per frame, then `time_mix_conv`, a Conv3d across frames."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int, int]):
        super().__init__(in_channels, out_channels, 3, padding=1)
        padding = tuple(k // 2 for k in kernel_size)
        self.time_mix_conv = nn.Conv3d(out_channels, out_channels, kernel_size, padding=padding)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x: (B*T, C_in, H, W), frames = T -> (B, C_out, T, H, W)."""
        return self.time_mix_conv(rearrange(super().forward(x), "(b t) c h w -> b c t h w", t=frames))


class EncoderLevel(nn.Module):
    """ResnetBlocks (each followed by attention where the level has it), then an optional Downsample."""

    def __init__(
        self, in_channels: int, out_channels: int, blocks: int, attention: bool, downsample: bool, dropout: float
    ):
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels, dropout) for i in range(blocks)
        )
        self.attn = nn.ModuleList(SpatialSelfAttention(out_channels) for _ in range(blocks if attention else 0))
        self.downsample = Downsample(out_channels) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, C_in, H, W) -> (level output (N, C_out, H', W'), features before downsampling (N, C_out, H, W))."""
        for i, block in enumerate(self.block):
            x = block(x)
            if self.attn:
                x = self.attn[i](x)
        return (x if self.downsample is None else self.downsample(x)), x


class EncoderMiddle(nn.Module):
    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = SpatialSelfAttention(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> (N, C, H, W)."""
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """The latent-diffusion image encoder; also returns the hidden states the decoder uses as reference."""

    def __init__(
        self,
        in_channels: int,
        ch: int,
        ch_mult: tuple[int, ...],
        num_res_blocks: int,
        attn_resolutions: tuple[int, ...],
        resolution: int,
        moment_channels: int,
        dropout: float,
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        widths = [ch * m for m in ch_mult]
        last = len(ch_mult) - 1
        self.down = nn.ModuleList(
            EncoderLevel(
                ch if i == 0 else widths[i - 1],
                widths[i],
                num_res_blocks,
                attention=resolution // 2**i in attn_resolutions,
                downsample=i != last,
                dropout=dropout,
            )
            for i in range(len(ch_mult))
        )
        self.mid = EncoderMiddle(widths[-1], dropout)
        self.norm_out = spatial_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], moment_channels, 3, padding=1)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """pixels: (N, C_in, H, W) -> (moments (N, 2z, H/2^(L-1), W/2^(L-1)), features).

        features: L+1 tensors; index i < L is level i's output before downsampling, (N, ch*ch_mult[i],
        H/2^i, W/2^i); index L is the conv_in output, (N, ch, H, W).
        """
        first = self.conv_in(pixels)
        x, features = first, []
        for level in self.down:
            x, level_features = level(x)
            features.append(level_features)
        features.append(first)
        x = F.silu(self.norm_out(self.mid(x)))
        return self.conv_out(x), features


class DecoderLevel(nn.Module):
    """VideoResBlocks (each followed by attention where the level has it) and an optional Upsample.

    The level's reference combiner lives in the decoder's `attn_refinement` list, as in the checkpoint.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        blocks: int,
        attention: bool,
        upsample: bool,
        video: dict[str, Any],
    ):
        super().__init__()
        self.block = nn.ModuleList(
            VideoResBlock(in_channels if i == 0 else out_channels, out_channels, **video) for i in range(blocks)
        )
        self.attn = nn.ModuleList(SpatialSelfAttention(out_channels) for _ in range(blocks if attention else 0))
        self.upsample = Upsample(out_channels) if upsample else None

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x: (B*T, C_in, H, W), frames = T -> (B*T, C_out, H, W). The decoder applies the upsample itself."""
        for i, block in enumerate(self.block):
            x = block(x, frames)
            if self.attn:
                x = self.attn[i](x)
        return x


class DecoderMiddle(nn.Module):
    def __init__(self, channels: int, video: dict[str, Any]):
        super().__init__()
        self.block_1 = VideoResBlock(channels, channels, **video)
        self.attn_1 = SpatialSelfAttention(channels)
        self.block_2 = VideoResBlock(channels, channels, **video)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x: (B*T, C, H, W), frames = T -> (B*T, C, H, W)."""
        return self.block_2(self.attn_1(self.block_1(x, frames)), frames)


class VideoDecoder(nn.Module):
    """Decodes a clip of latents, guided by the encoder features of its first and last frames."""

    def __init__(
        self,
        z_channels: int,
        out_ch: int,
        ch: int,
        ch_mult: tuple[int, ...],
        num_res_blocks: int,
        attn_resolutions: tuple[int, ...],
        resolution: int,
        refinement_attention_levels: tuple[int, ...],
        refinement_heads: int,
        refinement_head_dim: int,
        video: dict[str, Any],
    ):
        super().__init__()
        widths = [ch * m for m in ch_mult]
        last = len(ch_mult) - 1
        # As upstream: the deepest resolution is rounded down once, then doubled level by level.
        deepest_resolution = resolution // 2**last
        self.conv_in = nn.Conv2d(z_channels, widths[-1], 3, padding=1)
        self.mid = DecoderMiddle(widths[-1], video)
        self.up = nn.ModuleList(
            DecoderLevel(
                widths[i + 1] if i != last else widths[-1],
                widths[i],
                num_res_blocks + 1,
                attention=deepest_resolution * 2 ** (last - i) in attn_resolutions,
                upsample=i != 0,
                video=video,
            )
            for i in range(len(ch_mult))
        )
        self.attn_refinement = nn.ModuleList(
            AttentionCombiner(widths[i], refinement_heads, refinement_head_dim)
            if i in refinement_attention_levels
            else ConvCombiner(widths[i])
            for i in range(len(ch_mult))
        )
        self.attn_refinement.append(ConvCombiner(widths[0]))
        self.norm_out = spatial_norm(widths[0])
        self.conv_out = SpatioTemporalConvOut(widths[0], out_ch, video["kernel_size"])

    def forward(self, z: torch.Tensor, reference: Sequence[torch.Tensor]) -> torch.Tensor:
        """z: (B, z, T, h, w) unscaled latents; reference: L+1 tensors (B, C_i, 2, H_i, W_i) laid out as
        `Encoder.forward`'s features -> (B, out_ch, T, h*2^(L-1), w*2^(L-1))."""
        frames = z.shape[2]
        x = self.mid(self.conv_in(rearrange(z, "b c t h w -> (b t) c h w")), frames)
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            x = self.attn_refinement[i](level(x, frames), reference[i])
            if level.upsample is not None:
                x = level.upsample(x)
        x = self.attn_refinement[-1](F.silu(self.norm_out(x)), reference[-1])
        return self.conv_out(x, frames)


@dataclass
class EncodedFrames:
    """What `VideoAutoencoder.encode` returns for N frames.

    latents: (N, z, H/2^(L-1), W/2^(L-1)), the posterior mode times scale_factor.
    features: L+1 encoder hidden states; index i < L: the last block of level i before downsampling,
        (N, ch*ch_mult[i], H/2^i, W/2^i); index L: the conv_in output, (N, ch, H, W). The decoder's
        reference is these features at frames 0 and T-1 of each clip.
    """

    latents: torch.Tensor
    features: list[torch.Tensor]


class VideoAutoencoder(nn.Module):
    """ToonCrafter's dual-reference video VAE (L = len(ch_mult) levels; latents are 2^(L-1) times smaller).

    Upstream's config keys: double_z, z_channels, resolution, in_channels, out_ch, ch, ch_mult,
    num_res_blocks, attn_resolutions, dropout. `resolution` only decides which levels have
    self-attention (those whose nominal size is in attn_resolutions); any input size works.
    `dropout` is used only in training mode, as upstream; inference runs in eval mode, where it
    does nothing.

    Values upstream hard-codes, exposed here with upstream's values as defaults: scale_factor (the
    latent scaling), refinement_attention_levels (decoder levels whose reference combiner is
    attention; the others use a 1x1 convolution), refinement_heads and refinement_head_dim (of that
    attention), video_kernel_size (of the temporal convolutions), merge_strategy and alpha (how
    VideoResBlocks blend temporal and spatial paths, see VideoResBlock).
    """

    def __init__(
        self,
        *,
        double_z: bool = True,
        z_channels: int = 4,
        resolution: int = 256,
        in_channels: int = 3,
        out_ch: int = 3,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        scale_factor: float = 0.18215,
        refinement_attention_levels: Sequence[int] = (2, 3),
        refinement_heads: int = 8,
        refinement_head_dim: int = 64,
        video_kernel_size: Sequence[int] = (3, 1, 1),
        merge_strategy: str = "learned",
        alpha: float = 0.0,
    ):
        super().__init__()
        ch_mult, attn_resolutions = tuple(ch_mult), tuple(attn_resolutions)
        refinement_attention_levels, video_kernel_size = tuple(refinement_attention_levels), tuple(video_kernel_size)
        if not double_z:
            raise ValueError("double_z=False is not supported: quant_conv takes 2*z_channels moments (mean, logvar).")
        for name, value in [
            ("z_channels", z_channels),
            ("in_channels", in_channels),
            ("out_ch", out_ch),
            ("num_res_blocks", num_res_blocks),
            ("refinement_heads", refinement_heads),
            ("refinement_head_dim", refinement_head_dim),
        ]:
            if value < 1:
                raise ValueError(f"{name}={value} must be at least 1.")
        if not ch_mult or min(ch_mult) < 1:
            raise ValueError(f"ch_mult={ch_mult} must be a non-empty list of positive multipliers.")
        if ch < 1 or any(ch * m % GROUPS for m in (1, *ch_mult)):
            raise ValueError(
                f"ch={ch} with ch_mult={ch_mult} gives channel counts that are not multiples of the {GROUPS} GroupNorm "
                "groups; ch and every ch * ch_mult[i] must be."
            )
        if any(level not in range(len(ch_mult)) for level in refinement_attention_levels):
            raise ValueError(
                f"refinement_attention_levels={refinement_attention_levels} must be levels 0..{len(ch_mult) - 1} "
                f"(one per entry of ch_mult={ch_mult})."
            )
        if len(video_kernel_size) != 3 or any(k < 1 or k % 2 == 0 for k in video_kernel_size):
            raise ValueError(
                f"video_kernel_size={video_kernel_size} must be three odd sizes (T, H, W), so padding keeps the shape."
            )
        if merge_strategy not in MERGE_STRATEGIES:
            raise ValueError(f"merge_strategy={merge_strategy!r} is unknown; use one of {list(MERGE_STRATEGIES)}.")
        if scale_factor <= 0:
            raise ValueError(f"scale_factor={scale_factor} must be positive.")

        self.scale_factor = scale_factor
        self.z_channels = z_channels
        self.encoder = Encoder(
            in_channels, ch, ch_mult, num_res_blocks, attn_resolutions, resolution, 2 * z_channels, dropout
        )
        video = {
            "dropout": dropout,
            "kernel_size": video_kernel_size,
            "merge_strategy": merge_strategy,
            "alpha": alpha,
        }
        self.decoder = VideoDecoder(
            z_channels, out_ch, ch, ch_mult, num_res_blocks, attn_resolutions, resolution,
            refinement_attention_levels, refinement_heads, refinement_head_dim, video,
        )  # fmt: skip
        self.quant_conv = nn.Conv2d(2 * z_channels, 2 * z_channels, 1)
        # Never applied (see the module docstring); kept so the published state dict loads strictly.
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, 1)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "VideoAutoencoder":
        """Build from a config.json dict. Keys starting with "_" are bookkeeping and ignored; any other
        key this class does not know is refused, since silently dropping it could build the wrong network."""
        return cls(**constructor_kwargs(cls, config))

    @property
    def levels(self) -> int:
        return len(self.encoder.down)

    @property
    def downsampling_factor(self) -> int:
        """Pixels per latent along each side."""
        return 2 ** (self.levels - 1)

    def encode(self, pixels: torch.Tensor) -> EncodedFrames:
        """pixels: (N, in_channels, H, W) in [-1, 1] -> latents (N, z, H/2^(L-1), W/2^(L-1)) and the
        L+1 features (see EncodedFrames). Frames are encoded independently."""
        if pixels.ndim != 4:
            raise ValueError(f"encode takes frames (N, C, H, W), got shape {tuple(pixels.shape)}.")
        moments, features = self.encoder(pixels)
        mean = self.quant_conv(moments)[:, : self.z_channels]
        return EncodedFrames(latents=mean * self.scale_factor, features=features)

    def decode(self, latents: torch.Tensor, reference: Sequence[torch.Tensor]) -> torch.Tensor:
        """latents: (B, z, T, h, w) scaled as `encode` returns them; reference: L+1 tensors (B, C_i, 2, H_i, W_i),
        each `EncodedFrames.features[i]` at the clip's frames 0 and T-1, stacked along dim 2.

        Returns (B, out_ch, T, h*2^(L-1), w*2^(L-1)), roughly in [-1, 1] and not clamped.
        """
        if latents.ndim != 5:
            raise ValueError(f"decode takes clips of latents (B, z, T, h, w), got shape {tuple(latents.shape)}.")
        if len(reference) != self.levels + 1:
            raise ValueError(f"decode takes {self.levels + 1} reference feature maps, got {len(reference)}.")
        for i, features in enumerate(reference):
            if features.ndim != 5 or features.shape[0] != latents.shape[0] or features.shape[2] != 2:
                raise ValueError(
                    f"reference[{i}] must be (B={latents.shape[0]}, C, 2, H, W): the features of each clip's "
                    f"first and last frame; got shape {tuple(features.shape)}."
                )
        return self.decoder(latents / self.scale_factor, reference)
