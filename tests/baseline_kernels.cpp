// Pass 1, pass 2 and ablation of the CPU kernels, built with -DINVFAST_NO_CLONES so that only
// their baseline x86-64 code exists: what a CPU without AVX2 runs. Driven by
// tests/test_backends.py::test_baseline_clones_agree_with_the_reference.
//
//   baseline_kernels IN OUT
//
// IN (little-endian): int64 rows, channels, groups, num_taus, threads; float32 a and b
// [rows·channels]; float32 taus [num_taus]; int64 group_ids [rows]; float32 ablation τ.
// OUT: int32 status of pass 1, of pass 2 and of the ablation; float32 M [channels];
// int64 count, float64 h_sum, float64 s_sum [groups·channels·(num_taus + 1)]; int64 active
// counts [rows·num_taus]; float32 ablated a [rows·channels] ("inactive" mode).
#include <cstdint>
#include <cstdio>
#include <vector>

#include "common/neuron_max.h"
#include "common/stats.h"
#include "cpu/neuron_max.h"
#include "cpu/stats.h"

namespace {

template <class T>
bool read(std::FILE* f, std::vector<T>& v) {
  return std::fread(v.data(), sizeof(T), v.size(), f) == v.size();
}

template <class T>
bool write(std::FILE* f, const std::vector<T>& v) {
  return std::fwrite(v.data(), sizeof(T), v.size(), f) == v.size();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace invfast;
  if (argc != 3) {
    std::fprintf(stderr, "usage: baseline_kernels IN OUT\n");
    return 2;
  }
  std::FILE* in = std::fopen(argv[1], "rb");
  if (in == nullptr) return 2;
  std::vector<int64_t> header(5);
  if (!read(in, header)) return 2;
  const int64_t rows = header[0], channels = header[1], groups = header[2],
                num_taus = header[3];
  const int threads = static_cast<int>(header[4]);
  std::vector<float> a(rows * channels), b(rows * channels), taus(num_taus), tau(1);
  std::vector<int64_t> group_ids(rows);
  if (!read(in, a) || !read(in, b) || !read(in, taus) || !read(in, group_ids) || !read(in, tau))
    return 2;
  std::fclose(in);

  const int64_t bins = num_taus + 1, cells = groups * channels * bins;
  std::vector<int32_t> status(3);
  std::vector<float> neuron_max(channels, 0.0f), ablated(rows * channels);
  std::vector<int64_t> count(cells, 0), active(rows * num_taus, 0);
  std::vector<double> h_sum(cells, 0.0), s_sum(cells, 0.0);
  status[0] = cpu::neuron_max(ElemType::Float32, a.data(), b.data(), rows, channels, 1,
                              kNeuronUnit, neuron_max.data(), threads);
  status[1] = cpu::invariance_update(ElemType::Float32, a.data(), b.data(), rows, channels, 1,
                                     kNeuronUnit, neuron_max.data(), group_ids.data(), groups,
                                     taus.data(), num_taus, count.data(), h_sum.data(),
                                     s_sum.data(), active.data(), threads);
  status[2] = cpu::ablate(ElemType::Float32, a.data(), ablated.data(), rows, channels, 1,
                          kNeuronUnit, neuron_max.data(), tau[0], kAblateInactive, threads);

  std::FILE* out = std::fopen(argv[2], "wb");
  if (out == nullptr) return 2;
  const bool ok = write(out, status) && write(out, neuron_max) && write(out, count) &&
                  write(out, h_sum) && write(out, s_sum) && write(out, active) &&
                  write(out, ablated);
  return std::fclose(out) == 0 && ok ? 0 : 2;
}
