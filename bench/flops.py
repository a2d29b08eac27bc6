"""The FLOPs of one render, counted on the networks themselves.

Each network is built from its checkpoint's own config.json on the meta device (shapes only: no
weights, no memory, no arithmetic) and called with the shapes the render passes it, under torch's
FlopCounterMode; the count is then multiplied by how often the render calls it. The calls are
those of `keyframe_job` and `interpolation_job`, which walk a render as the models run it;
`bench/memory.py` walks the same calls to count memory.
Matrix products, convolutions and attention are counted (2 FLOPs per multiply-add); elementwise
work (norms, activations, softmax) is not: it is memory-bound and a small share of the FLOPs.
The tagger (ONNX, on the CPU) is left out. Step caching (`video_cache_interval`) is not applied:
the count is the exact job's.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from diffusers import AutoencoderKL
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from model_core.clip import CLIPTextModel, CLIPVisionModelWithProjection
from model_core.pipeline import ModelSources
from model_core.resampler import Resampler
from model_core.settings import CLIP_FRAMES, RenderSettings
from model_core.unet2d import KeyframeUNet
from model_core.unet3d import InterpolationUNet
from model_core.video_vae import VideoAutoencoder

META = torch.device("meta")
# The default job's keyframe size, the reference's: stated, so that a count never depends on a picture.
REFERENCE_SIZE = {"width": 512, "height": 640}
# Each component's folder name and how to build it from its config.json.
KEYFRAME_PARTS: dict[str, Callable[[dict], nn.Module]] = {
    "text_encoder": CLIPTextModel.from_config,
    "vae": AutoencoderKL.from_config,
    "unet": KeyframeUNet.from_config,
}
INTERPOLATION_PARTS: dict[str, Callable[[dict], nn.Module]] = {
    "text_encoder": CLIPTextModel.from_config,
    "image_encoder": CLIPVisionModelWithProjection.from_config,
    "image_projection": Resampler.from_config,
    "vae": VideoAutoencoder.from_config,
    "unet": InterpolationUNet.from_config,
}


class Call(Protocol):
    """How a job walk runs one network call: `call(times, uses, function, *args)` returns `function(*args)`.

    times: how often the render makes this call; uses: the components whose weights it needs.
    """

    def __call__(self, times: int, uses: tuple[str, ...], function: Callable[..., Any], *args: Any) -> Any: ...


def build_on_meta(
    folder: str | Path, parts: dict[str, Callable[[dict], nn.Module]], dtype: torch.dtype = torch.float32
) -> dict[str, nn.Module]:
    """Each component of a checkpoint folder, built from its config.json on the meta device."""
    nets = {}
    for name, build in parts.items():
        with META:
            nets[name] = build(json.loads((Path(folder) / name / "config.json").read_text())).eval()
        if dtype != torch.float32:
            nets[name].to(dtype)
    return nets


def dtype_of(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def keyframe_job(nets: dict[str, nn.Module], settings: RenderSettings, call: Call, *, one_at_a_time: bool) -> None:
    """The keyframe stage's calls: encode the picture, two prompts, the sampler's UNet calls, decode
    (all keyframes at once, or `one_at_a_time` as low-memory mode decodes them)."""
    text_encoder, vae, unet = nets["text_encoder"], nets["vae"], nets["unet"]
    dtype = dtype_of(unet)
    count = len(settings.keyframe_undo_steps)
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    h, w = settings.height // scale, settings.width // scale
    tokens = text_encoder.config.max_position_embeddings
    latents, width = unet.config.in_channels, unet.config.cross_attention_dim

    picture = torch.empty(1, 3, settings.height, settings.width, device=META, dtype=dtype)
    image_latent = call(1, ("vae",), lambda p: vae.encode(p).latent_dist.mode(), picture)
    call(1, ("text_encoder",), text_encoder, torch.zeros(2, tokens, dtype=torch.long, device=META))
    # Positive and negative prompts as one batch of 2 x keyframes.
    x = torch.empty(2 * count, latents, h, w, device=META, dtype=dtype)
    steps = torch.zeros(2 * count, dtype=torch.long, device=META)
    text = torch.empty(2 * count, tokens, width, device=META, dtype=dtype)
    call(settings.keyframe_steps, ("unet",), unet, x, steps, text, image_latent, steps)
    del x, text
    latents = torch.empty(count, latents, h, w, device=META, dtype=dtype)
    for batch in [latents[i : i + 1] for i in range(count)] if one_at_a_time else [latents]:
        call(1, ("vae",), vae.decode, batch)


def interpolation_job(
    nets: dict[str, nn.Module],
    settings: RenderSettings,
    bucket: tuple[int, int],
    max_batch: int,
    call: Call,
) -> None:
    """The interpolation stage's calls for len(undo_steps) + 1 clips at `bucket` (height, width), sampled
    `max_batch` clips at a time: conditions, the sampler's UNet calls, and the decodes, one clip at a time."""
    text_encoder, image_encoder, projection = nets["text_encoder"], nets["image_encoder"], nets["image_projection"]
    vae, unet = nets["vae"], nets["unet"]
    dtype = dtype_of(unet)
    clips = len(settings.keyframe_undo_steps) + 1
    height, width = bucket
    tokens = text_encoder.config.max_position_embeddings

    def image_tokens(pictures: torch.Tensor) -> torch.Tensor:
        encoded = image_encoder(pictures)
        return projection(encoded.reshape(-1, 2, *encoded.shape[1:]))

    call(1, ("text_encoder",), text_encoder, torch.zeros(2, tokens, dtype=torch.long, device=META))
    for start in range(0, clips, max_batch):
        batch = min(max_batch, clips - start)
        pictures = torch.empty(2 * batch, 3, height, width, device=META, dtype=dtype)  # each clip's first and last
        uses = ("image_encoder", "image_projection")
        positive = call(1, uses, image_tokens, pictures)
        negative = call(1, uses, image_tokens, pictures[:2])  # the mid-grey pair, once per batch
        encoded = call(1, ("vae",), vae.encode, pictures)
        del pictures
        latent = encoded.latents
        # Positive and negative passes as one batch.
        x = torch.empty(2 * batch, latent.shape[1], CLIP_FRAMES, *latent.shape[2:], device=META, dtype=dtype)
        text = torch.empty(2 * batch, tokens, text_encoder.config.hidden_size, device=META, dtype=dtype)
        image = torch.cat([positive, negative.expand_as(positive)])
        fs = torch.zeros(2 * batch, dtype=torch.long, device=META)
        timesteps = torch.zeros(2 * batch, device=META)
        call(settings.video_steps, ("unet",), unet, x, timesteps, text, image, x, fs)
        del text, image, positive, negative

        # Decoded one clip at a time, each with its two pictures' encoder features.
        reference = [f.reshape(batch, 2, *f.shape[1:])[:1].transpose(1, 2) for f in encoded.features]
        call(batch, ("vae",), vae.decode, x[:1, :, :, :, :], reference)


class _FlopCount:
    def __init__(self):
        self.total = 0

    def __call__(self, times: int, uses: tuple[str, ...], function: Callable[..., Any], *args: Any) -> Any:
        with FlopCounterMode(display=False) as counter:
            out = function(*args)
        self.total += times * counter.get_total_flops()
        return out


def count_flops(function: Callable[..., object], *args: object) -> int:
    """FLOPs of `function(*args)`."""
    count = _FlopCount()
    count(1, (), function, *args)
    return count.total


@torch.inference_mode()
def keyframe_flops(folder: str | Path, settings: RenderSettings) -> int:
    """FLOPs of the keyframe stage: encode the picture, two prompts, the sampler's UNet calls, decode."""
    count = _FlopCount()
    keyframe_job(build_on_meta(folder, KEYFRAME_PARTS), settings, count, one_at_a_time=False)
    return count.total


@torch.inference_mode()
def interpolation_flops(folder: str | Path, settings: RenderSettings, bucket: tuple[int, int], max_batch: int) -> int:
    """FLOPs of the interpolation stage for len(undo_steps) + 1 clips at `bucket` (height, width),
    sampled `max_batch` clips at a time: conditions, the sampler's UNet calls and the decodes."""
    count = _FlopCount()
    interpolation_job(build_on_meta(folder, INTERPOLATION_PARTS), settings, bucket, max_batch, count)
    return count.total


def render_flops(
    sources: ModelSources, settings: RenderSettings, bucket: tuple[int, int], max_batch: int
) -> dict[str, int]:
    """FLOPs of each sampling stage of one render, and their total."""
    keyframes = keyframe_flops(sources.keyframe_model, settings)
    interpolation = interpolation_flops(sources.interpolation_model, settings, bucket, max_batch)
    return {"keyframes": keyframes, "interpolation": interpolation, "total": keyframes + interpolation}
