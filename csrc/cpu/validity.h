// The status bits of a run of activations, shared by the CPU kernels (per-value maths in
// csrc/common/neuron_max.h). The kernels test their values with the two-comparison
// activation_valid while they read them, and call this only for a run that failed.
#pragma once

#include <cstdint>

#include "common/neuron_max.h"

namespace invfast::cpu {

// OR of activation_status over n contiguous values (vectorizable: no early exit).
template <class T>
int status_of(const T* data, int64_t n) {
  int status = kActivationOk;
  for (int64_t i = 0; i < n; ++i) status |= activation_status(to_float(data[i]));
  return status;
}

}  // namespace invfast::cpu
