"""Moved to :mod:`sdk.native.stream` (``python -m sdk classify|stream --native`` and this app share it). Kept only
as the import that ``benchmarks/faster_stream.py`` still uses; delete it once that module imports
``sdk.native.stream.NativeStream``."""
from sdk.native.stream import NativeStream

__all__ = ["NativeStream"]
