// fn.occlusion.paste_boxes on the GPU: the DALI shell (the kernel, one launch for the whole batch, is
// DALI-free in paste_boxes_gpu.cuh).

#include <cuda_runtime_api.h>

#include <algorithm>

#include "dali/core/cuda_error.h"
#include "dali/core/float16.h"
#include "dali/core/static_switch.h"
#include "dali/kernels/dynamic_scratchpad.h"
#include "paste_boxes/paste_boxes.h"
#include "paste_boxes/paste_boxes_gpu.cuh"

namespace occlusion {
namespace {

using ::occlusion::kernels::PasteDesc;

template <typename T>
void LaunchPaste(::dali::Workspace &ws, bool chw, bool indexed) {
  const auto &images = ws.Input<::dali::GPUBackend>(0);
  const auto &boxes = ws.Input<::dali::GPUBackend>(1);
  const auto &partners = ws.Input<::dali::GPUBackend>(2);
  auto &out = ws.Output<::dali::GPUBackend>(0);
  out.SetLayout(images.GetLayout());
  const auto &shape = images.shape();
  const int n = shape.num_samples();
  if (n == 0) return;
  DALI_ENFORCE(n <= 65535, ::dali::make_string(
      "paste_boxes: at most 65535 samples per batch on the GPU, got ", n, "."));
  cudaStream_t stream = ws.stream();
  std::vector<PasteDesc<T>> descs(n);
  int64_t max_plane = 0;
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
  }
  if (max_plane == 0) return;
  ::dali::kernels::DynamicScratchpad scratch{::dali::AccessOrder(stream)};
  const PasteDesc<T> *dev_descs = scratch.ToGPU(stream, descs);
  const int num_partners = partners.num_samples();
  std::vector<const T *> ptrs(num_partners);
  for (int i = 0; i < num_partners; i++) ptrs[i] = partners.tensor<T>(i);
  const T *const *dev_partners = scratch.ToGPU(stream, ptrs);
  CUDA_CALL(::occlusion::kernels::LaunchPasteBoxes<T>(dev_descs, n, max_plane, dev_partners,
                                                      num_partners, chw, stream));
}

}  // namespace

template <>
void PasteBoxes<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws) {
  TYPE_SWITCH(ws.Input<::dali::GPUBackend>(0).type(), ::dali::type2id, T,
              (uint8_t, ::dali::float16, float), (
    LaunchPaste<T>(ws, shapes_.chw, shapes_.indexed);
  ), DALI_FAIL("paste_boxes: unsupported type"));  // NOLINT
}

}  // namespace occlusion

DALI_REGISTER_OPERATOR(occlusion__PasteBoxes, ::occlusion::PasteBoxes<::dali::GPUBackend>,
                       ::dali::GPU);
