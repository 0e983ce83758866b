// The C API: every entry point catches everything and turns it into (ev_status, thread-local message).
#include <cstring>
#include <new>
#include <string>

#include "classifier.hpp"
#include "image.hpp"
#include "edgevideo.h"
#include "error.hpp"
#include "json.hpp"
#include "sha256.hpp"

struct ev_classifier {
  std::unique_ptr<ev::Classifier> impl;
  ev_prediction last{};
};

namespace {

thread_local std::string g_error;

template <typename F>
ev_status guarded(F&& f) {
  try {
    f();
    g_error.clear();
    return EV_OK;
  } catch (const ev::Error& e) {
    g_error = e.what();
    return e.code;
  } catch (const std::bad_alloc&) {
    g_error = "out of memory";
    return EV_ERR_INTERNAL;
  } catch (const std::exception& e) {
    g_error = std::string("internal error: ") + e.what();
    return EV_ERR_INTERNAL;
  } catch (...) {
    g_error = "internal error: unknown exception";
    return EV_ERR_INTERNAL;
  }
}

ev_status null_arg(const char* what) {
  g_error = std::string(what) + " is NULL";
  return EV_ERR_INVALID_ARGUMENT;
}

void to_c(const ev::Prediction& p, ev_prediction* out) {
  out->ready = p.ready ? 1 : 0;
  out->top1 = p.top1;
  out->score = p.score;
  out->window = static_cast<int32_t>(p.window);
  out->role = p.role;
  out->frame_index = p.frame_index;
  out->timestamp = p.timestamp;
}

}  // namespace

extern "C" {

void ev_options_default(ev_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof(*o));
}

ev_status ev_create(const char* bundle_dir, const ev_options* options, ev_classifier** out) {
  if (!out) return null_arg("out");
  *out = nullptr;
  if (!bundle_dir) return null_arg("bundle_dir");
  return guarded([&] {
    ev::Options o;
    if (options) {
      o.precision = options->precision ? options->precision : "";
      o.window = options->window;
      o.smoothing = options->smoothing != 0;
      o.ema = options->ema;
      o.hysteresis = options->hysteresis;
      o.verify_golden = options->verify_golden != 0;
      o.source_fps = options->source_fps;
    }
    auto c = std::make_unique<ev_classifier>();
    c->impl = std::make_unique<ev::Classifier>(bundle_dir, o);
    *out = c.release();
  });
}

ev_status ev_push_frame(ev_classifier* c, const uint8_t* rgb, size_t length, int32_t width, int32_t height,
                        double timestamp, ev_prediction* prediction) {
  if (!c) return null_arg("classifier");
  if (prediction) std::memset(prediction, 0, sizeof(*prediction));
  return guarded([&] {
    ev::Prediction p = c->impl->push(rgb, length, width, height, timestamp);
    if (prediction) to_c(p, prediction);
  });
}

ev_status ev_push_image(ev_classifier* c, const ev_image* image, double timestamp, ev_prediction* prediction) {
  if (!c) return null_arg("classifier");
  if (prediction) std::memset(prediction, 0, sizeof(*prediction));
  return guarded([&] {
    ev::Prediction p = c->impl->push_image(image, timestamp);
    if (prediction) to_c(p, prediction);
  });
}

// The crop of the image-to-input entry points: 1 <= size <= short_side.
static void check_crop(int32_t short_side, int32_t size) {
  if (size < 1 || short_side < size)
    throw ev::Error(EV_ERR_INVALID_ARGUMENT, "need 1 <= size <= short_side, got size " + std::to_string(size) +
                                                ", short_side " + std::to_string(short_side));
}

ev_status ev_image_to_input(const ev_image* image, int32_t short_side, int32_t size, uint8_t* out) {
  if (!image) return null_arg("image");
  if (!out) return null_arg("out");
  return guarded([&] {
    check_crop(short_side, size);
    const std::vector<uint8_t> crop = ev::image_to_input(*image, short_side, size);
    std::memcpy(out, crop.data(), crop.size());
  });
}

ev_status ev_image_to_values(const ev_image* image, int32_t short_side, int32_t size, const float* mul,
                             const float* add, int32_t layout, float* out) {
  if (!image) return null_arg("image");
  if (!mul) return null_arg("mul");
  if (!add) return null_arg("add");
  if (!out) return null_arg("out");
  return guarded([&] {
    check_crop(short_side, size);
    if (layout != EV_LAYOUT_CHW && layout != EV_LAYOUT_HWC)
      throw ev::Error(EV_ERR_INVALID_ARGUMENT, "layout must be 0 (CHW, planar) or 1 (HWC, packed), got " +
                                                  std::to_string(layout));
    ev::image_to_values(*image, short_side, size, mul, add, layout == EV_LAYOUT_CHW, out);
  });
}

ev_status ev_next_frame(const ev_classifier* c, ev_frame_request* request) {
  if (!c) return null_arg("classifier");
  if (!request) return null_arg("request");
  return guarded([&] { *request = c->impl->next(); });
}

ev_status ev_reset(ev_classifier* c) {
  if (!c) return null_arg("classifier");
  return guarded([&] { c->impl->reset(); });
}

void ev_destroy(ev_classifier* c) { delete c; }

static ev_status copy_out(const std::vector<float>& v, float* out, size_t n, const char* what) {
  if (!out) return null_arg("out");
  if (v.empty()) {
    g_error = std::string("no prediction yet: no ") + what;
    return EV_ERR_INVALID_ARGUMENT;
  }
  if (n < v.size()) {
    g_error = std::string(what) + " need " + std::to_string(v.size()) + " floats, got room for " + std::to_string(n);
    return EV_ERR_INVALID_ARGUMENT;
  }
  std::memcpy(out, v.data(), v.size() * sizeof(float));
  g_error.clear();
  return EV_OK;
}

ev_status ev_last_logits(const ev_classifier* c, float* out, size_t n) {
  if (!c) return null_arg("classifier");
  return copy_out(c->impl->last_logits(), out, n, "logits");
}

ev_status ev_last_probabilities(const ev_classifier* c, float* out, size_t n) {
  if (!c) return null_arg("classifier");
  return copy_out(c->impl->last_probabilities(), out, n, "probabilities");
}

int32_t ev_num_classes(const ev_classifier* c) {
  return c ? static_cast<int32_t>(c->impl->manifest().labels.size()) : 0;
}

const char* ev_label(const ev_classifier* c, int32_t index) {
  if (!c || index < 0 || index >= ev_num_classes(c)) return nullptr;
  return c->impl->manifest().labels[static_cast<size_t>(index)].c_str();
}

const char* ev_bundle_kind(const ev_classifier* c) { return c ? c->impl->kind().c_str() : nullptr; }

const char* ev_precision(const ev_classifier* c) { return c ? c->impl->precision().c_str() : nullptr; }

int32_t ev_window(const ev_classifier* c) { return c ? static_cast<int32_t>(c->impl->window()) : 0; }

ev_status ev_set_gate_threshold(ev_classifier* c, double threshold) {
  if (!c) return null_arg("classifier");
  return guarded([&] { c->impl->set_gate_threshold(threshold); });
}

ev_status ev_segment_counts(const ev_classifier* c, int64_t* segments, int64_t* expensive_segments) {
  if (!c) return null_arg("classifier");
  if (segments) *segments = c->impl->segments();
  if (expensive_segments) *expensive_segments = c->impl->expensive_segments();
  g_error.clear();
  return EV_OK;
}

ev_status ev_self_check(ev_classifier* c, double* max_abs_diff, int32_t* checked) {
  if (!c) return null_arg("classifier");
  return guarded([&] {
    ev::SelfCheck r = c->impl->self_check();
    if (max_abs_diff) *max_abs_diff = r.max_abs_diff;
    if (checked) *checked = r.checked;
  });
}

ev_status ev_self_check_program(const ev_classifier* c, int32_t index, const char** program_id,
                                double* max_abs_diff) {
  if (!c) return null_arg("classifier");
  return guarded([&] {
    const auto& programs = c->impl->last_self_check().programs;
    if (index < 0 || static_cast<size_t>(index) >= programs.size())
      throw ev::Error(EV_ERR_INVALID_ARGUMENT, "self-check program index " + std::to_string(index) + " out of range (" +
                                                   std::to_string(programs.size()) + " compared)");
    if (program_id) *program_id = programs[static_cast<size_t>(index)].first.c_str();
    if (max_abs_diff) *max_abs_diff = programs[static_cast<size_t>(index)].second;
  });
}

const char* ev_last_error(void) { return g_error.c_str(); }

const char* ev_status_name(ev_status s) {
  switch (s) {
    case EV_OK: return "EV_OK";
    case EV_ERR_INVALID_ARGUMENT: return "EV_ERR_INVALID_ARGUMENT";
    case EV_ERR_IO: return "EV_ERR_IO";
    case EV_ERR_BAD_BUNDLE: return "EV_ERR_BAD_BUNDLE";
    case EV_ERR_HASH_MISMATCH: return "EV_ERR_HASH_MISMATCH";
    case EV_ERR_UNSUPPORTED: return "EV_ERR_UNSUPPORTED";
    case EV_ERR_BAD_FRAME: return "EV_ERR_BAD_FRAME";
    case EV_ERR_RUNTIME: return "EV_ERR_RUNTIME";
    case EV_ERR_GOLDEN_MISMATCH: return "EV_ERR_GOLDEN_MISMATCH";
    case EV_ERR_INTERNAL: return "EV_ERR_INTERNAL";
  }
  return "EV_UNKNOWN";
}

const char* ev_version(void) { return "0.1.0"; }

ev_status ev_sha256_path(const char* path, char out_hex[65]) {
  if (!path) return null_arg("path");
  if (!out_hex) return null_arg("out_hex");
  return guarded([&] {
    std::string h = ev::sha256_of_path(path);
    std::memcpy(out_hex, h.c_str(), 65);
  });
}

ev_status ev_default_window(const char* manifest_json, double source_fps, int32_t* window) {
  if (!manifest_json) return null_arg("manifest_json");
  if (!window) return null_arg("window");
  return guarded([&] {
    *window = static_cast<int32_t>(ev::default_window(ev::Manifest::parse(manifest_json), source_fps));
  });
}

ev_status ev_sampler_copies(const char* sampler_json, int32_t window, int32_t* copies) {
  if (!sampler_json) return null_arg("sampler_json");
  if (!copies) return null_arg("copies");
  return guarded([&] {
    ev::Json j;
    try {
      j = ev::Json::parse(sampler_json);
    } catch (const ev::JsonError& e) {
      throw ev::Error(EV_ERR_INVALID_ARGUMENT, "sampler: " + e.message);
    }
    ev::StreamingSampler s(ev::Sampler::from_json(j, "sampler"), window);
    std::copy(s.copies().begin(), s.copies().end(), copies);
  });
}

}  // extern "C"
