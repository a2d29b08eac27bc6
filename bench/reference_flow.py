"""Run the upstream Paints-UNDO reference's default flow on local checkpoints, time each stage, write a JSON result.

The flow is that of lllyasviel/Paints-UNDO's `gradio_app.py`, button by button: the WD14 tagger
writes the prompt; `process` makes one keyframe per undo step; `process_video` makes a 16-frame
clip for each consecutive pair of [input crop, keyframes..., white canvas]; the clips are joined,
reversed (blank canvas first) and written as MP4. gradio_app.py cannot be imported (it downloads
the models and starts a web UI at import), so this script repeats its steps in the same order,
with the same dtypes, seeds and model swapping, and lets upstream's own modules do all the work:
the keyframe sampler, the video pipeline and its sampler, the tagger, `memory_management`.

Upstream's source is fetched into a scratch folder at run time (`--upstream`: bench/run.py or a
person puts it there) and is never committed here. This script runs under the reference's own
Python environment (its pinned diffusers, transformers and huggingface_hub), not ours:
bench/run.py calls it as a subprocess, in the same run and on the same GPU as our
implementation, and compares the two.

Where it differs from the UI, on purpose:
- keyframes go from `process` to `process_video` as arrays; the UI's gallery round-trips them
  through lossy WebP files, which we do not copy (our implementation does not either);
- the tagger's ONNX session is created while loading, not on the first tagging call, so that
  tagging times the tagging;
- the video pipeline is built with its constructor from local folders, because its
  `from_pretrained` calls `snapshot_download`, which does not take a folder;
- without xformers, bench/reference_shims/ provides an SDPA stand-in for `xformers.ops`;
- gradio_app's bucket choice, and without torchvision (upstream's crop and MP4 writer import it)
  the crop, are our model_core's functions of the same algorithms; without torchvision's
  `write_video` or PyAV, no MP4 is written and encoding is reported as null (the frames are
  still saved, converted as the writer would);
- the Hugging Face cache is a fresh folder in --workdir (gradio_app also points HF_HOME at a
  folder of its own), so a cache elsewhere on the machine is neither read nor migrated.

Usage:
  python bench/reference_flow.py --upstream DIR --models DIR --image PNG --settings JSON \\
      --workdir DIR --result JSON [--device cuda|cpu] [--dtype upstream|float32] [--high-vram] [--repeats N]
"""

import argparse
import importlib.util
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from PIL import Image, ImageOps
from safetensors import safe_open

# Our model_core, for gradio_app's bucket choice (gradio_app itself cannot be imported) and the crop
# when upstream's module for it cannot load: the same algorithms, checked against upstream's by our tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model_core import images as model_core_images  # noqa: E402

SHIMS = Path(__file__).resolve().parent / "reference_shims"
TAGGER = "wd-v1-4-moat-tagger-v2"
KEYFRAME_MODEL = "paints_undo_single_frame"
VIDEO_MODEL = "paints_undo_multi_frame"
UPSTREAM_FILES = ("gradio_app.py", "memory_management.py", "wd14tagger.py", "diffusers_vdm", "diffusers_helper")

# gradio_app's hard-coded values: clip sizes (height, width), frames per clip, the video model's
# frame-rate condition and its negative prompt.
BUCKETS = ((320, 512), (384, 448), (448, 384), (512, 320))
CLIP_FRAMES = 16
VIDEO_FS = 3
VIDEO_NEGATIVE_PROMPT = ""

# The UI's inputs, under our RenderSettings field names (model_core/settings.py): bench/run.py
# writes every one of them, so the two implementations get the same values.
SETTINGS_FIELDS = {
    "prompt", "negative_prompt", "undo_steps", "width", "height", "keyframe_steps", "keyframe_cfg",
    "keyframe_seed", "video_prompt", "video_steps", "video_cfg", "video_seed", "fps",
}  # fmt: skip


def fail(message: str) -> NoReturn:
    sys.exit(f"reference_flow: {message}")


def quiet(iterable):
    """Stands in for the UI's progress bars: stdout gets one line per stage instead."""
    return iterable


# ---------------------------------------------------------------------------------------------
# Arguments and inputs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=Path, required=True, help="checkout of lllyasviel/Paints-UNDO")
    parser.add_argument("--models", type=Path, required=True, help=f"folder with {TAGGER}/, {KEYFRAME_MODEL}/, ...")
    parser.add_argument("--image", type=Path, required=True, help="the finished picture")
    parser.add_argument("--settings", type=Path, required=True, help="JSON object of RenderSettings fields")
    parser.add_argument("--workdir", type=Path, required=True, help="scratch folder; created if missing")
    parser.add_argument("--result", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument(
        "--dtype",
        choices=("upstream", "float32"),
        default="upstream",
        help="upstream: gradio_app's dtypes (fp16, VAE bf16); float32: everything float32",
    )
    parser.add_argument("--high-vram", action="store_true", help="keep every model on the GPU once loaded")
    parser.add_argument("--repeats", type=int, default=1, help="run the whole flow this many times")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.high_vram and args.device != "cuda":
        parser.error("--high-vram only applies to --device cuda")
    if args.device == "cpu" and args.dtype == "upstream":
        # Upstream's fp16 CLIP-vision resize (bicubic, antialiased) has no half-precision CPU kernel.
        parser.error(
            "--dtype upstream cannot run on --device cpu (upstream's fp16 image encoder needs CUDA); "
            "use --dtype float32"
        )
    for name in ("upstream", "models", "image", "settings", "workdir", "result"):
        setattr(args, name, getattr(args, name).resolve())  # we chdir into workdir later
    return args


def check_inputs(args: argparse.Namespace) -> None:
    """Fail early, naming what is missing, rather than minutes into loading."""
    for name in UPSTREAM_FILES:
        if not (args.upstream / name).exists():
            fail(f"--upstream {args.upstream} is not a Paints-UNDO checkout: it has no {name}")
    needed = [TAGGER + "/model.onnx", TAGGER + "/selected_tags.csv"]
    needed += [f"{KEYFRAME_MODEL}/{part}" for part in ("tokenizer", "text_encoder", "vae", "unet")]
    needed += [
        f"{VIDEO_MODEL}/{part}"
        for part in ("tokenizer", "text_encoder", "image_encoder", "vae", "image_projection", "unet")
    ]
    for name in needed:
        if not (args.models / name).exists():
            fail(f"--models {args.models} has no {name}")
    for name in ("image", "settings"):
        if not getattr(args, name).is_file():
            fail(f"--{name} {getattr(args, name)} is not a file")
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda, but this torch build sees no CUDA device")


def read_settings(path: Path) -> dict:
    """The settings file: exactly the UI's inputs, as RenderSettings field names."""
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        fail(f"--settings {path} is not JSON: {error}")
    if not isinstance(settings, dict):
        fail(f"--settings {path} must hold a JSON object")
    unknown, missing = sorted(set(settings) - SETTINGS_FIELDS), sorted(SETTINGS_FIELDS - set(settings))
    if unknown or missing:
        fail(f"--settings {path}: unknown fields {unknown}, missing fields {missing}")
    if not settings["undo_steps"] or not all(isinstance(step, int) for step in settings["undo_steps"]):
        fail("undo_steps must be a non-empty list of integers")
    return settings


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 as gradio's numpy Image input gives it: EXIF orientation applied, alpha dropped."""
    with Image.open(path) as image:
        return np.array(ImageOps.exif_transpose(image).convert("RGB"))


# ---------------------------------------------------------------------------------------------
# Upstream's modules


def import_upstream(upstream: Path, workdir: Path) -> types.SimpleNamespace:
    """Upstream's modules and the libraries it builds on, imported once sys.path points at the checkout.

    The imports live here, not at the top, because where upstream is (and whether the xformers
    stand-in is needed) is known only from the command line.
    """
    # Local folders only: a download attempt must fail at once, not fetch or hang.
    os.environ["HF_HOME"] = str(workdir / "hf_home")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # transformers before diffusers: each checks its cache folder at import, and transformers
    # takes a folder holding diffusers' version marker for an old cache and tries to migrate it.
    import transformers

    sys.path.insert(0, str(upstream))
    if importlib.util.find_spec("xformers") is None:
        sys.path.insert(0, str(SHIMS))
        attention = "sdpa stand-in"
        print("attention: xformers is not installed; using the SDPA stand-in in bench/reference_shims", flush=True)
    else:
        attention = "xformers"

    import diffusers
    import wd14tagger
    from diffusers.models.attention_processor import AttnProcessor2_0
    from diffusers_helper.cat_cond import unet_add_concat_conds
    from diffusers_helper.code_cond import unet_add_coded_conds
    from diffusers_helper.k_diffusion import KDiffusionSampler
    from diffusers_vdm.improved_clip_vision import ImprovedCLIPVisionModelWithProjection
    from diffusers_vdm.pipeline import LatentVideoDiffusionPipeline
    from diffusers_vdm.projection import Resampler
    from diffusers_vdm.unet import UNet3DModel
    from diffusers_vdm.vae import VideoAutoencoderKL

    resize_and_center_crop, save_bcthw_as_mp4 = crop_and_mp4_functions()
    return types.SimpleNamespace(
        attention=attention,
        diffusers=diffusers,
        transformers=transformers,
        wd14tagger=wd14tagger,
        memory_management=None,  # it moves a tensor to CUDA at import: imported on CUDA only, when loading
        AttnProcessor2_0=AttnProcessor2_0,
        unet_add_concat_conds=unet_add_concat_conds,
        unet_add_coded_conds=unet_add_coded_conds,
        KDiffusionSampler=KDiffusionSampler,
        ImprovedCLIPVisionModelWithProjection=ImprovedCLIPVisionModelWithProjection,
        LatentVideoDiffusionPipeline=LatentVideoDiffusionPipeline,
        Resampler=Resampler,
        UNet3DModel=UNet3DModel,
        VideoAutoencoderKL=VideoAutoencoderKL,
        resize_and_center_crop=resize_and_center_crop,
        save_bcthw_as_mp4=save_bcthw_as_mp4,
    )


def crop_and_mp4_functions() -> tuple[Callable, Callable | None]:
    """Upstream's crop and MP4 writer; without torchvision (which their module imports) our crop, and
    without a working torchvision video writer no MP4."""
    if importlib.util.find_spec("torchvision") is None:
        print("encoding: torchvision is not installed; using model_core's crop, and writing no MP4", flush=True)
        return model_core_images.resize_and_center_crop, None
    import torchvision.io
    from diffusers_vdm.utils import resize_and_center_crop, save_bcthw_as_mp4

    # write_video needs PyAV, and recent torchvision releases drop it: find out now, not after sampling.
    if not hasattr(torchvision.io, "write_video") or importlib.util.find_spec("av") is None:
        print("encoding: torchvision.io.write_video or PyAV is missing; writing no MP4", flush=True)
        return resize_and_center_crop, None
    return resize_and_center_crop, save_bcthw_as_mp4


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1], as gradio_app's numpy2pytorch."""
    return (torch.from_numpy(np.stack(images)).float() / 127.5 - 1.0).movedim(-1, 1)


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """(N, 3, H, W) in [-1, 1] -> N (H, W, 3) uint8, as gradio_app's pytorch2numpy: scaled in the tensor's
    own dtype (bf16 upstream), then clipped and truncated."""
    return [(x.movedim(0, -1) * 127.5 + 127.5).float().cpu().numpy().clip(0, 255).astype(np.uint8) for x in images]


def video_to_uint8(video: torch.Tensor) -> np.ndarray:
    """(1, 3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8, the frames upstream's save_bcthw_as_mp4 writes and returns."""
    frames = (torch.clamp(video.float(), -1.0, 1.0) * 127.5 + 127.5).cpu().to(torch.uint8)
    return frames[0].permute(1, 2, 3, 0).numpy()


# ---------------------------------------------------------------------------------------------
# Loading


class CpuPlacement:
    """Stands in for upstream's memory_management on CPU, where every model simply stays put."""

    def load_models_to_gpu(self, models) -> None:
        pass

    def unload_all_models(self, extra_models=None) -> None:
        pass


def load_reference(up: types.SimpleNamespace, args: argparse.Namespace, workdir: Path) -> types.SimpleNamespace:
    """Every model as gradio_app loads them (dtypes, attention processors), then all unloaded to the CPU."""
    half = args.dtype == "upstream"
    if args.device == "cuda":
        import memory_management  # touches CUDA at import: counted as loading

        up.memory_management = memory_management
        placement = memory_management
    else:
        placement = CpuPlacement()

    load_tagger(up, args.models / TAGGER, workdir)
    ref = types.SimpleNamespace(placement=placement, device=torch.device(args.device))
    load_keyframe_model(up, ref, args.models / KEYFRAME_MODEL, half)
    ref.video_pipe = load_video_pipeline(up, args.models / VIDEO_MODEL, half)
    pipe = ref.video_pipe
    placement.unload_all_models(
        [pipe.unet, pipe.vae, pipe.text_encoder, pipe.image_projection, pipe.image_encoder]
        + [ref.unet, ref.vae, ref.text_encoder]
    )
    # Set after unload_all_models on purpose: with high_vram on, that call would record every
    # model (still on the CPU) as already on the GPU, and none would ever be moved there.
    if args.high_vram:
        up.memory_management.high_vram = True
    return ref


def load_tagger(up: types.SimpleNamespace, folder: Path, workdir: Path) -> None:
    """Put the tagger files where wd14tagger looks (./NAME.onnx, ./NAME.csv), and open its session now."""
    onnx_path, csv_path = workdir / f"{TAGGER}.onnx", workdir / f"{TAGGER}.csv"
    shutil.copyfile(folder / "model.onnx", onnx_path)
    shutil.copyfile(folder / "selected_tags.csv", csv_path)
    # The same session wd14tagger would open on its first call, opened here so tagging times tagging.
    up.wd14tagger.global_model = up.wd14tagger.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


def modified_unet_class(up: types.SimpleNamespace) -> type:
    """gradio_app's ModifiedUNet: the diffusers UNet with upstream's concat and coded conditions hooked in."""

    class ModifiedUNet(up.diffusers.UNet2DConditionModel):
        @classmethod
        def from_config(cls, *args, **kwargs):
            unet = super().from_config(*args, **kwargs)
            up.unet_add_concat_conds(unet=unet, new_channels=4)
            up.unet_add_coded_conds(unet=unet, added_number_count=1)
            return unet

    return ModifiedUNet


def load_keyframe_model(up: types.SimpleNamespace, ref: types.SimpleNamespace, folder: Path, half: bool) -> None:
    """Text encoder fp16, VAE bf16, UNet fp16 and SDPA attention processors, as gradio_app; or all float32."""
    text_dtype, vae_dtype, unet_dtype = (torch.float16, torch.bfloat16, torch.float16) if half else (torch.float32,) * 3
    ref.tokenizer = up.transformers.CLIPTokenizer.from_pretrained(folder / "tokenizer")
    ref.text_encoder = up.transformers.CLIPTextModel.from_pretrained(folder / "text_encoder").to(text_dtype)
    ref.vae = up.diffusers.AutoencoderKL.from_pretrained(folder / "vae").to(vae_dtype)
    ref.unet = modified_unet_class(up).from_pretrained(folder / "unet").to(unet_dtype)
    ref.unet.set_attn_processor(up.AttnProcessor2_0())
    ref.vae.set_attn_processor(up.AttnProcessor2_0())
    ref.k_sampler = up.KDiffusionSampler(
        unet=ref.unet, timesteps=1000, linear_start=0.00085, linear_end=0.020, linear=True
    )


def load_video_pipeline(up: types.SimpleNamespace, folder: Path, half: bool):
    """What LatentVideoDiffusionPipeline.from_pretrained builds, from local subfolders (it would download)."""
    pipe = up.LatentVideoDiffusionPipeline(
        tokenizer=up.transformers.CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        text_encoder=up.transformers.CLIPTextModel.from_pretrained(folder / "text_encoder"),
        image_encoder=up.ImprovedCLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder"),
        vae=up.VideoAutoencoderKL.from_pretrained(folder / "vae"),
        image_projection=up.Resampler.from_pretrained(folder / "image_projection"),
        unet=up.UNet3DModel.from_pretrained(folder / "unet"),
        fp16=half,
    )
    for name in ("vae", "image_projection", "unet"):
        check_hub_mixin_weights(getattr(pipe, name), folder / name)
    return pipe


def check_hub_mixin_weights(model: torch.nn.Module, folder: Path) -> None:
    """huggingface_hub's mixin loads non-strictly and says nothing; missing weights would leave random ones."""
    with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
        stored = set(weights.keys())
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - stored), sorted(stored - expected)
    if missing:
        fail(f"{folder} lacks {len(missing)} weights that upstream's {type(model).__name__} needs: {missing[:5]}")
    if unexpected:
        print(f"warning: {folder} has {len(unexpected)} weights upstream ignores: {unexpected[:5]}", flush=True)


# ---------------------------------------------------------------------------------------------
# The flow


class StageClock:
    """Wall time per stage; on CUDA it synchronises at each boundary so GPU work counts where it ran."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.stages: dict[str, float | None] = {}

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.sync()
        start = time.perf_counter()
        yield
        self.sync()
        self.stages[name] = time.perf_counter() - start
        print(f"{name}: {self.stages[name]:.3f} s", flush=True)

    def skip(self, name: str, why: str) -> None:
        self.stages[name] = None
        print(f"{name}: skipped ({why})", flush=True)


def encode_prompt(ref: types.SimpleNamespace, text: str) -> torch.Tensor:
    """gradio_app's encode_cropped_prompt_77tokens for the keyframe model."""
    ref.placement.load_models_to_gpu(ref.text_encoder)
    ids = ref.tokenizer(
        text, padding="max_length", max_length=ref.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device=ref.text_encoder.device)
    return ref.text_encoder(ids, attention_mask=None).last_hidden_state


def make_keyframes(
    up: types.SimpleNamespace, ref: types.SimpleNamespace, image: np.ndarray, prompt: str, settings: dict
) -> tuple[np.ndarray, list[np.ndarray]]:
    """gradio_app's `process`: returns the input crop and one keyframe per undo step."""
    generator = torch.Generator(device=ref.device).manual_seed(int(settings["keyframe_seed"]))

    ref.placement.load_models_to_gpu(ref.vae)
    fg = up.resize_and_center_crop(image, settings["width"], settings["height"])
    pixels = to_tensor([fg]).to(device=ref.vae.device, dtype=ref.vae.dtype)
    concat_conds = ref.vae.encode(pixels).latent_dist.mode() * ref.vae.config.scaling_factor

    ref.placement.load_models_to_gpu(ref.text_encoder)
    conds = encode_prompt(ref, prompt)
    unconds = encode_prompt(ref, settings["negative_prompt"])

    ref.placement.load_models_to_gpu(ref.unet)
    undo_steps = torch.tensor(settings["undo_steps"]).to(device=ref.unet.device, dtype=torch.long)
    initial_latents = torch.zeros_like(concat_conds)
    concat_conds = concat_conds.to(device=ref.unet.device, dtype=ref.unet.dtype)
    latents = ref.k_sampler(
        initial_latent=initial_latents,
        strength=1.0,
        num_inference_steps=settings["keyframe_steps"],
        guidance_scale=settings["keyframe_cfg"],
        batch_size=len(settings["undo_steps"]),
        generator=generator,
        prompt_embeds=conds,
        negative_prompt_embeds=unconds,
        cross_attention_kwargs={"concat_conds": concat_conds, "coded_conds": undo_steps},
        same_noise_in_batch=True,
        progress_tqdm=quiet,
    )
    # Cast to the VAE's dtype first, then unscale: the order matters in bf16.
    latents = latents.to(ref.vae.dtype) / ref.vae.config.scaling_factor

    ref.placement.load_models_to_gpu(ref.vae)
    keyframes = to_uint8(ref.vae.decode(latents).sample)
    return fg, keyframes


def make_clip(
    up: types.SimpleNamespace,
    ref: types.SimpleNamespace,
    first: np.ndarray,
    last: np.ndarray,
    seed: int,
    settings: dict,
) -> tuple[torch.Tensor, np.ndarray]:
    """gradio_app's `process_video_inner`: a (1, 3, 16, H, W) clip from `first` to `last`, and `first` cropped."""
    # The UI reseeds every generator; the video sampler draws from torch's global one.
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    pipe, place = ref.video_pipe, ref.placement.load_models_to_gpu

    height, width = model_core_images.find_best_bucket(first.shape[0], first.shape[1], BUCKETS)
    first = up.resize_and_center_crop(first, width, height)
    last = up.resize_and_center_crop(last, width, height)
    frames = to_tensor([first, last]).unsqueeze(0).movedim(1, 2)  # (1, 3, 2, H, W)

    place(pipe.text_encoder)
    positive_text = pipe.encode_cropped_prompt_77tokens(settings["video_prompt"])
    negative_text = pipe.encode_cropped_prompt_77tokens(VIDEO_NEGATIVE_PROMPT)

    place([pipe.image_projection, pipe.image_encoder])
    frames = frames.to(device=pipe.image_encoder.device, dtype=pipe.image_encoder.dtype)
    positive_image = pipe.image_projection(pipe.encode_clip_vision(frames))
    negative_image = pipe.image_projection(pipe.encode_clip_vision(torch.zeros_like(frames)))

    place([pipe.vae])
    frames = frames.to(device=pipe.vae.device, dtype=pipe.vae.dtype)
    latents, vae_hidden_states = pipe.encode_latents(frames, return_hidden_states=True)
    start, end = latents[:, :, 0], latents[:, :, 1]
    concat_cond = torch.stack([start] + [torch.zeros_like(start)] * (CLIP_FRAMES - 2) + [end], dim=2)

    place([pipe.unet])
    latents = pipe(
        batch_size=1,
        steps=int(settings["video_steps"]),
        guidance_scale=settings["video_cfg"],
        positive_text_cond=positive_text,
        negative_text_cond=negative_text,
        positive_image_cond=positive_image,
        negative_image_cond=negative_image,
        concat_cond=concat_cond,
        fs=VIDEO_FS,
        progress_tqdm=quiet,
    )

    place([pipe.vae])
    return pipe.decode_latents(latents, vae_hidden_states), first


def make_video(
    up: types.SimpleNamespace, ref: types.SimpleNamespace, pictures: list[np.ndarray], settings: dict
) -> tuple[torch.Tensor, np.ndarray]:
    """gradio_app's `process_video` up to the MP4: the joined clips, blank canvas first, and pair 0's crop."""
    clips, crops = [], []
    for i, (first, last) in enumerate(zip(pictures[:-1], pictures[1:], strict=True)):
        clip, cropped = make_clip(up, ref, first, last, settings["video_seed"] + i, settings)
        clips.append(clip[:, :, :-1])  # the last frame repeats the next clip's first
        crops.append(cropped)
    return torch.flip(torch.cat(clips, dim=2), dims=[2]), crops[0]


def run_flow(
    up: types.SimpleNamespace, ref: types.SimpleNamespace, image: np.ndarray, settings: dict, workdir: Path
) -> dict:
    """One pass of the whole flow, timed per stage."""
    cuda = ref.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clock = StageClock(cuda)
    clock.sync()
    start = time.perf_counter()

    prompt = settings["prompt"]
    if prompt is None:
        with clock.stage("tagging"):
            prompt = up.wd14tagger.default_interrogator(image)
    else:
        clock.skip("tagging", "the settings give a prompt")

    with clock.stage("keyframes"):
        fg, keyframes = make_keyframes(up, ref, image, prompt, settings)

    pictures = [fg, *keyframes, np.zeros_like(fg) + 255]
    with clock.stage("interpolation"):
        video, first_crop = make_video(up, ref, pictures, settings)

    if up.save_bcthw_as_mp4 is None:
        clock.skip("encoding", "no MP4 writer")
        total = time.perf_counter() - start
        frames = video_to_uint8(video)  # after the clock: the UI does this inside its MP4 writer
    else:
        results = workdir / "results"
        with clock.stage("encoding"):
            name = str(uuid.uuid4())
            Image.fromarray(first_crop).save(results / f"{name}.png")  # the UI's side output
            frames = up.save_bcthw_as_mp4(video, str(results / f"{name}.mp4"), fps=settings["fps"]).numpy()
        total = time.perf_counter() - start
    print(f"total: {total:.3f} s", flush=True)

    return {
        "stages": clock.stages,
        "total": total,
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "prompt": prompt,
        "keyframes": np.stack(keyframes),
        "frames": frames,
    }


# ---------------------------------------------------------------------------------------------
# Result


def upstream_commit(upstream: Path) -> str | None:
    """The checkout's commit, or that named in a COMMIT file (a copy of upstream's modules, as bench/device carries)."""
    if (upstream / "COMMIT").is_file():
        return (upstream / "COMMIT").read_text().strip()
    if not (upstream / ".git").exists():
        return None
    done = subprocess.run(["git", "-C", str(upstream), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_inputs(args)
    settings = read_settings(args.settings)
    image = read_image(args.image)
    workdir = args.workdir
    (workdir / "results").mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # wd14tagger reads its files from the current folder

    up = import_upstream(args.upstream, workdir)
    start = time.perf_counter()
    ref = load_reference(up, args, workdir)
    if args.device == "cuda":
        torch.cuda.synchronize()
    load_seconds = time.perf_counter() - start
    print(f"load: {load_seconds:.3f} s", flush=True)

    # The result is rewritten after loading and after each run, so a run cut short keeps what it did.
    result = {
        "implementation": "reference",
        "upstream_commit": upstream_commit(args.upstream),
        "device": args.device,
        "device_name": device_name(args.device),
        "torch": torch.__version__,
        "diffusers": up.diffusers.__version__,
        "transformers": up.transformers.__version__,
        "dtype": args.dtype,
        "high_vram": args.high_vram,
        "attention": up.attention,
        "load_seconds": load_seconds,
        "runs": [],
    }
    write_result(args.result, result)
    with torch.inference_mode():  # as gradio_app's handlers are decorated
        for repeat in range(args.repeats):
            if args.repeats > 1:
                print(f"run {repeat + 1} of {args.repeats}", flush=True)
            last = run_flow(up, ref, image, settings, workdir)
            frames_path, keyframes_path = workdir / "reference_frames.npy", workdir / "reference_keyframes.npy"
            np.save(frames_path, last["frames"])
            np.save(keyframes_path, last["keyframes"])
            result["runs"].append({key: last[key] for key in ("stages", "total", "peak_memory_bytes")})
            result |= {
                "best_total": min(run["total"] for run in result["runs"]),
                "prompt": last["prompt"],
                "frames": str(frames_path),
                "keyframes": str(keyframes_path),
            }
            write_result(args.result, result)
    print(f"result: {args.result}", flush=True)


def write_result(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
