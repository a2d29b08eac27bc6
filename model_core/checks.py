"""Argument checks shared by the model calls: each raises InvalidInputError naming the argument."""

import math
import numbers

from model_core.errors import InvalidInputError

# torch.Generator.manual_seed takes 64-bit seeds; we accept the non-negative half.
MAX_SEED = 2**63 - 1


def is_integer(value: object) -> bool:
    """True for Python and numpy integers, not for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_text(name: str, text: object) -> None:
    if not isinstance(text, str):
        raise InvalidInputError(f"{name} must be a string, got {type(text).__name__}.")


def check_int_range(name: str, value: object, low: int, high: int) -> None:
    if not is_integer(value) or not low <= value <= high:
        raise InvalidInputError(f"{name} must be an integer in {low}..{high}, got {value!r}.")


def check_cfg(cfg: object) -> None:
    if not isinstance(cfg, numbers.Real) or isinstance(cfg, bool) or not (math.isfinite(cfg) and cfg >= 0):
        raise InvalidInputError(f"cfg must be a finite non-negative number, got {cfg!r}.")


def check_seed(seed: object, count: int = 1) -> None:
    """`count` consecutive seeds from `seed` must all be valid generator seeds."""
    check_int_range("seed", seed, 0, MAX_SEED - (count - 1))
