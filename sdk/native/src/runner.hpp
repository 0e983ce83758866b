// One ExecuTorch program (.pte) behind the bundle's calling convention: float32 inputs (then state) in,
// float32 outputs (then new state) out, shapes checked against the manifest.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "manifest.hpp"

namespace ev {

class Runner {
 public:
  Runner(const std::string& path, const Program& program);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;
  // inputs[i] points at numel(shape i) floats, i over program inputs then state; returns every output.
  std::vector<std::vector<float>> run(const std::vector<const float*>& inputs);
  const Program& program() const { return program_; }
  // Shapes in call order: inputs then state.
  const std::vector<std::vector<int64_t>>& input_shapes() const { return shapes_; }

 private:
  Program program_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<std::vector<int64_t>> shapes_;
  size_t num_outputs_ = 0;
};

}  // namespace ev
