// The cost of pass 2's additions alone, on this CPU: per pair, an int32 count += 1 and a
// float64 (h, s) += into the pair's bin, as csrc/cpu/stats.cpp does them, with every bin in
// L1 (16 neurons x 22 bins) and the bins, slots and terms precomputed. No binning, no input
// read, no memory stall: a floor for any kernel that adds pairs one by one in row order.
//
//   g++ -O3 -march=native bench/adds_floor.cpp -o /tmp/adds_floor && /tmp/adds_floor
//
// Prints ns per pair; times 16.7 M pairs / threads gives the floor of one [256, 65536] call.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace {

typedef double SumPair __attribute__((vector_size(16)));

constexpr int kLanes = 16, kBins = 22, kRows = 256, kRepeats = 4000;

alignas(64) int32_t g_count[kLanes * kBins];
alignas(64) SumPair g_sums[kLanes * kBins];

// Adds the rows' pairs (count, sums or both, by kWhat bits 1 and 2); returns ns per pair.
template <int kWhat>
__attribute__((noinline)) double add_rows(const int32_t* slots, const double* terms) {
  const auto start = std::chrono::steady_clock::now();
  for (int repeat = 0; repeat < kRepeats; ++repeat) {
    for (int row = 0; row < kRows; ++row) {
      const int32_t* slot = slots + row * kLanes;
      const double* term = terms + 2 * row * kLanes;
#pragma GCC unroll 16
      for (int lane = 0; lane < kLanes; ++lane) {
        SumPair pair;
        std::memcpy(&pair, term + 2 * lane, sizeof pair);
        if (kWhat & 1) g_count[slot[lane]] += 1;
        if (kWhat & 2) g_sums[slot[lane]] += pair;
      }
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return seconds * 1e9 / (double{kRepeats} * kRows * kLanes);
}

}  // namespace

int main() {
  // Bins skewed to the low end, as post-ReLU activities over their maximum are.
  std::mt19937 rng(1);
  std::geometric_distribution<int> bin_of(0.25);
  std::vector<int32_t> slots(kRows * kLanes);
  std::vector<double> terms(2 * kRows * kLanes, 0.25);
  for (int i = 0; i < kRows * kLanes; ++i)
    slots[i] = (i % kLanes) * kBins + std::min(bin_of(rng), kBins - 1);
  double best[3] = {1e9, 1e9, 1e9};
  for (int trial = 0; trial < 5; ++trial) {
    best[0] = std::min(best[0], add_rows<1>(slots.data(), terms.data()));
    best[1] = std::min(best[1], add_rows<2>(slots.data(), terms.data()));
    best[2] = std::min(best[2], add_rows<3>(slots.data(), terms.data()));
  }
  std::printf("ns per pair: count only %.3f, (h, s) only %.3f, both %.3f\n", best[0], best[1],
              best[2]);
  std::printf("floor of the adds of one [256, 65536] call: %.1f ms on 1 core, %.1f ms on 2\n",
              best[2] * 256 * 65536 * 1e-6, best[2] * 256 * 65536 * 1e-6 / 2);
  return g_count[0] == -1;  // keeps the sums observable
}
