// Reads golden.npz (numpy's savez: a zip of .npy files, stored uncompressed) without numpy: little-endian
// float32 / float64 / int64 arrays in C order. Anything else is Error(EV_ERR_BAD_BUNDLE).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ev {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // converted to float32
  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

std::map<std::string, NpyArray> read_npz(const std::string& path);

}  // namespace ev
