"""Peak GPU memory of the default job, counted on the meta device: weights, and each stage's activations.

    python -m bench.memory                    # the published configs (model_core/configs.py)
    python -m bench.memory --models FOLDER    # the configs of checkpoints in FOLDER (as ModelSources.from_folder)
    python -m bench.memory --json FILE        # ... and every figure as JSON

The networks are built from their config.json files on the meta device (`bench/flops.py`'s job
walk, the same calls the render makes, at bfloat16) and run under a dispatch mode that adds up the
bytes of every tensor storage alive after each op: the activations the job holds at once. Weights
are the parameters' bytes. Attention is counted as the flash and memory-efficient kernels run it
(no score matrix); the allocator's rounding, fragmentation and cuDNN/cuBLAS workspaces are not
counted, so a GPU's `max_memory_allocated` is expected a little above these figures.

Default mode keeps every weight resident; its peak is all weights plus the largest stage's
activations. Low-memory mode keeps the weights in CPU memory and brings a component to the GPU for
its calls, samples one clip at a time and decodes keyframes one at a time; its peak is the largest
(weights in use + activations) over the calls.
"""

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from bench.flops import (
    INTERPOLATION_PARTS,
    KEYFRAME_PARTS,
    REFERENCE_SIZE,
    build_on_meta,
    interpolation_job,
    keyframe_job,
)
from model_core import configs
from model_core.images import find_best_bucket
from model_core.interpolation import BUCKETS, MAX_BATCH
from model_core.pipeline import ModelSources
from model_core.settings import RenderSettings

GIB = 2**30
# What the job is meant to fit: a 24 GB card with room by default, a 12 GB card in low-memory mode.
GOALS_GIB = {"default": 16.0, "low_memory": 10.0}


class LiveMemory(TorchDispatchMode):
    """Bytes of the tensor storages made inside the mode that are still alive, and their peak."""

    def __init__(self):
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._forget_freed()
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                if storage._cdata not in self._live:
                    self._live[storage._cdata] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out

    def _forget_freed(self) -> None:
        for key, (ref, nbytes) in list(self._live.items()):
            if ref.expired():
                del self._live[key]
                self.current -= nbytes


@dataclass
class CallMemory:
    """One network call: the components it needs, its weights, and the activations alive at its peak."""

    uses: tuple[str, ...]
    weights: int
    peak: int  # everything the stage holds at the call's peak, its inputs and the tensors kept for later included


@dataclass
class StageMemory:
    weights: int  # of the stage's model (all its components)
    calls: list[CallMemory] = field(default_factory=list)

    @property
    def peak(self) -> int:
        return max(call.peak for call in self.calls)


class _Recorder:
    """A job walk's `call`: runs each call inside a LiveMemory and records its peak."""

    def __init__(self, nets: dict[str, nn.Module], memory: LiveMemory, stage: StageMemory):
        self.nets, self.memory, self.stage = nets, memory, stage

    def __call__(self, times: int, uses: tuple[str, ...], function: Callable[..., Any], *args: Any) -> Any:
        self.memory.peak = self.memory.current
        out = function(*args)
        weights = sum(weight_bytes(self.nets[name]) for name in uses)
        self.stage.calls.append(CallMemory(uses, weights, self.memory.peak))
        return out


def weight_bytes(module: nn.Module) -> int:
    return sum(t.nbytes for t in module.parameters()) + sum(t.nbytes for t in module.buffers())


@torch.inference_mode()
def job_memory(
    sources: ModelSources,
    settings: RenderSettings,
    bucket: tuple[int, int],
    *,
    low_memory: bool,
    max_batch: int | None = None,
    dtype: torch.dtype = torch.bfloat16,
) -> dict[str, StageMemory]:
    """Each sampling stage's weights and per-call peaks for one render, as the pipeline runs it."""
    stages = {}
    for name, folder, parts in (
        ("keyframes", sources.keyframe_model, KEYFRAME_PARTS),
        ("interpolation", sources.interpolation_model, INTERPOLATION_PARTS),
    ):
        nets = build_on_meta(folder, parts, dtype)
        stage = stages[name] = StageMemory(weights=sum(weight_bytes(net) for net in nets.values()))
        with LiveMemory() as memory:
            record = _Recorder(nets, memory, stage)
            if name == "keyframes":
                keyframe_job(nets, settings, record, one_at_a_time=low_memory)
            else:
                batch = max_batch or (1 if low_memory else MAX_BATCH)
                interpolation_job(nets, settings, bucket, batch, record)
    return stages


def job_peak(stages: dict[str, StageMemory], *, low_memory: bool) -> int:
    if low_memory:
        return max(call.weights + call.peak for stage in stages.values() for call in stage.calls)
    return sum(stage.weights for stage in stages.values()) + max(stage.peak for stage in stages.values())


def report(sources: ModelSources, settings: RenderSettings, bucket: tuple[int, int], max_batch: int | None) -> dict:
    """Every figure of both modes, as JSON-ready numbers (GiB), and print them."""
    figures = {"bucket": bucket}
    for mode, low_memory in (("default", False), ("low_memory", True)):
        stages = job_memory(sources, settings, bucket, low_memory=low_memory, max_batch=max_batch)
        peak = job_peak(stages, low_memory=low_memory)
        weights = sum(stage.weights for stage in stages.values())
        where = " (in CPU memory, one component at a time on the GPU)" if low_memory else ""
        print(f"{mode}: estimated peak {peak / GIB:.2f} GiB (goal <= {GOALS_GIB[mode]:.0f} GiB); "
              f"weights {weights / GIB:.2f} GiB{where}")  # fmt: skip
        for name, stage in stages.items():
            top = max(stage.calls, key=lambda call: call.peak + (call.weights if low_memory else 0))
            print(
                f"  {name:<13} activations peak {stage.peak / GIB:6.2f} GiB (in {'+'.join(top.uses)}, whose weights "
                f"are {top.weights / GIB:.2f} GiB); the model's weights {stage.weights / GIB:.2f} GiB"
            )
        figures[mode] = {
            "peak_gib": peak / GIB,
            "weights_gib": weights / GIB,
            "goal_gib": GOALS_GIB[mode],
            "stages": {name: [asdict(call) for call in stage.calls] for name, stage in stages.items()},
        }
    return figures


def published_configs(folder: Path) -> ModelSources:
    """A folder of the published components' config.json files (no weights): all this count reads."""
    sources = ModelSources.from_folder(folder)
    for model_folder, prefix, parts in (
        (sources.keyframe_model, "KEYFRAME", KEYFRAME_PARTS),
        (sources.interpolation_model, "INTERPOLATION", INTERPOLATION_PARTS),
    ):
        for name in parts:
            (Path(model_folder) / name).mkdir(parents=True, exist_ok=True)
            config = getattr(configs, f"{prefix}_{name.upper()}")
            (Path(model_folder) / name / "config.json").write_text(json.dumps(config))
    return sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, help="checkpoint folder whose configs to read (default: published)")
    parser.add_argument("--max-batch", type=int, help="clips sampled together (default: the pipeline's)")
    parser.add_argument("--settings", type=json.loads, default={}, help="RenderSettings fields, as JSON")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args(argv)
    settings = RenderSettings(**REFERENCE_SIZE | args.settings)
    bucket = find_best_bucket(settings.height, settings.width, BUCKETS)
    print(f"the default job: {len(settings.keyframe_undo_steps)} keyframes at {settings.width}x{settings.height}, "
          f"{len(settings.keyframe_undo_steps) + 1} clips at {bucket[1]}x{bucket[0]}, bfloat16")  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        sources = ModelSources.from_folder(args.models) if args.models else published_configs(Path(scratch))
        figures = report(sources, settings, bucket, args.max_batch)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
