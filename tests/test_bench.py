"""The benchmark still runs (`python -m bench.run --quick`), and its FLOP count adds up."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.flops import interpolation_flops, keyframe_flops, render_flops
from bench.memory import GOALS_GIB, job_memory, job_peak
from model_core import configs
from model_core.pipeline import ModelSources
from model_core.settings import RenderSettings

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"tagging", "keyframes", "interpolation", "encoding"}


def test_quick_benchmark_runs_the_default_job_shape_and_reports_every_figure(tmp_path):
    figures_file = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--json", str(figures_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(figures_file.read_text())
    (run,) = figures["runs"]
    assert set(run["stages"]) == STAGES
    assert sum(run["stages"].values()) <= run["total"]
    assert figures["settings"]["undo_steps"] == RenderSettings().undo_steps  # the default job's six keyframes
    assert figures["flops"]["total"] == figures["flops"]["keyframes"] + figures["flops"]["interpolation"] > 0
    assert figures["tflops_total"] == pytest.approx(figures["flops"]["total"] / run["total"] / 1e12)
    assert figures["matmul_tflops"] > 0
    assert "ours: total" in done.stdout and "measured matmul rate" in done.stdout


def test_the_full_size_benchmark_refuses_a_cpu_with_a_clear_message():
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "needs a CUDA GPU; use --quick" in done.stderr


@pytest.fixture(scope="module")
def full_size_configs(tmp_path_factory) -> ModelSources:
    """The published configs alone (no weights): all the FLOP count reads."""
    sources = ModelSources.from_folder(tmp_path_factory.mktemp("configs"))
    for folder, prefix, names in (
        (sources.keyframe_model, "KEYFRAME", ("text_encoder", "vae", "unet")),
        (
            sources.interpolation_model,
            "INTERPOLATION",
            ("text_encoder", "image_encoder", "vae", "image_projection", "unet"),
        ),
    ):
        for name in names:
            (Path(folder) / name).mkdir(parents=True)
            (Path(folder) / name / "config.json").write_text(json.dumps(getattr(configs, f"{prefix}_{name.upper()}")))
    return sources


def test_the_default_job_is_about_ten_petaflop_mostly_in_the_video_unet(full_size_configs):
    flops = render_flops(full_size_configs, RenderSettings(), (448, 384), max_batch=8)
    assert 9e15 < flops["total"] < 11.5e15
    assert flops["interpolation"] > 0.9 * flops["total"]


def test_flops_grow_by_one_unet_call_per_step_and_with_the_keyframe_count(full_size_configs):
    folder = full_size_configs.keyframe_model
    one, two, three = (keyframe_flops(folder, RenderSettings(keyframe_steps=n)) for n in (1, 2, 3))
    assert two - one == three - two > 0
    assert keyframe_flops(folder, RenderSettings(undo_steps=[400, 999], keyframe_steps=1)) < one
    video = full_size_configs.interpolation_model
    one, two = (interpolation_flops(video, RenderSettings(video_steps=n), (448, 384), 8) for n in (1, 2))
    # One step of 7 clips x (positive, negative) x 16 frames at 56x48 latents: about 0.19 PFLOP.
    assert 0.15e15 < two - one < 0.25e15


def test_the_default_job_fits_its_memory_goals_on_the_meta_count(full_size_configs):
    gib = 2**30
    default = job_memory(full_size_configs, RenderSettings(), (448, 384), low_memory=False)
    weights = sum(stage.weights for stage in default.values())
    assert 6.5 * gib < weights < 7 * gib  # both models in bfloat16
    # The video UNet at batch 14 with the encoder features kept: 5.8 GiB + 1.6 GiB (12.9 GiB unsliced).
    assert default["interpolation"].peak < 8 * gib
    assert job_peak(default, low_memory=False) <= GOALS_GIB["default"] * gib
    low = job_memory(full_size_configs, RenderSettings(), (448, 384), low_memory=True)
    assert job_peak(low, low_memory=True) <= GOALS_GIB["low_memory"] * gib
