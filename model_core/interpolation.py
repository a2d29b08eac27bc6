"""The interpolation model (upstream's "multi-frame" model): 16 frames of drawing between two keyframes.

Loads `lllyasviel/paints_undo_multi_frame`, laid out as `tokenizer/`, `text_encoder/` (SD2.1's
CLIP text tower), `image_encoder/` (CLIP ViT-H vision), `vae/` (the video VAE),
`image_projection/` (the resampler) and `unet/` (the video UNet). A clip is conditioned on:
the prompt; per-frame image tokens, resampled from the CLIP-vision tokens of both keyframes;
the latents of the first and last keyframe at frames 0 and 15 (zeros between); and the encoder
features of both keyframes, which the VAE decoder attends to.

`interpolate_many` samples several clips in one batch; each clip still draws its noise from its
own generator seeded `seed + i`, so its frames are those `interpolate` gives it alone.
"""

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import einops
import numpy as np
import torch
from transformers import CLIPTokenizer

from model_core.checkpoints import TRANSFORMERS_WEIGHTS, load_component, resolve_model_folder
from model_core.checks import check_cfg, check_int_range, check_seed, check_text, is_integer
from model_core.clip import (
    CLIPTextModel,
    CLIPVisionModelWithProjection,
    encode_prompts,
)
from model_core.devices import fixed_shapes, generator
from model_core.errors import InvalidInputError
from model_core.images import check_rgb_image, find_best_bucket, resize_and_center_crop, to_tensor, to_uint8
from model_core.offload import ModelPlacement, placement_for
from model_core.resampler import Resampler
from model_core.samplers import (
    DDIMStep,
    SamplerStep,
    StepCallback,
    ZeroTerminalSNRSchedule,
    rescaled_guidance,
    sample_dynamic_tsnr,
)
from model_core.settings import MAX_CACHE_INTERVAL
from model_core.unet3d import DeepCache, InterpolationUNet
from model_core.video_vae import VideoAutoencoder

INTERPOLATION_REPO = "lllyasviel/paints_undo_multi_frame"
SUBFOLDERS = ("tokenizer", "text_encoder", "image_encoder", "vae", "image_projection", "unet")
# What a Hub download fetches: the files we load, nothing else the repo may hold.
DOWNLOADED_FILES = ["tokenizer/*"] + [
    f"{name}/{file}" for name in SUBFOLDERS[1:] for file in ("config.json", TRANSFORMERS_WEIGHTS)
]
# Clip sizes as (height, width); the reference picks the one closest to the first keyframe's aspect.
BUCKETS = ((320, 512), (384, 448), (448, 384), (512, 320))
# Guidance rescale of the reference's sampler (Lin et al. 2024 recommend 0.7).
GUIDANCE_RESCALE = 0.7
# The frame-stride condition: the reference always passes 3; the embedding is a timestep-like sinusoid.
DEFAULT_FS, MAX_FS = 3, 1000
ClipCallback = Callable[[int, np.ndarray], None]  # (clip index, (16, H, W, 3) uint8 frames)
# Clips sampled together by default (the default job has 7), and the most a call may ask for.
MAX_BATCH, MAX_BATCH_LIMIT = 8, 1024
# Step caching recomputes only the outermost skip level on cached steps: about a tenth of a full
# step's FLOPs at the default bucket (DeepCache's shallowest branch).
CACHE_BRANCH = 1


class InterpolationModel:
    """Tokenizer, text encoder, image encoder, resampler, video VAE and video UNet, on one device.

    placement: resident on `device` by default; a `ModelPlacement` with offload keeps each module in
    CPU memory until its step runs.
    """

    def __init__(
        self,
        tokenizer: CLIPTokenizer,
        text_encoder: CLIPTextModel,
        image_encoder: CLIPVisionModelWithProjection,
        vae: VideoAutoencoder,
        image_projection: Resampler,
        unet: InterpolationUNet,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        placement: ModelPlacement | None = None,
    ):
        self.device = torch.device(device)
        self.dtype = dtype
        self.placement = placement_for(self.device, placement)
        self.tokenizer = tokenizer
        self.text_encoder = self.placement.adopt(text_encoder, dtype)
        self.image_encoder = self.placement.adopt(image_encoder, dtype)
        self.vae = self.placement.adopt(vae, dtype)
        self.image_projection = self.placement.adopt(image_projection, dtype)
        self.unet = self.placement.adopt(unet, dtype)
        self.schedule = ZeroTerminalSNRSchedule()
        self.frames = image_projection.video_length
        # Clip sides must survive the VAE's and the UNet's downsamplings without rounding.
        self.size_multiple = vae.downsampling_factor * unet.downsampling_factor

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | Path = INTERPOLATION_REPO,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        placement: ModelPlacement | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
    ) -> "InterpolationModel":
        """Load from a local folder or a Hugging Face repo id in the layout of `lllyasviel/paints_undo_multi_frame`.

        Every weight file must hold exactly the tensors of the model its config.json describes (the
        reference loads with strict=False and would silently skip mismatches; we name them and stop).
        device, dtype: where the models run; float32 reproduces the reference on CPU, bfloat16 is the
            choice on CUDA.
        placement: resident on `device` when None; see `model_core.offload`.
        revision, cache_dir, local_files_only: passed to `huggingface_hub.snapshot_download` for a repo id.
        """
        root = resolve_model_folder(
            path_or_repo,
            subfolders=SUBFOLDERS,
            allow_patterns=DOWNLOADED_FILES,
            description="an interpolation-model",
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        return cls(
            CLIPTokenizer.from_pretrained(root / "tokenizer"),
            load_component(root / "text_encoder", CLIPTextModel.from_config, TRANSFORMERS_WEIGHTS),
            load_component(root / "image_encoder", CLIPVisionModelWithProjection.from_config, TRANSFORMERS_WEIGHTS),
            load_component(root / "vae", VideoAutoencoder.from_config, TRANSFORMERS_WEIGHTS),
            load_component(root / "image_projection", Resampler.from_config, TRANSFORMERS_WEIGHTS),
            load_component(root / "unet", InterpolationUNet.from_config, TRANSFORMERS_WEIGHTS),
            device=device,
            dtype=dtype,
            placement=placement,
        )

    def interpolate(
        self,
        first: np.ndarray,
        last: np.ndarray,
        *,
        prompt: str,
        steps: int,
        cfg: float,
        seed: int,
        fs: int = DEFAULT_FS,
        cache_interval: int = 1,
        buckets: Sequence[tuple[int, int]] = BUCKETS,
        callback: StepCallback | None = None,
    ) -> np.ndarray:
        """Generate the clip from `first` to `last`: (16, H, W, 3) uint8, frames in generation order.

        first, last: (H, W, 3) uint8 RGB, of any sizes. The clip's size is the bucket closest to
            first's aspect ratio; both pictures are resized and centre-cropped to it, as the reference does.
        prompt: the positive text; the negative is the empty prompt, as in the reference.
        steps, cfg: sampler steps (1..1000) and classifier-free guidance scale.
        seed: the clip's noise comes from `torch.Generator(device).manual_seed(seed)`.
        fs: frame-stride condition, 1..1000 (the reference always uses 3).
        cache_interval: 1 runs the exact UNet every step; N > 1 runs it in full every N steps and
            step-cached in between (`unet3d.DeepCache`), faster and approximate.
        buckets: the (height, width) sizes to choose from; the reference's four by default.
        callback: called after each sampler step; raising from it aborts the call.
        """
        return self.interpolate_many(
            [(first, last)],
            prompt=prompt,
            steps=steps,
            cfg=cfg,
            seed=seed,
            fs=fs,
            cache_interval=cache_interval,
            buckets=buckets,
            callback=callback,
        )[0]

    @torch.inference_mode()
    def interpolate_many(
        self,
        pairs: Sequence[tuple[np.ndarray, np.ndarray]],
        *,
        prompt: str,
        steps: int,
        cfg: float,
        seed: int,
        fs: int = DEFAULT_FS,
        cache_interval: int = 1,
        max_batch: int = MAX_BATCH,
        buckets: Sequence[tuple[int, int]] = BUCKETS,
        callback: StepCallback | None = None,
        clip_callback: ClipCallback | None = None,
    ) -> list[np.ndarray]:
        """Generate one clip per (first, last) pair, sampling up to `max_batch` clips together.

        Clip i is seeded with `seed + i` from its own generator, so it equals
        `interpolate(*pairs[i], seed=seed + i, ...)`. Clips of different buckets run in separate batches.
        The callback sees the steps of all batches as one count.
        clip_callback: called with (i, clip i) as each clip is decoded; raising from it aborts the call.
        Other arguments as in `interpolate`.
        """
        self._check_call(pairs, prompt, steps, cfg, seed, fs, cache_interval, max_batch, buckets)
        steps, cfg, seed, fs, cache_interval = int(steps), float(cfg), int(seed), int(fs), int(cache_interval)
        sizes = [find_best_bucket(*first.shape[:2], buckets) for first, _ in pairs]
        batches = []
        for size in dict.fromkeys(sizes):
            members = [i for i, bucket in enumerate(sizes) if bucket == size]
            batches += [members[start : start + max_batch] for start in range(0, len(members), max_batch)]

        self.placement.use(self.text_encoder)
        text = encode_prompts(self.tokenizer, self.text_encoder, [prompt, ""]).to(self.dtype)
        plan = self.schedule.ddim_steps(steps)
        clips: list[np.ndarray | None] = [None] * len(pairs)
        for number, members in enumerate(batches):
            height, width = sizes[members[0]]
            pictures = [
                resize_and_center_crop(picture, width, height) for i in members for picture in pairs[i]
            ]  # first0, last0, first1, last1, ...
            step_callback = _offset_callback(callback, number * steps, len(batches) * steps)
            latents, reference = self._sample_clips(
                to_tensor(pictures), text, [seed + i for i in members], plan, cfg, fs, cache_interval, step_callback
            )
            # One clip at a time: the decoder's full-resolution activations are the largest of the whole job.
            self.placement.use(self.vae)
            for j, i in enumerate(members):
                video = self.vae.decode(latents[j : j + 1].to(self.dtype), [r[j : j + 1] for r in reference])[0]
                clips[i] = np.stack(to_uint8(einops.rearrange(video, "c t h w -> t c h w")))
                if clip_callback is not None:
                    clip_callback(i, clips[i])
        return clips

    def _sample_clips(
        self,
        pictures: torch.Tensor,
        text: torch.Tensor,
        seeds: list[int],
        plan: list[DDIMStep],
        cfg: float,
        fs: int,
        cache_interval: int,
        callback: StepCallback | None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Sample B clips' latents from their end pictures.

        pictures: (2B, 3, H, W) in [-1, 1], each clip's first then last.
        Returns the latents (B, z, T, h, w) and the end pictures' encoder features (B, C, 2, H', W')
        per level, which the VAE decoder attends to.
        """
        batch = len(seeds)
        pictures = pictures.to(self.device, self.dtype)
        self.placement.use(self.image_encoder, self.image_projection)
        positive_image = self._image_tokens(pictures)
        # The negative image condition encodes mid-grey frames (zeros in [-1, 1]): the same for every clip.
        negative_image = self._image_tokens(torch.zeros_like(pictures[:2])).expand(batch, -1, -1, -1)

        self.placement.use(self.vae)
        encoded = self.vae.encode(pictures)
        ends = einops.rearrange(encoded.latents, "(b t) c h w -> b c t h w", t=2)
        middle = ends.new_zeros(batch, ends.shape[1], self.frames - 2, *ends.shape[3:])
        concat_cond = torch.cat([ends[:, :, :1], middle, ends[:, :, 1:]], dim=2)
        reference = [einops.rearrange(f, "(b t) c h w -> b c t h w", t=2) for f in encoded.features]

        # Positive and negative passes as one UNet batch: [positive clips, negative clips].
        text_in = torch.cat([text[:1].expand(batch, -1, -1), text[1:].expand(batch, -1, -1)])
        image_in = torch.cat([positive_image, negative_image])
        concat_in = torch.cat([concat_cond, concat_cond])
        fs_in = torch.full((2 * batch,), fs, dtype=torch.long, device=self.device)
        cache = DeepCache(branch=CACHE_BRANCH) if cache_interval > 1 else None
        calls = itertools.count()

        def velocity(x: torch.Tensor, t: int) -> torch.Tensor:
            x_in = x.to(self.dtype)
            # Timesteps stay float32: bfloat16 cannot hold 999.
            timesteps = torch.full((2 * batch,), float(t), dtype=torch.float32, device=self.device)
            reuse = cache is not None and next(calls) % cache_interval != 0
            out = self.unet(
                torch.cat([x_in, x_in]), timesteps, text_in, image_in, concat_in, fs_in, cache=cache, reuse=reuse
            ).float()
            positive, negative = out.chunk(2)
            return rescaled_guidance(positive, negative, cfg, GUIDANCE_RESCALE)

        generators = [generator(self.device, seed) for seed in seeds]
        shape = (1, *concat_cond.shape[1:])
        self.placement.use(self.unet)
        with fixed_shapes():
            latents = sample_dynamic_tsnr(velocity, plan, generators, shape, self.device, callback=callback)
        return latents, reference

    def _image_tokens(self, pictures: torch.Tensor) -> torch.Tensor:
        """(2B, 3, H, W) first/last pictures -> (B, T, tokens, dim) per-frame image tokens."""
        tokens = self.image_encoder(pictures)
        return self.image_projection(einops.rearrange(tokens, "(b t) l c -> b t l c", t=2))

    def _check_call(
        self,
        pairs: Sequence[tuple[np.ndarray, np.ndarray]],
        prompt: str,
        steps: int,
        cfg: float,
        seed: int,
        fs: int,
        cache_interval: int,
        max_batch: int,
        buckets: Sequence[tuple[int, int]],
    ) -> None:
        if isinstance(pairs, str | bytes) or not isinstance(pairs, Sequence) or len(pairs) == 0:
            raise InvalidInputError("pairs must be a non-empty list of (first, last) picture pairs.")
        for i, pair in enumerate(pairs):
            if not isinstance(pair, Sequence) or len(pair) != 2:
                raise InvalidInputError(f"pairs[{i}] must be a (first, last) pair of pictures.")
            check_rgb_image(pair[0], f"pairs[{i}] first")
            check_rgb_image(pair[1], f"pairs[{i}] last")
        check_text("prompt", prompt)
        check_int_range("steps", steps, 1, self.schedule.num_timesteps)
        check_cfg(cfg)
        check_seed(seed, count=len(pairs))
        check_int_range("fs", fs, 1, MAX_FS)
        check_int_range("cache_interval", cache_interval, 1, MAX_CACHE_INTERVAL)
        check_int_range("max_batch", max_batch, 1, MAX_BATCH_LIMIT)
        if isinstance(buckets, str | bytes) or not isinstance(buckets, Sequence) or len(buckets) == 0:
            raise InvalidInputError(f"buckets must be a non-empty list of (height, width), got {buckets!r}.")
        for bucket in buckets:
            if (
                not isinstance(bucket, Sequence)
                or len(bucket) != 2
                or not all(is_integer(side) and side > 0 and side % self.size_multiple == 0 for side in bucket)
            ):
                raise InvalidInputError(
                    f"every bucket must be (height, width), positive multiples of {self.size_multiple}, got {bucket!r}."
                )


def _offset_callback(callback: StepCallback | None, offset: int, total: int) -> StepCallback | None:
    """Report a batch's steps as part of the whole call's count."""
    if callback is None:
        return None
    return lambda step: callback(SamplerStep(index=offset + step.index, total=total))
