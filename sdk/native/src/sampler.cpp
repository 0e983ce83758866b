#include "sampler.hpp"

#include <algorithm>
#include <cmath>

#include "error.hpp"

namespace ev {
namespace {

int64_t floordiv(int64_t a, int64_t b) {  // Python's //
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// sdk.samplers._segment_picks(count, length, 0.5)
std::vector<int64_t> segment_picks(int64_t count, int64_t length) {
  std::vector<int64_t> out(static_cast<size_t>(count));
  if (length < count) {
    double step = static_cast<double>(length) / static_cast<double>(count);
    for (int64_t i = 0; i < count; ++i) out[i] = static_cast<int64_t>(std::floor((static_cast<double>(i) + 0.5) * step));
    return out;
  }
  for (int64_t i = 0; i < count; ++i) {
    int64_t lo = i * length / count, hi = (i + 1) * length / count;
    out[i] = lo + static_cast<int64_t>(std::floor(0.5 * static_cast<double>(hi - lo)));
  }
  return out;
}

const char* const kKinds[] = {"uniform_segments", "dense", "uniform_k", "random_k", "first_k",
                              "middle_k", "last_k", "first_middle_last_k"};

bool see_very_little(const std::string& k) {
  return k == "uniform_k" || k == "random_k" || k == "first_k" || k == "middle_k" || k == "last_k" ||
         k == "first_middle_last_k";
}

}  // namespace

Sampler Sampler::from_json(const Json& j, const std::string& where) {
  auto bad = [&](const std::string& what) { return Error(EV_ERR_BAD_BUNDLE, "manifest: " + where + ": " + what); };
  if (!j.is_object()) throw bad("expected an object");
  Sampler s;
  for (const auto& kv : j.object) {
    const std::string& key = kv.first;
    const Json& v = kv.second;
    if (key == "kind") {
      if (!v.is_string()) throw bad("kind must be a string");
      s.kind = v.string;
    } else if (key == "frames" || key == "stride" || key == "seed") {
      if (!v.is_int()) throw bad(key + " must be an integer");
      (key == "frames" ? s.frames : key == "stride" ? s.stride : s.seed) = v.integer;
    } else if (key == "of") {
      if (v.is_null()) s.of = 0;
      else if (v.is_int()) s.of = v.integer;
      else throw bad("of must be an integer or null");
    } else {
      throw bad("unknown sampler field '" + key + "'");
    }
  }
  if (std::find(std::begin(kKinds), std::end(kKinds), s.kind) == std::end(kKinds))
    throw bad("unknown sampler kind '" + s.kind + "'");
  if (s.frames < 1 || s.frames > (1 << 20)) throw bad("frames must be in [1, 2^20]");
  if (s.of < 0 || s.of > (1 << 24)) throw bad("of out of range");
  if (s.stride < 1 || (s.stride != 1 && s.kind != "dense")) throw bad("stride must be >= 1 and 1 unless dense");
  if (j.find("of") && !j.find("of")->is_null()) {
    if (!see_very_little(s.kind)) throw bad("'of' applies to the see-very-little samplers only");
    if (s.of < s.frames) throw bad("'of' must be >= frames");
  }
  return s;
}

std::vector<int64_t> Sampler::grid_positions(int64_t g) const {
  const int64_t k = frames;
  if (g < k || kind == "uniform_k") return segment_picks(k, g);
  std::vector<int64_t> out;
  if (kind == "random_k")
    throw Error(EV_ERR_UNSUPPORTED, "the random_k sampler needs numpy's PCG64 generator (seed " +
                                        std::to_string(seed) + ") to pick " + std::to_string(k) + " of " +
                                        std::to_string(g) + " positions; the native core does not implement it");
  if (kind == "first_k") {
    for (int64_t i = 0; i < k; ++i) out.push_back(i);
  } else if (kind == "last_k") {
    for (int64_t i = g - k; i < g; ++i) out.push_back(i);
  } else if (kind == "middle_k") {
    for (int64_t i = 0; i < k; ++i) out.push_back(i + floordiv(g - k, 2));
  } else {  // first_middle_last_k
    int64_t n_mid = k / 3, n_last = k / 3, n_first = k - n_mid - n_last;
    int64_t mid = std::min(std::max(floordiv(g - n_mid, 2), n_first), g - n_last - n_mid);
    for (int64_t i = 0; i < n_first; ++i) out.push_back(i);
    for (int64_t i = 0; i < n_mid; ++i) out.push_back(mid + i);
    for (int64_t i = g - n_last; i < g; ++i) out.push_back(i);
  }
  return out;
}

std::vector<int64_t> Sampler::indices(int64_t n) const {
  if (n < 1) throw Error(EV_ERR_INVALID_ARGUMENT, "cannot sample frames from a video with " + std::to_string(n) + " frames");
  if (kind == "uniform_segments") return segment_picks(frames, n);
  if (kind == "dense") {
    int64_t span = (frames - 1) * stride + 1;
    int64_t lo = std::min<int64_t>(0, n - span), hi = std::max<int64_t>(0, n - span);
    int64_t start = floordiv(lo + hi, 2);
    std::vector<int64_t> out(static_cast<size_t>(frames));
    for (int64_t i = 0; i < frames; ++i) out[i] = std::clamp<int64_t>(start + stride * i, 0, n - 1);
    return out;
  }
  std::vector<int64_t> grid;
  if (of == 0) {
    grid.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) grid[i] = i;
  } else {
    grid = segment_picks(of, n);
  }
  std::vector<int64_t> out;
  for (int64_t p : grid_positions(static_cast<int64_t>(grid.size()))) out.push_back(grid[static_cast<size_t>(p)]);
  return out;
}

StreamingSampler::StreamingSampler(const Sampler& s, int64_t window) : window_(window) {
  if (window < 1) throw Error(EV_ERR_INVALID_ARGUMENT, "streaming window must be >= 1 frames");
  if (window > (1 << 24)) throw Error(EV_ERR_INVALID_ARGUMENT, "streaming window is unreasonably large");
  copies_.assign(static_cast<size_t>(window), 0);
  for (int64_t i : s.indices(window)) {
    if (i < 0 || i >= window) throw Error(EV_ERR_INTERNAL, "sampler index out of range");
    ++copies_[static_cast<size_t>(i)];
  }
}

int64_t StreamingSampler::kept_per_window() const {
  int64_t total = 0;
  for (int32_t c : copies_) total += c;
  return total;
}

}  // namespace ev
