"""CLIP text encoder (the text tower of CLIP), with the state-dict layout of transformers' CLIPTextModel.

Written here rather than taken from transformers because the published checkpoints use the
`text_model.*` key layout, which recent transformers versions rename on load; our module keeps
the file's keys exactly, so loading is a plain strict `load_state_dict`.
"""

import unicodedata
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# The activations transformers accepts for CLIP's hidden_act that any published CLIP uses.
_ACTIVATIONS = {
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


@dataclass(frozen=True)
class CLIPTextConfig:
    """The fields of a transformers `CLIPTextConfig` that shape the network (defaults: CLIP ViT-L/14)."""

    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act={self.hidden_act!r} is not supported; use one of {list(_ACTIVATIONS)}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}."
            )

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "CLIPTextConfig":
        """Build from a transformers config.json dict.

        Every key of CLIPTextConfig that shapes the network is a field here; the rest (token ids,
        projection_dim, dropout and init scales, generic PretrainedConfig keys) do not affect the
        last hidden state at inference and are ignored.
        """
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in config.items() if key in known})


class CLIPAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        """x: (B, L, C) -> (B, L, C)."""
        b, n, c = x.shape
        q, k, v = (proj(x).view(b, n, self.heads, c // self.heads).transpose(1, 2) for proj in
                   (self.q_proj, self.k_proj, self.v_proj))  # fmt: skip
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class CLIPMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.act = _ACTIVATIONS[act]
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    """Pre-norm transformer layer: x + attn(LN x), then x + mlp(LN x)."""

    def __init__(self, dim: int, heads: int, hidden: int, act: str, eps: float):
        super().__init__()
        self.self_attn = CLIPAttention(dim, heads)
        self.layer_norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp = CLIPMLP(dim, hidden, act)
        self.layer_norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), causal)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, act: str, eps: float, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(dim, heads, hidden, act, eps) for _ in range(layers))

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, causal)
        return x


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.token_embedding(input_ids) + self.position_embedding(positions)


class CLIPTextTransformer(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.embeddings = CLIPTextEmbeddings(config)
        self.encoder = CLIPEncoder(
            config.hidden_size, config.num_attention_heads, config.intermediate_size,
            config.hidden_act, config.layer_norm_eps, config.num_hidden_layers,
        )  # fmt: skip
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        return self.final_layer_norm(self.encoder(x, causal=True))


class CLIPTextModel(nn.Module):
    """CLIP text tower; returns the last hidden state (after the final LayerNorm), as Stable Diffusion uses it."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.config = config
        self.text_model = CLIPTextTransformer(config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: (B, L) int64 -> hidden states (B, L, hidden_size)."""
        return self.text_model(input_ids)


# CJK ideograph blocks, which CLIP's original (slow) tokenizer splits into one word per character.
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)  # fmt: skip


def clean_prompt(text: str) -> str:
    """Clean text as the slow CLIPTokenizer did before BPE, which the reference implementation used.

    The fast tokenizer of recent transformers skips these steps: it would keep control and
    zero-width characters and merge runs of CJK ideographs into one word, giving other token ids.
    """
    characters = []
    for char in text:
        code = ord(char)
        if char in " \t\n\r" or unicodedata.category(char) == "Zs":
            characters.append(" ")
        elif code == 0 or code == 0xFFFD or unicodedata.category(char).startswith("C"):
            continue
        elif any(low <= code <= high for low, high in _CJK_RANGES):
            characters.append(f" {char} ")
        else:
            characters.append(char)
    return "".join(characters)


def encode_prompts(tokenizer, text_encoder: CLIPTextModel, prompts: list[str]) -> torch.Tensor:
    """Tokenise to the tokenizer's max length (padded with its own pad token, truncated) and encode.

    No attention mask is passed, as in Stable Diffusion: padding positions are encoded too.
    Returns (len(prompts), model_max_length, hidden_size).
    """
    ids = tokenizer(
        [clean_prompt(prompt) for prompt in prompts],
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    device = text_encoder.text_model.embeddings.token_embedding.weight.device
    return text_encoder(ids.to(device))
