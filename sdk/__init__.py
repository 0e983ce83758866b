"""On-device runtime of the edge video-recognition SDK.

``import sdk`` needs numpy only: video decoding (PyAV / OpenCV) and inference backends load lazily when used, and this
package never imports torch or ``training``. Training imports the samplers and preprocessing from here, so what the
device runs is by construction what the model was trained on.
"""
from sdk.camera import CameraFrame
from sdk.classifier import Prediction, Smoothing, StreamClassifier, VideoClassifier
from sdk.errors import BackendUnavailableError, BundleError, ConfigError, DecodeError, FrameError, SdkError
from sdk.preprocess import Preprocess
from sdk.runtime import Model, available_backends, load
from sdk.samplers import Sampler, StreamingSampler
from sdk.stats import LatencyStats
from sdk.video import FrameFolder, FrameSource, StreamCapture, VideoFile, open_source

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "BundleError",
    "CameraFrame",
    "ConfigError",
    "DecodeError",
    "FrameError",
    "FrameFolder",
    "FrameSource",
    "LatencyStats",
    "Model",
    "Prediction",
    "Preprocess",
    "Sampler",
    "SdkError",
    "Smoothing",
    "StreamCapture",
    "StreamClassifier",
    "StreamingSampler",
    "VideoClassifier",
    "VideoFile",
    "available_backends",
    "load",
    "open_source",
]
