// Pass 1 of the per-neuron invariance analysis (DESIGN.md §2, P1 Eq. 1):
//   M_k = max over images x of max(â_k(x), â_k(T(x))),
// and what a "neuron" is in a conv layer (--neurons unit | channel-max | channel-mean).
#pragma once

#include "common/dtype.h"
#include "common/hd.h"

namespace invfast {

// Status bits an activation check can raise; the host side turns them into errors.
enum ActivationStatus : int { kActivationOk = 0, kActivationNonFinite = 1, kActivationNegative = 2 };

// Activations must be finite and non-negative (post-ReLU). -inf counts as non-finite.
// Branch-free, so that the CPU loops that OR it over a row vectorize.
INVFAST_HD inline int activation_status(float v) {
  const int nonfinite = 1 ^ (int(v >= -max_finite_float()) & int(v <= max_finite_float()));  // NaN: 1
  const int negative = (v < 0.0f) & (nonfinite ^ 1);
  return nonfinite | (negative << 1);
}

// activation_status(v) == kActivationOk, in two comparisons (NaN fails both; −0 passes):
// the fast check of whole batches, which look at the status bits only when it fails.
INVFAST_HD inline int activation_valid(float v) {
  return int(v >= 0.0f) & int(v <= max_finite_float());
}

INVFAST_HD inline float running_max(float current, float v) { return v > current ? v : current; }

// What one neuron is. An image's activations are viewed as [channels, spatial]: with
// kNeuronUnit every element is a neuron (spatial == 1); the channel modes reduce each
// channel's `spatial` contiguous elements to one value.
enum NeuronMode : int { kNeuronUnit = 0, kNeuronChannelMax = 1, kNeuronChannelMean = 2 };
constexpr int kNeuronModeCount = 3;
// The names the Python side uses (--neurons), indexed by NeuronMode.
constexpr const char* kNeuronModeNames[kNeuronModeCount] = {"unit", "channel-max", "channel-mean"};

// channel-mean: the float64 sum in storage order divided by the element count, rounded
// once to float32. Every backend sums in this order, so the value (and every tie it
// makes with τ·M) is bit-identical across backends.
INVFAST_HD inline float channel_mean(double sum_in_order, int64_t count) {
  return static_cast<float>(sum_in_order / static_cast<double>(count));
}

// The activity of one neuron of one image, read from its `spatial` contiguous elements
// (one element in unit mode). ORs the status bits of every element read into `status`.
template <class T>
INVFAST_HD inline float neuron_activity(const T* values, int64_t spatial, int mode, int& status) {
  if (mode == kNeuronChannelMean) {
    double sum = 0.0;
    for (int64_t s = 0; s < spatial; ++s) {
      const float v = to_float(values[s]);
      status |= activation_status(v);
      sum += static_cast<double>(v);
    }
    return channel_mean(sum, spatial);
  }
  // From the first element, not from 0: a unit neuron's activity is its value itself,
  // −0 included, exactly as the CPU's unit-mode loop reads it.
  float m = to_float(values[0]);
  status |= activation_status(m);
  for (int64_t s = 1; s < spatial; ++s) {
    const float v = to_float(values[s]);
    status |= activation_status(v);
    m = running_max(m, v);
  }
  return m;
}

}  // namespace invfast
