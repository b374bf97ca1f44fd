#include "cpu/neuron_max.h"

#include <vector>

#include "common/neuron_max.h"
#include "cpu/clones.h"
#include "cpu/parallel.h"
#include "cpu/validity.h"

namespace invfast::cpu {
namespace {

// Columns per task: the task's 64 KB of running maxima stay in L2 while its rows stream
// past, each row's block read in one run (on the EPYC VM, [256, 65536] f32: 1.5 ms; with
// 2048 columns, 1.9 ms).
constexpr int64_t kColumnBlock = 16384;

// Unit neurons: vectorizable loops over contiguous columns, four rows per sweep of the block
// (rows r..r+3 of a, or rows r, r+1 of a and of b), so that the running maxima are read and
// written once per four values. The maximum does not depend on the order: equal values are
// equal bits except ±0, and `running_max` keeps the first of equal values, which for zeros
// is the starting value's. The values are checked with the two-comparison activation_valid;
// the status bits are computed only for a block that fails.
template <class T>
INVFAST_CLONES_WIDE int max_rows_into(const T* a, const T* b, int64_t row_begin, int64_t row_end,
                                      int64_t cols, int64_t col_begin, int64_t col_end,
                                      float* __restrict acc) {
  int valid = 1;
  const int64_t n = col_end - col_begin;
  const int64_t step = b == nullptr ? 4 : 2;  // rows of a per sweep
  int64_t r = row_begin;
  for (; r + step <= row_end; r += step) {
    const T* __restrict p0 = a + r * cols + col_begin;
    const T* __restrict p1 = p0 + cols;
    const T* __restrict p2 = b == nullptr ? p1 + cols : b + r * cols + col_begin;
    const T* __restrict p3 = p2 + cols;
    for (int64_t k = 0; k < n; ++k) {
      const float v0 = to_float(p0[k]), v1 = to_float(p1[k]);
      const float v2 = to_float(p2[k]), v3 = to_float(p3[k]);
      valid &= activation_valid(v0) & activation_valid(v1) & activation_valid(v2) &
               activation_valid(v3);
      acc[k] = running_max(running_max(running_max(running_max(acc[k], v0), v1), v2), v3);
    }
  }
  for (; r < row_end; ++r) {
    for (const T* data : {a, b}) {
      if (data == nullptr) continue;
      const T* __restrict row = data + r * cols + col_begin;
      for (int64_t k = 0; k < n; ++k) {
        const float v = to_float(row[k]);
        valid &= activation_valid(v);
        acc[k] = running_max(acc[k], v);
      }
    }
  }
  if (valid) return kActivationOk;
  int status = kActivationOk;
  for (int64_t q = row_begin; q < row_end; ++q)
    for (const T* data : {a, b})
      if (data != nullptr) status |= status_of(data + q * cols + col_begin, n);
  return status;
}

// Channel neurons: each activity is a reduction over `spatial` contiguous elements.
template <class T>
int max_channels_into(const T* data, int64_t row_begin, int64_t row_end, int64_t channels,
                      int64_t spatial, int mode, int64_t c_begin, int64_t c_end, float* acc) {
  int status = kActivationOk;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const T* row = data + r * channels * spatial;
    for (int64_t c = c_begin; c < c_end; ++c)
      acc[c - c_begin] =
          running_max(acc[c - c_begin], neuron_activity(row + c * spatial, spatial, mode, status));
  }
  return status;
}

template <class T>
int neuron_max_typed(const T* a, const T* b, int64_t rows, int64_t channels, int64_t spatial,
                     int mode, float* acc, int threads) {
  const bool unit = mode == kNeuronUnit && spatial == 1;
  // A block of channel neurons reads `spatial` elements per neuron: fewer per task.
  const int64_t block = unit ? kColumnBlock : std::max<int64_t>(1, kColumnBlock / spatial);
  const int64_t col_blocks = ceil_div(channels, block);
  // Few columns (a small layer): also split the rows so that every thread has work.
  int64_t row_blocks = 1;
  if (col_blocks < 2 * threads)
    row_blocks = std::min<int64_t>(rows, ceil_div(2 * threads, col_blocks));
  row_blocks = std::max<int64_t>(row_blocks, 1);
  const int64_t rows_per_block = ceil_div(rows, row_blocks);

  // partial[rb, k]: max of row block rb; folded into acc after the parallel loop.
  std::vector<float> partial(static_cast<size_t>(row_blocks * channels), 0.0f);
  int status = kActivationOk;
#if INVFAST_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : status)
#endif
  for (int64_t task = 0; task < row_blocks * col_blocks; ++task) {
    const int64_t rb = task / col_blocks, cb = task % col_blocks;
    const int64_t r0 = rb * rows_per_block, r1 = std::min(rows, r0 + rows_per_block);
    const int64_t k0 = cb * block, k1 = std::min(channels, k0 + block);
    float* out = partial.data() + rb * channels + k0;
    if (unit) {
      status |= max_rows_into(a, b, r0, r1, channels, k0, k1, out);
    } else {
      status |= max_channels_into(a, r0, r1, channels, spatial, mode, k0, k1, out);
      if (b != nullptr) status |= max_channels_into(b, r0, r1, channels, spatial, mode, k0, k1, out);
    }
  }
#if INVFAST_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
  for (int64_t k = 0; k < channels; ++k) {
    float m = acc[k];
    for (int64_t rb = 0; rb < row_blocks; ++rb) m = running_max(m, partial[rb * channels + k]);
    acc[k] = m;
  }
  return status;
}

}  // namespace

int neuron_max(ElemType type, const void* a, const void* b, int64_t rows, int64_t channels,
               int64_t spatial, int mode, float* acc, int threads) {
  threads = clamp_threads(threads);
  return dispatch_elem(type, [&](auto tag) {
    using T = decltype(tag);
    return neuron_max_typed(static_cast<const T*>(a), static_cast<const T*>(b), rows, channels,
                            spatial, mode, acc, threads);
  });
}

}  // namespace invfast::cpu
