"""Where the models run: device and dtype from a name, with "auto" picking the fast choice available."""

import contextlib
from collections.abc import Iterator

import torch

from model_core.errors import InvalidInputError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(name: str = "auto") -> torch.device:
    """ "auto" is CUDA when available, else CPU; otherwise a torch device name ("cpu", "cuda", "cuda:1")."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise InvalidInputError(f"Unknown device {name!r}: use 'auto', 'cpu' or 'cuda[:N]'.") from error
    if device.type not in ("cpu", "cuda"):
        raise InvalidInputError(f"Device {name!r} is not supported: use 'auto', 'cpu' or 'cuda[:N]'.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"Device {name!r} asked for, but this torch build sees no CUDA GPU: use 'cpu'.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InvalidInputError(f"Device {name!r} asked for, but there are {torch.cuda.device_count()} CUDA GPUs.")
    return device


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """ "auto" is bfloat16 on a CUDA GPU that has it (float16 on older ones) and float32 on CPU.

    float32 on CPU is the path that reproduces the reference; float16 risks overflow in the VAEs,
    which the reference runs in bfloat16.
    """
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in DTYPES:
        raise InvalidInputError(f"Unknown dtype {name!r}: use 'auto' or one of {', '.join(DTYPES)}.")
    return DTYPES[name]


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator seeded `seed` for drawing on `device`. The meta device (shapes only, used to count
    work and memory) has no generator of its own and ignores the one it is given, so it gets a CPU one."""
    return torch.Generator("cpu" if device.type == "meta" else device).manual_seed(seed)


@contextlib.contextmanager
def fixed_shapes() -> Iterator[None]:
    """For loops whose every call has the same shapes (a sampler's steps): let cuDNN time its
    convolution algorithms once per shape and keep the fastest. Restored on leaving."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before
