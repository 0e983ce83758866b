// sdk.gate.Gate in C++: whether the expensive clip model of an adaptive FASTER bundle runs on a segment, from the
// cheap program's (logits, pooled) outputs. Stateful like the aggregator (the change score compares with the
// previous segment): reset with the stream.
#pragma once

#include <cstddef>
#include <vector>

#include "manifest.hpp"

namespace ev {

// numpy's pairwise summation (numpy/_core/src/umath/loops_utils.h), so that sums match to the last bit.
double pairwise_sum(const double* a, size_t n);

class Gate {
 public:
  explicit Gate(const FasterGate& rule);
  void reset();
  // NaN: the bundle's threshold; +inf never fires, -inf always.
  void set_threshold(double threshold);
  // This segment's score (and the segment becomes the previous one), in float64 as sdk.gate.Gate.score.
  double score(const std::vector<float>& logits, const std::vector<float>& pooled);
  bool fires(const std::vector<float>& logits, const std::vector<float>& pooled) {
    return score(logits, pooled) > threshold_;
  }

 private:
  FasterGate rule_;
  double threshold_;
  std::vector<double> previous_;  // the previous segment's pooled features; empty after a reset
};

}  // namespace ev
