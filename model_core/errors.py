"""Errors raised by model_core, each saying what went wrong and what to do."""


class ModelCoreError(Exception):
    """Base class of every error model_core raises on purpose."""


class CheckpointError(ModelCoreError):
    """A checkpoint is missing, unreachable, or does not match the model it is loaded into."""


class InvalidInputError(ModelCoreError, ValueError):
    """An argument of a model call is out of range or of the wrong type or shape."""


class RenderCanceled(ModelCoreError):
    """A render stopped because its caller asked it to (checked between sampler steps)."""


class VideoEncodingError(ModelCoreError):
    """ffmpeg could not write the video (its own message says why: disk full, unwritable folder, ...)."""


class CredentialsError(ModelCoreError):
    """The C2PA signing certificate or key is unusable, or signing with them failed (the message says which)."""
