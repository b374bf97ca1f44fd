// Helpers for the pybind11 glue: turn Python buffers and integers into checked pointers.
// The Python ops layer validates tensors first; these checks are the last line that
// keeps a wrong call from reading out of bounds.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>

#include "common/dtype.h"

namespace invfast::bindings {

namespace py = pybind11;

// The dtype names that cross the boundary, indexed by ElemType.
constexpr int kElemTypeCount = 4;
constexpr const char* kElemTypeNames[kElemTypeCount] = {"float32", "float16", "bfloat16", "uint8"};

inline ElemType parse_elem_type(const std::string& name) {
  for (int id = 0; id < kElemTypeCount; ++id)
    if (name == kElemTypeNames[id]) return static_cast<ElemType>(id);
  throw py::value_error("dtype: expected one of float32, float16, bfloat16, uint8; got " + name);
}

inline int64_t elem_size(ElemType type) {
  switch (type) {
    case ElemType::Float32: return 4;
    case ElemType::UInt8: return 1;
    default: return 2;
  }
}

// A C-contiguous buffer of exactly `count` items of `itemsize` bytes, or a ValueError.
inline void* checked_buffer(const py::buffer& obj, const char* name, int64_t count,
                            int64_t itemsize, bool writable) {
  py::buffer_info info = obj.request(writable);
  if (info.itemsize != itemsize)
    throw py::value_error(std::string(name) + ": expected items of " + std::to_string(itemsize) +
                          " bytes, got " + std::to_string(info.itemsize));
  if (info.size != count)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(count) +
                          " elements, got " + std::to_string(info.size));
  int64_t expected_stride = itemsize;
  for (int64_t d = info.ndim - 1; d >= 0; --d) {
    if (info.shape[d] != 1 && info.strides[d] != expected_stride)
      throw py::value_error(std::string(name) + ": expected a C-contiguous buffer");
    expected_stride *= info.shape[d];
  }
  if (writable && info.readonly)
    throw py::value_error(std::string(name) + ": expected a writable buffer");
  return info.ptr;
}

template <class T>
T* checked_buffer_of(const py::buffer& obj, const char* name, int64_t count, bool writable) {
  return static_cast<T*>(checked_buffer(obj, name, count, sizeof(T), writable));
}

inline void check_positive(int64_t value, const char* name) {
  if (value < 0) throw py::value_error(std::string(name) + ": expected >= 0");
}

}  // namespace invfast::bindings
