"""Models of the first training path: MobileNetV2 with torchvision keys + offline ImageNet weights, TSN, registry."""
from __future__ import annotations

import pytest
import torch

from sdk.errors import ConfigError
from sdk.preprocess import Preprocess
from training.models import create, list_models
from training.models.mobilenet_v2 import MobileNetV2, load_imagenet_weights


def test_imagenet_weights_load_strictly_and_recognise_a_real_photo():
    """Key names, weights and the ImageNet preprocessing together: skimage's coffee photo is espresso (class 967;
    measured p=0.993)."""
    from skimage import data as skimage_data
    model = load_imagenet_weights(MobileNetV2(), with_classifier=True).eval()
    x = torch.from_numpy(Preprocess(size=224, resize=256)(skimage_data.coffee()))[None]
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    assert probs.argmax().item() == 967 and probs[967] > 0.9, f"top-5 {probs.topk(5)}"


def test_imagenet_head_size_conflict_raises():
    with pytest.raises(ConfigError, match="1000 classes"):
        load_imagenet_weights(MobileNetV2(num_classes=10), with_classifier=True)


def test_tsn_is_frame_order_invariant():
    model = create("tsn_mobilenet_v2", num_classes=6, frames=4, pretrained=False).eval()
    x = torch.randn(2, 4, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), model(x.flip(1))
    assert a.shape == (2, 6)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, model.num_features)


def test_registry():
    assert "tsn_mobilenet_v2" in list_models()
    with pytest.raises(ConfigError, match="available"):
        create("resnet9000", num_classes=2, frames=2)
