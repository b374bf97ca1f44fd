// Per-neuron invariance statistics of P1 §2.2 (DESIGN.md §2), one pair (x, T(x)) at a time.
//
// For neuron k with pass-1 maximum M_k and a pair of activations a = â_k(x), b = â_k(T(x)):
//   pair activity  m = max(a, b)
//   bin            j = #{ i : τ_i·M_k < m }   (float32 product, strict <; τ sorted ascending)
//   invariance     h = 1 − |b − a| / (b + a)  (P1 Eq. 1, scale-free: M_k cancels)
//   specialization s = (b − a) / (b + a)      (P1 Appendix D)
// x ∈ A_k(τ_i) ⇔ τ_i·M_k < m ⇔ j > i, so a suffix sum over bins j > i gives #A_k(τ_i),
// Σh and Σs for every threshold of the grid at once. A pair with a = b = 0 has j = 0 (no
// A_k(τ) with τ ≥ 0 contains it); it is given h = 1 and s = 0 (identical activity).
#pragma once

#include "common/hd.h"
#include "common/neuron_max.h"

namespace invfast {

// Largest τ grid the kernels take (bins are int32; the CUDA kernel keeps τ in shared memory).
constexpr int64_t kMaxTaus = 1024;

// Accumulator layout: [groups, neurons, bins] row-major, bins = num_taus + kExtraBins (bin j
// holds the pairs with j thresholds below their activity; bin 0 those below every one).
constexpr int64_t kExtraBins = 1;
INVFAST_HD inline int64_t bin_count(int64_t num_taus) { return num_taus + kExtraBins; }

// Host-side check of an activation layout: null when valid, else what is wrong.
inline const char* neuron_layout_error(int64_t spatial, int mode) {
  if (mode != kNeuronUnit && mode != kNeuronChannelMax && mode != kNeuronChannelMean)
    return "mode: expected 0 (unit), 1 (channel-max) or 2 (channel-mean)";
  if (spatial < 1) return "spatial: expected >= 1";
  if (mode == kNeuronUnit && spatial != 1) return "spatial: expected 1 for unit neurons";
  return nullptr;
}

// τ_i·M_k in float32, exactly as written (never fused with another operation).
INVFAST_HD inline float activity_threshold(float tau, float neuron_max) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(tau, neuron_max);
#else
  return tau * neuron_max;
#endif
}

// 1 when the activity lies strictly above the threshold, else 0. Also the test of
// "neuron active in image x" (f_k(x) > τ ⇔ τ·M_k < â_k(x)) used by the ablations.
INVFAST_HD inline int above_threshold(float threshold, float activity) {
  return static_cast<int>(threshold < activity);
}

// m = max(â(x), â(T(x))): a pair is in A_k(τ) when either image is above τ·M_k.
INVFAST_HD inline float pair_activity(float a, float b) { return b > a ? b : a; }

// j = #{ i : τ_i·M_k < m }, thresholds given by the grid. The CPU loop sums the same
// above_threshold terms from a table of τ_i·M_k (an integer sum: order is irrelevant).
INVFAST_HD inline int activity_bin(const float* taus, int num_taus, float neuron_max,
                                   float activity) {
  int bin = 0;
  for (int i = 0; i < num_taus; ++i)
    bin += above_threshold(activity_threshold(taus[i], neuron_max), activity);
  return bin;
}

// s = (b − a) / (b + a) in float32; 0 when a = b = 0 (then b − a is 0 and the divisor 1).
// Written without a select so that the CPU loop stays branch-free: a + b >= 0, and adding 1
// exactly when it is 0 leaves every other divisor unchanged.
INVFAST_HD inline float pair_specialization(float a, float b) {
  const float total = b + a;
  return (b - a) / (total + static_cast<float>(total == 0.0f));
}

// h = 1 − |b − a| / (b + a) = 1 − |s|: IEEE division rounds symmetrically, so |s| is
// exactly the rounded |b − a| / (b + a). 1 when a = b = 0.
INVFAST_HD inline float pair_invariance(float specialization) {
#if defined(__CUDA_ARCH__)
  return 1.0f - fabsf(specialization);
#else
  return 1.0f - __builtin_fabsf(specialization);
#endif
}

// Ablation (P1 Appendix D): "inactive" mode zeroes the inactive neurons of an image and
// keeps the active ones; "active" mode does the opposite.
enum AblateMode : int { kAblateInactive = 0, kAblateActive = 1 };
constexpr int kAblateModeCount = 2;
// The names the Python side uses, indexed by AblateMode.
constexpr const char* kAblateModeNames[kAblateModeCount] = {"inactive", "active"};

INVFAST_HD inline int keep_after_ablation(int active, int mode) {
  return active ^ static_cast<int>(mode == kAblateActive);
}

}  // namespace invfast
