"""The benchmark still runs (`python -m bench.run --quick`), and its FLOP count adds up."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.flops import REFERENCE_SIZE, interpolation_flops, keyframe_flops, render_flops
from bench.memory import GOALS_GIB, job_memory, job_peak
from bench.run import run_reference
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
    # The default job's six keyframes.
    assert figures["settings"]["undo_steps"] == RenderSettings(**REFERENCE_SIZE).keyframe_undo_steps
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
    flops = render_flops(full_size_configs, RenderSettings(**REFERENCE_SIZE), (448, 384), max_batch=8)
    assert 9e15 < flops["total"] < 11.5e15
    assert flops["interpolation"] > 0.9 * flops["total"]


def test_flops_grow_by_one_unet_call_per_step_and_with_the_keyframe_count(full_size_configs):
    folder = full_size_configs.keyframe_model
    one, two, three = (keyframe_flops(folder, RenderSettings(**REFERENCE_SIZE, keyframe_steps=n)) for n in (1, 2, 3))
    assert two - one == three - two > 0
    assert keyframe_flops(folder, RenderSettings(**REFERENCE_SIZE, undo_steps=[400, 999], keyframe_steps=1)) < one
    video = full_size_configs.interpolation_model
    one, two = (
        interpolation_flops(video, RenderSettings(**REFERENCE_SIZE, video_steps=n), (448, 384), 8) for n in (1, 2)
    )
    # One step of 7 clips x (positive, negative) x 16 frames at 56x48 latents: about 0.19 PFLOP.
    assert 0.15e15 < two - one < 0.25e15


def test_the_default_job_fits_its_memory_goals_on_the_meta_count(full_size_configs):
    gib = 2**30
    default = job_memory(full_size_configs, RenderSettings(**REFERENCE_SIZE), (448, 384), low_memory=False)
    weights = sum(stage.weights for stage in default.values())
    assert 6.5 * gib < weights < 7 * gib  # both models in bfloat16
    # The video UNet at batch 14 with the encoder features kept: 5.8 GiB + 1.6 GiB (12.9 GiB unsliced).
    assert default["interpolation"].peak < 8 * gib
    assert job_peak(default, low_memory=False) <= GOALS_GIB["default"] * gib
    low = job_memory(full_size_configs, RenderSettings(**REFERENCE_SIZE), (448, 384), low_memory=True)
    assert job_peak(low, low_memory=True) <= GOALS_GIB["low_memory"] * gib


def test_the_device_script_dry_run_writes_every_phases_figures(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "bench/device/measure.py",
            "--dry-run",
            "--out",
            str(out),
            "--models",
            str(tmp_path / "m"),
            "--wheels",
            str(tmp_path / "no-wheels"),
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    phases = {phase["phase"]: phase["status"] for phase in json.loads((out / "device.json").read_text())["phases"]}
    assert phases == {
        "install ours": "skipped: no wheels",
        "install reference": "skipped: no wheels",
        "machine": "ok",
        "bench": "ok",
        "memory": "ok",
    }
    figures = json.loads((out / "bench.json").read_text())
    assert figures["phase"] == "done" and len(figures["runs"]) == 1 and figures["tflops_total"] > 0
    assert set(figures["runs"][0]) >= {"stages", "total", "peak_memory_bytes", "peak_reserved_bytes"}
    assert json.loads((out / "memory.json").read_text())["default"]["peak_gib"] > 0
    assert "torch" in (out / "machine.txt").read_text()


@pytest.mark.parametrize(
    ("script", "timeout", "error"),
    [("sys.exit(3)", None, "exited with 3"), ("time.sleep(60)", 3, "ran out of its 3 s")],
)
def test_a_reference_that_fails_or_runs_out_of_time_keeps_what_it_wrote(tmp_path, script, timeout, error):
    fake = tmp_path / "fake_python"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys, time\nresult = sys.argv[sys.argv.index('--result') + 1]\n"
        f"open(result, 'w').write(json.dumps({{'load_seconds': 1.5, 'runs': []}}))\n{script}\n"
    )
    fake.chmod(0o755)
    args = argparse.Namespace(
        reference=tmp_path, reference_python=str(fake), reference_result=tmp_path / "reference.json",
        reference_high_vram=False, repeats=1,
    )  # fmt: skip
    settings = RenderSettings(**REFERENCE_SIZE)
    sources = ModelSources.from_folder(tmp_path / "models")
    result = run_reference(args, sources, tmp_path / "p.png", settings, torch.device("cpu"), 0, tmp_path, timeout)
    assert result["load_seconds"] == 1.5 and error in result["error"]
