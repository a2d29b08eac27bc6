"""Finding checkpoints: local folders, the Hugging Face cache, and the errors when neither has them."""

import pytest
from hub_cache import hub_cache_with

from model_core.checkpoints import resolve_checkpoint
from model_core.errors import CheckpointError
from model_core.keyframes import KeyframeModel
from model_core.tagger import Tagger


def test_a_local_folder_is_used_as_is(keyframe_checkpoint):
    assert resolve_checkpoint(keyframe_checkpoint) == keyframe_checkpoint
    assert resolve_checkpoint(str(keyframe_checkpoint)) == keyframe_checkpoint


def test_models_load_from_the_hub_cache_by_repo_id(keyframe_checkpoint, tagger_checkpoint, tmp_path):
    cache = hub_cache_with("lllyasviel/paints_undo_single_frame", keyframe_checkpoint, tmp_path)
    hub_cache_with("SmilingWolf/wd-v1-4-moat-tagger-v2", tagger_checkpoint, tmp_path)
    model = KeyframeModel.from_pretrained(cache_dir=cache, local_files_only=True)
    assert model.unet.conv_in.in_channels == 8
    assert Tagger.from_pretrained(cache_dir=cache, local_files_only=True).size == 64


def test_a_repo_missing_offline_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="'someone/absent' .* is not in the Hugging Face cache"):
        KeyframeModel.from_pretrained("someone/absent", cache_dir=tmp_path, local_files_only=True)


@pytest.mark.parametrize("name", ["./no/such/folder", "/no/such/folder", "not-a-repo-id", "a/b/c"])
def test_a_missing_folder_is_not_mistaken_for_a_repo(name):
    with pytest.raises(CheckpointError, match="neither an existing folder nor a Hugging Face repo id"):
        resolve_checkpoint(name)
