"""CLIP's two towers, sharing one transformer encoder, with the state-dict layouts of transformers.

- `CLIPTextModel`: the text encoder (`text_model.*` keys of transformers' CLIPTextModel).
- `CLIPVisionModelWithProjection`: the image encoder (`vision_model.*` and `visual_projection`
  keys), with Paints-UNDO's forward: pixels in the VAE range [-1, 1], any aspect ratio, the
  position table resized to the patch grid.

Written here rather than taken from transformers because the published checkpoints use the
`text_model.*` / `vision_model.*` key layouts, which recent transformers versions rename on load; our
modules keep the file's keys exactly, so loading is a plain strict `load_state_dict`.
"""

import unicodedata
from dataclasses import dataclass, fields
from typing import Any, Self

import torch
import torch.nn.functional as F
from einops import rearrange
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


# CLIP's image normalisation, per RGB channel (OpenAI CLIP; OpenCLIP's ViT-H/14 uses it too).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class _EncoderConfig:
    """What the text and vision configs share: checks of the encoder fields and `from_dict`."""

    hidden_size: int
    num_attention_heads: int
    hidden_act: str

    def __post_init__(self) -> None:
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act={self.hidden_act!r} is not supported; use one of {list(_ACTIVATIONS)}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}."
            )

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> Self:
        """Build from a transformers config.json dict, keeping only the keys that are fields here.

        Every key that shapes the network is a field; the others (see the class docstring) do not
        affect the outputs we use at inference and are ignored.
        """
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in config.items() if key in known})


@dataclass(frozen=True)
class CLIPTextConfig(_EncoderConfig):
    """The fields of a transformers `CLIPTextConfig` that shape the network (defaults: CLIP ViT-L/14).

    Ignored by `from_dict`: token ids, projection_dim (there is no text projection here), dropout
    and init scales, and the generic PretrainedConfig keys.
    """

    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5


@dataclass(frozen=True)
class CLIPVisionConfig(_EncoderConfig):
    """The fields of a transformers `CLIPVisionConfig` that shape the network (defaults: transformers', ViT-B/32).

    Ignored by `from_dict`: dropout and init scales and the generic PretrainedConfig keys.
    """

    hidden_size: int = 768
    intermediate_size: int = 3072
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_channels != len(CLIP_MEAN):
            raise ValueError(f"num_channels={self.num_channels} is not supported; CLIP normalises RGB (3 channels).")
        if not 0 < self.patch_size <= self.image_size:
            raise ValueError(f"patch_size={self.patch_size} must be in 1..image_size={self.image_size}.")

    @property
    def grid_size(self) -> int:
        """Patches along each side of the square training image: the position table is grid_size^2 + 1 rows."""
        return self.image_size // self.patch_size


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

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "CLIPTextModel":
        """Build from a transformers config.json dict (see `CLIPTextConfig.from_dict`)."""
        return cls(CLIPTextConfig.from_dict(config))

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


def prepare_pixels(pixels: torch.Tensor, grid_size: int, patch_size: int) -> torch.Tensor:
    """Turn VAE-range pixels into CLIP's input, keeping the aspect ratio.

    The shorter side is resized to `grid_size` patches and the longer one to the nearest whole
    number of patches at the same scale (bicubic, antialiased), then CLIP's normalisation applies.
    pixels: (N, 3, H, W) in [-1, 1] -> (N, 3, patch_size * gh, patch_size * gw) float32. Computed in
    float32 whatever the model's dtype: precise, and CPU kernels lack bicubic antialiasing in bfloat16.
    """
    pixels = pixels.float() * 0.5 + 0.5
    height, width = pixels.shape[-2:]
    scale = grid_size / min(height, width)
    # Python's round (half to even) on the same float product as the reference, so the grids agree.
    size = (patch_size * round(scale * height), patch_size * round(scale * width))
    pixels = F.interpolate(pixels, size=size, mode="bicubic", antialias=True)
    mean = torch.tensor(CLIP_MEAN, device=pixels.device, dtype=pixels.dtype)[:, None, None]
    std = torch.tensor(CLIP_STD, device=pixels.device, dtype=pixels.dtype)[:, None, None]
    return (pixels - mean) / std


class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.grid_size = config.grid_size
        self.class_embedding = nn.Parameter(torch.randn(config.hidden_size))
        self.patch_embedding = nn.Conv2d(
            config.num_channels, config.hidden_size, config.patch_size, stride=config.patch_size, bias=False
        )
        self.position_embedding = nn.Embedding(1 + config.grid_size**2, config.hidden_size)

    def positions(self, height: int, width: int) -> torch.Tensor:
        """Position embeddings for a `height` x `width` patch grid: (1 + height * width, hidden).

        Row 0 (the class token) is kept; the square table of the other rows is resized (nearest) to the grid.
        """
        table = self.position_embedding.weight
        grid = rearrange(table[1:], "(h w) c -> 1 c h w", h=self.grid_size, w=self.grid_size)
        grid = F.interpolate(grid, size=(height, width), mode="nearest")
        return torch.cat([table[:1], rearrange(grid, "1 c h w -> (h w) c")])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels: (N, 3, patch * gh, patch * gw), normalised -> tokens (N, 1 + gh * gw, hidden)."""
        patches = self.patch_embedding(pixels.to(self.patch_embedding.weight.dtype))
        height, width = patches.shape[-2:]
        patches = rearrange(patches, "n c h w -> n (h w) c")
        cls = self.class_embedding.expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.positions(height, width)


class CLIPVisionTransformer(nn.Module):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.embeddings = CLIPVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # sic, as transformers
        self.encoder = CLIPEncoder(
            config.hidden_size, config.num_attention_heads, config.intermediate_size,
            config.hidden_act, config.layer_norm_eps, config.num_hidden_layers,
        )  # fmt: skip
        # Only feeds transformers' pooled output; the pipeline uses the last hidden state.
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.pre_layrnorm(self.embeddings(pixels)), causal=False)


class CLIPVisionModelWithProjection(nn.Module):
    """CLIP image tower with Paints-UNDO's input handling; returns the last hidden state.

    Unlike stock CLIP it takes pixels in [-1, 1] (the VAE range) at any size and aspect ratio: the
    image is resized to about grid_size^2 patches with its aspect ratio kept (`prepare_pixels`), and
    the position table is resized to that patch grid. The output is the encoder's last hidden state,
    before `post_layernorm`; `post_layernorm` and `visual_projection` are unused but kept so that the
    published weights load as they are.
    """

    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.config = config
        self.vision_model = CLIPVisionTransformer(config)
        self.visual_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "CLIPVisionModelWithProjection":
        """Build from a transformers config.json dict (see `CLIPVisionConfig.from_dict`)."""
        return cls(CLIPVisionConfig.from_dict(config))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels: (N, 3, H, W) in [-1, 1] -> hidden states (N, 1 + gh * gw, hidden_size).

        With G = image_size // patch_size and s = G / min(H, W): gh = round(s * H), gw = round(s * W).
        """
        return self.vision_model(prepare_pixels(pixels, self.config.grid_size, self.config.patch_size))
