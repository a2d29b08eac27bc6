"""The API process stays light, and its settings refuse what would make it unsafe."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from api.config import ApiSettings


def test_the_api_never_imports_torch() -> None:
    """It must start fast: jobs reach the render workers by Celery task name, not by importing their code."""
    code = (
        "import sys; from api.config import ApiSettings; from api.main import create_app; "
        "create_app(ApiSettings(api_keys='k' * 16, storage_url='file://' + sys.argv[1])); "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'model_core.pipeline') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code, "/tmp"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("keys", "message"),
    [("", "not set"), ("short-key", "shorter than 16"), (" , ", "not set")],
)
def test_api_keys_are_required_and_long(keys: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAINTS_UNDO_API_KEYS", keys)
    with pytest.raises(ValidationError, match=message):
        ApiSettings()


def test_keys_are_kept_only_as_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAINTS_UNDO_API_KEYS", "first-key-0123456789, second-key-0123456789")
    settings = ApiSettings()
    owners = settings.owners()
    assert len(set(owners.values())) == 2
    assert not any("key-0123456789" in text for text in [*owners, *owners.values()])
