"""Multi-head attention kernels shared by the video models, and upstream's temporal windows.

Attention runs through `torch.nn.functional.scaled_dot_product_attention` (flash or
memory-efficient kernels on CUDA, a fused kernel on CPU). xformers is an optional backend, used
only when installed and asked for; the reference runs xformers, and the two agree to float noise.
"""

from enum import StrEnum

import einops
import torch
import torch.nn.functional as F

try:
    import xformers.ops as xformers_ops
except ImportError:  # the optional extra is not installed
    xformers_ops = None


# CUDA grid dimensions y and z stop at 65,535, and the flash and memory-efficient kernels (SDPA's and
# xformers') launch one block row per batch item there: the video UNet's temporal attention has one
# batch item per pixel of every clip (37,632 at the default job), so 13 clips would not launch.
MAX_ATTENTION_BATCH = 65535


class AttentionBackend(StrEnum):
    SDPA = "sdpa"
    XFORMERS = "xformers"


class TemporalWindow(StrEnum):
    """Which frames a frame's spatial self-attention also sees (upstream's modes; off by default).

    PREVIOUS: itself and the frame before (frame 0 sees itself twice); FIRST: itself and frame 0;
    ROLL: the frames before and after it, cyclically, and itself.
    """

    PREVIOUS = "prv"
    FIRST = "first"
    ROLL = "roll"


def check_backend(backend: AttentionBackend) -> None:
    if backend == AttentionBackend.XFORMERS and xformers_ops is None:
        raise ValueError(
            "attention backend 'xformers' needs the xformers package: pip install 'paints-undo[xformers]'."
        )


def multi_head_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, backend: AttentionBackend = AttentionBackend.SDPA
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head. q: (B, Lq, heads*d), k and v: (B, Lk, heads*d) -> (B, Lq, heads*d).

    A batch longer than MAX_ATTENTION_BATCH runs in slices (the batch items are independent).
    """
    if q.shape[0] <= MAX_ATTENTION_BATCH:
        return _attention(q, k, v, heads, backend)
    slices = range(0, q.shape[0], MAX_ATTENTION_BATCH)
    return torch.cat([_attention(*(t[i : i + MAX_ATTENTION_BATCH] for t in (q, k, v)), heads, backend) for i in slices])


def _attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, backend: AttentionBackend
) -> torch.Tensor:
    if backend == AttentionBackend.XFORMERS:
        q, k, v = (einops.rearrange(t, "b l (h d) -> b l h d", h=heads) for t in (q, k, v))
        return einops.rearrange(xformers_ops.memory_efficient_attention(q, k, v), "b l h d -> b l (h d)")
    q, k, v = (einops.rearrange(t, "b l (h d) -> b h l d", h=heads) for t in (q, k, v))
    return einops.rearrange(F.scaled_dot_product_attention(q, k, v), "b h l d -> b l (h d)")


def temporal_window(x: torch.Tensor, frames: int, window: TemporalWindow) -> torch.Tensor:
    """Extend each frame's tokens with those of its window frames. x: (B*T, L, C) -> (B*T, k*L, C)."""
    x = einops.rearrange(x, "(b t) l c -> b t l c", t=frames)
    if window == TemporalWindow.PREVIOUS:
        parts = [x, torch.cat([x[:, :1], x[:, :-1]], dim=1)]
    elif window == TemporalWindow.FIRST:
        parts = [x, x[:, :1].expand_as(x)]
    else:
        parts = [torch.roll(x, shifts=1, dims=1), x, torch.roll(x, shifts=-1, dims=1)]
    return einops.rearrange(torch.cat(parts, dim=2), "b t l c -> (b t) l c")
