#pragma once
// Brute-force helpers for the kernel tests: full sorts where the kernels use partial selection.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace saguaro::testing_util {

inline std::vector<float> random_logits(std::mt19937& rng, int64_t n, float scale = 3.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

// ids sorted by (value desc, id asc) over finite values.
inline std::vector<int32_t> sorted_ids(const float* v, int64_t n) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i)
    if (std::isfinite(v[i])) ids.push_back(static_cast<int32_t>(i));
  std::stable_sort(ids.begin(), ids.end(), [v](int32_t a, int32_t b) { return v[a] > v[b]; });
  return ids;
}

}  // namespace saguaro::testing_util

#include "saguaro/logits_processing.hpp"

namespace saguaro::testing_util {

// Straightforward (full-sort) processing, written from the contract text, to check the partial
// selections of the kernels.
inline std::vector<float> brute_process(const std::vector<float>& l, const ProcessParams& p, bool saguaro) {
  const int64_t V = static_cast<int64_t>(l.size());
  std::vector<float> out(static_cast<size_t>(V), 0.f);
  const auto order = sorted_ids(l.data(), V);
  if (p.temperature == 0.f) {
    out[order[0]] = 1.f;
    return out;
  }
  const double m = l[order[0]];
  std::vector<double> w(static_cast<size_t>(V), 0.0);
  for (int64_t i = 0; i < V; ++i) w[i] = std::isfinite(l[i]) ? std::exp((double(l[i]) - m) / p.temperature) : 0.0;
  if (p.top_k > 0)
    for (size_t r = static_cast<size_t>(p.top_k); r < order.size(); ++r) w[order[r]] = 0.0;
  if (p.top_p < 1.f) {
    std::vector<int32_t> ids;
    double total = 0;
    for (int64_t i = 0; i < V; ++i)
      if (w[i] > 0) { ids.push_back(int32_t(i)); total += w[i]; }
    std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return w[a] > w[b]; });
    double c = 0;
    size_t keep = ids.size();
    for (size_t r = 0; r < ids.size(); ++r) {
      c += w[ids[r]] / total;
      if (c >= p.top_p) { keep = r + 1; break; }
    }
    for (size_t r = keep; r < ids.size(); ++r) w[ids[r]] = 0.0;
  }
  if (saguaro && p.saguaro_c < 1.f && p.saguaro_topn > 0) {
    std::vector<double> s = w;
    const size_t n = std::min<size_t>(order.size(), size_t(p.saguaro_topn));
    for (size_t r = 0; r < n; ++r) s[order[r]] *= p.saguaro_c;
    double t = 0;
    for (double x : s) t += x;
    if (t > 0) w = s;
  }
  double total = 0;
  for (double x : w) total += x;
  for (int64_t i = 0; i < V; ++i) out[i] = float(w[i] / total);
  return out;
}

}  // namespace saguaro::testing_util
