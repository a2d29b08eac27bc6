"""The render worker's models: PAINTS_UNDO_MODEL turned into local folders by model_core.sources, offline."""

import pytest

from jobs.settings import ServiceSettings
from model_core.errors import CheckpointError
from model_core.sources import ModelSources
from worker.models import fetch_models


def test_tiny_is_written_under_the_model_cache(tmp_path):
    sources = fetch_models(ServiceSettings(model="tiny", model_cache=tmp_path))
    assert sources == ModelSources.from_folder(tmp_path / "tiny")
    assert (sources.interpolation_model / "unet" / "config.json").is_file()


def test_a_missing_folder_stops_the_worker_with_what_to_set(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist.*PAINTS_UNDO_MODEL=/models"):
        fetch_models(ServiceSettings(model=str(tmp_path / "absent")))


def test_an_owner_not_in_the_cache_offline_names_the_repo(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    settings = ServiceSettings(model="someone", tagger="someone/tagger", model_cache=tmp_path)
    with pytest.raises(CheckpointError, match="'someone/tagger' .* is not in the Hugging Face cache"):
        fetch_models(settings)
