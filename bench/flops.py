"""The FLOPs of one render, counted on the networks themselves.

Each network is built from its checkpoint's own config.json on the meta device (shapes only: no
weights, no memory, no arithmetic) and called once with the shapes the render passes it, under
torch's FlopCounterMode; the count is then multiplied by how often the render calls it.
Matrix products, convolutions and attention are counted (2 FLOPs per multiply-add); elementwise
work (norms, activations, softmax) is not: it is memory-bound and a small share of the FLOPs.
The tagger (ONNX, on the CPU) is left out. Step caching (`video_cache_interval`) is not applied:
the count is the exact job's.
"""

import json
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch.utils.flop_counter import FlopCounterMode

from model_core.clip import CLIPTextModel, CLIPVisionModelWithProjection
from model_core.pipeline import ModelSources
from model_core.resampler import Resampler
from model_core.settings import CLIP_FRAMES, RenderSettings
from model_core.unet2d import KeyframeUNet
from model_core.unet3d import InterpolationUNet
from model_core.video_vae import VideoAutoencoder

META = torch.device("meta")


def count_flops(function: Callable[..., object], *args: object) -> int:
    """FLOPs of `function(*args)`."""
    with FlopCounterMode(display=False) as counter:
        function(*args)
    return counter.get_total_flops()


def _build(folder: Path, build: Callable[[dict], torch.nn.Module]) -> torch.nn.Module:
    with META:
        return build(json.loads((folder / "config.json").read_text())).eval()


@torch.inference_mode()
def keyframe_flops(folder: str | Path, settings: RenderSettings) -> int:
    """FLOPs of the keyframe stage: encode the picture, two prompts, the sampler's UNet calls, decode."""
    folder = Path(folder)
    text_encoder = _build(folder / "text_encoder", CLIPTextModel.from_config)
    vae = _build(folder / "vae", AutoencoderKL.from_config)
    unet = _build(folder / "unet", KeyframeUNet.from_config)
    count = len(settings.undo_steps)
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    h, w = settings.height // scale, settings.width // scale
    tokens = text_encoder.config.max_position_embeddings
    latents, width = unet.config.in_channels, unet.config.cross_attention_dim

    encode = count_flops(vae.encode, torch.empty(1, 3, settings.height, settings.width, device=META))
    prompts = count_flops(text_encoder, torch.zeros(2, tokens, dtype=torch.long, device=META))
    # Positive and negative prompts as one batch of 2 x keyframes.
    step = count_flops(
        unet,
        torch.empty(2 * count, latents, h, w, device=META),
        torch.zeros(2 * count, dtype=torch.long, device=META),
        torch.empty(2 * count, tokens, width, device=META),
        torch.empty(1, latents, h, w, device=META),
        torch.zeros(2 * count, dtype=torch.long, device=META),
    )
    decode = count_flops(vae.decode, torch.empty(count, latents, h, w, device=META))
    return encode + prompts + settings.keyframe_steps * step + decode


@torch.inference_mode()
def interpolation_flops(folder: str | Path, settings: RenderSettings, bucket: tuple[int, int], max_batch: int) -> int:
    """FLOPs of the interpolation stage for len(undo_steps) + 1 clips at `bucket` (height, width),
    sampled `max_batch` clips at a time: conditions, the sampler's UNet calls and the decodes."""
    folder = Path(folder)
    text_encoder = _build(folder / "text_encoder", CLIPTextModel.from_config)
    image_encoder = _build(folder / "image_encoder", CLIPVisionModelWithProjection.from_config)
    projection = _build(folder / "image_projection", Resampler.from_config)
    vae = _build(folder / "vae", VideoAutoencoder.from_config)
    unet = _build(folder / "unet", InterpolationUNet.from_config)
    clips = len(settings.undo_steps) + 1
    height, width = bucket
    tokens = text_encoder.config.max_position_embeddings

    total = count_flops(text_encoder, torch.zeros(2, tokens, dtype=torch.long, device=META))
    for start in range(0, clips, max_batch):
        batch = min(max_batch, clips - start)
        pictures = torch.empty(2 * batch, 3, height, width, device=META)  # each clip's first and last
        image_tokens = image_encoder(pictures)
        per_clip = image_tokens.reshape(batch, 2, *image_tokens.shape[1:])
        # Positive pictures, and the negative (mid-grey) pair once per batch.
        total += count_flops(image_encoder, pictures) + count_flops(image_encoder, pictures[:2])
        total += count_flops(projection, per_clip) + count_flops(projection, per_clip[:1])
        total += count_flops(vae.encode, pictures)

        encoded = vae.encode(pictures)
        latent = encoded.latents
        x = torch.empty(2 * batch, latent.shape[1], CLIP_FRAMES, *latent.shape[2:], device=META)
        context = torch.empty(2 * batch, tokens, text_encoder.config.hidden_size, device=META)
        image = projection(per_clip)
        fs = torch.zeros(2 * batch, dtype=torch.long, device=META)
        timesteps = torch.zeros(2 * batch, device=META)
        total += settings.video_steps * count_flops(unet, x, timesteps, context, torch.cat([image, image]), x, fs)

        # Decoded one clip at a time, each with its two pictures' encoder features.
        reference = [f.reshape(batch, 2, *f.shape[1:])[:1].transpose(1, 2) for f in encoded.features]
        total += batch * count_flops(vae.decode, x[:1], reference)
    return total


def render_flops(
    sources: ModelSources, settings: RenderSettings, bucket: tuple[int, int], max_batch: int
) -> dict[str, int]:
    """FLOPs of each sampling stage of one render, and their total."""
    keyframes = keyframe_flops(sources.keyframe_model, settings)
    interpolation = interpolation_flops(sources.interpolation_model, settings, bucket, max_batch)
    return {"keyframes": keyframes, "interpolation": interpolation, "total": keyframes + interpolation}
