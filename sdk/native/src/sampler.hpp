// sdk.samplers.Sampler.indices (evaluation mode, no generator) and StreamingSampler, bit-exact.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "json.hpp"

namespace ev {

struct Sampler {
  std::string kind = "uniform_segments";
  int64_t frames = 8;
  int64_t stride = 1;
  int64_t of = 0;  // 0 = None
  int64_t seed = 0;

  static Sampler from_json(const Json& j, const std::string& where);  // throws Error(EV_ERR_BAD_BUNDLE)
  // Frame indices for a video of n frames (deterministic). random_k needs numpy's PCG64 generator when the grid
  // holds >= k positions: Error(EV_ERR_UNSUPPORTED).
  std::vector<int64_t> indices(int64_t n) const;
  std::vector<int64_t> grid_positions(int64_t g) const;
};

class StreamingSampler {
 public:
  StreamingSampler() = default;
  StreamingSampler(const Sampler& s, int64_t window);
  int64_t window() const { return window_; }
  int64_t position() const { return seen_ % window_; }
  int64_t window_index() const { return seen_ / window_; }
  int32_t peek() const { return copies_[static_cast<size_t>(position())]; }
  int32_t offer() {
    int32_t c = peek();
    ++seen_;
    return c;
  }
  bool window_complete() const { return seen_ > 0 && seen_ % window_ == 0; }
  void reset() { seen_ = 0; }
  const std::vector<int32_t>& copies() const { return copies_; }
  int64_t kept_per_window() const;

 private:
  int64_t window_ = 1;
  int64_t seen_ = 0;
  std::vector<int32_t> copies_;
};

}  // namespace ev
