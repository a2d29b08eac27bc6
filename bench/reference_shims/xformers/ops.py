"""`memory_efficient_attention` in xformers' tensor layout, computed with PyTorch's scaled_dot_product_attention.

xformers takes query (B, M, H, K), key and value (B, N, H, K) and returns (B, M, H, Kv); 3-D inputs
(B, M, K) mean a single head. PyTorch's SDPA wants heads before the sequence, (B, H, M, K), so the
stand-in swaps those two axes on the way in and back on the way out. Upstream's diffusers_vdm only
passes 3-D tensors with no bias, dropout or scale; a tensor bias, dropout and scale are handled
anyway, while xformers' structured bias classes (masks built from sequence lengths) are refused.
"""

import torch
import torch.nn.functional as F


def memory_efficient_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_bias: torch.Tensor | None = None,
    p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(query key^T * scale + attn_bias) value, with scale 1/sqrt(K) by default, in xformers' layout."""
    if attn_bias is not None and not isinstance(attn_bias, torch.Tensor):
        raise NotImplementedError(
            f"The SDPA stand-in for xformers takes attn_bias as None or a tensor, not {type(attn_bias).__name__}."
        )
    single_head = query.dim() == 3
    if single_head:  # (B, M, K) -> (B, M, 1, K)
        query, key, value = (t.unsqueeze(2) for t in (query, key, value))
    if query.dim() != 4:
        raise ValueError(f"memory_efficient_attention takes (B, M, K) or (B, M, H, K), got {tuple(query.shape)}.")
    out = F.scaled_dot_product_attention(
        query.transpose(1, 2),
        key.transpose(1, 2),
        value.transpose(1, 2),
        attn_mask=attn_bias,
        dropout_p=p,
        scale=scale,
    ).transpose(1, 2)
    return out.squeeze(2) if single_head else out
