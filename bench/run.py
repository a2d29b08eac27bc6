"""Benchmark of the default job: per-stage time, total, peak GPU memory and TFLOP/s, ours beside the reference.

    python -m bench.run                      # full-size random-weight models on the GPU (writes ~7 GB once)
    python -m bench.run --reference DIR --reference-python PYTHON
                                             # ... and the reference's default flow on the same GPU, same weights
    python -m bench.run --low-memory         # the 12 GB mode
    python -m bench.run --quick              # CPU, tiny checkpoints, few steps: proves the benchmark runs (CI)

--json FILE is rewritten after each phase (checkpoints, load, each render, rates, the reference), so
a run cut short keeps its figures; --deadline SECONDS gives the reference only what is left of it,
and a reference that fails or runs out of time is recorded beside ours. bench/device/measure.py
runs all of it in one device call.

The models are built at full size with random weights (`model_core.tiny.write_full_size_models`):
the same FLOPs and memory as the published ones, not their pictures. The reference is upstream's
code (github lllyasviel/Paints-UNDO), fetched into a scratch folder (DIR) and never committed; it
runs in its own Python environment (PYTHON, with its pinned diffusers/transformers) through
`bench/reference_flow.py`, after ours has released the GPU. FLOPs come from `bench/flops.py`;
the GPU's own bf16 matrix rate is measured in the same run, so TFLOP/s can be read as a share of it.
"""

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.flops import REFERENCE_SIZE, render_flops
from model_core.configs import TINY_BUCKETS
from model_core.events import StageFinished
from model_core.images import find_best_bucket
from model_core.interpolation import BUCKETS
from model_core.pipeline import ModelSources, PaintsUndoPipeline
from model_core.settings import RenderSettings
from model_core.tiny import write_full_size_models, write_tiny_models

REFERENCE_FLOW = Path(__file__).with_name("reference_flow.py")
# With --deadline, the reference runs only if at least this much time is left (its imports and
# loading alone take most of a minute on a GPU).
MIN_REFERENCE_SECONDS = 60
# --quick: the default job's shape (six keyframes, seven clips) with few steps, on tiny models.
QUICK_SETTINGS = {"keyframe_steps": 3, "video_steps": 3, "width": 256, "height": 320}
# Tiny checkpoints the reference can load too (it hard-codes a 16x16 CLIP grid, and the video VAE
# decoder's attention at levels 2 and 3), with the published 8x VAE and attention only at the UNet's
# half resolution, so the reference's own clip sizes (448x384 and the like) run in minutes on a CPU.
REFERENCE_COMPATIBLE_TINY = {
    "image_encoder": {"image_size": 224, "patch_size": 14},
    "vae": {
        "ch_mult": [1, 1, 2, 2],
        "refinement_attention_levels": [2, 3],
        "refinement_heads": 8,
        "refinement_head_dim": 64,
    },
    "unet": {"attention_resolutions": [2]},
}


@dataclass
class Run:
    """One timed render: seconds per stage, total seconds, peak GPU memory (None on CPU)."""

    stages: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    peak_memory_bytes: int | None = None  # max_memory_allocated
    peak_reserved_bytes: int | None = None  # max_memory_reserved: what the caching allocator held


def test_picture(height: int = 768, width: int = 640) -> np.ndarray:
    """A deterministic illustration stand-in: colour gradients, a dark disc and stripes."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    picture = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    picture[(x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(height, width) / 4) ** 2] = 30
    picture[(y // 24) % 4 == 0] *= 0.6
    return picture.astype(np.uint8)


def prepare_models(folder: Path, *, quick: bool, reference: bool, device: torch.device) -> ModelSources:
    """Reuse the checkpoints in `folder`, or write them there: tiny for --quick, else full size."""
    sources = ModelSources.from_folder(folder)
    if all(Path(path).is_dir() for path in (sources.tagger, sources.keyframe_model, sources.interpolation_model)):
        print(f"models: reusing {folder}")
        return sources
    started = time.perf_counter()
    if quick and reference:
        from model_core import tiny

        tiny.write_tiny_tagger(sources.tagger)
        tiny.write_keyframe_checkpoint(sources.keyframe_model)
        tiny.write_interpolation_checkpoint(sources.interpolation_model, **REFERENCE_COMPATIBLE_TINY)
    elif quick:
        write_tiny_models(folder)
    else:
        write_full_size_models(folder, device=device)
    print(f"models: wrote {'tiny' if quick else 'full-size'} random-weight checkpoints to {folder} "
          f"in {time.perf_counter() - started:.0f} s")  # fmt: skip
    return sources


def matmul_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """The device's measured dense matrix-product rate, TFLOP/s (8192^3 on a GPU, 2048^3 on a CPU)."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    repeats = 20 if device.type == "cuda" else 3
    for _ in range(3):
        a @ b
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e12


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_ours(pipeline: PaintsUndoPipeline, picture: np.ndarray, settings: RenderSettings, workdir: Path) -> Run:
    device = pipeline.keyframe_model.device
    run = Run()

    def on_event(event):
        if isinstance(event, StageFinished):
            run.stages[event.stage.value] = event.seconds
            print(f"  ours {event.stage.value:<13} {event.seconds:8.2f} s", flush=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    result = pipeline.render(picture, workdir / "ours.mp4", settings, on_event=on_event)
    run.total = time.perf_counter() - started
    if device.type == "cuda":
        run.peak_memory_bytes = torch.cuda.max_memory_allocated(device)
        run.peak_reserved_bytes = torch.cuda.max_memory_reserved(device)
    np.save(workdir / "ours_frames.npy", result.frames)
    return run


def run_reference(args: argparse.Namespace, sources: ModelSources, picture: Path, settings: RenderSettings,
                  device: torch.device, warmup: int, workdir: Path, timeout: float | None) -> dict:  # fmt: skip
    """Upstream's default flow in its own Python environment, on the same checkpoints and GPU.

    Returns its result (as much as it wrote, if it failed or ran out of `timeout` seconds; then with
    an "error" key too)."""
    settings_file = workdir / "reference_settings.json"
    result_file = (args.reference_result or workdir / "reference_result.json").resolve()
    # The reference has none of our additions: step caching, stopping early, extra outputs.
    settings_file.write_text(settings.model_dump_json(exclude={"video_cache_interval", "stop_after", "outputs"}))
    command = [
        args.reference_python, str(REFERENCE_FLOW),
        "--upstream", str(args.reference), "--models", str(Path(sources.tagger).parent),
        "--image", str(picture), "--settings", str(settings_file), "--workdir", str(workdir / "reference"),
        "--result", str(result_file), "--device", device.type,
        "--dtype", "float32" if device.type == "cpu" else "upstream",
        "--repeats", str(args.repeats + warmup),  # it has no warm-up of its own: the best run counts
    ] + (["--high-vram"] if args.reference_high_vram else [])  # fmt: skip
    print("reference:", " ".join(command), flush=True)
    error = None
    try:
        subprocess.run(command, check=True, timeout=timeout)
    except subprocess.CalledProcessError as failure:
        error = f"the reference exited with {failure.returncode}"
    except subprocess.TimeoutExpired:
        error = f"the reference ran out of its {timeout:.0f} s"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return result | ({"error": error} if error else {})


def gpu_description(device: torch.device) -> str:
    if device.type != "cuda":
        return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
        ).stdout.strip()
    except FileNotFoundError:
        driver = "unknown"
    return f"{torch.cuda.get_device_name(device)}, driver {driver}, CUDA {torch.version.cuda}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CPU, tiny checkpoints, few steps (CI)")
    parser.add_argument("--models", type=Path, help="checkpoint folder to reuse or write (default: a temp folder)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (--quick: cpu)")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 on CUDA), float32, bfloat16, float16")
    parser.add_argument("--low-memory", action="store_true", help="the pipeline's low-memory mode")
    parser.add_argument("--compile", action="store_true", help="torch.compile both UNets")
    parser.add_argument("--max-batch", type=int, help="clips sampled together (default: the pipeline's)")
    parser.add_argument("--video-cache-interval", type=int, default=1, help="step caching (1 = off, exact)")
    parser.add_argument("--settings", type=json.loads, default={}, help="other RenderSettings fields, as JSON")
    parser.add_argument("--warmup", type=int, help="untimed renders first (default: 1 on CUDA, 0 on CPU)")
    parser.add_argument("--repeats", type=int, default=1, help="timed renders; the best total is reported")
    parser.add_argument("--reference", type=Path, help="upstream Paints-UNDO checkout to run beside ours")
    parser.add_argument("--reference-python", default=sys.executable, help="Python of the reference's environment")
    parser.add_argument("--reference-high-vram", action="store_true", help="reference without its model swapping")
    parser.add_argument("--reference-result", type=Path, help="where the reference writes its own JSON")
    parser.add_argument("--deadline", type=float, help="seconds this run may take: the reference gets what is left")
    parser.add_argument("--json", type=Path, help="write every figure to this file (rewritten after each phase)")
    args = parser.parse_args(argv)

    device = torch.device("cpu") if args.quick else torch.device(
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )  # fmt: skip
    if not args.quick and device.type != "cuda":
        parser.error("the full-size benchmark needs a CUDA GPU; use --quick on a CPU")
    settings = RenderSettings(
        **(QUICK_SETTINGS if args.quick else REFERENCE_SIZE)
        | {"video_cache_interval": args.video_cache_interval}
        | args.settings
    ).with_undo_steps()  # the reference's app flow is told its undo steps
    buckets = TINY_BUCKETS if args.quick and not args.reference else BUCKETS
    warmup = args.warmup if args.warmup is not None else (1 if device.type == "cuda" else 0)

    launched = time.perf_counter()
    figures: dict = {
        "device": gpu_description(device),
        "torch": torch.__version__,
        "settings": settings.model_dump(),
        "options": {"low_memory": args.low_memory, "compile": args.compile, "max_batch": args.max_batch},
        "runs": [],
    }

    def save(phase: str) -> None:
        """Rewrite the JSON: a run cut short (or a reference that fails) keeps every figure before it."""
        figures["phase"] = phase
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2, default=str))

    with tempfile.TemporaryDirectory(prefix="paints-undo-bench-") as scratch:
        workdir = Path(scratch)
        started = time.perf_counter()
        sources = prepare_models(args.models or workdir / "models", quick=args.quick, reference=bool(args.reference),
                                 device=device)  # fmt: skip
        figures["models_seconds"] = time.perf_counter() - started
        save("models")
        picture = test_picture()
        started = time.perf_counter()
        pipeline = PaintsUndoPipeline.from_pretrained(
            sources, device=str(device), dtype=args.dtype, buckets=buckets, max_batch=args.max_batch,
            low_memory=args.low_memory, compile=args.compile,
        )  # fmt: skip
        load_seconds = time.perf_counter() - started
        dtype = pipeline.keyframe_model.dtype
        bucket = find_best_bucket(settings.height, settings.width, buckets)
        figures |= {
            "dtype": str(dtype),
            "load_seconds": load_seconds,
            "bucket": bucket,
            "max_batch": pipeline.max_batch,
        }
        save("load")
        print(f"device: {gpu_description(device)}; torch {torch.__version__}; dtype {dtype}; "
              f"loaded in {load_seconds:.1f} s; clip bucket {bucket}; max_batch {pipeline.max_batch}")  # fmt: skip

        figures["warmups"] = []
        for i in range(warmup):
            print(f"warm-up {i + 1}/{warmup}", flush=True)
            figures["warmups"].append(run_ours(pipeline, picture, settings, workdir).__dict__)
            save("warm-up")
        runs = []
        for i in range(args.repeats):
            print(f"timed run {i + 1}/{args.repeats}", flush=True)
            runs.append(run_ours(pipeline, picture, settings, workdir))
            figures["runs"].append(runs[-1].__dict__)
            save("timed")
        best = min(runs, key=lambda run: run.total)
        figures["flops"] = flops = render_flops(sources, settings, bucket, pipeline.max_batch)
        figures["matmul_tflops"] = matmul_tflops(device, dtype if device.type == "cuda" else torch.float32)
        del pipeline
        if device.type == "cuda":
            torch.cuda.empty_cache()

        sampling_seconds = best.stages["keyframes"] + best.stages["interpolation"]
        figures["tflops_sampling"] = flops["total"] / sampling_seconds / 1e12
        figures["tflops_total"] = flops["total"] / best.total / 1e12
        save("rates")
        print_summary(best, figures)
        if args.reference:
            timeout = None if args.deadline is None else args.deadline - (time.perf_counter() - launched) - 5
            if timeout is not None and timeout < MIN_REFERENCE_SECONDS:
                figures["reference"] = {"error": f"skipped: {max(timeout, 0):.0f} s left of --deadline"}
                print(f"reference: {figures['reference']['error']}")
            else:
                picture_file = _save_picture(picture, workdir)
                figures["reference"] = run_reference(args, sources, picture_file, settings, device, warmup, workdir,
                                                     timeout)  # fmt: skip
                _compare(figures, best, workdir)
        save("done")
        if args.json:
            print(f"figures written to {args.json}")
    return 0


def _compare(figures: dict, best: Run, workdir: Path) -> None:
    """The speed-up and the frame difference, from as much as the reference did."""
    reference = figures["reference"]
    if "error" in reference:
        print(f"reference: {reference['error']}")
    if "best_total" not in reference:
        return
    figures["speedup"] = reference["best_total"] / best.total
    print(f"reference: total {reference['best_total']:.2f} s; speedup (reference / ours) {figures['speedup']:.2f}x")
    theirs, ours = np.load(reference["frames"]), np.load(workdir / "ours_frames.npy")
    if theirs.shape == ours.shape:
        difference = np.abs(theirs.astype(int) - ours)
        figures["frames_difference"] = {"max": int(difference.max()), "mean": float(difference.mean())}
        print(f"frames vs the reference: max |diff| {difference.max()}, mean {difference.mean():.3f} levels")


def print_summary(best: Run, figures: dict) -> None:
    flops, matmul = figures["flops"], figures["matmul_tflops"]
    stages = ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in best.stages.items())
    print(f"\nours: total {best.total:.2f} s ({stages})")
    if best.peak_memory_bytes is not None:
        print(f"ours: peak GPU memory {best.peak_memory_bytes / 2**30:.2f} GiB")
    print("FLOPs: " + ", ".join(f"{name} {_si(value)}FLOP" for name, value in flops.items()))
    print(
        f"achieved: {figures['tflops_total']:.3g} TFLOP/s over the whole job, {figures['tflops_sampling']:.3g} over "
        f"the sampling stages; measured matmul rate {matmul:.3g} TFLOP/s ({figures['tflops_total'] / matmul:.0%} of "
        "it over the whole job)"
    )


def _si(value: float) -> str:
    """1.02e16 -> '10.2 P'."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9)):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}"
    return f"{value:.3g} "


def _save_picture(picture: np.ndarray, folder: Path) -> Path:
    from PIL import Image

    path = folder / "picture.png"
    Image.fromarray(picture).save(path)
    return path


if __name__ == "__main__":
    sys.exit(main())
