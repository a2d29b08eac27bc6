"""Where the three models come from, and fetching exactly the files their loaders read.

A model choice (`PAINTS_UNDO_MODEL`, or the CLI's `--tiny`/`--model-dir`) is one of:
- `tiny`: the tiny preset, random-weight checkpoints that `model_core.tiny` writes (the video is noise);
- a folder in the published layout: `wd-v1-4-moat-tagger-v2/`, `paints_undo_single_frame/` and
  `paints_undo_multi_frame/`, as `hf download REPO --local-dir FOLDER/NAME` makes;
- the Hugging Face owner of the two Paints-UNDO repos (`lllyasviel`), plus the tagger's repo id.

`fetch_model_sources` turns a choice into local folders; `ModelSources.fetch` downloads repo ids.
Both go through `checkpoints.resolve_model_folder` with each loader's own file list, so a download
holds the files the loaders read and nothing else the repos may hold.
"""

import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path

from model_core import interpolation, keyframes
from model_core.checkpoints import resolve_model_folder
from model_core.errors import CheckpointError
from model_core.interpolation import INTERPOLATION_REPO
from model_core.keyframes import KEYFRAME_REPO
from model_core.tagger import DOWNLOADED_FILES as TAGGER_FILES
from model_core.tagger import TAGGER_REPO

TINY_MODEL = "tiny"
TINY_MODEL_ID = "paints-undo tiny preset (random weights)"
DEFAULT_OWNER = "lllyasviel"
# What fetching each model needs: its repo's file patterns, and the subfolders that must exist.
_LAYOUTS = {
    "tagger": (TAGGER_FILES, (), "a WD14 tagger"),
    "keyframe_model": (keyframes.DOWNLOADED_FILES, keyframes.SUBFOLDERS, "a keyframe-model"),
    "interpolation_model": (interpolation.DOWNLOADED_FILES, interpolation.SUBFOLDERS, "an interpolation-model"),
}
_WHAT_TO_DO = (
    "Give a folder in the published layout (PAINTS_UNDO_MODEL=/models or --model-dir /models, holding "
    "wd-v1-4-moat-tagger-v2/, paints_undo_single_frame/ and paints_undo_multi_frame/), the Hugging Face "
    "owner of the repos (lllyasviel), or `tiny` for random test weights (the video is noise)."
)


def _repo_name(repo_id: str) -> str:
    return repo_id.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ModelSources:
    """Where each model comes from: a local folder or a Hugging Face repo id (the published repos by default)."""

    tagger: str | Path = TAGGER_REPO
    keyframe_model: str | Path = KEYFRAME_REPO
    interpolation_model: str | Path = INTERPOLATION_REPO

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ModelSources":
        """A folder holding each repo under its own name, as `hf download REPO --local-dir FOLDER/NAME` makes:
        `wd-v1-4-moat-tagger-v2/`, `paints_undo_single_frame/`, `paints_undo_multi_frame/`."""
        return cls(*(Path(folder) / _repo_name(repo) for repo in (TAGGER_REPO, KEYFRAME_REPO, INTERPOLATION_REPO)))

    @classmethod
    def from_owner(cls, owner: str, *, tagger: str | None = None) -> "ModelSources":
        """The two Paints-UNDO repos under the Hugging Face account `owner`, and the tagger repo `tagger`
        (None: the published one)."""
        if not owner or "/" in owner or owner.startswith((".", "~")):
            raise CheckpointError(f"{owner!r} is not a Hugging Face owner. {_WHAT_TO_DO}")
        return cls(
            tagger or TAGGER_REPO,
            f"{owner}/{_repo_name(KEYFRAME_REPO)}",
            f"{owner}/{_repo_name(INTERPOLATION_REPO)}",
        )

    def ids(self) -> tuple[str, ...]:
        """The keyframe model's, the interpolation model's and the tagger's repo ids (a folder: its name)."""
        sources = (self.keyframe_model, self.interpolation_model, self.tagger)
        return tuple(source.name if isinstance(source, Path) else source for source in sources)

    def fetch(
        self,
        *,
        only: tuple[str, ...] = tuple(_LAYOUTS),
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
    ) -> "ModelSources":
        """A copy whose models named in `only` (field names; all three by default) are local folders.

        A Path is a folder, never downloaded; a string is a folder when one exists there, else a repo
        id, downloaded (or found in the Hugging Face cache `cache_dir`) with exactly the files its
        loader reads. A folder is checked for the subfolders its loader needs. Raises CheckpointError
        saying what to do when a folder or repo cannot be had.
        """
        unknown = sorted(set(only) - set(_LAYOUTS))
        if unknown:
            raise ValueError(f"unknown models {unknown}; ModelSources has {[f.name for f in fields(self)]}.")
        folders = {}
        for name in only:
            patterns, subfolders, description = _LAYOUTS[name]
            source = getattr(self, name)
            if isinstance(source, Path) and not source.is_dir():
                raise CheckpointError(f"{source} is missing: it should hold {description} checkpoint. {_WHAT_TO_DO}")
            folders[name] = resolve_model_folder(
                source,
                subfolders=subfolders,
                allow_patterns=patterns,
                description=description,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
            )
        return replace(self, **folders)


def fetch_model_sources(
    model: str | Path,
    *,
    tagger: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> ModelSources:
    """Local folders holding the three models that `model` names, downloading them when needed.

    model: `tiny` (writes the tiny checkpoints under `cache_dir/tiny`, or the system's temporary
        folder); a folder (a Path, or a string holding "/" or starting with "." or "~") in the layout
        of `ModelSources.from_folder`; or a Hugging Face owner of the two repos (`lllyasviel`).
    tagger: the tagger's repo id, used when `model` is an owner (None: the published one).
    cache_dir, local_files_only: the Hugging Face cache, and whether to stay off the network.
    Raises CheckpointError saying what to do when a folder or repo cannot be had.
    """
    if model == TINY_MODEL:
        return write_tiny_sources(Path(cache_dir or Path(tempfile.gettempdir()) / "paints-undo") / "tiny")
    if isinstance(model, Path) or "/" in model or model.startswith((".", "~")):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise CheckpointError(f"The model folder {folder} does not exist. {_WHAT_TO_DO}")
        return ModelSources.from_folder(folder).fetch()
    sources = ModelSources.from_owner(model, tagger=tagger)
    try:
        return sources.fetch(cache_dir=cache_dir, local_files_only=local_files_only)
    except CheckpointError as error:
        raise CheckpointError(f"{error} {_WHAT_TO_DO}") from error


def model_ids(model: str | Path, *, tagger: str | None = None) -> tuple[str, ...]:
    """How a render's files name the models that `model` (as `fetch_model_sources` takes it) stands for: the keyframe
    model's, the interpolation model's and the tagger's repo ids, or their folder names in a local layout."""
    if model == TINY_MODEL:
        return (TINY_MODEL_ID,)
    if isinstance(model, Path) or "/" in model or model.startswith((".", "~")):
        return ModelSources.from_folder(model).ids()
    return ModelSources.from_owner(model, tagger=tagger).ids()


def write_tiny_sources(folder: str | Path) -> ModelSources:
    """The tiny preset written to `folder` (random weights: the video is noise). Needs the `tiny` extra (onnx)."""
    try:
        # Imported here, not at the top: only this path needs onnx, an optional install (the `tiny` extra).
        from model_core.tiny import write_tiny_models
    except ModuleNotFoundError as error:
        raise CheckpointError(
            f"The tiny preset needs the `tiny` extra ({error.name} is not installed): pip install '.[tiny]'"
        ) from error
    return write_tiny_models(folder)
