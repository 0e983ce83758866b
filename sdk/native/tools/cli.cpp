// edgevideo_cli: drive the native core from the shell (tests, benchmarks, device bring-up).
//
//   edgevideo_cli run BUNDLE FRAMES.rgb --width W --height H [--window N] [--precision P] [--ema E]
//                 [--hysteresis H] [--smoothing] [--fps F] [--verify] [--repeat R]
//       streams the raw file (consecutive W x H x 3 uint8 RGB frames) through ev_push_frame; one JSON line per
//       prediction or error event, then a summary line. Dropped frames are skipped without being read.
//   edgevideo_cli check BUNDLE [--precision P]     golden self-check: one JSON line with max |diff| per program
//   edgevideo_cli info BUNDLE [--precision P]      kind, window, labels, next frame request
//   edgevideo_cli sha256 PATH                      as sdk.files.sha256_of
//   edgevideo_cli sampler JSON WINDOW              copies per window position (StreamingSampler)
//
// Exit status: 0 ok; 2 usage; 10 + ev_status when the bundle cannot be opened or a command fails.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "edgevideo.h"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: edgevideo_cli run BUNDLE FRAMES.rgb --width W --height H [--window N] [--precision P]\n"
               "                     [--smoothing] [--ema E] [--hysteresis H] [--fps F] [--verify] [--repeat R]\n"
               "       edgevideo_cli check|info BUNDLE [--precision P]\n"
               "       edgevideo_cli sha256 PATH\n"
               "       edgevideo_cli sampler JSON WINDOW\n");
  return 2;
}

int fail(ev_status s) {
  std::fprintf(stderr, "error: %s: %s\n", ev_status_name(s), ev_last_error());
  return 10 + static_cast<int>(s);
}

std::string json_string(const char* s) {
  std::string out = "\"";
  for (const char* p = s; *p; ++p) {
    unsigned char c = static_cast<unsigned char>(*p);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string floats(const std::vector<float>& v) {
  std::string out = "[";
  char buf[32];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.9g", i ? ", " : "", static_cast<double>(v[i]));
    out += buf;
  }
  return out + "]";
}

struct Args {
  std::vector<std::string> positional;
  int width = 0, height = 0, repeat = 1;
  double fps = 0.0;
  ev_options options{};
  std::string precision;
  bool ok = true;
};

Args parse(int argc, char** argv) {
  Args a;
  ev_options_default(&a.options);
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        a.ok = false;
        return "0";
      }
      return argv[++i];
    };
    if (k == "--width") a.width = std::atoi(value());
    else if (k == "--height") a.height = std::atoi(value());
    else if (k == "--window") a.options.window = std::atoi(value());
    else if (k == "--precision") a.precision = value();
    else if (k == "--ema") a.options.ema = std::atof(value()), a.options.smoothing = 1;
    else if (k == "--hysteresis") a.options.hysteresis = std::atof(value()), a.options.smoothing = 1;
    else if (k == "--smoothing") a.options.smoothing = 1;
    else if (k == "--fps") a.fps = std::atof(value());
    else if (k == "--verify") a.options.verify_golden = 1;
    else if (k == "--repeat") a.repeat = std::atoi(value());
    else if (k.rfind("--", 0) == 0) a.ok = false;
    else a.positional.push_back(k);
  }
  if (!a.precision.empty()) a.options.precision = a.precision.c_str();
  return a;
}

int run(Args& a) {
  if (a.positional.size() != 2 || a.width < 1 || a.height < 1 || a.repeat < 1) return usage();
  ev_classifier* c = nullptr;
  ev_status s = ev_create(a.positional[0].c_str(), &a.options, &c);
  if (s != EV_OK) return fail(s);
  std::ifstream f(a.positional[1], std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "error: cannot read %s\n", a.positional[1].c_str());
    ev_destroy(c);
    return 10 + EV_ERR_IO;
  }
  f.seekg(0, std::ios::end);
  const size_t frame_bytes = static_cast<size_t>(a.width) * a.height * 3;
  const size_t n = static_cast<size_t>(f.tellg()) / frame_bytes;
  const int k = ev_num_classes(c);
  std::vector<uint8_t> frame(frame_bytes);
  std::vector<float> logits(k), probs(k);
  size_t predictions = 0, errors = 0, kept = 0;
  double push_ms = 0.0;
  for (int rep = 0; rep < a.repeat; ++rep) {
    if (rep) ev_reset(c);
    for (size_t i = 0; i < n; ++i) {
      ev_frame_request req;
      ev_next_frame(c, &req);
      const uint8_t* data = nullptr;
      if (req.copies) {
        f.seekg(static_cast<std::streamoff>(i * frame_bytes));
        f.read(reinterpret_cast<char*>(frame.data()), static_cast<std::streamsize>(frame_bytes));
        data = frame.data();
        ++kept;
      }
      const double ts = a.fps > 0 ? static_cast<double>(i) / a.fps : NAN;
      ev_prediction p;
      auto t0 = std::chrono::steady_clock::now();
      s = ev_push_frame(c, data, data ? frame_bytes : 0, a.width, a.height, ts, &p);
      push_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (s != EV_OK) {
        ++errors;
        std::printf("{\"error\": \"%s\", \"message\": %s, \"frame\": %zu}\n", ev_status_name(s),
                    json_string(ev_last_error()).c_str(), i);
        if (s != EV_ERR_BAD_FRAME) {
          ev_destroy(c);
          return fail(s);
        }
        continue;
      }
      if (!p.ready || rep != a.repeat - 1) continue;
      ++predictions;
      ev_last_logits(c, logits.data(), logits.size());
      ev_last_probabilities(c, probs.data(), probs.size());
      std::printf("{\"window\": %d, \"role\": %d, \"frame_index\": %lld, \"top1\": %d, \"label\": %s, "
                  "\"score\": %.9g, \"logits\": %s, \"probabilities\": %s}\n",
                  p.window, p.role, static_cast<long long>(p.frame_index), p.top1,
                  json_string(ev_label(c, p.top1)).c_str(), static_cast<double>(p.score), floats(logits).c_str(),
                  floats(probs).c_str());
    }
  }
  std::printf("{\"summary\": true, \"kind\": \"%s\", \"precision\": \"%s\", \"window\": %d, \"frames\": %zu, "
              "\"kept\": %zu, \"predictions\": %zu, \"errors\": %zu, \"ms_per_frame\": %.6f}\n",
              ev_bundle_kind(c), ev_precision(c), ev_window(c), n * a.repeat, kept, predictions, errors,
              n ? push_ms / static_cast<double>(n * a.repeat) : 0.0);
  ev_destroy(c);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  std::string cmd = argv[1];
  Args a = parse(argc, argv);
  if (!a.ok) return usage();
  if (cmd == "run") return run(a);
  if (cmd == "sha256") {
    char hex[65];
    ev_status s = ev_sha256_path(argv[2], hex);
    if (s != EV_OK) return fail(s);
    std::printf("%s\n", hex);
    return 0;
  }
  if (cmd == "sampler") {
    if (argc != 4) return usage();
    int window = std::atoi(argv[3]);
    if (window < 1) return usage();
    std::vector<int32_t> copies(static_cast<size_t>(window));
    ev_status s = ev_sampler_copies(argv[2], window, copies.data());
    if (s != EV_OK) return fail(s);
    for (int i = 0; i < window; ++i) std::printf("%s%d", i ? " " : "", copies[i]);
    std::printf("\n");
    return 0;
  }
  if (cmd == "check" || cmd == "info") {
    if (a.positional.size() != 1) return usage();
    ev_classifier* c = nullptr;
    ev_status s = ev_create(a.positional[0].c_str(), &a.options, &c);
    if (s != EV_OK) return fail(s);
    if (cmd == "check") {
      s = ev_self_check(c, nullptr, nullptr);
      const std::string error = ev_last_error();  // before ev_self_check_program overwrites it
      // one JSON line, also on a golden mismatch: every program compared with its max |diff| (null for NaN)
      auto number = [](double v) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.9g", v);
        return std::isnan(v) ? std::string("null") : std::string(buf);
      };
      std::string programs;
      const char* id = nullptr;
      double d = 0.0, diff = 0.0;
      int32_t n = 0;
      for (; ev_self_check_program(c, n, &id, &d) == EV_OK; ++n) {
        programs += (n ? ", " : "") + json_string(id) + ": " + number(d);
        if (n == 0 || std::isnan(d) || d > diff) diff = d;  // NaN sticks
      }
      if (s == EV_OK || s == EV_ERR_GOLDEN_MISMATCH)
        std::printf("{\"ok\": %s, \"precision\": \"%s\", \"checked\": %d, \"max_abs_diff\": %s, \"programs\": {%s}}\n",
                    s == EV_OK ? "true" : "false", ev_precision(c), n, number(diff).c_str(), programs.c_str());
      ev_destroy(c);
      if (s == EV_OK) return 0;
      std::fprintf(stderr, "error: %s: %s\n", ev_status_name(s), error.c_str());
      return 10 + static_cast<int>(s);
    }
    ev_frame_request q;
    ev_next_frame(c, &q);
    std::printf("{\"kind\": \"%s\", \"precision\": \"%s\", \"window\": %d, \"size\": %d, \"short_side\": %d, "
                "\"labels\": [",
                ev_bundle_kind(c), ev_precision(c), ev_window(c), q.size, q.short_side);
    for (int i = 0; i < ev_num_classes(c); ++i) std::printf("%s%s", i ? ", " : "", json_string(ev_label(c, i)).c_str());
    std::printf("]}\n");
    ev_destroy(c);
    return 0;
  }
  return usage();
}
