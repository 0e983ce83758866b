"""On-device runtime of the edge video-recognition SDK.

``import sdk`` needs numpy only: video decoding (PyAV / OpenCV) and inference backends load lazily when used, and this
package never imports torch or ``training``. Training imports the samplers and preprocessing from here, so what the
device runs is by construction what the model was trained on.
"""
from sdk.errors import BackendUnavailableError, BundleError, ConfigError, DecodeError, FrameError, SdkError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler, StreamingSampler
from sdk.video import FrameFolder, FrameSource, StreamCapture, VideoFile, open_source

__version__ = "0.1.0"

__all__ = [
    "Preprocess",
    "Sampler",
    "StreamingSampler",
    "FrameSource",
    "VideoFile",
    "StreamCapture",
    "FrameFolder",
    "open_source",
    "SdkError",
    "ConfigError",
    "DecodeError",
    "FrameError",
    "BundleError",
    "BackendUnavailableError",
]
