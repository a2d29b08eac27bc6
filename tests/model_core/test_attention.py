"""Attention kernels stay within CUDA's launch limits: a batch past 65,535 runs in slices, with the same result."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from model_core import attention, configs
from model_core.attention import MAX_ATTENTION_BATCH, multi_head_attention
from model_core.unet3d import InterpolationUNet

META = torch.device("meta")


class AttentionBatches(TorchDispatchMode):
    """The batch size of every SDPA call."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.scaled_dot_product_attention.default:
            self.batches.append(args[0].shape[0])
        return func(*args, **(kwargs or {}))


@torch.inference_mode()  # where SDPA reaches the dispatch mode whole
def test_a_long_batch_runs_in_slices_with_the_same_result(monkeypatch):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(10, length, 2 * 8, generator=g) for length in (5, 7, 7))
    whole = multi_head_attention(q, k, v, heads=2)
    monkeypatch.setattr(attention, "MAX_ATTENTION_BATCH", 4)
    with AttentionBatches() as seen:
        sliced = multi_head_attention(q, k, v, heads=2)
    assert seen.batches == [4, 4, 2]
    torch.testing.assert_close(sliced, whole, rtol=0, atol=1e-6)


@torch.inference_mode()
def test_temporal_attention_over_more_than_65535_pixels_launches_within_the_limit():
    with META:
        unet = InterpolationUNet.from_config(configs.TINY_INTERPOLATION_UNET).eval()
    batch, frames, height, width = 2, 16, 192, 192  # 73,728 pixel sequences at the first level
    x = torch.empty(batch, 4, frames, height, width, device=META)
    with AttentionBatches() as seen:
        out = unet(
            x,
            torch.zeros(batch, device=META),
            torch.empty(batch, 77, 32, device=META),
            torch.empty(batch, frames, 4, 32, device=META),
            x,
        )
    assert out.shape == x.shape
    assert max(seen.batches) <= MAX_ATTENTION_BATCH < batch * height * width
