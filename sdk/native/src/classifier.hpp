// sdk.StreamClassifier in C++: see sdk/classifier.py's module docstring for the semantics reproduced here.
#pragma once

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "edgevideo.h"
#include "gate.hpp"
#include "manifest.hpp"
#include "runner.hpp"
#include "sampler.hpp"

namespace ev {

struct Options {
  std::string precision;  // "" = auto (int8, fp16, fp32)
  int64_t window = 0;     // 0 = default_window(manifest, source_fps)
  bool smoothing = false;
  double ema = 0.0, hysteresis = 0.0;
  bool verify_golden = false;
  double source_fps = 0.0;  // the source's frame rate; 0 = unknown
};

// sdk.classifier.default_window: frames per window when none is given. One training clip: floor(clip.seconds *
// source_fps + 0.5) frames when both are known, else clip.frames; a bundle without a clip: max(32, sampler span);
// FASTER: the segment. Throws Error(EV_ERR_INVALID_ARGUMENT) beyond 2^24 frames (a wrong frame rate).
int64_t default_window(const Manifest& m, double source_fps);

struct Prediction {
  bool ready = false;
  int top1 = -1;
  float score = 0.f;
  int64_t window = -1, frame_index = -1;
  int role = 0;
  double timestamp = NAN;
};

struct SelfCheck {
  double max_abs_diff = 0.0;
  int checked = 0;
  std::vector<std::pair<std::string, double>> programs;  // (program id, its max |diff|), in the order compared
};

class Classifier {
 public:
  Classifier(const std::string& bundle_dir, const Options& options);
  ~Classifier();

  ev_frame_request next() const;
  Prediction push(const uint8_t* rgb, size_t length, int width, int height, double timestamp);
  Prediction push_image(const ev_image* image, double timestamp);  // any size and camera format (image.hpp)
  void reset();
  // Compares every program, then throws Error(EV_ERR_GOLDEN_MISMATCH) naming the first beyond its tolerance.
  SelfCheck self_check();
  const SelfCheck& last_self_check() const { return last_check_; }  // also after a mismatch

  const Manifest& manifest() const { return manifest_; }
  const std::string& kind() const { return kind_; }
  int64_t window() const { return window_; }
  const std::vector<float>& last_logits() const { return last_logits_; }
  const std::vector<float>& last_probabilities() const { return last_probs_; }
  const std::string& precision() const { return precision_; }
  // Adaptive FASTER bundles: the gate's threshold from the next segment on (NaN: the bundle's; +-inf: the expensive
  // model never / always). Throws Error(EV_ERR_INVALID_ARGUMENT) for a bundle without a gate.
  void set_gate_threshold(double threshold);
  // FASTER segments classified since create (not reset, as sdk's stats), and of those the expensive model saw.
  int64_t segments() const { return segments_; }
  int64_t expensive_segments() const { return expensive_segments_; }

 private:
  struct Role {  // one clip model (or the stream / clip model of an ordinary bundle)
    std::string name;
    const Program* program = nullptr;
    std::unique_ptr<Runner> runner;
    StreamingSampler sampler;
    InputSpec input;
    int64_t frames = 0;  // T of a clip program
    std::vector<float> buffer;  // kept frames of the window (clip programs)
    int64_t buffered = 0;
  };

  Role& current() { return *roles_[role_name_]; }
  const Role& current_const() const { return *roles_.at(role_name_); }
  // The roles keeping frames of this window: the current one, and an adaptive bundle's expensive one (the gate
  // decides at the segment's end whether it runs).
  std::vector<Role*> window_roles() const;
  std::vector<std::vector<float>> run_clip(Role& r);  // the role's clip program on its window's frames
  void start_window();
  void emit(Prediction& p);
  std::vector<float> frame_tensor(const Role& r, const uint8_t* rgb, int width, int height) const;
  // The rest of a push once a kept frame's input tensor is made (by `tensor`, called only for a kept frame).
  Prediction push_kept(double timestamp, const std::function<std::vector<float>(const Role&)>& tensor);
  void check_logits(const Program& p, const std::vector<std::vector<float>>& out) const;
  std::string check_file(const std::string& rel, const std::string& sha, const std::string& what);

  std::string dir_;
  Manifest manifest_;
  Options options_;
  std::string kind_, precision_;
  int64_t window_ = 0;
  std::map<std::string, std::unique_ptr<Role>> roles_;
  const Program* aggregator_ = nullptr;
  std::unique_ptr<Runner> aggregator_runner_;
  std::unique_ptr<Gate> gate_;  // adaptive FASTER bundles
  int64_t segments_ = 0, expensive_segments_ = 0;

  // stream position
  std::string role_name_ = "model";
  int64_t frames_ = 0, window_index_ = 0;
  bool has_last_ts_ = false;
  double last_ts_ = 0.0;
  std::vector<std::vector<float>> step_logits_;  // stream bundles
  std::vector<std::vector<float>> state_;        // stream step state / FASTER aggregator state
  bool has_smoothed_ = false;
  std::vector<float> smoothed_;
  int shown_ = -1;
  std::vector<float> last_logits_, last_probs_;
  SelfCheck last_check_;
};

}  // namespace ev
