// The part of sdk.manifest.Manifest the native core needs, parsed strictly from manifest.json.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sampler.hpp"

namespace ev {

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype = "float32";
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

struct InputSpec {
  int64_t size = 224;         // the program's H = W
  std::string layout = "TCHW";  // or THWC
  int64_t resize_to = 224;    // shorter side after resize (preprocess.resize, or size): the caller resizes
  std::string interpolation = "bilinear";  // or "area" (ev_push_image resizes bilinear only)
};

struct Program {
  std::string id, backend, precision, mode, file, sha256, role = "model";
  std::vector<TensorSpec> inputs, outputs, state;
};

struct ClipModel {  // FASTER: one role's sampler and input
  Sampler sampler;
  InputSpec input;
};

struct FasterGate {  // sdk.manifest.FasterGate: the adaptive schedule's declared rule (schema 1.3)
  std::string kind;               // confidence / change / learned
  double threshold = 0.0;         // the expensive model runs where the score exceeds it
  std::vector<double> weights;    // learned: F + 2 (pooled features, confidence, change)
  double bias = 0.0;              // learned
};

struct Faster {
  std::string schedule;
  std::vector<std::string> pattern;
  int64_t segment_frames = 0, segments = 0;
  std::map<std::string, ClipModel> clip_models;
  bool has_gate = false;
  FasterGate gate;
};

struct TrainingClip {  // sdk.manifest.TrainingClip: the training videos' median length (schema 1.2, optional)
  int64_t frames = 0;
  double fps = 0.0, seconds = 0.0;  // 0 = unknown (null in the manifest)
};

struct Manifest {
  std::string schema_version, name;
  std::vector<std::string> labels;
  InputSpec input;
  Sampler sampler;
  std::vector<Program> programs;
  std::string golden_file, golden_sha256;
  bool has_faster = false;
  Faster faster;
  bool has_clip = false;
  TrainingClip clip;

  static Manifest parse(const std::string& text);  // throws Error(EV_ERR_BAD_BUNDLE)
};

// A path inside the bundle: relative, no "..", no backslash (as sdk.manifest._relative_file).
bool safe_relative_path(const std::string& p);

}  // namespace ev
