// Pass 2 of the invariance statistics on the CPU (maths in csrc/common/stats.h).
//
// How the update is made fast without changing a bit of its result:
// - Tiles of neurons: a thread owns a tile and takes its rows group by group, so each
//   (group, neuron, bin) gets its additions in row order from one thread, whatever the thread
//   count or batch split. The (group, tile) accumulator slice is worked on in a thread-local
//   copy that sits in L1/L2 while the rows stream past (and is fetched ahead of time).
// - Vector steps of 16 neurons, compiled for AVX-512, AVX2 and baseline x86-64 (clones.h):
//   pairs of zeros are counted without touching their bin (see below); each other pair gets
//   its bin from a checked estimate on AVX-512 (one comparison per threshold elsewhere); its
//   h and s are then added to its bin, one pair at a time.
// - The inputs are checked in a separate sweep before anything is written (an error leaves the
//   accumulators as they were); that sweep runs at memory speed.
#include "cpu/stats.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/stats.h"
#include "cpu/clones.h"
#include "cpu/parallel.h"
#include "cpu/validity.h"

namespace invfast::cpu {
namespace {

// Neurons per vector step: one AVX-512 vector of floats, two AVX2 ones.
constexpr int kLanes = 16;
typedef float FloatLanes __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t IntLanes __attribute__((vector_size(kLanes * sizeof(int32_t))));
// Grids of up to two vectors of τ are looked up by a permute.
constexpr int kGridLanes = 2 * kLanes;
// (h, s) of one pair or one bin: both sums are updated by one two-lane addition.
typedef double SumPair __attribute__((vector_size(2 * sizeof(double))));
// Bytes of a thread's working copy of a slice ((h, s) and an int32 count per bin): about
// 200 neurons of the default grid. It stays in L2 while the rows stream past, and rows that
// long amortize the per-row and per-tile work (28, 40, 56, 90, 128 and 180 KiB were tried on
// the [256, 65536] benchmark; 90 was the fastest, within the noise of this VM).
constexpr int64_t kTileSliceBytes = 96 * 1024;
// Input rows are fetched this many rows ahead: a tile's rows are 4·K bytes apart, too far
// for the hardware prefetcher.
constexpr int64_t kRowsAhead = 2;
// Rows per flush of the int32 counters.
constexpr int64_t kRowsPerFlush = int64_t{1} << 30;
// Elements per task of the validation sweep.
constexpr int64_t kValidateBlock = 1 << 16;

// 1 when all n values are valid activations (vectorizable: no early exit).
template <class T>
INVFAST_CLONES_WIDE int all_valid(const T* __restrict data, int64_t n) {
  int valid = 1;
  for (int64_t i = 0; i < n; ++i) valid &= activation_valid(to_float(data[i]));
  return valid;
}

// Status bits of the n values of `first` and, if not null, of `second`, in one parallel
// sweep; the status itself is computed only for blocks that hold an invalid value.
template <class T>
int validate(const T* first, const T* second, int64_t n, int threads) {
  int status = kActivationOk;
  const int64_t blocks = ceil_div(n, kValidateBlock);
  const int64_t tasks = second == nullptr ? blocks : 2 * blocks;
#if INVFAST_OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 4) reduction(| : status)
#endif
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t blk = task < blocks ? task : task - blocks;
    const T* data = (task < blocks ? first : second) + blk * kValidateBlock;
    const int64_t len = std::min(kValidateBlock, n - blk * kValidateBlock);
    if (!all_valid(data, len)) status |= status_of(data, len);
  }
  (void)threads;
  return status;
}

// Channel neurons: one read of the [rows, channels, spatial] block reduces it to
// [rows, channels] activities (and checks every element on the way).
template <class T>
int reduce_channels(const T* data, int64_t rows, int64_t channels, int64_t spatial, int mode,
                    float* out, int threads) {
  int status = kActivationOk;
  const int64_t n = rows * channels;
#if INVFAST_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : status)
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = neuron_activity(data + i * spatial, spatial, mode, status);
  (void)threads;
  return status;
}

struct Accumulators {
  int64_t* count;
  double* h_sum;
  double* s_sum;
};

// Rows sorted by group (stable), so that one group's accumulator slice is live at a time:
// the rows of group g are order[start[g] .. start[g + 1]).
struct RowsByGroup {
  std::vector<int64_t> order, start;
};

RowsByGroup rows_by_group(const int64_t* group_ids, int64_t rows, int64_t groups) {
  RowsByGroup out{std::vector<int64_t>(static_cast<size_t>(rows)),
                  std::vector<int64_t>(static_cast<size_t>(groups + 1), 0)};
  for (int64_t r = 0; r < rows; ++r) ++out.start[static_cast<size_t>(group_ids[r] + 1)];
  for (int64_t g = 0; g < groups; ++g) out.start[g + 1] += out.start[g];
  std::vector<int64_t> next(out.start.begin(), out.start.end() - 1);
  for (int64_t r = 0; r < rows; ++r) out.order[static_cast<size_t>(next[group_ids[r]]++)] = r;
  return out;
}

// Pairs of zeros. A pair a = b = +0 has m = 0, h = 1 and s = +0 (stats.h). For a neuron whose
// thresholds τ_i·M_k are all >= 0 with one of them 0 (τ_0 = 0, as in the default grid), such
// a pair lands in bin 0, and bin 0 receives nothing but pairs with m = 0: every h added to it
// is 1 and every s is ±0. While h_sum of that bin holds an integer of magnitude <= 2^52,
// those float64 additions are exact, so their order does not matter: the kernel counts the
// pairs of +0 per neuron in a vector counter (post-ReLU activations are often zero) and adds
// n, n·1 and +0 to the bin once per segment, which gives the bits of adding them one by one.
// Every other pair (including zeros of other neurons or with a −0 input) is added in row
// order as it comes.
bool exact_for_integer_adds(double v) { return v == std::floor(v) && std::fabs(v) <= 0x1p52; }

// A (group, tile) accumulator slice: bin 0 of neuron k0, [width][bins] values each.
struct Slice {
  int64_t* count;
  double* h_sum;
  double* s_sum;
};

// A thread's working copy of a slice while it updates it: (h_sum, s_sum) interleaved, so that
// a pair's two sums are one 16-byte add, and the count added by the rows of this segment
// (int32). Each sum takes exactly the additions it would take in place, in the same order.
struct LocalSlice {
  SumPair* sums;   // [width·bins]
  int32_t* count;  // [width·bins]
};

// The slice a thread updates next, fetched towards L2 a few lines per row of the current one:
// its first touches would otherwise be misses to DRAM.
struct NextSlice {
  const char* arrays[3];
  int64_t lines;  // 64-byte lines per array
};

struct Tile {
  int64_t k0, width, padded;  // neurons [k0, k0 + width), padded to whole steps of kLanes
  int num_taus;
  const float* thresholds;  // [num_taus][padded]: τ_i·M_k
  // Bins are estimated (grids of 4 to kGridLanes − 2 values, close to uniform, thresholds
  // non-decreasing): e = ceil(m·scale_k − offset), checked in row_step.
  bool estimate;
  const float* scale;   // [padded]: 1 / (step·M_k)
  float offset;         // τ_0 / step
  const float* neuron;  // [padded]: M_k
  const float* grid;    // [kGridLanes]: τ_i, then +inf; −inf in the last lane
};

// Set bits of a byte, lowest first: positions and count (the live lanes of 8 neurons).
struct ByteBits {
  uint8_t position[8];
  uint8_t count;
};

struct ByteBitsTable {
  ByteBits of[256];
};

constexpr ByteBitsTable make_byte_bits() {
  ByteBitsTable t{};
  for (int v = 0; v < 256; ++v) {
    int n = 0;
    for (int bit = 0; bit < 8; ++bit)
      if ((v >> bit) & 1) t.of[v].position[n++] = static_cast<uint8_t>(bit);
    t.of[v].count = static_cast<uint8_t>(n);
  }
  return t;
}

constexpr ByteBitsTable kByteBits = make_byte_bits();

// What the vector phase of a row leaves for the scatter, per neuron c of the tile: whether its
// pair is live (not a counted pair of zeros), the slot c·bins + j of its bin, and (h, s); and
// the list of live neurons (8 spare entries at the end).
struct RowBuffers {
  uint8_t* live_flag;
  int32_t* slot;
  double* sums;  // [2·padded]: h, s of neuron c at 2c, 2c + 1
  uint16_t* live;
};

// Slots of kLanes neurons by counting every comparison: bin_base + c·bins + #{i : τ_i·M_k < m}.
inline void count_bins(const float* __restrict m, const Tile& tile, int64_t c0, int32_t bin_base,
                       int32_t bins, int32_t* __restrict slot) {
  const int num_taus = tile.num_taus;
  const int64_t stride = tile.padded;
  const float* thresholds = tile.thresholds + c0;
  _Pragma("GCC unroll 1") for (int c = 0; c < kLanes; ++c) slot[c] = bin_base + c * bins;
  for (int i = 0; i < num_taus; ++i) {
    const float* __restrict t = thresholds + i * stride;
    _Pragma("GCC unroll 1") for (int c = 0; c < kLanes; ++c) slot[c] += above_threshold(t[c], m[c]);
  }
}

// The vector phase of one step of kLanes neurons [c0, c0 + kLanes) of a row: pairs of +0 of
// neurons with fast_zero set are counted in `zeros`; every pair gets its live flag, slot and
// (h, s). With an estimating tile, lanes whose estimate is wrong are flagged in `wrong`.
// (The `unroll 1` pragmas keep GCC from unrolling these 16-lane loops before it vectorizes
// them.)
inline void row_step(const float* __restrict va, const float* __restrict vb, const Tile& tile,
                     int64_t c0, const int32_t* __restrict fast_zero, int32_t* __restrict zeros,
                     int32_t bins, RowBuffers buf, int32_t* __restrict wrong) {
  float m[kLanes];
  int32_t live[kLanes];
  _Pragma("GCC unroll 1") for (int c = 0; c < kLanes; ++c) {
    const int32_t zero =
        fast_zero[c] & static_cast<int32_t>((float_to_bits(va[c]) | float_to_bits(vb[c])) == 0);
    zeros[c] += zero;
    live[c] = zero ^ 1;
    m[c] = pair_activity(va[c], vb[c]);
  }
  uint8_t* __restrict live_flag = buf.live_flag + c0;
  _Pragma("GCC unroll 1") for (int c = 0; c < kLanes; ++c) {
    live_flag[c] = static_cast<uint8_t>(live[c]);
  }
  int32_t* __restrict slot = buf.slot + c0;
  const int32_t bin_base = static_cast<int32_t>(c0) * bins;
  if (tile.estimate) {
    // j = #{i : τ_i·M_k < m}. With thresholds non-decreasing in i, j = e exactly when
    // τ_{e−1}·M_k < m and not τ_e·M_k < m (with τ_{−1} = −inf and τ_T = +inf): the estimate
    // e is checked by the same float32 products and comparisons, τ_{e−1} and τ_e taken from
    // the grid held in two vectors by a permute. A row with any wrong estimate (ties, uneven
    // grids, M_k = 0, where ±inf·0 is NaN) is counted again by count_bins.
    const float* __restrict scale = tile.scale + c0;
    const float* __restrict neuron = tile.neuron + c0;
    const int32_t num_taus = tile.num_taus;
    const float top = static_cast<float>(num_taus), offset = tile.offset;
    alignas(64) int32_t e[kLanes];
    _Pragma("GCC unroll 1") for (int c = 0; c < kLanes; ++c) {
      float x = m[c] * scale[c] - offset;  // an estimate only: a contracted FMA is fine
      x = x > -1.0f ? x : -1.0f;          // NaN too: the conversion below stays defined
      x = x < top ? x : top;
      const int32_t down = static_cast<int32_t>(x);  // toward 0: ceil(x) is down or down + 1
      e[c] = std::max(down + static_cast<int32_t>(static_cast<float>(down) < x), 0);
    }
    FloatLanes grid_lo, grid_hi;
    IntLanes estimate;
    std::memcpy(&grid_lo, tile.grid, sizeof grid_lo);
    std::memcpy(&grid_hi, tile.grid + kLanes, sizeof grid_hi);
    std::memcpy(&estimate, e, sizeof estimate);
    const FloatLanes tau_below_lanes =
        __builtin_shuffle(grid_lo, grid_hi, (estimate - 1) & (kGridLanes - 1));
    const FloatLanes tau_above_lanes = __builtin_shuffle(grid_lo, grid_hi, estimate);
    float tau_below[kLanes], tau_above[kLanes];
    std::memcpy(tau_below, &tau_below_lanes, sizeof tau_below);
    std::memcpy(tau_above, &tau_above_lanes, sizeof tau_above);
    _Pragma("GCC unroll 1") for (int c = 0; c < kLanes; ++c) {
      const float below = activity_threshold(tau_below[c], neuron[c]);
      const float above = activity_threshold(tau_above[c], neuron[c]);
      wrong[c] |= live[c] & ((above_threshold(below, m[c]) ^ 1) | above_threshold(above, m[c]));
      slot[c] = bin_base + c * bins + e[c];
    }
  } else {
    count_bins(m, tile, c0, bin_base, bins, slot);
  }
  double* __restrict sums = buf.sums + 2 * c0;
  _Pragma("GCC unroll 1") for (int c = 0; c < kLanes; ++c) {
    const float sc = pair_specialization(va[c], vb[c]);
    sums[2 * c] = static_cast<double>(pair_invariance(sc));
    sums[2 * c + 1] = static_cast<double>(sc);
  }
}

// kLanes activities of a row from element c0 on, zeros past `left`.
template <class T>
inline void load_step(const T* __restrict row, int64_t c0, int64_t left, float* __restrict out) {
  if (left >= kLanes) {
    for (int c = 0; c < kLanes; ++c) out[c] = to_float(row[c0 + c]);
  } else {
    for (int c = 0; c < kLanes; ++c) out[c] = c < left ? to_float(row[c0 + c]) : 0.0f;
  }
}

// The rows `rows[0 .. n)` (all of one group) of one tile, in order. Each row is done in
// phases: vector steps over its neurons, a recount of the row if any bin estimate was wrong,
// the list of live neurons, then the adds of its live pairs into the slice, one by one (each
// is a different neuron, so no two adds of a row collide).
template <class T, bool kImages>
INVFAST_CLONES_WIDE void update_rows(const T* a, const T* b, int64_t channels, const int64_t* rows,
                                     int64_t n, const Tile& tile, const int32_t* fast_zero,
                                     int32_t* zeros, RowBuffers buf, LocalSlice slice,
                                     NextSlice next_slice, int64_t* image_bins) {
  const int32_t bins = tile.num_taus + 1;
  const int64_t lines_per_row = ceil_div(next_slice.lines, n);
  float va[kLanes], vb[kLanes];
  for (int64_t x = 0; x < n; ++x) {
    const int64_t r = rows[x];
    const T* ar = a + r * channels + tile.k0;
    const T* br = b + r * channels + tile.k0;
    const int64_t ahead = (x + kRowsAhead < n ? rows[x + kRowsAhead] : r) * channels + tile.k0;
    for (int64_t line = x * lines_per_row;
         line < std::min((x + 1) * lines_per_row, next_slice.lines); ++line)
      for (const char* array : next_slice.arrays) __builtin_prefetch(array + 64 * line, 1, 2);
    int32_t wrong[kLanes] = {};
    for (int64_t c0 = 0; c0 < tile.padded; c0 += kLanes) {
      __builtin_prefetch(a + ahead + c0);
      __builtin_prefetch(b + ahead + c0);
      load_step(ar, c0, tile.width - c0, va);
      load_step(br, c0, tile.width - c0, vb);
      row_step(va, vb, tile, c0, fast_zero + c0, zeros + c0, bins, buf, wrong);
    }
    int32_t any_wrong = 0;
    for (int c = 0; c < kLanes; ++c) any_wrong |= wrong[c];
    if (any_wrong) {
      for (int64_t c0 = 0; c0 < tile.padded; c0 += kLanes) {
        load_step(ar, c0, tile.width - c0, va);
        load_step(br, c0, tile.width - c0, vb);
        float m[kLanes];
        for (int c = 0; c < kLanes; ++c) m[c] = pair_activity(va[c], vb[c]);
        count_bins(m, tile, c0, static_cast<int32_t>(c0) * bins, bins, buf.slot + c0);
      }
    }
    int64_t num_live = 0;
    for (int64_t c0 = 0; c0 < tile.padded; c0 += 8) {
      // Eight 0/1 bytes to an 8-bit mask: the product moves byte i's bit to bit 56 + i.
      uint64_t flags;
      std::memcpy(&flags, buf.live_flag + c0, sizeof flags);
      const ByteBits& bits = kByteBits.of[(flags * 0x0102040810204080ull) >> 56];
      for (int y = 0; y < 8; ++y)
        buf.live[num_live + y] = static_cast<uint16_t>(c0 + bits.position[y]);
      num_live += bits.count;
    }
    int64_t* row_bins = kImages ? image_bins + r * bins : nullptr;
    for (int64_t y = 0; y < num_live; ++y) {
      const int c = buf.live[y];
      const int32_t at = buf.slot[c];
      SumPair pair;
      std::memcpy(&pair, buf.sums + 2 * c, sizeof pair);
      slice.count[at] += 1;
      slice.sums[at] += pair;
      if constexpr (kImages) row_bins[at - c * bins] += 1;
    }
  }
}

// τ_i ≈ τ_0 + i·step within 1/64 of a step: bins can be estimated from m / M_k.
struct UniformGrid {
  bool uniform;
  float step, offset;  // offset = τ_0 / step
};

UniformGrid uniform_grid(const float* taus, int num_taus) {
  if (num_taus < 4 || num_taus > kGridLanes - 2) return {false, 1.0f, 0.0f};
  const double first = taus[0], step = (double{taus[num_taus - 1]} - first) / (num_taus - 1);
  bool uniform = std::isfinite(step) && step > 0.0;
  for (int i = 0; uniform && i < num_taus; ++i)
    uniform = std::fabs(taus[i] - (first + i * step)) <= step / 64;
  if (!uniform) return {false, 1.0f, 0.0f};
  return {true, static_cast<float>(step), static_cast<float>(first / step)};
}

// The working copy of the n = width·bins values of a slice, and back.
INVFAST_CLONES_WIDE void load_slice(Slice slice, int64_t n, LocalSlice local) {
  for (int64_t i = 0; i < n; ++i) {
    local.sums[i] = SumPair{slice.h_sum[i], slice.s_sum[i]};
    local.count[i] = 0;
  }
}

INVFAST_CLONES_WIDE void store_slice(LocalSlice local, int64_t n, Slice slice) {
  for (int64_t i = 0; i < n; ++i) {
    slice.h_sum[i] = local.sums[i][0];
    slice.s_sum[i] = local.sums[i][1];
    slice.count[i] += local.count[i];
  }
}

// Per-thread buffers of the tile loop.
struct TileScratch {
  explicit TileScratch(int64_t padded, int64_t bins, int num_taus)
      : thresholds(static_cast<size_t>(num_taus * padded)),
        scale(static_cast<size_t>(padded)),
        neuron(static_cast<size_t>(padded)),
        zero_bin(static_cast<size_t>(padded)),
        fast_zero(static_cast<size_t>(padded)),
        zeros(static_cast<size_t>(padded)),
        slot(static_cast<size_t>(padded)),
        sums(static_cast<size_t>(2 * padded)),
        live(static_cast<size_t>(padded + 8)),
        live_flag(static_cast<size_t>(padded)),
        slice_sums(static_cast<size_t>(padded * bins)),
        slice_count(static_cast<size_t>(padded * bins)) {}

  std::vector<float> thresholds, scale, neuron;
  std::vector<int32_t> zero_bin, fast_zero, zeros, slot;
  std::vector<double> sums;
  std::vector<uint16_t> live;
  std::vector<uint8_t> live_flag;
  std::vector<SumPair> slice_sums;
  std::vector<int32_t> slice_count;

  RowBuffers row_buffers() { return {live_flag.data(), slot.data(), sums.data(), live.data()}; }
  LocalSlice local_slice() { return {slice_sums.data(), slice_count.data()}; }
};

// Pass 2 over already checked [rows, channels] activities.
template <class T, bool kImages>
void update_checked(const T* a, const T* b, int64_t rows, int64_t channels,
                    const float* neuron_max, const int64_t* group_ids, int64_t groups,
                    const float* taus, int num_taus, Accumulators acc, int64_t* active_counts,
                    int threads) {
  const int64_t bins = num_taus + 1;
  const RowsByGroup by_group = rows_by_group(group_ids, rows, groups);
  int64_t first_group = 0;
  while (by_group.start[first_group] == by_group.start[first_group + 1]) ++first_group;
  // Tiles of neurons: each is owned by one thread, so every (group, neuron, bin) is
  // updated by one thread in row order — the sums do not depend on the thread count.
  constexpr int64_t kBinBytes = sizeof(SumPair) + sizeof(int32_t);
  int64_t width = kTileSliceBytes / (bins * kBinBytes);
  width = std::max<int64_t>(kLanes, width / kLanes * kLanes);
  width = std::min(width, ceil_div(ceil_div(channels, threads), kLanes) * kLanes);
  const int64_t tiles = ceil_div(channels, width);
  const int64_t padded_width = ceil_div(width, kLanes) * kLanes;
  std::vector<int64_t> image_bins(kImages ? static_cast<size_t>(threads * rows * bins) : 0, 0);
  const UniformGrid grid = uniform_grid(taus, num_taus);
  // The grid lookup of the estimate is one permute with AVX-512 (the clone the loader picks
  // there); the other clones would do it element by element and count instead.
  const bool estimate = grid.uniform && cpu_has_avx512f();
  alignas(64) float grid_lanes[kGridLanes] = {};
  if (grid.uniform) {  // τ_0 .. τ_{T−1}, +inf at T and −inf in the last lane (see row_step)
    std::copy(taus, taus + num_taus, grid_lanes);
    grid_lanes[num_taus] = std::numeric_limits<float>::infinity();
    grid_lanes[kGridLanes - 1] = -std::numeric_limits<float>::infinity();
  }
  // The zero fast path holds only if a pair of +0 has h = 1 and s = +0 (stats.h).
  const float zero_s = pair_specialization(0.0f, 0.0f);
  const bool zero_path = pair_invariance(zero_s) == 1.0f && float_to_bits(zero_s) == 0;
  std::atomic<int64_t> next_tile{0};
  // Allocated here, not in the parallel region: a failed allocation must reach Python as a
  // MemoryError, not terminate the process from inside an OpenMP thread.
  std::vector<TileScratch> scratches;
  scratches.reserve(static_cast<size_t>(threads));
  for (int th = 0; th < threads; ++th) scratches.emplace_back(padded_width, bins, num_taus);

#if INVFAST_OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    TileScratch& scratch = scratches[static_cast<size_t>(current_thread())];
    const RowBuffers row_buffers = scratch.row_buffers();
    const LocalSlice local = scratch.local_slice();
    int64_t* my_bins = kImages ? image_bins.data() + current_thread() * rows * bins : nullptr;
    // Tiles are handed out one ahead, so that each thread knows the slice it updates next
    // (and a thread that the OS holds back does not hold up the others). Which thread takes
    // a tile does not change any result.
    int64_t t = next_tile.fetch_add(1);
    while (t < tiles) {
      const int64_t t_after = next_tile.fetch_add(1);
      const int64_t k0 = t * width, w = std::min(width, channels - k0);
      const int64_t padded = ceil_div(w, kLanes) * kLanes;
      float* thresholds = scratch.thresholds.data();
      bool sorted = true;
      for (int64_t c = 0; c < padded; ++c) {
        const float neuron = c < w ? neuron_max[k0 + c] : 0.0f;
        bool nonnegative = true, has_zero = false;
        float previous = -std::numeric_limits<float>::infinity();
        for (int i = 0; i < num_taus; ++i) {
          const float v = activity_threshold(taus[i], neuron);
          thresholds[i * padded + c] = v;
          nonnegative = nonnegative && v >= 0.0f;  // false for NaN
          has_zero = has_zero || v == 0.0f;
          sorted = sorted && previous <= v && v < std::numeric_limits<float>::infinity();
          previous = v;
        }
        scratch.zero_bin[c] = zero_path && nonnegative && has_zero;
        scratch.scale[c] = neuron > 0.0f ? 1.0f / (grid.step * neuron) : 0.0f;
        scratch.neuron[c] = neuron;
      }
      const Tile tile{k0,          w,           padded,
                      num_taus,    thresholds,  estimate && sorted,
                      scratch.scale.data(),     grid.offset,
                      scratch.neuron.data(),    grid_lanes};
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t first = by_group.start[g], last = by_group.start[g + 1];
        if (first == last) continue;
        const int64_t base = (g * channels + k0) * bins;
        const Slice slice{acc.count + base, acc.h_sum + base, acc.s_sum + base};
        // Checked once per (group, tile), not per segment: a bin-0 h_sum that passes (an
        // integer <= 2^52) stays exact while this call adds its < 2^52 rows to it.
        for (int64_t c = 0; c < padded; ++c)  // padding lanes: always pairs of zeros
          scratch.fast_zero[c] =
              c >= w || (scratch.zero_bin[c] && exact_for_integer_adds(slice.h_sum[c * bins]));
        // The slice after this one: the next group with rows, else the first of the next tile.
        NextSlice next{{nullptr, nullptr, nullptr}, 0};
        int64_t next_g = g + 1, next_t = t;
        while (next_g < groups && by_group.start[next_g] == by_group.start[next_g + 1]) ++next_g;
        if (next_g == groups) {
          next_g = first_group;
          next_t = t_after;
        }
        if (next_t < tiles) {
          const int64_t next_k0 = next_t * width;
          const int64_t at = (next_g * channels + next_k0) * bins;
          next = NextSlice{{reinterpret_cast<const char*>(acc.count + at),
                            reinterpret_cast<const char*>(acc.h_sum + at),
                            reinterpret_cast<const char*>(acc.s_sum + at)},
                           std::min(width, channels - next_k0) * bins * 8 / 64};
        }
        for (int64_t x = first; x < last; x += kRowsPerFlush) {
          std::fill(scratch.zeros.begin(), scratch.zeros.end(), 0);
          load_slice(slice, w * bins, local);
          update_rows<T, kImages>(a, b, channels, by_group.order.data() + x,
                                  std::min(kRowsPerFlush, last - x), tile, scratch.fast_zero.data(),
                                  scratch.zeros.data(), row_buffers, local, next, my_bins);
          store_slice(local, w * bins, slice);
          for (int64_t c = 0; c < w; ++c) {
            const int32_t n = scratch.zeros[c];
            if (n == 0) continue;
            const int64_t at = c * bins;
            slice.count[at] += n;
            slice.h_sum[at] += static_cast<double>(n);  // n additions of 1, exact
            slice.s_sum[at] += static_cast<double>(zero_s);  // = adding +0 n times
          }
        }
      }
      t = t_after;
    }
  }
  if constexpr (kImages) {
    // n(x, τ_i) = #{k : j > i}: a suffix sum over the per-row bin histogram.
    for (int64_t r = 0; r < rows; ++r) {
      int64_t above = 0;
      for (int64_t j = num_taus; j >= 1; --j) {
        for (int th = 0; th < threads; ++th) above += image_bins[(th * rows + r) * bins + j];
        active_counts[r * num_taus + j - 1] += above;
      }
    }
  }
}

template <class T>
int invariance_update_typed(const T* a, const T* b, int64_t rows, int64_t channels,
                            int64_t spatial, int mode, const float* neuron_max,
                            const int64_t* group_ids, int64_t groups, const float* taus,
                            int num_taus, Accumulators acc, int64_t* active_counts,
                            int threads) {
  const bool images = active_counts != nullptr;
  if (mode == kNeuronUnit && spatial == 1) {
    const int status = validate(a, b, rows * channels, threads);
    if (status != kActivationOk) return status;
    if (images)
      update_checked<T, true>(a, b, rows, channels, neuron_max, group_ids, groups, taus, num_taus, acc,
                              active_counts, threads);
    else
      update_checked<T, false>(a, b, rows, channels, neuron_max, group_ids, groups, taus, num_taus,
                               acc, active_counts, threads);
    return kActivationOk;
  }
  // Channel neurons: the reduction happens in the one read of the input; only the
  // [rows, channels] activities (1/spatial of it) are kept for the update.
  std::vector<float> ra(static_cast<size_t>(rows * channels)), rb(ra.size());
  const int status = reduce_channels(a, rows, channels, spatial, mode, ra.data(), threads) |
                     reduce_channels(b, rows, channels, spatial, mode, rb.data(), threads);
  if (status != kActivationOk) return status;
  if (images)
    update_checked<float, true>(ra.data(), rb.data(), rows, channels, neuron_max, group_ids, groups,
                                taus, num_taus, acc, active_counts, threads);
  else
    update_checked<float, false>(ra.data(), rb.data(), rows, channels, neuron_max, group_ids, groups,
                                 taus, num_taus, acc, active_counts, threads);
  return kActivationOk;
}

// Raw storage of an element type, for copying values or writing +0 (all bits zero).
template <class T>
using RawBits = std::conditional_t<sizeof(T) == 4, uint32_t,
                                   std::conditional_t<sizeof(T) == 2, uint16_t, uint8_t>>;

template <class T>
int ablate_typed(const T* acts, T* out, int64_t rows, int64_t channels, int64_t spatial, int mode,
                 const float* neuron_max, float tau, int ablate_mode, int threads) {
  const int status = validate<T>(acts, nullptr, rows * channels * spatial, threads);
  if (status != kActivationOk) return status;
  using Raw = RawBits<T>;
  const Raw* in_raw = reinterpret_cast<const Raw*>(acts);
  Raw* out_raw = reinterpret_cast<Raw*>(out);
  const int64_t n = rows * channels;
#if INVFAST_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i % channels;
    int unused = kActivationOk;
    const float activity = neuron_activity(acts + i * spatial, spatial, mode, unused);
    const int active = above_threshold(activity_threshold(tau, neuron_max[c]), activity);
    const Raw keep = static_cast<Raw>(0) - static_cast<Raw>(keep_after_ablation(active, ablate_mode));
    for (int64_t s = 0; s < spatial; ++s) out_raw[i * spatial + s] = in_raw[i * spatial + s] & keep;
  }
  return kActivationOk;
}

}  // namespace

int invariance_update(ElemType type, const void* a, const void* b, int64_t rows, int64_t channels,
                      int64_t spatial, int mode, const float* neuron_max,
                      const int64_t* group_ids, int64_t groups, const float* taus,
                      int64_t num_taus, int64_t* count, double* h_sum, double* s_sum,
                      int64_t* active_counts, int threads) {
  threads = clamp_threads(threads);
  if (rows == 0 || channels == 0) return kActivationOk;
  return dispatch_elem(type, [&](auto tag) {
    using T = decltype(tag);
    return invariance_update_typed(static_cast<const T*>(a), static_cast<const T*>(b), rows,
                                   channels, spatial, mode, neuron_max, group_ids, groups, taus,
                                   static_cast<int>(num_taus), Accumulators{count, h_sum, s_sum},
                                   active_counts, threads);
  });
}

int ablate(ElemType type, const void* acts, void* out, int64_t rows, int64_t channels,
           int64_t spatial, int mode, const float* neuron_max, float tau, int ablate_mode,
           int threads) {
  threads = clamp_threads(threads);
  if (rows == 0 || channels == 0) return kActivationOk;
  return dispatch_elem(type, [&](auto tag) {
    using T = decltype(tag);
    return ablate_typed(static_cast<const T*>(acts), static_cast<T*>(out), rows, channels, spatial,
                        mode, neuron_max, tau, ablate_mode, threads);
  });
}

}  // namespace invfast::cpu
