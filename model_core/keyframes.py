"""The keyframe model (upstream's "single-frame" model): earlier states of a finished picture.

Given the finished picture and a list of operation steps (how many Ctrl+Z, 0..999), it generates
one image per step in a single batch. Loads `lllyasviel/paints_undo_single_frame`, laid out as
`tokenizer/`, `text_encoder/`, `vae/`, `unet/`.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from transformers import CLIPTokenizer

from model_core.checkpoints import (
    DIFFUSERS_WEIGHTS,
    TRANSFORMERS_WEIGHTS,
    load_component,
    resolve_model_folder,
)
from model_core.checks import check_cfg, check_seed, check_text, is_integer
from model_core.clip import CLIPTextModel, encode_prompts
from model_core.devices import fixed_shapes, generator
from model_core.errors import InvalidInputError
from model_core.images import check_rgb_image, resize_and_center_crop, to_tensor, to_uint8
from model_core.offload import ModelPlacement, placement_for
from model_core.samplers import DiscreteEpsSchedule, StepCallback, sample_dpmpp_2m
from model_core.unet2d import KeyframeUNet

KEYFRAME_REPO = "lllyasviel/paints_undo_single_frame"
SUBFOLDERS = ("tokenizer", "text_encoder", "vae", "unet")
# What a Hub download fetches: the files we load, nothing else the repo may hold.
DOWNLOADED_FILES = [
    "tokenizer/*",
    "text_encoder/config.json",
    f"text_encoder/{TRANSFORMERS_WEIGHTS}",
    "vae/config.json",
    f"vae/{DIFFUSERS_WEIGHTS}",
    "unet/config.json",
    f"unet/{DIFFUSERS_WEIGHTS}",
]
# The schedule the keyframe UNet was trained with: linear betas 0.00085..0.020 (not SD's scaled-linear).
BETA_START, BETA_END = 0.00085, 0.020
# Keyframe sizes must be multiples of this: 8 for the VAE times the UNet's 3 downsamplings.
SIZE_MULTIPLE = 64
MAX_OPERATION_STEP = 999


class KeyframeModel:
    """Tokenizer, CLIP text encoder, VAE and keyframe UNet, on one device.

    placement: resident on `device` by default; a `ModelPlacement` with offload keeps each module in
    CPU memory until its step runs (and then decodes the keyframes one at a time).
    """

    def __init__(
        self,
        tokenizer: CLIPTokenizer,
        text_encoder: CLIPTextModel,
        vae: AutoencoderKL,
        unet: KeyframeUNet,
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
        self.vae = self.placement.adopt(vae, dtype)
        self.unet = self.placement.adopt(unet, dtype)
        if self.placement.offload:
            self.vae.enable_slicing()  # decode one keyframe at a time: the decoder's activations are the peak
        self.schedule = DiscreteEpsSchedule(BETA_START, BETA_END)

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | Path = KEYFRAME_REPO,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        placement: ModelPlacement | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
    ) -> "KeyframeModel":
        """Load from a local folder or a Hugging Face repo id in the layout of `lllyasviel/paints_undo_single_frame`.

        Every weight file must hold exactly the tensors of the model its config.json describes.
        device, dtype: where the models run; float32 reproduces the reference on CPU, bfloat16 is the
            choice on CUDA (float16 risks overflow in the VAE, which the reference runs in bfloat16).
        placement: resident on `device` when None; see `model_core.offload`.
        revision, cache_dir, local_files_only: passed to `huggingface_hub.snapshot_download` for a repo id.
        """
        root = resolve_model_folder(
            path_or_repo,
            subfolders=SUBFOLDERS,
            allow_patterns=DOWNLOADED_FILES,
            description="a keyframe-model",
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        return cls(
            CLIPTokenizer.from_pretrained(root / "tokenizer"),
            load_component(root / "text_encoder", CLIPTextModel.from_config, TRANSFORMERS_WEIGHTS),
            load_component(root / "vae", AutoencoderKL.from_config, DIFFUSERS_WEIGHTS),
            load_component(root / "unet", KeyframeUNet.from_config, DIFFUSERS_WEIGHTS),
            device=device,
            dtype=dtype,
            placement=placement,
        )

    @torch.inference_mode()
    def generate(
        self,
        image: np.ndarray,
        *,
        prompt: str,
        negative_prompt: str,
        undo_steps: Sequence[int],
        width: int,
        height: int,
        steps: int,
        cfg: float,
        seed: int,
        callback: StepCallback | None = None,
    ) -> list[np.ndarray]:
        """Generate one earlier state of `image` per operation step, in the order given.

        image: (H, W, 3) uint8 RGB, resized and centre-cropped to width x height.
        undo_steps: operation steps 0..999 (999 is nearly a blank canvas).
        steps, cfg: DPM++ 2M (Karras) steps and classifier-free guidance scale.
        seed: the initial noise is one draw of shape (1, 4, height/8, width/8) from
            `torch.Generator(device).manual_seed(seed)`, shared by every keyframe.
        callback: called after each sampler step; raising from it aborts the call.
        Returns (height, width, 3) uint8 RGB arrays, one per undo step.
        """
        check_rgb_image(image)
        check_text("prompt", prompt)
        check_text("negative_prompt", negative_prompt)
        _check_undo_steps(undo_steps)
        _check_sampling(width, height, steps, cfg, seed)

        width, height, steps, cfg, seed = int(width), int(height), int(steps), float(cfg), int(seed)
        picture = resize_and_center_crop(image, width, height)
        pixels = to_tensor([picture]).to(self.device, self.dtype)
        scaling = self.vae.config.scaling_factor
        self.placement.use(self.vae)
        image_latent = self.vae.encode(pixels).latent_dist.mode() * scaling

        self.placement.use(self.text_encoder)
        text = encode_prompts(self.tokenizer, self.text_encoder, [prompt, negative_prompt])
        batch = len(undo_steps)
        operation_steps = torch.tensor([int(step) for step in undo_steps], dtype=torch.long, device=self.device)

        def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            """Eps-prediction UNet as a denoiser; positive and negative prompts in one batch."""
            x_in = (x / (sigma[:, None, None, None] ** 2 + 1) ** 0.5).to(self.dtype)
            timestep = self.schedule.timestep(sigma)
            eps_positive, eps_negative = (
                self.unet(
                    torch.cat([x_in, x_in]),
                    timestep.repeat(2),
                    text.repeat_interleave(batch, dim=0),
                    image_latent,
                    operation_steps.repeat(2),
                )
                .sample.float()
                .chunk(2)
            )
            eps = eps_negative + cfg * (eps_positive - eps_negative)
            return x - eps * sigma[:, None, None, None]

        sigmas = self.schedule.karras_sigmas(steps)
        noise = torch.randn(
            image_latent.shape, generator=generator(self.device, seed), device=self.device, dtype=torch.float32
        )
        x = noise.repeat(batch, 1, 1, 1) * sigmas[0]
        self.placement.use(self.unet)
        with fixed_shapes():
            latents = sample_dpmpp_2m(denoiser, x, sigmas, callback=callback)

        self.placement.use(self.vae)
        decoded = self.vae.decode(latents.to(self.dtype) / scaling).sample
        return to_uint8(decoded)


def _check_undo_steps(undo_steps: Sequence[int]) -> None:
    if isinstance(undo_steps, str | bytes) or not isinstance(undo_steps, Sequence | np.ndarray) or len(undo_steps) == 0:
        raise InvalidInputError(f"undo_steps must be a non-empty list of integers 0..999, got {undo_steps!r}.")
    for step in undo_steps:
        if not is_integer(step) or not 0 <= step <= MAX_OPERATION_STEP:
            raise InvalidInputError(f"Every undo step must be an integer in 0..{MAX_OPERATION_STEP}, got {step!r}.")


def _check_sampling(width: int, height: int, steps: int, cfg: float, seed: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if not is_integer(value) or value <= 0 or value % SIZE_MULTIPLE:
            raise InvalidInputError(f"{name} must be a positive multiple of {SIZE_MULTIPLE}, got {value!r}.")
    if not is_integer(steps) or steps < 1:
        raise InvalidInputError(f"steps must be a positive integer, got {steps!r}.")
    check_cfg(cfg)
    check_seed(seed)
