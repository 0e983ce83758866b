#include "gate.hpp"

#include <algorithm>
#include <cmath>

namespace ev {

static constexpr double kFirstChange = 2.0;  // sdk.gate.FIRST_CHANGE: the first segment's change score
static constexpr double kEps = 1e-8;         // sdk.gate._EPS (torch's cosine_similarity)

double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

static double dot(const double* a, const double* b, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

Gate::Gate(const FasterGate& rule) : rule_(rule), threshold_(rule.threshold) {}

void Gate::reset() { previous_.clear(); }

void Gate::set_threshold(double threshold) { threshold_ = std::isnan(threshold) ? rule_.threshold : threshold; }

double Gate::score(const std::vector<float>& logits, const std::vector<float>& pooled) {
  const double top = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  for (size_t i = 0; i < p.size(); ++i) p[i] = std::exp(static_cast<double>(logits[i]) - top);
  const double confidence = 1.0 - *std::max_element(p.begin(), p.end()) / pairwise_sum(p.data(), p.size());
  const std::vector<double> f(pooled.begin(), pooled.end());
  double change = kFirstChange;
  if (!previous_.empty()) {
    const std::vector<double>& g = previous_;
    const double nf = std::max(std::sqrt(dot(f.data(), f.data(), f.size())), kEps);
    const double ng = std::max(std::sqrt(dot(g.data(), g.data(), g.size())), kEps);
    change = 1.0 - dot(f.data(), g.data(), f.size()) / (nf * ng);
  }
  previous_ = f;
  if (rule_.kind == "confidence") return confidence;
  if (rule_.kind == "change") return change;
  const std::vector<double>& w = rule_.weights;
  const size_t n = w.size() - 2;
  const double x = dot(w.data(), f.data(), n) + w[n] * confidence + w[n + 1] * change + rule_.bias;
  return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
}

}  // namespace ev
