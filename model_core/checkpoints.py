"""Finding checkpoint folders (local or on the Hugging Face Hub) and loading weights strictly.

Every component is built from its saved config and then receives exactly the tensors of its
weight file: a missing, unexpected or mis-shaped tensor is an error naming the keys, never a
silent partial load.
"""

import inspect
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import huggingface_hub
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors.torch import load_file

from model_core.errors import CheckpointError, InvalidInputError

T = TypeVar("T", bound=torch.nn.Module)

# Weight file names of the published layouts: diffusers models, and transformers or hub-mixin models.
DIFFUSERS_WEIGHTS, TRANSFORMERS_WEIGHTS = "diffusion_pytorch_model.safetensors", "model.safetensors"

# How long one request to the Hugging Face Hub may wait for an answer.
HUB_TIMEOUT_SECONDS = 15
# How many key names an error message lists before it summarises the rest.
_MAX_KEYS_SHOWN = 12


def resolve_checkpoint(
    path_or_repo: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    allow_patterns: Sequence[str] | None = None,
) -> Path:
    """Return a local folder for `path_or_repo`: the folder itself, or a Hub snapshot of the repo.

    A string naming an existing folder is used as is. Anything else is read as a Hugging Face
    repo id ("owner/name") and downloaded (or found in the cache) with `snapshot_download`.
    """
    path = Path(path_or_repo)
    if path.is_dir():
        return path
    repo_id = str(path_or_repo)
    if repo_id.startswith((".", "/", "~")) or repo_id.count("/") != 1:
        raise CheckpointError(
            f"{repo_id!r} is neither an existing folder nor a Hugging Face repo id of the form "
            "'owner/name'. Pass the folder that holds the checkpoint, or its repo id."
        )
    try:
        offline = local_files_only or huggingface_hub.constants.HF_HUB_OFFLINE
        if not offline:
            offline = not _hub_answers(repo_id, revision, cache_dir)
        folder = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=offline,
            allow_patterns=list(allow_patterns) if allow_patterns else None,
            etag_timeout=HUB_TIMEOUT_SECONDS,
        )
    except LocalEntryNotFoundError as error:
        raise CheckpointError(
            f"The checkpoint {repo_id!r} (revision {revision or 'main'}) is not in the Hugging Face cache "
            f"({cache_dir or huggingface_hub.constants.HF_HUB_CACHE}) and could not be downloaded. Download it "
            f"on a machine with network access (`hf download {repo_id}`), or pass a local folder. ({error})"
        ) from error
    except Exception as error:  # the hub's HTTP client raises its own types, which differ between its versions
        raise CheckpointError(
            f"Could not fetch the checkpoint {repo_id!r} from {huggingface_hub.constants.ENDPOINT}: "
            f"{type(error).__name__}: {error}. Check the network and any proxy (HTTPS_PROXY), or download it "
            f"elsewhere (`hf download {repo_id}`) and pass the folder."
        ) from error
    return Path(folder)


def _hub_answers(repo_id: str, revision: str | None, cache_dir: str | Path | None) -> bool:
    """Say what is fetched, and ask the hub about the repo with a timeout, so that a server that accepts
    connections and never answers fails in seconds (the hub's own client has no timeout on that request).

    False when the hub did not answer but the cache holds the checkpoint; raises when neither.
    """
    print(f"Fetching {repo_id} from {huggingface_hub.constants.ENDPOINT} ...", file=sys.stderr, flush=True)
    try:
        huggingface_hub.HfApi().repo_info(repo_id, revision=revision, timeout=HUB_TIMEOUT_SECONDS)
    except Exception as error:
        try:
            huggingface_hub.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True)
        except Exception:
            raise error from None
        print(f"  the hub did not answer ({type(error).__name__}); using the cached copy", file=sys.stderr)
        return False
    return True


def resolve_model_folder(
    path_or_repo: str | Path,
    *,
    subfolders: Sequence[str],
    allow_patterns: Sequence[str],
    description: str,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> Path:
    """`resolve_checkpoint` for a model made of components, one per subfolder, all of which must exist."""
    root = resolve_checkpoint(
        path_or_repo,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        allow_patterns=allow_patterns,
    )
    missing = [name for name in subfolders if not (root / name).is_dir()]
    if missing:
        raise CheckpointError(f"{root} is not {description} checkpoint: missing subfolders {missing}.")
    return root


def read_config(folder: Path) -> dict[str, Any]:
    """Read `folder/config.json`."""
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: every component folder holds a config.json.")
    with path.open() as f:
        return json.load(f)


def _listed(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    more = len(keys) - _MAX_KEYS_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def check_state_dict(expected: dict[str, torch.Size], found: dict[str, torch.Size], *, source: str) -> None:
    """Raise CheckpointError unless `found` has exactly the keys and shapes of `expected`."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(
        f"{key} (model {tuple(expected[key])}, file {tuple(found[key])})"
        for key in set(expected) & set(found)
        if tuple(expected[key]) != tuple(found[key])
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_listed(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} with another shape: {_listed(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{source} does not match the model built from its config.json; " + "; ".join(problems) + "."
        )


def load_component(folder: Path, build: Callable[[dict[str, Any]], T], weights_name: str) -> T:
    """Build a component from `folder/config.json` and give it exactly the tensors of `folder/weights_name`.

    `build(config)` runs on the meta device, so no memory or time goes to a random initialisation
    that the weights would overwrite; the file's tensors are then assigned in place of the empty ones.
    """
    config, path = read_config(folder), folder / weights_name
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the weights of this component are expected there.")
    try:
        with torch.device("meta"):
            module = build(config)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{folder / 'config.json'} describes a model that cannot be built: {error}") from error
    state_dict = load_file(path)
    expected = {key: value.shape for key, value in module.state_dict().items()}
    check_state_dict(expected, {key: value.shape for key, value in state_dict.items()}, source=str(path))
    module.load_state_dict(state_dict, strict=True, assign=True)
    # Buffers outside the state dict would still be empty; none of our modules has one.
    empty = [name for name, tensor in [*module.named_parameters(), *module.named_buffers()] if tensor.is_meta]
    if empty:
        raise CheckpointError(f"{path} left tensors of the model uninitialised: {_listed(empty)}.")
    return module


def place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Move `module` to `device` and cast its floating-point tensors to `dtype`, in eval mode without grads.

    Casts through `float()`/`half()`/`bfloat16()`: diffusers' `to(dtype=...)` logs a spurious warning.
    """
    casts = {torch.float32: module.float, torch.float16: module.half, torch.bfloat16: module.bfloat16}
    if dtype not in casts:
        raise InvalidInputError(f"dtype must be one of {list(casts)}, got {dtype}.")
    return casts[dtype]().to(device).eval().requires_grad_(False)


def constructor_kwargs(cls: type, config: dict[str, Any]) -> dict[str, Any]:
    """The keys of a config.json dict that `cls(**kwargs)` takes; an unknown key is a ValueError naming it.

    Keys starting with "_" are metadata (class name, library version) and are dropped.
    """
    config = {key: value for key, value in config.items() if not key.startswith("_")}
    accepted = [
        name
        for name, parameter in inspect.signature(cls).parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; {cls.__name__} takes {accepted}.")
    return config
