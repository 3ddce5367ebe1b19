#pragma once
// Borrowing torch (or any __dlpack__) tensors in the bindings, with validation that raises ValueError.
//
//   TensorView t = borrow_tensor(obj, "logits");            // any object with __dlpack__()
//   t.require(DType::kFloat32, {-1, -1});                  // dtype + shape (-1 = any size), contiguous
//   const float* p = t.data<float>();
//   if (t.is_cuda()) ...; t.device_id
//
// The view keeps the DLPack capsule alive, and the capsule keeps the producer's memory alive, so the
// pointer stays valid for the view's lifetime (copy the view to share it; destroy it with the GIL held).
// Every failure is a py::value_error whose message starts with the argument's name.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "saguaro/dlpack.h"

namespace saguaro::bindings {

namespace py = pybind11;

enum class DType { kFloat32, kFloat64, kInt32, kInt64, kUInt8, kBool, kOther };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kUInt8: return "uint8";
    case DType::kBool: return "bool";
    default: return "an unsupported dtype";
  }
}

struct TensorView {
  std::string name;                 // the argument's name, used in messages
  py::object capsule;               // keeps the borrowed memory alive
  void* ptr = nullptr;              // data + byte_offset
  DType dtype = DType::kOther;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;     // in elements (filled in when the producer gave none)
  int device_type = kDLCPU;
  int device_id = 0;

  bool is_cpu() const { return device_type == kDLCPU; }
  bool is_cuda() const { return device_type == kDLCUDA || device_type == kDLCUDAManaged; }
  int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  bool contiguous() const {
    if (numel() == 0) return true;  // nothing is read; strides of empty tensors are arbitrary
    int64_t expect = 1;
    for (int64_t d = ndim() - 1; d >= 0; --d) {
      if (shape[d] != 1 && strides[d] != expect) return false;
      expect *= shape[d];
    }
    return true;
  }
  template <class T> T* data() const { return static_cast<T*>(ptr); }

  std::string shape_str() const {
    std::ostringstream s;
    s << "[";
    for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
    s << "]";
    return s.str();
  }
  [[noreturn]] void fail(const std::string& what) const { throw py::value_error(name + ": " + what); }

  // dtype must be `want`, shape must match `want_shape` (-1 = any size), memory C-contiguous.
  void require(DType want, const std::vector<int64_t>& want_shape) const {
    if (dtype != want) fail(std::string("expected dtype ") + dtype_name(want) + ", got " + dtype_name(dtype));
    bool ok = static_cast<int64_t>(want_shape.size()) == ndim();
    for (size_t i = 0; ok && i < want_shape.size(); ++i) ok = want_shape[i] < 0 || want_shape[i] == shape[i];
    if (!ok) {
      std::ostringstream s;
      s << "expected shape [";
      for (size_t i = 0; i < want_shape.size(); ++i) {
        s << (i ? ", " : "");
        if (want_shape[i] < 0) s << "*"; else s << want_shape[i];
      }
      s << "], got " << shape_str();
      fail(s.str());
    }
    if (!contiguous()) fail("must be C-contiguous (call .contiguous())");
  }
  void require_cpu() const {
    if (!is_cpu()) fail("must be a CPU tensor");
  }
  // bfloat16 has no DType entry (only the bf16 kernels take it): read it from the capsule.
  bool is_bf16() const {
    auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
    const DLDataType& t = managed->dl_tensor.dtype;
    return t.code == kDLBfloat && t.bits == 16 && t.lanes == 1;
  }
  // A bf16 CPU tensor of shape `want_shape` (-1 = any size), C-contiguous.
  void require_bf16(const std::vector<int64_t>& want_shape) const {
    if (!is_bf16()) fail("expected dtype bfloat16");
    require_cpu();
    TensorView same = *this;  // require() checks the dtype too: compare shape/contiguity as kOther
    same.dtype = DType::kOther;
    same.require(DType::kOther, want_shape);
  }
  // Same device type and id as `other`.
  void require_same_device(const TensorView& other) const {
    if (device_type != other.device_type || device_id != other.device_id)
      fail("must be on the same device as " + other.name);
  }
};

// torch.Tensor.__dlpack__ is a Python method (its checks and a keyword call cost ~10 us from here);
// torch._C._to_dlpack makes the same capsule in ~0.5 us, and a decode step borrows ~600 tensors (~6% of
// a 1.5B quantized decode on two cores). Used for plain torch.Tensor objects only (a subclass may
// override __dlpack__) that need no gradient (__dlpack__ refuses those: the slow path says so).
struct TorchDlpack {
  PyTypeObject* tensor = nullptr;  // torch.Tensor
  PyObject* to_dlpack = nullptr;   // torch._C._to_dlpack
};

// Looked up once torch is imported (a tensor cannot be torch's before that); the references are kept
// for the process's life, as torch's module is. Called with the GIL held.
inline const TorchDlpack& torch_dlpack() {
  static TorchDlpack t;
  if (t.to_dlpack == nullptr) {
    PyObject* torch = PyDict_GetItemString(PyImport_GetModuleDict(), "torch");  // borrowed; no import
    if (torch == nullptr) return t;
    try {
      py::handle mod(torch);
      py::object tensor = mod.attr("Tensor"), to_dlpack = mod.attr("_C").attr("_to_dlpack");
      if (!PyType_Check(tensor.ptr())) return t;
      t.tensor = reinterpret_cast<PyTypeObject*>(tensor.release().ptr());
      t.to_dlpack = to_dlpack.release().ptr();
    } catch (py::error_already_set&) {  // a torch without them: every borrow takes __dlpack__
      t.tensor = nullptr;
    }
  }
  return t;
}

// The capsule of a plain torch.Tensor that needs no gradient through torch._C._to_dlpack; a null
// object for anything else, or when that call fails (the caller then asks __dlpack__, which explains).
inline py::object torch_fast_capsule(const py::handle& obj) {
  const TorchDlpack& t = torch_dlpack();
  if (t.to_dlpack == nullptr || Py_TYPE(obj.ptr()) != t.tensor) return py::object();
  PyObject* grad = PyObject_GetAttrString(obj.ptr(), "requires_grad");
  if (grad == nullptr) {
    PyErr_Clear();
    return py::object();
  }
  const bool needs_grad = grad == Py_True;
  Py_DECREF(grad);
  if (needs_grad) return py::object();
  PyObject* capsule = PyObject_CallOneArg(t.to_dlpack, obj.ptr());
  if (capsule == nullptr) {
    PyErr_Clear();
    return py::object();
  }
  return py::reinterpret_steal<py::object>(capsule);
}

// Borrows `obj`: a plain torch.Tensor through torch_fast_capsule, anything else through its __dlpack__()
// method. Raises ValueError when obj has none, or when the data type is not one of DType (lanes != 1
// included).
inline TensorView borrow_tensor(const py::handle& obj, const std::string& name) {
  TensorView v;
  v.name = name;
  py::object capsule = torch_fast_capsule(obj);
  if (!capsule) {
    if (obj.is_none() || !py::hasattr(obj, "__dlpack__")) throw py::value_error(name + ": expected a tensor (an object with __dlpack__), got " + std::string(py::str(py::type::of(obj).attr("__name__"))));
    try {
      capsule = obj.attr("__dlpack__")();
    } catch (py::error_already_set& e) {
      throw py::value_error(name + ": could not be exported through DLPack: " + std::string(py::str(e.value())));
    }
  }
  if (!PyCapsule_IsValid(capsule.ptr(), "dltensor")) throw py::value_error(name + ": __dlpack__ did not return a 'dltensor' capsule");
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
  // Not renamed to "used_dltensor": the capsule's own destructor then calls the deleter when the
  // view lets go of it, which is exactly the borrow we want.
  v.capsule = capsule;
  const DLTensor& t = managed->dl_tensor;
  v.ptr = static_cast<char*>(t.data) + t.byte_offset;
  v.device_type = static_cast<int>(t.device.device_type);
  v.device_id = t.device.device_id;
  if (t.dtype.lanes != 1) v.dtype = DType::kOther;
  else if (t.dtype.code == kDLFloat && t.dtype.bits == 32) v.dtype = DType::kFloat32;
  else if (t.dtype.code == kDLFloat && t.dtype.bits == 64) v.dtype = DType::kFloat64;
  else if (t.dtype.code == kDLInt && t.dtype.bits == 32) v.dtype = DType::kInt32;
  else if (t.dtype.code == kDLInt && t.dtype.bits == 64) v.dtype = DType::kInt64;
  else if (t.dtype.code == kDLUInt && t.dtype.bits == 8) v.dtype = DType::kUInt8;
  else if (t.dtype.code == kDLBool && t.dtype.bits == 8) v.dtype = DType::kBool;
  v.shape.assign(t.shape, t.shape + t.ndim);
  if (t.strides) {
    v.strides.assign(t.strides, t.strides + t.ndim);
  } else {
    v.strides.assign(static_cast<size_t>(t.ndim), 1);
    for (int64_t d = t.ndim - 2; d >= 0; --d) v.strides[d] = v.strides[d + 1] * v.shape[d + 1];
  }
  return v;
}

}  // namespace saguaro::bindings
