// Camera images to model input in one pass: colour conversion, rotation, shorter-side resize and centre crop,
// computing only the crop's pixels. The reference is sdk/camera.py (CameraFrame.to_rgb) then sdk/preprocess.py
// (resize_short with OpenCV INTER_LINEAR, _centre_crop); this reproduces OpenCV's fixed-point bilinear arithmetic
// on the converted pixels, so the result is within one uint8 step of it (tests/test_camera.py).
#pragma once

#include <cstdint>
#include <vector>

#include "edgevideo.h"

namespace ev {

// Checks the image (format, sizes, planes, strides, rotation); throws Error(EV_ERR_BAD_FRAME) naming the problem.
void check_image(const ev_image& image);

// The upright image's size after rotation, and its size once its shorter side is short_side (sdk.preprocess's
// rounding: Python's round(), ties to even).
void resized_size(int upright_w, int upright_h, int short_side, int* out_w, int* out_h);

// size x size x 3 RGB, packed: the centre crop of the upright image resized to short_side.
std::vector<uint8_t> image_to_input(const ev_image& image, int short_side, int size);

// The same crop as the program's float32 input: per channel float(v) * mul[c] + add[c] (float32, no FMA), written
// planar (3 x size x size, CHW) or packed (size x size x 3, HWC) into out; nothing uint8 is materialised.
void image_to_values(const ev_image& image, int short_side, int size, const float mul[3], const float add[3],
                     bool planar, float* out);

}  // namespace ev
