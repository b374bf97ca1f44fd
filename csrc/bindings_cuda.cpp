// pybind11 glue of invfast._cuda: device pointers, shapes and the caller's stream arrive
// as integers from invfast.ops, which has already checked dtype, device and shape.
// The CUDA runtime is linked statically, so importing this module needs no GPU.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bindings_common.h"
#include "bindings_constants.h"
#include "common/stats.h"
#include "cuda/neuron_max.h"
#include "cuda/stats.h"
#include "common/transform_checks.h"
#include "cuda/transform.h"

namespace py = pybind11;
using namespace invfast;
using namespace invfast::bindings;

namespace {

template <class T>
T* as_device_ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

cudaStream_t as_stream(uintptr_t address) { return reinterpret_cast<cudaStream_t>(address); }

void throw_on_error(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Makes `device` current for one call and restores the caller's device after, so that an op
// on cuda:1 does not change what PyTorch (which shares the thread's current device) sees.
// Also clears any earlier error of this module's runtime, so that a launch's
// cudaGetLastError reports only that launch.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    throw_on_error(cudaGetDevice(&previous_), "cudaGetDevice");
    throw_on_error(cudaSetDevice(device), "cudaSetDevice");
    cudaGetLastError();
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// (number of devices, reason when there is none); never throws, so that
// `invfast backends` can explain a missing GPU.
py::tuple device_status() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err == cudaSuccess && count > 0) return py::make_tuple(count, std::string());
  cudaGetLastError();  // clear the error so later calls start clean
  std::string reason;
  if (err == cudaErrorInsufficientDriver)
    reason = "no CUDA driver (or one older than this module's CUDA runtime)";
  else if (err == cudaErrorNoDevice || err == cudaSuccess)
    reason = "no CUDA device";
  else
    reason = cudaGetErrorString(err);
  return py::make_tuple(0, reason);
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  throw_on_error(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return std::string(prop.name);
}

py::dict build_info() {
  py::dict info;
  info["cuda_runtime"] = CUDART_VERSION;
  return info;
}

void check_neuron_layout(int64_t spatial, int mode) {
  if (const char* error = neuron_layout_error(spatial, mode)) throw py::value_error(error);
}

// ------------------------------------------------------------------------ pass 1
void neuron_max(uintptr_t a, uintptr_t b, int64_t rows, int64_t channels, int64_t spatial,
                int mode, const std::string& dtype, uintptr_t acc, uintptr_t status, int device,
                uintptr_t stream) {
  check_positive(rows, "rows");
  check_positive(channels, "channels");
  check_neuron_layout(spatial, mode);
  const ElemType type = parse_elem_type(dtype);
  const DeviceGuard guard(device);
  throw_on_error(cuda::neuron_max(type, as_device_ptr<const void>(a), as_device_ptr<const void>(b),
                                  rows, channels, spatial, mode, as_device_ptr<float>(acc),
                                  as_device_ptr<int>(status), as_stream(stream)),
                 "neuron_max");
}

// ------------------------------------------------------------------------ pass 2
// invfast.ops has checked shapes, dtypes, devices and group ids before these run.
void invariance_update(uintptr_t a, uintptr_t b, int64_t rows, int64_t channels, int64_t spatial,
                       int mode, const std::string& dtype, uintptr_t neuron_max,
                       uintptr_t group_ids, int64_t groups, uintptr_t taus, int64_t num_taus,
                       uintptr_t count, uintptr_t h_sum, uintptr_t s_sum, uintptr_t active_counts,
                       uintptr_t status, int device, uintptr_t stream) {
  check_positive(rows, "rows");
  check_positive(channels, "channels");
  check_neuron_layout(spatial, mode);
  if (groups < 1) throw py::value_error("groups: expected >= 1");
  if (num_taus < 1 || num_taus > kMaxTaus)
    throw py::value_error("num_taus: expected 1 to " + std::to_string(kMaxTaus));
  const ElemType type = parse_elem_type(dtype);
  const DeviceGuard guard(device);
  throw_on_error(
      cuda::invariance_update(type, as_device_ptr<const void>(a), as_device_ptr<const void>(b), rows,
                              channels, spatial, mode, as_device_ptr<const float>(neuron_max),
                              as_device_ptr<const int64_t>(group_ids), groups,
                              as_device_ptr<const float>(taus), num_taus,
                              as_device_ptr<int64_t>(count), as_device_ptr<double>(h_sum),
                              as_device_ptr<double>(s_sum), as_device_ptr<int64_t>(active_counts),
                              as_device_ptr<int>(status), as_stream(stream)),
      "invariance_update");
}

void ablate(uintptr_t acts, uintptr_t out, int64_t rows, int64_t channels, int64_t spatial,
            int mode, const std::string& dtype, uintptr_t neuron_max, float tau, int ablate_mode,
            uintptr_t status, int device, uintptr_t stream) {
  check_positive(rows, "rows");
  check_positive(channels, "channels");
  check_neuron_layout(spatial, mode);
  if (ablate_mode != kAblateInactive && ablate_mode != kAblateActive)
    throw py::value_error("ablate_mode: expected 0 (inactive) or 1 (active)");
  const ElemType type = parse_elem_type(dtype);
  const DeviceGuard guard(device);
  throw_on_error(cuda::ablate(type, as_device_ptr<const void>(acts), as_device_ptr<void>(out), rows,
                              channels, spatial, mode, as_device_ptr<const float>(neuron_max), tau,
                              ablate_mode, as_device_ptr<int>(status), as_stream(stream)),
                 "ablate");
}

// ------------------------------------------------------------- image transformations
// Device pointers; invfast.ops.transforms has checked dtypes, devices and sizes.
void image_transform(uintptr_t x, const std::string& dtype, int64_t batch, int64_t channels,
                     int64_t height, int64_t width, int op, uintptr_t table, uintptr_t weights,
                     int64_t taps, uintptr_t index, uintptr_t apply, uint64_t seed,
                     int standardize, uintptr_t mean, uintptr_t inv_std, uintptr_t out,
                     int device, uintptr_t stream) {
  const std::string error =
      check_transform_args(batch, channels, height, width, op, taps, standardize);
  if (!error.empty()) throw py::value_error("image_transform: " + error);
  const ElemType type = parse_elem_type(dtype);
  if (type != ElemType::UInt8 && type != ElemType::Float32)
    throw py::value_error("image_transform: dtype: expected uint8 or float32, got " + dtype);
  if (op == static_cast<int>(TransformOp::Blur) && width > cuda::kMaxBlurWidth)
    throw py::value_error("image_transform: blur on CUDA supports W <= " +
                          std::to_string(cuda::kMaxBlurWidth) + ", got W = " +
                          std::to_string(width));
  if (x == 0 || table == 0 || weights == 0 || index == 0 || mean == 0 || inv_std == 0 || out == 0)
    throw py::value_error("image_transform: null device pointer");
  TransformArgs args =
      make_transform_args(batch, channels, height, width, op, taps, seed, standardize);
  args.table = as_device_ptr<const float>(table);
  args.weights = as_device_ptr<const float>(weights);
  args.index = as_device_ptr<const int64_t>(index);
  args.apply = as_device_ptr<const uint8_t>(apply);
  args.mean = as_device_ptr<const float>(mean);
  args.inv_std = as_device_ptr<const float>(inv_std);
  const DeviceGuard guard(device);
  py::gil_scoped_release release;
  throw_on_error(cuda::image_transform(type, as_device_ptr<const void>(x), as_device_ptr<float>(out),
                                       args, as_stream(stream)),
                 "image_transform");
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "invfast CUDA kernels; called through invfast.ops";
  m.def("build_info", &build_info);
  export_constants(m);
  m.attr("MAX_BLUR_WIDTH") = cuda::kMaxBlurWidth;
  m.def("device_status", &device_status);
  m.def("device_name", &device_name, py::arg("device"));

  // pass 1 (docs/invariance.md)
  m.def("neuron_max", &neuron_max, py::arg("a"), py::arg("b"), py::arg("rows"),
        py::arg("channels"), py::arg("spatial"), py::arg("mode"), py::arg("dtype"), py::arg("acc"),
        py::arg("status"), py::arg("device"), py::arg("stream"));

  // pass 2 and the ablation (docs/invariance.md)
  m.def("invariance_update", &invariance_update, py::arg("a"), py::arg("b"), py::arg("rows"),
        py::arg("channels"), py::arg("spatial"), py::arg("mode"), py::arg("dtype"),
        py::arg("neuron_max"), py::arg("group_ids"), py::arg("groups"), py::arg("taus"),
        py::arg("num_taus"), py::arg("count"), py::arg("h_sum"), py::arg("s_sum"),
        py::arg("active_counts"), py::arg("status"), py::arg("device"), py::arg("stream"));
  m.def("ablate", &ablate, py::arg("acts"), py::arg("out"), py::arg("rows"), py::arg("channels"),
        py::arg("spatial"), py::arg("mode"), py::arg("dtype"), py::arg("neuron_max"),
        py::arg("tau"), py::arg("ablate_mode"), py::arg("status"), py::arg("device"),
        py::arg("stream"));

  // image transformations (docs/transforms.md)
  m.def("image_transform", &image_transform, py::arg("x"), py::arg("dtype"), py::arg("batch"),
        py::arg("channels"), py::arg("height"), py::arg("width"), py::arg("op"),
        py::arg("table"), py::arg("weights"), py::arg("taps"), py::arg("index"),
        py::arg("apply"), py::arg("seed"), py::arg("standardize"), py::arg("mean"),
        py::arg("inv_std"), py::arg("out"), py::arg("device"), py::arg("stream"));
}
