"""Errors raised by model_core, each saying what went wrong and what to do."""


class ModelCoreError(Exception):
    """Base class of every error model_core raises on purpose."""


class CheckpointError(ModelCoreError):
    """A checkpoint is missing, unreachable, or does not match the model it is loaded into."""


class InvalidInputError(ModelCoreError, ValueError):
    """An argument of a model call is out of range or of the wrong type or shape."""
