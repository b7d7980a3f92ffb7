// Box operators, CUDA: the DALI shell of erase_boxes and paste_boxes (the kernel, one launch for the
// whole batch, is DALI-free in kernels/apply_boxes.cuh).

#include <cuda_runtime_api.h>

#include <algorithm>

#include "box_ops.h"
#include "dali/core/cuda_error.h"
#include "dali/core/float16.h"
#include "dali/core/static_switch.h"
#include "dali/kernels/dynamic_scratchpad.h"
#include "kernels/apply_boxes.cuh"

namespace occlusion {
namespace {

using ::occlusion::kernels::ApplyDesc;

template <typename T>
void LaunchApply(::dali::Workspace &ws, bool chw, const std::vector<float> *fill,
                 bool paste, bool indexed) {
  const auto &images = ws.Input<::dali::GPUBackend>(0);
  const auto &boxes = ws.Input<::dali::GPUBackend>(1);
  auto &out = ws.Output<::dali::GPUBackend>(0);
  out.SetLayout(images.GetLayout());
  const auto &shape = images.shape();
  const int n = shape.num_samples();
  if (n == 0) return;
  DALI_ENFORCE(n <= 65535, ::dali::make_string(
      paste ? "paste_boxes" : "erase_boxes", ": at most 65535 samples per batch on the GPU, got ",
      n, "."));
  cudaStream_t stream = ws.stream();
  std::vector<ApplyDesc<T>> descs(n);
  int64_t max_plane = 0;
  int max_c = 1;
  for (int i = 0; i < n; i++) {
    auto s = shape.tensor_shape_span(i);
    auto &d = descs[i];
    d.C = static_cast<int>(chw ? s[0] : s[2]);
    d.H = static_cast<int>(chw ? s[1] : s[0]);
    d.W = static_cast<int>(chw ? s[2] : s[1]);
    d.in = images.tensor<T>(i);
    d.out = out.mutable_tensor<T>(i);
    d.boxes = boxes.tensor<int32_t>(i);
    d.K = static_cast<int>(boxes.shape()[i][0]);
    d.index = indexed ? ws.Input<::dali::GPUBackend>(3).tensor<int32_t>(i) : nullptr;
    max_plane = std::max<int64_t>(max_plane, static_cast<int64_t>(d.H) * d.W);
    max_c = std::max(max_c, d.C);
  }
  if (max_plane == 0) return;
  ::dali::kernels::DynamicScratchpad scratch{::dali::AccessOrder(stream)};
  const ApplyDesc<T> *dev_descs = scratch.ToGPU(stream, descs);
  const T *const *dev_partners = nullptr;
  const T *dev_fill = nullptr;
  int num_partners = 0;
  if (paste) {
    const auto &partners = ws.Input<::dali::GPUBackend>(2);
    num_partners = partners.num_samples();
    std::vector<const T *> ptrs(num_partners);
    for (int i = 0; i < num_partners; i++) ptrs[i] = partners.tensor<T>(i);
    dev_partners = scratch.ToGPU(stream, ptrs);
  } else {
    std::vector<T> f(max_c);
    for (int c = 0; c < max_c; c++)
      f[c] = static_cast<T>(fill->size() == 1 ? (*fill)[0] : (*fill)[c]);
    dev_fill = scratch.ToGPU(stream, f);
  }
  CUDA_CALL(::occlusion::kernels::LaunchApplyBoxes<T>(dev_descs, n, max_plane, dev_partners,
                                                      num_partners, dev_fill, chw, stream));
}

}  // namespace

template <>
void EraseBoxes<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws) {
  TYPE_SWITCH(ws.Input<::dali::GPUBackend>(0).type(), ::dali::type2id, T,
              (uint8_t, ::dali::float16, float), (
    LaunchApply<T>(ws, shapes_.chw, &fill_, false, false);
  ), DALI_FAIL("erase_boxes: unsupported type"));  // NOLINT
}

template <>
void PasteBoxes<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws) {
  TYPE_SWITCH(ws.Input<::dali::GPUBackend>(0).type(), ::dali::type2id, T,
              (uint8_t, ::dali::float16, float), (
    LaunchApply<T>(ws, shapes_.chw, nullptr, true, shapes_.indexed);
  ), DALI_FAIL("paste_boxes: unsupported type"));  // NOLINT
}

}  // namespace occlusion

DALI_REGISTER_OPERATOR(occlusion__EraseBoxes, ::occlusion::EraseBoxes<::dali::GPUBackend>,
                       ::dali::GPU);
DALI_REGISTER_OPERATOR(occlusion__PasteBoxes, ::occlusion::PasteBoxes<::dali::GPUBackend>,
                       ::dali::GPU);
