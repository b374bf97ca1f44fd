// CUDA launcher of the fused image transformations (csrc/common/transform.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"
#include "common/transform.h"

namespace invfast::cuda {

constexpr int kWarp = 32;
constexpr int kTransformThreads = 256;
// A block's shared memory, without opting in to more: the kernel's static reduction scratch
// (one double per warp) plus the blur's dynamic per-warp row buffers must fit in it.
constexpr int64_t kSharedBytes = 48 * 1024;
constexpr int64_t kReduceScratchBytes = sizeof(double) * (kTransformThreads / kWarp);
// Widest image whose blur gets at least one row buffer: (49152 − 64) / 4 = 12272.
constexpr int64_t kMaxBlurWidth = (kSharedBytes - kReduceScratchBytes) / sizeof(float);

// out = standardize(clamp(transform(in))) on the device, one block per image, one launch.
// Pointers inside `args` are device pointers.
cudaError_t image_transform(ElemType type, const void* in, float* out, const TransformArgs& args,
                            cudaStream_t stream);

}  // namespace invfast::cuda
