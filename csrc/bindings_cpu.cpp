// pybind11 glue of invfast._C (CPU): argument checks and GIL release, no maths.
#include <pybind11/pybind11.h>

#include <optional>

#include "bindings_common.h"
#include "bindings_constants.h"
#include "cpu/neuron_max.h"
#include "common/stats.h"
#include "cpu/stats.h"
#include "cpu/transform.h"
#include "common/transform_checks.h"

namespace py = pybind11;
using namespace invfast;
using namespace invfast::bindings;

namespace {

py::dict build_info() {
  py::dict info;
  info["openmp"] = bool(INVFAST_OPENMP);
  info["cuda_status"] = std::string(INVFAST_CUDA_STATUS);
#if defined(__VERSION__)
  info["compiler"] = std::string(__VERSION__);
#endif
  return info;
}

void check_neuron_layout(int64_t spatial, int mode) {
  if (const char* error = neuron_layout_error(spatial, mode)) throw py::value_error(error);
}

// ------------------------------------------------------------------------ pass 1
int neuron_max(const py::buffer& a, const std::optional<py::buffer>& b, int64_t rows,
               int64_t channels, int64_t spatial, int mode, const std::string& dtype,
               const py::buffer& acc, int threads) {
  check_positive(rows, "rows");
  check_positive(channels, "channels");
  check_neuron_layout(spatial, mode);
  const ElemType type = parse_elem_type(dtype);
  const int64_t n = rows * channels * spatial, itemsize = elem_size(type);
  const void* a_ptr = checked_buffer(a, "a", n, itemsize, false);
  const void* b_ptr = b ? checked_buffer(*b, "b", n, itemsize, false) : nullptr;
  float* acc_ptr = checked_buffer_of<float>(acc, "acc", channels, true);
  py::gil_scoped_release release;
  return cpu::neuron_max(type, a_ptr, b_ptr, rows, channels, spatial, mode, acc_ptr, threads);
}

// ------------------------------------------------------------------------ pass 2
int invariance_update(const py::buffer& a, const py::buffer& b, int64_t rows, int64_t channels,
                      int64_t spatial, int mode, const std::string& dtype,
                      const py::buffer& neuron_max, const py::buffer& group_ids, int64_t groups,
                      const py::buffer& taus, int64_t num_taus, const py::buffer& count,
                      const py::buffer& h_sum, const py::buffer& s_sum,
                      const std::optional<py::buffer>& active_counts, int threads) {
  check_positive(rows, "rows");
  check_positive(channels, "channels");
  check_neuron_layout(spatial, mode);
  if (groups < 1) throw py::value_error("groups: expected >= 1");
  const ElemType type = parse_elem_type(dtype);
  const int64_t n = rows * channels * spatial, itemsize = elem_size(type);
  const void* a_ptr = checked_buffer(a, "a", n, itemsize, false);
  const void* b_ptr = checked_buffer(b, "b", n, itemsize, false);
  const float* max_ptr = checked_buffer_of<float>(neuron_max, "neuron_max", channels, false);
  const int64_t* group_ptr = checked_buffer_of<int64_t>(group_ids, "group_ids", rows, false);
  for (int64_t r = 0; r < rows; ++r)
    if (group_ptr[r] < 0 || group_ptr[r] >= groups)
      throw py::value_error("group_ids: expected values in [0, " + std::to_string(groups) + ")");
  if (num_taus < 1 || num_taus > kMaxTaus)
    throw py::value_error("taus: expected 1 to " + std::to_string(kMaxTaus) + " thresholds");
  const float* taus_ptr = checked_buffer_of<float>(taus, "taus", num_taus, false);
  const int64_t acc_size = groups * channels * (num_taus + 1);
  int64_t* count_ptr = checked_buffer_of<int64_t>(count, "count", acc_size, true);
  double* h_ptr = checked_buffer_of<double>(h_sum, "h_sum", acc_size, true);
  double* s_ptr = checked_buffer_of<double>(s_sum, "s_sum", acc_size, true);
  int64_t* images_ptr =
      active_counts ? checked_buffer_of<int64_t>(*active_counts, "active_counts", rows * num_taus, true)
                    : nullptr;
  py::gil_scoped_release release;
  return cpu::invariance_update(type, a_ptr, b_ptr, rows, channels, spatial, mode, max_ptr,
                                group_ptr, groups, taus_ptr, num_taus, count_ptr, h_ptr, s_ptr,
                                images_ptr, threads);
}

int ablate(const py::buffer& acts, const py::buffer& out, int64_t rows, int64_t channels,
           int64_t spatial, int mode, const std::string& dtype, const py::buffer& neuron_max,
           float tau, int ablate_mode, int threads) {
  check_positive(rows, "rows");
  check_positive(channels, "channels");
  check_neuron_layout(spatial, mode);
  if (ablate_mode != kAblateInactive && ablate_mode != kAblateActive)
    throw py::value_error("ablate_mode: expected 0 (inactive) or 1 (active)");
  const ElemType type = parse_elem_type(dtype);
  const int64_t n = rows * channels * spatial, itemsize = elem_size(type);
  const void* in_ptr = checked_buffer(acts, "acts", n, itemsize, false);
  void* out_ptr = checked_buffer(out, "out", n, itemsize, true);
  const float* max_ptr = checked_buffer_of<float>(neuron_max, "neuron_max", channels, false);
  py::gil_scoped_release release;
  return cpu::ablate(type, in_ptr, out_ptr, rows, channels, spatial, mode, max_ptr, tau,
                     ablate_mode, threads);
}

// ------------------------------------------------------------- image transformations
void image_transform(const py::buffer& x, const std::string& dtype, int64_t batch,
                     int64_t channels, int64_t height, int64_t width, int op,
                     const py::buffer& table, const py::buffer& weights, int64_t taps,
                     const py::buffer& index, const std::optional<py::buffer>& apply,
                     uint64_t seed, int standardize, const py::buffer& mean,
                     const py::buffer& inv_std, const py::buffer& out, int threads) {
  const std::string error =
      check_transform_args(batch, channels, height, width, op, taps, standardize);
  if (!error.empty()) throw py::value_error("image_transform: " + error);
  const ElemType type = parse_elem_type(dtype);
  if (type != ElemType::UInt8 && type != ElemType::Float32)
    throw py::value_error("image_transform: dtype: expected uint8 or float32, got " + dtype);
  TransformArgs args =
      make_transform_args(batch, channels, height, width, op, taps, seed, standardize);
  const int64_t n = batch * channels * height * width;
  const void* x_ptr = checked_buffer(x, "x", n, elem_size(type), false);
  args.table = checked_buffer_of<const float>(table, "table", batch * kTableWidth, false);
  args.weights = checked_buffer_of<const float>(weights, "weights", batch * taps, false);
  args.index = checked_buffer_of<const int64_t>(index, "index", batch, false);
  args.apply = apply ? checked_buffer_of<const uint8_t>(*apply, "apply", batch, false) : nullptr;
  args.mean = checked_buffer_of<const float>(mean, "mean", channels, false);
  args.inv_std = checked_buffer_of<const float>(inv_std, "inv_std", channels, false);
  float* out_ptr = checked_buffer_of<float>(out, "out", n, true);
  py::gil_scoped_release release;
  cpu::image_transform(type, x_ptr, out_ptr, args, threads);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "invfast CPU kernels (OpenMP); called through invfast.ops";
  m.def("build_info", &build_info);
  export_constants(m);

  // pass 1 (docs/invariance.md)
  m.def("neuron_max", &neuron_max, py::arg("a"), py::arg("b"), py::arg("rows"),
        py::arg("channels"), py::arg("spatial"), py::arg("mode"), py::arg("dtype"), py::arg("acc"),
        py::arg("threads"));

  // pass 2 and the ablation (docs/invariance.md)
  m.def("invariance_update", &invariance_update, py::arg("a"), py::arg("b"), py::arg("rows"),
        py::arg("channels"), py::arg("spatial"), py::arg("mode"), py::arg("dtype"),
        py::arg("neuron_max"), py::arg("group_ids"), py::arg("groups"), py::arg("taus"),
        py::arg("num_taus"), py::arg("count"), py::arg("h_sum"), py::arg("s_sum"),
        py::arg("active_counts"), py::arg("threads"));
  m.def("ablate", &ablate, py::arg("acts"), py::arg("out"), py::arg("rows"), py::arg("channels"),
        py::arg("spatial"), py::arg("mode"), py::arg("dtype"), py::arg("neuron_max"),
        py::arg("tau"), py::arg("ablate_mode"), py::arg("threads"));

  // image transformations (docs/transforms.md)
  m.def("image_transform", &image_transform, py::arg("x"), py::arg("dtype"), py::arg("batch"),
        py::arg("channels"), py::arg("height"), py::arg("width"), py::arg("op"),
        py::arg("table"), py::arg("weights"), py::arg("taps"), py::arg("index"),
        py::arg("apply"), py::arg("seed"), py::arg("standardize"), py::arg("mean"),
        py::arg("inv_std"), py::arg("out"), py::arg("threads"));
}
