"""User-facing errors: raised for bad input, printed by `run.py` as one message (no traceback)."""


class SGLPError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class DataNotFoundError(SGLPError):
    """A dataset could not be found locally nor downloaded."""


class CheckpointError(SGLPError):
    """A checkpoint is missing, corrupt or does not fit the configured model."""


class UnsupportedModelError(SGLPError):
    """The model exposes no prunable units this library knows how to handle."""


class InvalidArgument(SGLPError, ValueError):
    """A value out of its valid range (k, a pruning target, unit indices, ...)."""
