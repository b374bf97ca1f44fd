// The constants the Python side needs, exported by both modules (invfast._C, invfast._cuda)
// as attributes, from their one definition in csrc/common/. The pure-PyTorch reference keeps
// a copy only where it must work without a compiled module, and tests/test_backends.py
// asserts that copy equals these.
#pragma once

#include <pybind11/pybind11.h>

#include "bindings_common.h"
#include "common/neuron_max.h"
#include "common/rng.h"
#include "common/stats.h"
#include "common/transform.h"

namespace invfast::bindings {

// Python names of the transformation kernel ops, in TransformOp order.
constexpr const char* kTransformOpNames[] = {
    "identity", "grayscale", "hue180", "blur",         "highpass", "hfilter",
    "vfilter",  "invert",    "noise",  "saltpepper",   "quarter_turn", "thin",
    "affine",   "intensity", "gray_blend", "cyclic_shift"};
static_assert(sizeof(kTransformOpNames) / sizeof(kTransformOpNames[0]) == kTransformOpCount,
              "one name per TransformOp");
static_assert(static_cast<int>(TransformOp::CyclicShift) == kTransformOpCount - 1,
              "TransformOp ids are 0 .. kTransformOpCount - 1");

constexpr const char* kStandardizeModeNames[] = {"none", "per-image", "fixed"};
static_assert(static_cast<int>(StandardizeMode::None) == 0 &&
                  static_cast<int>(StandardizeMode::PerImage) == 1 &&
                  static_cast<int>(StandardizeMode::Fixed) == 2,
              "kStandardizeModeNames follows StandardizeMode");

// {name: id} for ids 0 .. count - 1.
inline py::dict name_ids(const char* const* names, int count) {
  py::dict out;
  for (int id = 0; id < count; ++id) out[py::str(names[id])] = id;
  return out;
}

inline void export_constants(py::module_& m) {
  // Status bits a kernel returns (CPU) or writes to its status flag (CUDA).
  m.attr("ACTIVATION_OK") = static_cast<int>(kActivationOk);
  m.attr("ACTIVATION_NONFINITE") = static_cast<int>(kActivationNonFinite);
  m.attr("ACTIVATION_NEGATIVE") = static_cast<int>(kActivationNegative);
  // Argument codes.
  m.attr("DTYPES") = name_ids(kElemTypeNames, kElemTypeCount);
  m.attr("NEURON_MODES") = name_ids(kNeuronModeNames, kNeuronModeCount);
  m.attr("ABLATE_MODES") = name_ids(kAblateModeNames, kAblateModeCount);
  m.attr("TRANSFORM_OPS") = name_ids(kTransformOpNames, kTransformOpCount);
  m.attr("STANDARDIZE_MODES") = name_ids(kStandardizeModeNames, 3);
  // Invariance accumulator layout: [groups, neurons, num_taus + EXTRA_BINS].
  m.attr("MAX_TAUS") = kMaxTaus;
  m.attr("EXTRA_BINS") = kExtraBins;
  m.attr("ACCUMULATOR_DIMS") = py::make_tuple("group", "neuron", "bin");
  // Transformation parameter table: TRANSFORM_TABLE_WIDTH float32 per image.
  m.attr("TRANSFORM_OP_COUNT") = kTransformOpCount;
  m.attr("TRANSFORM_TABLE_WIDTH") = kTableWidth;
  // Streams of the counter-based RNG.
  m.attr("RNG_STREAM_NOISE") = kStreamNoise;
  m.attr("RNG_STREAM_SALTPEPPER") = kStreamSaltPepper;
}

}  // namespace invfast::bindings
