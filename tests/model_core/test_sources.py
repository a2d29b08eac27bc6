"""Model choices (`tiny`, a folder, a Hugging Face owner) turned into local folders, offline."""

import sys
from pathlib import Path

import huggingface_hub
import pytest
from hub_cache import REVISION, hub_cache_with

from model_core.errors import CheckpointError
from model_core.keyframes import KeyframeModel
from model_core.sources import ModelSources, fetch_model_sources
from model_core.tagger import Tagger

NAMES = ("wd-v1-4-moat-tagger-v2", "paints_undo_single_frame", "paints_undo_multi_frame")


@pytest.fixture
def model_folder(tmp_path, tagger_checkpoint, keyframe_checkpoint, interpolation_checkpoint) -> Path:
    """A folder in the published layout, each model linked to the session's tiny checkpoint."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name, checkpoint in zip(NAMES, (tagger_checkpoint, keyframe_checkpoint, interpolation_checkpoint), strict=True):
        (folder / name).symlink_to(checkpoint, target_is_directory=True)
    return folder


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_tiny_writes_the_tiny_preset_under_the_cache(tmp_path):
    sources = fetch_model_sources("tiny", cache_dir=tmp_path)
    assert sources == ModelSources.from_folder(tmp_path / "tiny")
    assert files_under(sources.tagger) == ["model.onnx", "selected_tags.csv"]
    assert Tagger.from_pretrained(sources.tagger).size == 64
    assert KeyframeModel.from_pretrained(sources.keyframe_model).unet.conv_in.in_channels == 8


def test_tiny_without_the_tiny_extra_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if onnx were not installed
    monkeypatch.delitem(sys.modules, "model_core.tiny", raising=False)
    with pytest.raises(CheckpointError, match=r"pip install '\.\[tiny\]'"):
        fetch_model_sources("tiny", cache_dir=tmp_path)
    assert not (tmp_path / "tiny").exists()


@pytest.mark.parametrize("as_path", [True, False])
def test_a_folder_in_the_published_layout_is_used_as_is(model_folder, as_path):
    model = model_folder if as_path else str(model_folder)
    assert fetch_model_sources(model) == ModelSources.from_folder(model_folder)


def test_a_missing_folder_is_a_clear_error_never_a_download(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist.*PAINTS_UNDO_MODEL=/models or --model-dir"):
        fetch_model_sources(str(tmp_path / "absent"))
    with pytest.raises(CheckpointError, match="does not exist"):
        fetch_model_sources("./absent")


def test_a_folder_missing_one_model_names_it(model_folder):
    (model_folder / "paints_undo_multi_frame").unlink()
    with pytest.raises(CheckpointError, match="paints_undo_multi_frame is missing: it should hold an interpolation"):
        fetch_model_sources(model_folder)
    (model_folder / "paints_undo_multi_frame").mkdir()
    with pytest.raises(CheckpointError, match=r"missing subfolders \['tokenizer'"):
        fetch_model_sources(model_folder)


def test_an_owner_not_in_the_cache_offline_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="'someone/tagger' .* is not in the Hugging Face cache"):
        fetch_model_sources("someone", tagger="someone/tagger", cache_dir=tmp_path, local_files_only=True)
    # HF_HUB_OFFLINE=1 is the same as local_files_only, and the message says what to give instead.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache.*or `tiny` for random test weights"):
        fetch_model_sources("someone", cache_dir=tmp_path)


def test_an_owner_whose_repos_are_cached_needs_no_network(
    tmp_path, tagger_checkpoint, keyframe_checkpoint, interpolation_checkpoint
):
    cache = tmp_path / "cache"
    hub_cache_with("someone/paints_undo_single_frame", keyframe_checkpoint, cache)
    hub_cache_with("someone/paints_undo_multi_frame", interpolation_checkpoint, cache)
    hub_cache_with("other/tagger", tagger_checkpoint, cache)
    sources = fetch_model_sources("someone", tagger="other/tagger", cache_dir=cache, local_files_only=True)
    assert sources.keyframe_model == cache / "models--someone--paints_undo_single_frame" / "snapshots" / REVISION
    assert files_under(sources.keyframe_model) == files_under(keyframe_checkpoint)
    assert "models--someone--paints_undo_multi_frame" in str(sources.interpolation_model)
    assert Tagger.from_pretrained(sources.tagger).size == 64


@pytest.mark.parametrize("owner", ["", "~me", "a/b"])
def test_an_owner_is_one_name(owner):
    with pytest.raises(CheckpointError, match="is not a Hugging Face owner"):
        ModelSources.from_owner(owner)


def test_fetch_leaves_models_not_asked_for_alone(model_folder):
    sources = ModelSources(tagger=model_folder / NAMES[0]).fetch(only=("tagger",))
    assert sources == ModelSources(tagger=model_folder / NAMES[0])
    with pytest.raises(ValueError, match="unknown models \\['vae'\\]"):
        sources.fetch(only=("vae",))
