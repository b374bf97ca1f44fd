#include <type_traits>

#include "common/stats.h"
#include "cuda/launch.h"
#include "cuda/stats.h"

namespace invfast::cuda {
namespace {

constexpr int64_t kMaxValidateBlocks = 4096;

// OR of activation_status over n elements (grid-stride), into *status.
template <class T>
__global__ void validate_kernel(const T* __restrict__ data, int64_t n, int* status) {
  int bad = kActivationOk;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    bad |= activation_status(to_float(data[i]));
  if (bad != kActivationOk) atomicOr(status, bad);
}

template <class T>
void launch_validate(const T* data, int64_t n, int* status, cudaStream_t stream) {
  if (n == 0) return;
  const int64_t blocks = std::min<int64_t>(ceil_div(n, kThreadsPerBlock), kMaxValidateBlocks);
  validate_kernel<T><<<static_cast<unsigned>(blocks), kThreadsPerBlock, 0, stream>>>(data, n, status);
}

// One thread per neuron k; rows in order, so each (group, k, bin) is summed in row order.
// With kImages the block also builds each row's bin histogram in shared memory and adds
// its suffix sums n(x, τ_i) to active_counts.
template <class T, bool kImages>
__global__ void invariance_update_kernel(const T* __restrict__ a, const T* __restrict__ b,
                                         int64_t rows, int64_t channels, int64_t spatial,
                                         int mode, const float* __restrict__ neuron_max,
                                         const int64_t* __restrict__ group_ids,
                                         const float* __restrict__ taus, int num_taus,
                                         int64_t* count, double* h_sum, double* s_sum,
                                         int64_t* active_counts, const int* status) {
  if (*status != kActivationOk) return;  // uniform across the grid: no barrier is skipped
  extern __shared__ float shared[];
  float* grid_taus = shared;
  int* row_bins = reinterpret_cast<int*>(shared + num_taus);
  const int bins = num_taus + 1;
  for (int i = threadIdx.x; i < num_taus; i += blockDim.x) grid_taus[i] = taus[i];
  if (kImages)
    for (int i = threadIdx.x; i < bins; i += blockDim.x) row_bins[i] = 0;
  __syncthreads();

  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool owner = k < channels;
  const float m_k = owner ? neuron_max[k] : 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    int bin = 0;
    if (owner) {
      int unused = kActivationOk;
      const int64_t at = (r * channels + k) * spatial;
      const float va = neuron_activity(a + at, spatial, mode, unused);
      const float vb = neuron_activity(b + at, spatial, mode, unused);
      bin = activity_bin(grid_taus, num_taus, m_k, pair_activity(va, vb));
      const float s = pair_specialization(va, vb);
      const int64_t slot = (group_ids[r] * channels + k) * bins + bin;
      count[slot] += 1;
      h_sum[slot] += static_cast<double>(pair_invariance(s));
      s_sum[slot] += static_cast<double>(s);
    }
    if (kImages) {
      if (owner) atomicAdd(row_bins + bin, 1);
      __syncthreads();
      for (int i = threadIdx.x; i < num_taus; i += blockDim.x) {
        unsigned long long above = 0;
        for (int j = i + 1; j < bins; ++j) above += static_cast<unsigned long long>(row_bins[j]);
        if (above != 0)
          atomicAdd(reinterpret_cast<unsigned long long*>(active_counts + r * num_taus + i), above);
      }
      __syncthreads();
      for (int i = threadIdx.x; i < bins; i += blockDim.x) row_bins[i] = 0;
      __syncthreads();
    }
  }
}

// Raw storage of an element type, for copying values or writing +0 (all bits zero).
template <class T>
using RawBits = std::conditional_t<sizeof(T) == 4, uint32_t,
                                   std::conditional_t<sizeof(T) == 2, uint16_t, uint8_t>>;

// One thread per (image, neuron), grid-stride; the neuron's `spatial` elements are kept or
// zeroed together. `acts` is not __restrict__: `out` may alias it (in-place ablation).
template <class T>
__global__ void ablate_kernel(const T* acts, T* out, int64_t rows, int64_t channels,
                              int64_t spatial, int mode, const float* __restrict__ neuron_max,
                              float tau, int ablate_mode, const int* status) {
  if (*status != kActivationOk) return;
  using Raw = RawBits<T>;
  const Raw* in_raw = reinterpret_cast<const Raw*>(acts);
  Raw* out_raw = reinterpret_cast<Raw*>(out);
  const int64_t n = rows * channels;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int unused = kActivationOk;
    const float activity = neuron_activity(acts + i * spatial, spatial, mode, unused);
    const int active = above_threshold(activity_threshold(tau, neuron_max[i % channels]), activity);
    const Raw keep =
        static_cast<Raw>(static_cast<Raw>(0) - static_cast<Raw>(keep_after_ablation(active, ablate_mode)));
    for (int64_t s = 0; s < spatial; ++s)
      out_raw[i * spatial + s] = static_cast<Raw>(in_raw[i * spatial + s] & keep);
  }
}

}  // namespace

cudaError_t invariance_update(ElemType type, const void* a, const void* b, int64_t rows,
                              int64_t channels, int64_t spatial, int mode, const float* neuron_max,
                              const int64_t* group_ids, int64_t /*groups*/, const float* taus,
                              int64_t num_taus, int64_t* count, double* h_sum, double* s_sum,
                              int64_t* active_counts, int* status, cudaStream_t stream) {
  if (rows == 0 || channels == 0) return cudaSuccess;
  const int64_t n = rows * channels * spatial;
  const unsigned blocks = static_cast<unsigned>(ceil_div(channels, kThreadsPerBlock));
  const size_t shared_bytes = sizeof(float) * num_taus + sizeof(int) * (num_taus + 1);
  dispatch_elem(type, [&](auto tag) {
    using T = decltype(tag);
    const T* ta = static_cast<const T*>(a);
    const T* tb = static_cast<const T*>(b);
    launch_validate(ta, n, status, stream);
    launch_validate(tb, n, status, stream);
    if (active_counts != nullptr)
      invariance_update_kernel<T, true><<<blocks, kThreadsPerBlock, shared_bytes, stream>>>(
          ta, tb, rows, channels, spatial, mode, neuron_max, group_ids, taus,
          static_cast<int>(num_taus), count, h_sum, s_sum, active_counts, status);
    else
      invariance_update_kernel<T, false><<<blocks, kThreadsPerBlock, shared_bytes, stream>>>(
          ta, tb, rows, channels, spatial, mode, neuron_max, group_ids, taus,
          static_cast<int>(num_taus), count, h_sum, s_sum, active_counts, status);
    return 0;
  });
  return cudaGetLastError();
}

cudaError_t ablate(ElemType type, const void* acts, void* out, int64_t rows, int64_t channels,
                   int64_t spatial, int mode, const float* neuron_max, float tau, int ablate_mode,
                   int* status, cudaStream_t stream) {
  if (rows == 0 || channels == 0) return cudaSuccess;
  const int64_t pairs = rows * channels;
  const unsigned blocks =
      static_cast<unsigned>(std::min<int64_t>(ceil_div(pairs, kThreadsPerBlock), kMaxValidateBlocks));
  dispatch_elem(type, [&](auto tag) {
    using T = decltype(tag);
    launch_validate(static_cast<const T*>(acts), pairs * spatial, status, stream);
    ablate_kernel<T><<<blocks, kThreadsPerBlock, 0, stream>>>(
        static_cast<const T*>(acts), static_cast<T*>(out), rows, channels, spatial, mode,
        neuron_max, tau, ablate_mode, status);
    return 0;
  });
  return cudaGetLastError();
}

}  // namespace invfast::cuda
