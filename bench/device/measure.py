"""One device run: install the carried wheels, measure our default job, then the reference's with the time left.

    python3 bench/device/measure.py --out "$OUT"                       # on the device machine (README.md)
    python bench/device/measure.py --dry-run --out DIR --models DIR    # CPU, tiny checkpoints, 1 step (CI)

Standard library only: it runs under the machine's own python3 before anything is installed, and
starts each measurement as a subprocess with the Python path of its wheel set. Phases, in order:

1. install: each wheel set under --wheels (`ours/`, `reference/`) into its own folder with
   `pip install --no-index --no-deps --target` (a missing set is skipped);
2. machine: nvidia-smi and the package versions, to machine.txt;
3. bench: `python -m bench.run` (full-size random checkpoints drawn on the GPU, load, warm-up
   render, timed render, FLOP count, matrix rate), then the reference flow (`--wheels/upstream`,
   its own wheels) with whatever is left of --budget; bench.run rewrites bench.json after each of
   its phases and the reference rewrites reference.json after each of its runs;
4. memory: `python -m bench.memory` on the written checkpoints' configs (the meta-device estimate,
   to set beside the measured peak), if time is left.

device.json says what each phase did and how long it took; it is rewritten as each phase ends, so a
run cut short still returns every figure made before the cut. Logs: install-*.log, bench.log, memory.log.
"""

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The dry run: the default job's shape cut to one keyframe, one step each (tiny checkpoints, CPU).
DRY_RUN_SETTINGS = {"undo_steps": [999], "keyframe_steps": 1, "video_steps": 1}
# Seconds kept back at the end of --budget for writing the last JSON and handing $OUT back.
MARGIN = 15
# The memory estimate is skipped with less than this left.
MEMORY_SECONDS = 40
VERSIONS = (
    "import sys, importlib.metadata as m\n"
    "print('python', sys.version.split()[0])\n"
    "for name in ('torch', 'triton', 'transformers', 'huggingface_hub', 'diffusers', 'tokenizers', 'pydantic',"
    " 'safetensors', 'onnxruntime', 'imageio-ffmpeg', 'accelerate', 'numpy', 'opencv-python-headless'):\n"
    "    try: print(name, m.version(name))\n"
    "    except m.PackageNotFoundError: print(name, '-')\n"
    "import torch\n"
    "print('cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())\n"
)


class Phases:
    """What each phase did, rewritten to OUT/device.json as each one ends."""

    def __init__(self, out: Path, budget: float):
        self.out, self.budget, self.started = out, budget, time.monotonic()
        self.record: dict = {"budget_seconds": budget, "phases": []}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.started) - MARGIN

    def done(self, name: str, started: float, status: str, **details) -> None:
        seconds = round(time.monotonic() - started, 1)
        self.record["phases"].append({"phase": name, "status": status, "seconds": seconds, **details})
        self.record["elapsed_seconds"] = round(time.monotonic() - self.started, 1)
        (self.out / "device.json").write_text(json.dumps(self.record, indent=2) + "\n")
        print(f"[{self.record['elapsed_seconds']:6.1f} s] {name}: {status} ({seconds} s)", flush=True)


def run_logged(command: list[str], log: Path, env: dict[str, str], timeout: float) -> str:
    """Run `command` with its output to `log`; "ok", "exit N" or "timed out after N s"."""
    with log.open("w") as output:
        try:
            done = subprocess.run(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout:.0f} s"
    return "ok" if done.returncode == 0 else f"exit {done.returncode}"


def install(wheels: Path, sites: Path, python: str, phases: Phases) -> dict[str, Path]:
    """Each wheel set into sites/<set>; returns the sets installed."""
    installed = {}
    for name in ("ours", "reference"):
        started = time.monotonic()
        files = sorted((wheels / name).glob("*.whl"))
        if not files:
            phases.done(f"install {name}", started, "skipped: no wheels", folder=str(wheels / name))
            continue
        target = sites / name
        command = [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                   "--target", str(target), *map(str, files)]  # fmt: skip
        status = run_logged(command, phases.out / f"install-{name}.log", dict(os.environ), max(phases.left(), 1))
        if status == "ok":
            installed[name] = target
        phases.done(f"install {name}", started, status, wheels=[f.name for f in files])
    return installed


def environment(site: Path | None, *extra: Path) -> dict[str, str]:
    """The current environment with PYTHONPATH set to `site` (if any) and `extra`, nothing else."""
    paths = ([str(site)] if site else []) + [str(path) for path in extra]
    return dict(os.environ) | {"PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}


def reference_python(python: str, site: Path, folder: Path) -> Path:
    """A wrapper that runs `python` with only the reference's wheels on its path (bench.run's --reference-python)."""
    wrapper = folder / "reference-python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{python}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT"), help="where the figures go ($OUT)")
    parser.add_argument("--wheels", type=Path, default=REPO / ".whl", help="ours/, reference/ and upstream/")
    parser.add_argument("--models", type=Path, default=Path("/tmp/paints-undo-models"), help="checkpoints folder")
    parser.add_argument("--budget", type=float, default=570, help="seconds for the whole run (the tool allows 600)")
    parser.add_argument("--python", default=sys.executable, help="the Python to measure with")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny checkpoints, one step (CI)")
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("--out or $OUT is required")
    args.out.mkdir(parents=True, exist_ok=True)
    phases = Phases(args.out, args.budget)
    scratch = Path(tempfile.mkdtemp(prefix="paints-undo-device-"))

    sites = install(args.wheels, scratch, args.python, phases)
    ours_env = environment(sites.get("ours"), REPO)

    started = time.monotonic()
    lines = []
    if shutil.which("nvidia-smi"):
        lines.append(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout)
    versions = subprocess.run([args.python, "-c", VERSIONS], capture_output=True, text=True, env=ours_env)
    (args.out / "machine.txt").write_text("\n".join(lines + [versions.stdout, versions.stderr]))
    phases.done("machine", started, "ok" if versions.returncode == 0 else f"exit {versions.returncode}")

    started = time.monotonic()
    command = [args.python, "-m", "bench.run", "--models", str(args.models), "--json", str(args.out / "bench.json"),
               "--deadline", str(max(phases.left() - MEMORY_SECONDS, 1))]  # fmt: skip
    if args.dry_run:
        command += ["--quick", "--settings", json.dumps(DRY_RUN_SETTINGS)]
    upstream = args.wheels / "upstream"
    with_reference = (upstream / "gradio_app.py").is_file() and "reference" in sites
    if with_reference:
        command += ["--reference", str(upstream), "--reference-result", str(args.out / "reference.json"),
                    "--reference-python", str(reference_python(args.python, sites["reference"], scratch))]  # fmt: skip
    status = run_logged(command, args.out / "bench.log", ours_env, max(phases.left(), 1))
    phases.done("bench", started, status, reference=with_reference or "skipped: no upstream or reference wheels")

    started = time.monotonic()
    if phases.left() < MEMORY_SECONDS:
        phases.done("memory", started, f"skipped: {max(phases.left(), 0):.0f} s left")
    else:
        command = [args.python, "-m", "bench.memory", "--models", str(args.models), "--json",
                   str(args.out / "memory.json")]  # fmt: skip
        if args.dry_run:
            command += ["--settings", json.dumps(DRY_RUN_SETTINGS)]
        phases.done("memory", started, run_logged(command, args.out / "memory.log", ours_env, phases.left()))
    shutil.rmtree(scratch, ignore_errors=True)
    return 0 if all(phase["status"] == "ok" or "skipped" in phase["status"] for phase in phases.record["phases"]) else 1


if __name__ == "__main__":
    sys.exit(main())
