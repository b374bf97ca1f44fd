// One block per image: transform every element (grid-stride over the image), then reduce the
// per-image statistics in the same block and standardize in place — one launch per batch.
// The maths is csrc/common/transform.h; this file only indexes, reduces and launches.
#include "cuda/launch.h"
#include "cuda/transform.h"

namespace invfast::cuda {
namespace {


struct ImageGeometry {
  int64_t c, h, w, plane, n;
};

// Value of element i (flat index inside the image) for every op but Blur.
template <class T>
__device__ float element_value(TransformOp op, const T* __restrict__ src, const ImageGeometry& g,
                               const float* __restrict__ p, uint32_t key, int64_t i) {
  const int64_t c = i / g.plane, rem = i - c * g.plane;
  const int64_t y = rem / g.w, x = rem - y * g.w;
  const T* plane = src + c * g.plane;
  switch (op) {
    case TransformOp::Invert: return invert(to_float(src[i]));
    case TransformOp::Intensity: return intensity(to_float(src[i]), p[0], p[1]);
    case TransformOp::Noise: return add_noise(to_float(src[i]), p[0], key, static_cast<uint32_t>(i));
    case TransformOp::SaltPepper:
      return salt_pepper(to_float(src[i]), salt_pepper_hash(key, static_cast<uint32_t>(rem)));
    case TransformOp::Grayscale:
    case TransformOp::GrayBlend:
    case TransformOp::Hue180: {
      const float r = to_float(src[rem]), gr = to_float(src[g.plane + rem]),
                  bl = to_float(src[2 * g.plane + rem]);
      const float v = to_float(src[i]);
      if (op == TransformOp::Hue180) return hue180(v, max3(r, gr, bl), min3(r, gr, bl));
      const float gray = luma(r, gr, bl);
      return op == TransformOp::Grayscale ? gray : gray_blend(v, gray, p[0], p[1]);
    }
    case TransformOp::Highpass:
    case TransformOp::HFilter:
    case TransformOp::VFilter: return stencil_at(op, plane, g.h, g.w, y, x);
    case TransformOp::QuarterTurn: {
      int64_t si = 0, sj = 0;
      const bool inside = quarter_turn_source(static_cast<int>(p[0]), g.h, g.w, y, x, &si, &sj);
      return inside ? to_float(plane[si * g.w + sj]) : 0.0f;
    }
    case TransformOp::CyclicShift:
      return to_float(plane[y * g.w + cyclic_source(x, static_cast<int64_t>(p[0]), g.w)]);
    case TransformOp::Thin: {
      const int64_t jj = x - thin_left(g.w);
      return jj >= 0 && jj < thin_width(g.w) ? thin_at(plane + y * g.w, g.w, jj) : 0.0f;
    }
    case TransformOp::Affine: return affine_at(plane, g.h, g.w, p, y, x);
    default: return to_float(src[i]);  // Identity (Blur never reaches here)
  }
}

// Separable blur: vertical pass into dst; then each warp takes whole rows, copies one into
// its shared-memory slot and writes the horizontal pass back over it.
template <class T>
__device__ void blur_image(const T* __restrict__ src, float* __restrict__ dst, const ImageGeometry& g,
                           const float* __restrict__ weights, int64_t taps, int64_t radius,
                           float* row_slots, int slots) {
  for (int64_t i = threadIdx.x; i < g.n; i += blockDim.x) {
    const int64_t c = i / g.plane, rem = i - c * g.plane, y = rem / g.w, x = rem - y * g.w;
    dst[i] = blur_vertical_at(src + c * g.plane, g.h, g.w, y, x, weights, taps, radius);
  }
  __syncthreads();
  const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
  if (warp < slots) {
    float* slot = row_slots + static_cast<int64_t>(warp) * g.w;
    for (int64_t row = warp; row < g.c * g.h; row += slots) {
      float* line = dst + row * g.w;
      for (int64_t x = lane; x < g.w; x += kWarp) slot[x] = line[x];
      __syncwarp();
      for (int64_t x = lane; x < g.w; x += kWarp)
        line[x] = clamp_pixel(blur_horizontal_at(slot, g.w, x, weights, taps, radius));
      __syncwarp();
    }
  }
}

__device__ double block_sum(double v, double* scratch) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = static_cast<int>(blockDim.x) / kWarp;
  double total = 0.0;
  for (int w = 0; w < warps; ++w) total += scratch[w];  // same order in every thread
  __syncthreads();
  return total;
}

template <class T>
__global__ void __launch_bounds__(kTransformThreads)
    transform_kernel(const T* __restrict__ in, float* __restrict__ out, TransformArgs a, int slots) {
  __shared__ double reduce_scratch[kReduceScratchBytes / sizeof(double)];
  extern __shared__ float row_slots[];
  const int64_t b = blockIdx.x;
  const ImageGeometry g{a.channels, a.height, a.width, a.height * a.width,
                        a.channels * a.height * a.width};
  const T* src = in + b * g.n;
  float* dst = out + b * g.n;
  const float* p = a.table + b * kTableWidth;
  const bool on = a.apply == nullptr || a.apply[b] != 0;
  const TransformOp op = on ? static_cast<TransformOp>(a.op) : TransformOp::Identity;

  if (op == TransformOp::Blur) {
    blur_image(src, dst, g, a.weights + b * a.taps, a.taps, blur_radius(p[0], a.taps), row_slots, slots);
  } else {
    const uint32_t stream = op == TransformOp::Noise ? kStreamNoise : kStreamSaltPepper;
    const uint32_t key = image_key(a.seed, a.index[b], stream);
    for (int64_t i = threadIdx.x; i < g.n; i += blockDim.x)
      dst[i] = clamp_pixel(element_value(op, src, g, p, key, i));
  }
  const auto mode = static_cast<StandardizeMode>(a.standardize);
  if (mode == StandardizeMode::None) return;
  __syncthreads();
  if (mode == StandardizeMode::Fixed) {
    for (int64_t i = threadIdx.x; i < g.n; i += blockDim.x) {
      const int64_t c = i / g.plane;
      dst[i] = standardize_value(dst[i], a.mean[c], a.inv_std[c]);
    }
    return;
  }
  double partial = 0.0;
  for (int64_t i = threadIdx.x; i < g.n; i += blockDim.x) partial += static_cast<double>(dst[i]);
  const double sum = block_sum(partial, reduce_scratch);
  const double mean = sum / static_cast<double>(g.n);
  partial = 0.0;
  for (int64_t i = threadIdx.x; i < g.n; i += blockDim.x) {
    const double d = static_cast<double>(dst[i]) - mean;
    partial += d * d;
  }
  const Standardizer st = per_image_standardizer(sum, block_sum(partial, reduce_scratch), g.n);
  for (int64_t i = threadIdx.x; i < g.n; i += blockDim.x)
    dst[i] = standardize_value(dst[i], st.mean, st.inv_std);
}

}  // namespace

cudaError_t image_transform(ElemType type, const void* in, float* out, const TransformArgs& args,
                            cudaStream_t stream) {
  if (args.batch == 0) return cudaSuccess;
  if (args.batch > 0x7fffffff) return cudaErrorInvalidConfiguration;
  int slots = 0;
  size_t shared = 0;
  if (args.op == static_cast<int>(TransformOp::Blur)) {
    if (args.width > kMaxBlurWidth) return cudaErrorInvalidValue;
    const int64_t row_bytes = args.width * static_cast<int64_t>(sizeof(float));
    const int64_t fit = (kSharedBytes - kReduceScratchBytes) / row_bytes;  // >= 1 here
    slots = static_cast<int>(std::min<int64_t>(kTransformThreads / kWarp, fit));
    shared = static_cast<size_t>(slots) * static_cast<size_t>(args.width) * sizeof(float);
  }
  const dim3 grid(static_cast<unsigned>(args.batch));
  if (type == ElemType::UInt8)
    transform_kernel<uint8_t><<<grid, kTransformThreads, shared, stream>>>(
        static_cast<const uint8_t*>(in), out, args, slots);
  else
    transform_kernel<float><<<grid, kTransformThreads, shared, stream>>>(
        static_cast<const float*>(in), out, args, slots);
  return cudaGetLastError();
}

}  // namespace invfast::cuda
