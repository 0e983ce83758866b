"""Typed errors of the runtime: each says what is wrong and what to do about it.

Everything the sdk raises on bad input derives from :class:`SdkError`, so an app can catch one class. The subclasses
also derive from the closest built-in (``ValueError``, ``FileNotFoundError``...) so generic handlers keep working.
"""
from __future__ import annotations

__all__ = [
    "SdkError",
    "ConfigError",
    "DecodeError",
    "TruncatedVideoError",
    "FrameError",
    "BundleError",
    "BackendUnavailableError",
]


class SdkError(Exception):
    """Base class of every error the sdk raises on purpose."""


class ConfigError(SdkError, ValueError):
    """An invalid sampler / preprocessing / runtime setting (the message lists the valid choices)."""


class DecodeError(SdkError, IOError):
    """A video or frame source that cannot be opened or decoded: missing, empty, corrupt, truncated, not a video.

    ``source`` is the path, URL or camera index; it is always part of the message.
    """

    def __init__(self, source: object, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"cannot decode {source!s}: {reason}")


class TruncatedVideoError(DecodeError):
    """A video whose stream ends (or stops decoding) before the frame count its header promised.

    ``decoded`` frames (0 .. decoded - 1) were decoded before the end; ``expected`` is the promised count.
    ``VideoClassifier`` re-plans its sampling over the ``decoded`` frames unless asked to be ``strict``.
    """

    def __init__(self, source: object, reason: str, *, decoded: int, expected: int):
        self.decoded, self.expected = decoded, expected
        super().__init__(source, reason)


class FrameError(SdkError, ValueError):
    """A single frame with the wrong shape, dtype or values. In a stream it is reported and the stream goes on."""


class BundleError(SdkError, ValueError):
    """A model bundle that is missing, malformed, tampered with (hash mismatch) or from an unsupported schema version."""


class BackendUnavailableError(SdkError, ImportError):
    """An inference backend (or optional dependency) that is not installed or not supported on this platform."""
