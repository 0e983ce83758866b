#include "classifier.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "error.hpp"
#include "gate.hpp"
#include "image.hpp"
#include "npz.hpp"
#include "sha256.hpp"

namespace ev {

namespace fs = std::filesystem;

static constexpr int64_t kDefaultWindow = 32;       // sdk.classifier.DEFAULT_WINDOW
static constexpr int64_t kMaxWindow = int64_t(1) << 24;  // sdk.classifier.MAX_WINDOW
static const char* const kPrecisionOrder[] = {"int8", "fp16", "fp32"};

static int role_code(const std::string& r) { return r == "expensive" ? 1 : r == "cheap" ? 2 : 0; }

int64_t default_window(const Manifest& m, double source_fps) {
  if (m.has_faster) return m.faster.segment_frames;
  if (!m.has_clip) {
    const Sampler& s = m.sampler;
    return std::max(kDefaultWindow, (s.frames - 1) * s.stride + 1);
  }
  const bool fps_known = std::isfinite(source_fps) && source_fps > 0;
  if (m.clip.seconds > 0 && fps_known) {
    const double frames = std::floor(m.clip.seconds * source_fps + 0.5);
    if (!(frames <= static_cast<double>(kMaxWindow)))
      throw Error(EV_ERR_INVALID_ARGUMENT, "the training clip at this frame rate is more than 2^24 frames per window: "
                                           "is the source's frame rate right? pass the window explicitly");
    return std::max<int64_t>(1, static_cast<int64_t>(frames));
  }
  return m.clip.frames;
}

std::string Classifier::check_file(const std::string& rel, const std::string& sha, const std::string& what) {
  fs::path p = fs::path(dir_) / rel;
  std::error_code ec;
  if (!fs::exists(p, ec)) throw Error(EV_ERR_IO, "bundle " + dir_ + ": " + what + " file " + rel + " is missing");
  std::string got = sha256_of_path(p.string());
  if (got != sha)
    throw Error(EV_ERR_HASH_MISMATCH, "bundle " + dir_ + ": " + what + " file " + rel + " does not match its sha256 (manifest " +
                                          sha.substr(0, 12) + "..., file " + got.substr(0, 12) +
                                          "...): the bundle was modified or damaged; export it again");
  return p.string();
}

Classifier::Classifier(const std::string& bundle_dir, const Options& options) : dir_(bundle_dir), options_(options) {
  std::error_code ec;
  if (!fs::is_directory(dir_, ec))
    throw Error(fs::exists(dir_, ec) ? EV_ERR_UNSUPPORTED : EV_ERR_IO,
                "bundle " + dir_ + (fs::exists(dir_, ec) ? " is not a directory (unzip a zipped bundle first)" : " does not exist"));
  fs::path mpath = fs::path(dir_) / "manifest.json";
  std::ifstream mf(mpath, std::ios::binary);
  if (!mf) throw Error(EV_ERR_IO, "bundle " + dir_ + " has no manifest.json");
  std::stringstream text;
  text << mf.rdbuf();
  manifest_ = Manifest::parse(text.str());
  if (options.ema < 0 || options.ema >= 1 || options.hysteresis < 0 || options.hysteresis >= 1 ||
      !std::isfinite(options.ema) || !std::isfinite(options.hysteresis))
    throw Error(EV_ERR_INVALID_ARGUMENT, "smoothing ema and hysteresis must be numbers in [0, 1)");

  // The program set: one executorch precision holding every role (sdk.runtime.load, backend executorch).
  std::vector<std::string> roles;
  if (manifest_.has_faster) {
    for (const auto& r : manifest_.faster.pattern)
      if (std::find(roles.begin(), roles.end(), r) == roles.end()) roles.push_back(r);
    if (manifest_.faster.has_gate) roles.push_back("expensive");  // sdk.manifest.FasterSpec.roles
    roles.push_back("aggregator");
  } else {
    roles.push_back("model");
  }
  std::map<std::string, const Program*> chosen;
  std::vector<std::string> order;
  if (!options.precision.empty()) {
    if (options.precision != "int8" && options.precision != "fp16" && options.precision != "fp32")
      throw Error(EV_ERR_INVALID_ARGUMENT, "precision must be fp32, fp16 or int8, got '" + options.precision + "'");
    order.push_back(options.precision);
  } else {
    order.assign(std::begin(kPrecisionOrder), std::end(kPrecisionOrder));
  }
  for (const auto& prec : order) {
    std::map<std::string, const Program*> got;
    for (const auto& role : roles)
      for (const auto& p : manifest_.programs)
        if (p.backend == "executorch" && p.precision == prec && p.role == role && !got.count(role)) got[role] = &p;
    if (got.size() == roles.size()) {
      chosen = got;
      precision_ = prec;
      break;
    }
  }
  if (chosen.empty())
    throw Error(EV_ERR_UNSUPPORTED, "bundle " + dir_ + " has no complete set of executorch " +
                                        (options.precision.empty() ? std::string("") : options.precision + " ") +
                                        "programs (the native core runs .pte programs only)");
  for (const auto& kv : chosen) check_file(kv.second->file, kv.second->sha256, "program '" + kv.second->id + "'");

  if (manifest_.has_faster) {
    kind_ = "faster";
    window_ = manifest_.faster.segment_frames;
  } else {
    kind_ = chosen["model"]->mode;
    if (kind_ != "clip" && kind_ != "stream") throw Error(EV_ERR_BAD_BUNDLE, "the model program must be clip or stream");
    if (options.window < 0) throw Error(EV_ERR_INVALID_ARGUMENT, "window must be a positive number of frames");
    if (!(options.source_fps >= 0) || !std::isfinite(options.source_fps))
      throw Error(EV_ERR_INVALID_ARGUMENT, "source_fps must be a finite frame rate >= 0 (0 = unknown)");
    window_ = options.window > 0 ? options.window : default_window(manifest_, options.source_fps);
  }
  for (const auto& kv : chosen) {
    const Program* p = kv.second;
    std::string path = (fs::path(dir_) / p->file).string();
    if (kv.first == "aggregator") {
      aggregator_ = p;
      aggregator_runner_ = std::make_unique<Runner>(path, *p);
      continue;
    }
    auto r = std::make_unique<Role>();
    r->name = kv.first;
    r->program = p;
    const Sampler& s = kv.first == "model" ? manifest_.sampler : manifest_.faster.clip_models.at(kv.first).sampler;
    r->input = kv.first == "model" ? manifest_.input : manifest_.faster.clip_models.at(kv.first).input;
    r->frames = s.frames;
    r->sampler = StreamingSampler(s, window_);
    int64_t size = r->input.size;
    std::vector<int64_t> frame = r->input.layout == "TCHW" ? std::vector<int64_t>{3, size, size}
                                                           : std::vector<int64_t>{size, size, 3};
    std::vector<int64_t> want = {p->mode == "clip" ? s.frames : 1};
    want.insert(want.end(), frame.begin(), frame.end());
    if (p->inputs[0].shape != want)
      throw Error(EV_ERR_BAD_BUNDLE, "program '" + p->id + "' takes another input shape than the manifest's sampler and "
                                     "preprocessing give: the bundle is inconsistent; export it again");
    if (p->mode == "clip" && p->inputs.size() != 1) throw Error(EV_ERR_BAD_BUNDLE, "a clip program takes one input");
    r->runner = std::make_unique<Runner>(path, *p);
    roles_[kv.first] = std::move(r);
  }
  if (manifest_.faster.has_gate) {
    const Program& cheap = *roles_.at("cheap")->program;
    if (cheap.outputs.size() < 3)
      throw Error(EV_ERR_BAD_BUNDLE, "the cheap program of an adaptive FASTER bundle returns (logits, features, pooled): "
                                     "its gate reads pooled");
    const std::vector<double>& w = manifest_.faster.gate.weights;
    if (!w.empty() && static_cast<int64_t>(w.size()) != cheap.outputs[2].numel() + 2)
      throw Error(EV_ERR_BAD_BUNDLE, "manifest: faster.gate.weights has " + std::to_string(w.size()) +
                                         " weights but the cheap program's pooled output has " +
                                         std::to_string(cheap.outputs[2].numel()) + " features (+ 2 expected): export "
                                         "the bundle again");
    gate_ = std::make_unique<Gate>(manifest_.faster.gate);
  }
  reset();
  if (options.verify_golden) self_check();
}

Classifier::~Classifier() = default;

void Classifier::reset() {
  frames_ = 0;
  window_index_ = 0;
  has_last_ts_ = false;
  has_smoothed_ = false;
  smoothed_.clear();
  shown_ = -1;
  if (gate_) gate_->reset();
  state_.clear();
  const Program* stateful = kind_ == "stream" ? roles_["model"]->program : kind_ == "faster" ? aggregator_ : nullptr;
  if (stateful)
    for (const auto& t : stateful->state) state_.emplace_back(static_cast<size_t>(t.numel()), 0.f);
  start_window();
}

void Classifier::start_window() {
  role_name_ = kind_ == "faster"
                   ? manifest_.faster.pattern[static_cast<size_t>(window_index_ % manifest_.faster.pattern.size())]
                   : "model";
  for (Role* r : window_roles()) {
    r->sampler.reset();
    r->buffer.clear();
    r->buffered = 0;
  }
  step_logits_.clear();
  if (kind_ == "stream") {
    state_.clear();
    for (const auto& t : current().program->state) state_.emplace_back(static_cast<size_t>(t.numel()), 0.f);
  }
}

std::vector<Classifier::Role*> Classifier::window_roles() const {
  std::vector<Role*> out = {roles_.at(role_name_).get()};
  if (gate_) out.push_back(roles_.at("expensive").get());
  return out;
}

void Classifier::set_gate_threshold(double threshold) {
  if (!gate_)
    throw Error(EV_ERR_INVALID_ARGUMENT, "the gate threshold applies to adaptive FASTER bundles (manifest.faster.gate); "
                                         "this bundle has no gate");
  gate_->set_threshold(threshold);
}

ev_frame_request Classifier::next() const {
  // the first role keeping the next frame (a frame both keep is asked for at the current role's shorter side)
  const Role* keeper = &current_const();
  for (const Role* w : window_roles())
    if (w->sampler.peek()) {
      keeper = w;
      break;
    }
  const Role& r = *keeper;
  ev_frame_request q{};
  q.copies = r.sampler.peek();
  q.size = static_cast<int32_t>(r.input.size);
  q.short_side = static_cast<int32_t>(r.input.resize_to);
  q.window = static_cast<int32_t>(window_index_);
  q.role = role_code(r.name);
  return q;
}

std::vector<float> Classifier::frame_tensor(const Role& r, const uint8_t* rgb, int width, int height) const {
  const int64_t size = r.input.size;
  const int64_t y0 = (height - size) / 2, x0 = (width - size) / 2;  // sdk.preprocess centre crop
  std::vector<float> out(static_cast<size_t>(3 * size * size));
  if (r.input.layout == "TCHW") {
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < size; ++y) {
        const uint8_t* row = rgb + ((y0 + y) * width + x0) * 3 + c;
        float* dst = out.data() + (c * size + y) * size;
        for (int64_t x = 0; x < size; ++x) dst[x] = static_cast<float>(row[3 * x]);
      }
  } else {
    for (int64_t y = 0; y < size; ++y) {
      const uint8_t* row = rgb + ((y0 + y) * width + x0) * 3;
      float* dst = out.data() + y * size * 3;
      for (int64_t k = 0; k < size * 3; ++k) dst[k] = static_cast<float>(row[k]);
    }
  }
  return out;
}

void Classifier::check_logits(const Program& p, const std::vector<std::vector<float>>& out) const {
  if (out.size() != p.outputs.size() + p.state.size())
    throw Error(EV_ERR_RUNTIME, "program '" + p.id + "' returned " + std::to_string(out.size()) + " outputs");
  for (size_t i = 0; i < p.outputs.size(); ++i)
    if (static_cast<int64_t>(out[i].size()) != p.outputs[i].numel())
      throw Error(EV_ERR_RUNTIME, "program '" + p.id + "': output " + p.outputs[i].name + " has the wrong size");
  for (size_t i = 0; i < p.state.size(); ++i)
    if (static_cast<int64_t>(out[p.outputs.size() + i].size()) != p.state[i].numel())
      throw Error(EV_ERR_RUNTIME, "program '" + p.id + "': new state " + p.state[i].name + " has the wrong size");
}

Prediction Classifier::push(const uint8_t* rgb, size_t length, int width, int height, double timestamp) {
  return push_kept(timestamp, [&](const Role& r) {
    const int64_t size = r.input.size;
    const int64_t short_side = std::min<int64_t>(width, height);
    if (!rgb) throw Error(EV_ERR_BAD_FRAME, "the sampler keeps this frame but no pixels were given");
    if (width < 1 || height < 1 || width > 65536 || height > 65536)
      throw Error(EV_ERR_BAD_FRAME, "frame size " + std::to_string(width) + "x" + std::to_string(height) + " is not valid");
    if (length != static_cast<size_t>(width) * static_cast<size_t>(height) * 3)
      throw Error(EV_ERR_BAD_FRAME, "a " + std::to_string(width) + "x" + std::to_string(height) + " RGB frame is " +
                                        std::to_string(static_cast<size_t>(width) * height * 3) + " bytes, got " +
                                        std::to_string(length));
    if (short_side != r.input.resize_to)
      throw Error(EV_ERR_BAD_FRAME, "frame " + std::to_string(width) + "x" + std::to_string(height) +
                                        ": its shorter side must be " + std::to_string(r.input.resize_to) +
                                        " (resize it first, or push it with ev_push_image; the core centre-crops " +
                                        std::to_string(size) + "x" + std::to_string(size) + ")");
    return frame_tensor(r, rgb, width, height);
  });
}

Prediction Classifier::push_image(const ev_image* image, double timestamp) {
  return push_kept(timestamp, [&](const Role& r) {
    if (!image) throw Error(EV_ERR_BAD_FRAME, "the sampler keeps this frame but no image was given");
    if (r.input.interpolation != "bilinear")
      throw Error(EV_ERR_UNSUPPORTED, "this bundle resizes with '" + r.input.interpolation + "' interpolation and "
                                      "the core's image path is bilinear: resize the frame yourself and use "
                                      "ev_push_frame");
    const int size = static_cast<int>(r.input.size);
    const std::vector<uint8_t> crop = image_to_input(*image, static_cast<int>(r.input.resize_to), size);
    return frame_tensor(r, crop.data(), size, size);
  });
}

Prediction Classifier::push_kept(double timestamp, const std::function<std::vector<float>(const Role&)>& tensor) {
  Prediction pred;
  const bool has_ts = !std::isnan(timestamp);
  if (has_ts && !std::isfinite(timestamp)) throw Error(EV_ERR_BAD_FRAME, "timestamp must be finite");
  if (has_ts && has_last_ts_ && timestamp <= last_ts_) {
    std::ostringstream m;
    m << "timestamps must increase: " << timestamp << " after " << last_ts_;
    throw Error(EV_ERR_BAD_FRAME, m.str());
  }
  Role& r = current();
  const int64_t index = frames_;
  const std::vector<Role*> roles = window_roles();
  std::vector<std::vector<float>> xs;  // per window role, its input; only kept frames are inspected
  for (Role* w : roles) xs.push_back(w->sampler.peek() ? tensor(*w) : std::vector<float>{});
  if (kind_ == "stream") {
    for (int32_t k = 0; k < r.sampler.peek(); ++k) {
      std::vector<const float*> in = {xs.front().data()};
      for (const auto& s : state_) in.push_back(s.data());
      auto out = r.runner->run(in);
      check_logits(*r.program, out);
      step_logits_.push_back(out[0]);
      const size_t n_out = r.program->outputs.size();
      for (size_t i = 0; i < state_.size(); ++i) state_[i] = std::move(out[n_out + i]);
    }
  }
  for (size_t i = 0; i < roles.size(); ++i) {
    Role& w = *roles[i];
    const int32_t kept = kind_ == "stream" ? 0 : w.sampler.peek();  // a stream program has stepped above
    for (int32_t k = 0; k < kept; ++k) w.buffer.insert(w.buffer.end(), xs[i].begin(), xs[i].end());
    w.buffered += kept;
    w.sampler.offer();
  }
  ++frames_;
  if (has_ts) {
    last_ts_ = timestamp;
    has_last_ts_ = true;
  }
  if (!r.sampler.window_complete()) return pred;
  pred.frame_index = index;
  pred.timestamp = has_ts ? timestamp : NAN;
  emit(pred);
  return pred;
}

static std::vector<float> softmax(const std::vector<float>& logits) {  // float64, as sdk.classifier._softmax
  double mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> e(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) e[i] = std::exp(static_cast<double>(logits[i]) - mx);
  const double sum = pairwise_sum(e.data(), e.size());
  std::vector<float> p(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) p[i] = static_cast<float>(e[i] / sum);
  return p;
}

std::vector<std::vector<float>> Classifier::run_clip(Role& r) {
  if (r.buffered != r.frames) throw Error(EV_ERR_INTERNAL, "the " + r.name + " sample has the wrong number of frames");
  auto out = r.runner->run({r.buffer.data()});
  check_logits(*r.program, out);
  return out;
}

void Classifier::emit(Prediction& pred) {
  Role& r = current();
  std::vector<float> logits;
  if (kind_ == "clip") {
    logits = run_clip(r)[0];
  } else if (kind_ == "stream") {
    const size_t k = step_logits_.front().size();
    logits.assign(k, 0.f);
    for (const auto& row : step_logits_)
      for (size_t i = 0; i < k; ++i) logits[i] += row[i];
    const float n = static_cast<float>(step_logits_.size());
    for (float& v : logits) v /= n;
  } else {
    std::vector<std::vector<float>> clip_out = run_clip(r);
    bool expensive = r.name == "expensive";
    if (gate_) {  // sdk.classifier._Engine.gated_step: the expensive model where the gate fires, its features then
      expensive = gate_->fires(clip_out[0], clip_out[2]);
      if (expensive) clip_out = run_clip(*roles_.at("expensive"));
    }
    ++segments_;
    expensive_segments_ += expensive;
    const std::vector<float>& features = clip_out[1];
    if (static_cast<int64_t>(features.size()) != aggregator_->inputs[0].numel())
      throw Error(EV_ERR_BAD_BUNDLE, "the " + std::string(expensive ? "expensive" : "cheap") +
                                         " program's features do not fit the aggregator's input");
    std::vector<const float*> in = {features.data()};
    for (const auto& s : state_) in.push_back(s.data());
    auto out = aggregator_runner_->run(in);
    check_logits(*aggregator_, out);
    logits = out[0];
    const size_t n_out = aggregator_->outputs.size();
    for (size_t i = 0; i < state_.size(); ++i) state_[i] = std::move(out[n_out + i]);
  }
  std::vector<float> probs = softmax(logits);
  int top = 0;
  for (size_t i = 1; i < probs.size(); ++i)
    if (probs[i] > probs[static_cast<size_t>(top)]) top = static_cast<int>(i);  // first max: a stable argsort
  if (options_.smoothing) {
    if (has_smoothed_ && options_.ema > 0) {
      const float a = static_cast<float>(options_.ema), b = static_cast<float>(1.0 - options_.ema);
      for (size_t i = 0; i < probs.size(); ++i) {
        const float x = a * smoothed_[i];
        const float y = b * probs[i];
        probs[i] = x + y;
      }
    }
    smoothed_ = probs;
    has_smoothed_ = true;
    top = 0;
    for (size_t i = 1; i < probs.size(); ++i)
      if (probs[i] > probs[static_cast<size_t>(top)]) top = static_cast<int>(i);
    if (shown_ >= 0 && top != shown_ &&
        probs[static_cast<size_t>(top)] - probs[static_cast<size_t>(shown_)] <= static_cast<float>(options_.hysteresis))
      top = shown_;
    shown_ = top;
  }
  pred.ready = true;
  pred.top1 = top;
  pred.score = probs[static_cast<size_t>(top)];
  pred.window = window_index_;
  pred.role = role_code(r.name);
  last_logits_ = logits;
  last_probs_ = probs;
  ++window_index_;
  start_window();
}

SelfCheck Classifier::self_check() {
  std::string path = check_file(manifest_.golden_file, manifest_.golden_sha256, "golden");
  std::map<std::string, NpyArray> golden = read_npz(path);
  last_check_ = SelfCheck{};
  SelfCheck result;
  std::string mismatch;  // the first program beyond its tolerance (all are compared and recorded first)
  std::vector<std::pair<const Program*, Runner*>> programs;
  for (auto& kv : roles_) programs.emplace_back(kv.second->program, kv.second->runner.get());
  if (aggregator_) programs.emplace_back(aggregator_, aggregator_runner_.get());
  for (auto& pr : programs) {
    const Program& p = *pr.first;
    const std::string& name = p.inputs[0].name;
    const NpyArray* x = nullptr;
    for (const std::string& key : {p.id + "/input/" + name, p.role + "/input/" + name, p.mode + "/input/" + name})
      if (golden.count(key)) {
        x = &golden[key];
        break;
      }
    auto own = golden.find(p.id + "/logits");
    if (!x || own == golden.end()) continue;  // nothing recorded for this program in its runtime (sdk falls back to torch)
    const int64_t per_call = p.inputs[0].numel();
    if (x->size() == 0 || x->size() % per_call != 0) throw Error(EV_ERR_BAD_BUNDLE, "golden input for '" + p.id + "' has the wrong size");
    const int64_t items = x->shape.empty() ? 1 : x->shape[0];
    const int64_t steps = x->size() / per_call / items;
    std::vector<float> got;
    for (int64_t item = 0; item < items; ++item) {
      std::vector<std::vector<float>> state;
      for (const auto& t : p.state) state.emplace_back(static_cast<size_t>(t.numel()), 0.f);
      for (int64_t s = 0; s < steps; ++s) {
        std::vector<const float*> in = {x->data.data() + (item * steps + s) * per_call};
        for (const auto& st : state) in.push_back(st.data());
        auto out = pr.second->run(in);
        check_logits(p, out);
        got.insert(got.end(), out[0].begin(), out[0].end());
        for (size_t i = 0; i < state.size(); ++i) state[i] = std::move(out[p.outputs.size() + i]);
      }
    }
    const NpyArray& want = own->second;
    if (want.data.size() != got.size()) throw Error(EV_ERR_BAD_BUNDLE, "golden outputs of '" + p.id + "' have the wrong size");
    double scale = 0.0, diff = 0.0;
    for (float v : want.data) scale = std::max(scale, std::fabs(static_cast<double>(v)));
    for (size_t i = 0; i < got.size(); ++i) {
      double d = std::fabs(static_cast<double>(got[i]) - want.data[i]);
      if (!(d <= diff)) diff = d;  // NaN propagates
    }
    const size_t k = p.outputs[0].shape.back();
    bool same_top1 = true;
    for (size_t row = 0; row + k <= got.size(); row += k) {
      auto g = std::max_element(got.begin() + row, got.begin() + row + k) - (got.begin() + row);
      auto w = std::max_element(want.data.begin() + row, want.data.begin() + row + k) - (want.data.begin() + row);
      same_top1 = same_top1 && g == w;
    }
    const double tol = p.precision == "int8" ? 1e-3 + 1e-2 * scale : 1e-4 + 1e-5 * scale;  // sdk.runtime.Model.verify
    result.max_abs_diff = std::isnan(diff) ? diff : std::max(result.max_abs_diff, diff);
    ++result.checked;
    result.programs.emplace_back(p.id, diff);
    if (mismatch.empty() && (!(diff <= tol) || (p.precision == "int8" && !same_top1))) {
      std::ostringstream m;
      m << "bundle " << dir_ << ": program '" << p.id << "' does not reproduce its golden vectors: max|diff| " << diff
        << " > " << tol << (same_top1 ? "" : ", top-1 differs");
      mismatch = m.str();
    }
  }
  if (result.checked == 0)
    throw Error(EV_ERR_BAD_BUNDLE, "bundle " + dir_ + ": golden.npz holds no inputs and export-time outputs for the loaded programs");
  last_check_ = result;
  if (!mismatch.empty()) throw Error(EV_ERR_GOLDEN_MISMATCH, mismatch);
  return result;
}

}  // namespace ev
