"""The tiny-checkpoint builders: deterministic for a seed, and in the published layout."""

import filecmp
import subprocess
import sys

import torch

from model_core.tiny import write_keyframe_checkpoint, write_tiny_tagger

FILES = [
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
]


def test_keyframe_checkpoints_are_deterministic_per_seed_and_leave_the_global_rng_alone(tmp_path):
    state = torch.random.get_rng_state()
    first = write_keyframe_checkpoint(tmp_path / "a", seed=3)
    again = write_keyframe_checkpoint(tmp_path / "b", seed=3)
    other = write_keyframe_checkpoint(tmp_path / "c", seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert sorted(str(p.relative_to(first)) for p in first.rglob("*") if p.is_file()) == sorted(FILES)
    assert all(filecmp.cmp(first / name, again / name, shallow=False) for name in FILES)
    assert not filecmp.cmp(first / FILES[-1], other / FILES[-1], shallow=False)


def test_taggers_are_deterministic_per_seed(tmp_path):
    first, again, other = (
        write_tiny_tagger(tmp_path / name, seed=seed) for name, seed in [("a", 1), ("b", 1), ("c", 2)]
    )
    assert filecmp.cmp(first / "model.onnx", again / "model.onnx", shallow=False)
    assert filecmp.cmp(first / "selected_tags.csv", again / "selected_tags.csv", shallow=False)
    assert not filecmp.cmp(first / "model.onnx", other / "model.onnx", shallow=False)


def test_production_modules_import_neither_the_tiny_preset_nor_onnx():
    """The tiny extra (onnx) is optional: only choosing `tiny` imports model_core.tiny."""
    code = (
        "import sys\n"
        "sys.modules['onnx'] = None  # as if the tiny extra were not installed\n"
        "import model_core.cli, model_core.pipeline, model_core.sources, worker.models\n"
        "assert 'model_core.tiny' not in sys.modules and 'mp4' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
