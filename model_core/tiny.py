"""The tiny preset: random-weight checkpoints in the exact published layouts, small enough for tests,
demos and CI, and the same at full size for the benchmark.

A production module, not a test helper: `paints-undo --tiny` and `PAINTS_UNDO_MODEL=tiny` (through
`model_core.sources.fetch_model_sources`) use it to run the whole service or CLI without the real
weights. Random weights generate noise, not drawings: choosing the preset is always explicit and
documented, and nothing falls back to it when a real checkpoint is missing. Tiny checkpoints
exercise loading and every code path on a CPU in seconds; full-size ones (`full_size=True`, the
published configs of `configs.py`) have the real models' FLOPs and memory, for `bench/`. Output is
deterministic for a seed. Needs the `tiny` extra (onnx, to write the tagger): pip install '.[tiny]'.
Also: `tiny_pipeline`.
"""

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from diffusers import AutoencoderKL
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import save_file

from model_core import configs
from model_core.checkpoints import DIFFUSERS_WEIGHTS, TRANSFORMERS_WEIGHTS
from model_core.clip import CLIPTextModel, CLIPVisionModelWithProjection
from model_core.pipeline import PaintsUndoPipeline
from model_core.resampler import Resampler
from model_core.sources import ModelSources
from model_core.unet2d import KeyframeUNet
from model_core.unet3d import InterpolationUNet
from model_core.video_vae import VideoAutoencoder

DIFFUSERS_VERSION = "0.28.0"
# The interpolation model's components, each with a config preset in `configs` (INTERPOLATION_<NAME>).
SUBFOLDERS_WITH_CONFIGS = ("text_encoder", "image_encoder", "vae", "image_projection", "unet")

# Words the tiny tokenizer knows whole; anything else falls back to single characters.
_TINY_WORDS = [
    "masterpiece", "best", "quality", "1girl", "solo", "smile", "long", "hair", "lowres", "bad",
    "anatomy", "hands", "cropped", "worst", "sketch", "color", "blue", "eyes", "dress", "white",
]  # fmt: skip

# The tag CSV of the tiny tagger: ratings (category 9), general tags (0), then characters (4),
# with underscores and parentheses so the tagger's escaping rules are exercised.
TINY_TAGS = (
    [("general", "9"), ("sensitive", "9"), ("questionable", "9"), ("explicit", "9")]
    + [(name, "0") for name in [
        "1girl", "solo", "long_hair", "smile", "blue_eyes", "dress", "white_background", "sketch",
        "short_hair", "holding", "looking_at_viewer", "simple_background", ":d", "hat_(object)",
        "monochrome", "open_mouth",
    ]]
    + [(name, "4") for name in ["hatsune_miku", "ganyu_(genshin_impact)", "kirisame_marisa", "rem_(re:zero)"]]
)  # fmt: skip
TINY_TAGGER_SIZE = 64


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: each byte maps to a printable unicode character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def write_tiny_tokenizer(folder: Path, *, pad_token: str = "<|endoftext|>") -> int:
    """Write a CLIP BPE tokenizer with a small vocabulary (bytes plus a few words). Returns the vocab size."""
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    vocab = alphabet + [char + "</w>" for char in alphabet]
    merges: list[str] = []
    for word in _TINY_WORDS:
        # Merge left to right, the last merge closing the word: "m a", "ma s", ..., "masterpiec e</w>".
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        merged = pieces[0]
        for piece in pieces[1:]:
            merge = f"{merged} {piece}"
            merged += piece
            if merge not in merges:
                merges.append(merge)
                vocab.append(merged)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    vocab = list(dict.fromkeys(vocab))
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    tokenizer_config = special | {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return len(vocab)


def _save_component(
    folder: Path, config: dict[str, Any], module: torch.nn.Module, weights_name: str, dtype: torch.dtype
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    state_dict = {
        key: value.to("cpu", dtype if value.is_floating_point() else value.dtype).contiguous()
        for key, value in module.state_dict().items()
    }
    save_file(state_dict, folder / weights_name, metadata={"format": "pt"})


def _write_text_tower(folder: Path, text_config: dict[str, Any], pad_token: str, dtype: torch.dtype) -> None:
    """The tiny tokenizer in `folder/tokenizer` and a CLIP text encoder over its vocabulary in `folder/text_encoder`.

    At full size only the token embedding is smaller than the real one (the tiny vocabulary); the
    77-token forward costs the same.
    """
    vocab_size = write_tiny_tokenizer(folder / "tokenizer", pad_token=pad_token)
    text_config = text_config | {"vocab_size": vocab_size}
    encoder = CLIPTextModel.from_config(text_config)
    _save_component(folder / "text_encoder", text_config, encoder, TRANSFORMERS_WEIGHTS, dtype)


def write_keyframe_checkpoint(
    folder: str | Path,
    *,
    full_size: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    unet: dict[str, Any] | None = None,
    text_encoder: dict[str, Any] | None = None,
    vae: dict[str, Any] | None = None,
    pad_token: str = "<|endoftext|>",
) -> Path:
    """Write a random-weight keyframe model in the layout of `lllyasviel/paints_undo_single_frame`.

    full_size: the published configs (`configs.KEYFRAME_*`) instead of the tiny preset (`configs.TINY_KEYFRAME_*`).
    dtype: of the saved floating-point weights. device: where the weights are drawn (a GPU draws a
        full-size model in seconds; the values then differ from a CPU draw).
    unet, text_encoder, vae: config values that replace those of the preset.
    """
    folder = Path(folder)
    prefix = "KEYFRAME" if full_size else "TINY_KEYFRAME"
    preset = {name: getattr(configs, f"{prefix}_{name.upper()}") for name in ("text_encoder", "vae", "unet")}
    with torch.random.fork_rng(devices=[]), torch.device(device):  # seed without touching the caller's RNG
        torch.manual_seed(seed)
        _write_text_tower(folder, preset["text_encoder"] | (text_encoder or {}), pad_token, dtype)

        vae_config = preset["vae"] | (vae or {})
        vae_model = AutoencoderKL(**vae_config)
        vae_file_config = {"_class_name": "AutoencoderKL", "_diffusers_version": DIFFUSERS_VERSION} | vae_config
        _save_component(folder / "vae", vae_file_config, vae_model, DIFFUSERS_WEIGHTS, dtype)

        unet_config = preset["unet"] | (unet or {})
        unet_model = KeyframeUNet(**unet_config)
        # As published: the saved config says 4 input channels although conv_in takes 8.
        unet_file_config = {
            "_class_name": "UNet2DConditionModel",
            "_diffusers_version": DIFFUSERS_VERSION,
        } | unet_config
        _save_component(folder / "unet", unet_file_config, unet_model, DIFFUSERS_WEIGHTS, dtype)
    return folder


def write_interpolation_checkpoint(
    folder: str | Path,
    *,
    full_size: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    unet: dict[str, Any] | None = None,
    vae: dict[str, Any] | None = None,
    text_encoder: dict[str, Any] | None = None,
    image_encoder: dict[str, Any] | None = None,
    image_projection: dict[str, Any] | None = None,
    pad_token: str = "!",
) -> Path:
    """Write a random-weight interpolation model in the layout of `lllyasviel/paints_undo_multi_frame`.

    full_size: the published configs (`configs.INTERPOLATION_*`) instead of the tiny preset
        (`configs.TINY_INTERPOLATION_*`). dtype, device: as in `write_keyframe_checkpoint`.
    unet, vae, text_encoder, image_encoder, image_projection: config values that replace those of the
    preset. The tokenizer pads with "!", as SD2.1's does. The hub-mixin components (unet, vae,
    image_projection) save their constructor arguments as config.json, as upstream's
    PyTorchModelHubMixin does; every weight file is model.safetensors.
    """
    folder = Path(folder)
    prefix = "INTERPOLATION" if full_size else "TINY_INTERPOLATION"
    preset = {name: getattr(configs, f"{prefix}_{name.upper()}") for name in SUBFOLDERS_WITH_CONFIGS}
    with torch.random.fork_rng(devices=[]), torch.device(device):  # seed without touching the caller's RNG
        torch.manual_seed(seed)
        _write_text_tower(folder, preset["text_encoder"] | (text_encoder or {}), pad_token, dtype)
        for name, overrides, build in (
            ("image_encoder", image_encoder, CLIPVisionModelWithProjection.from_config),
            ("vae", vae, VideoAutoencoder.from_config),
            ("image_projection", image_projection, Resampler.from_config),
            ("unet", unet, InterpolationUNet.from_config),
        ):
            config = preset[name] | (overrides or {})
            _save_component(folder / name, config, build(config), TRANSFORMERS_WEIGHTS, dtype)
    return folder


def write_tiny_tagger(folder: str | Path, *, seed: int = 0, probabilities: list[float] | None = None) -> Path:
    """Write a tiny WD14-style tagger (`model.onnx`, `selected_tags.csv`), as in `SmilingWolf/wd-v1-4-*`.

    The network takes (1, 64, 64, 3) float32 BGR pixels 0..255 (NHWC, like the real one) and
    returns one sigmoid probability per tag: a random linear map of a 4x4 colour thumbnail. With
    `probabilities`, the output is that constant vector instead (for threshold tests).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "selected_tags.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tag_id", "name", "category", "count"])
        for i, (name, category) in enumerate(TINY_TAGS):
            writer.writerow([1000 + i, name, category, 100000 - i])

    rng = np.random.default_rng(seed)
    num_tags, grid = len(TINY_TAGS), 4
    if probabilities is None:
        weight = rng.normal(0, 1.5, size=(3 * grid * grid, num_tags)).astype(np.float32)
        bias = rng.normal(0, 1.0, size=(num_tags,)).astype(np.float32)
    else:
        if len(probabilities) != num_tags:
            raise ValueError(f"probabilities must have {num_tags} values, one per tag, got {len(probabilities)}.")
        p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-6, 1 - 1e-6)
        weight = np.zeros((3 * grid * grid, num_tags), dtype=np.float32)
        bias = np.log(p / (1 - p)).astype(np.float32)
    pool = TINY_TAGGER_SIZE // grid
    nodes = [
        helper.make_node("Transpose", ["input_1:0"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["nchw", "inv255"], ["unit"]),
        helper.make_node("Sub", ["unit", "half"], ["centred"]),
        helper.make_node("AveragePool", ["centred"], ["pooled"], kernel_shape=[pool, pool], strides=[pool, pool]),
        helper.make_node("Flatten", ["pooled"], ["features"]),
        helper.make_node("MatMul", ["features", "weight"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "bias"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["predictions_sigmoid"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "inv255"),
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"),
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(bias, "bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_wd14_tagger",
        [helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, [1, TINY_TAGGER_SIZE, TINY_TAGGER_SIZE, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, [1, num_tags])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, folder / "model.onnx")
    return folder


def write_tiny_models(folder: str | Path) -> ModelSources:
    """All three tiny checkpoints in `folder`, each under its repo's name (`ModelSources.from_folder`)."""
    sources = ModelSources.from_folder(folder)
    write_tiny_tagger(sources.tagger)
    write_keyframe_checkpoint(sources.keyframe_model)
    write_interpolation_checkpoint(sources.interpolation_model)
    return sources


def write_full_size_models(
    folder: str | Path, *, dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu"
) -> ModelSources:
    """Full-size random-weight keyframe and interpolation models (about 7 GB in bfloat16) and the tiny
    tagger (the tagger runs on the CPU in a fraction of a second, so its size does not matter here)."""
    sources = ModelSources.from_folder(folder)
    write_tiny_tagger(sources.tagger)
    write_keyframe_checkpoint(sources.keyframe_model, full_size=True, dtype=dtype, device=device)
    write_interpolation_checkpoint(sources.interpolation_model, full_size=True, dtype=dtype, device=device)
    return sources


def tiny_pipeline(
    folder: str | Path, *, device: str = "cpu", dtype: str = "auto", **options: Any
) -> PaintsUndoPipeline:
    """The pipeline over tiny checkpoints written to `folder`, with clip sizes the tiny models run fast.

    The tiny interpolation model's attention runs at full latent resolution, so it uses
    `configs.TINY_BUCKETS` (48x32 and the like) instead of the reference's 448x384 ones.
    options: other arguments of `PaintsUndoPipeline.from_pretrained` (low_memory, compile, ...).
    """
    return PaintsUndoPipeline.from_pretrained(
        write_tiny_models(folder), device=device, dtype=dtype, buckets=configs.TINY_BUCKETS, **options
    )
