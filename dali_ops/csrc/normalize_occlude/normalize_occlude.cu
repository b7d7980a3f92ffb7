// fn.occlusion.normalize_occlude, CUDA: the DALI shell; the kernel (one launch for the batch) is
// DALI-free in normalize_occlude_gpu.cuh.  See normalize_occlude_cpu.h for the arithmetic.

#include <cuda_runtime_api.h>

#include <algorithm>

#include "dali/core/cuda_error.h"
#include "dali/kernels/dynamic_scratchpad.h"
#include "normalize_occlude/normal_table.h"
#include "normalize_occlude/normalize_occlude.h"
#include "normalize_occlude/normalize_occlude_gpu.cuh"

namespace occlusion {
namespace {

using ::occlusion::kernels::NormDesc;

}  // namespace

template <>
void NormalizeOcclude<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws) {
  const auto &images = ws.Input<::dali::GPUBackend>(0);
  auto &out = ws.Output<::dali::GPUBackend>(0);
  out.SetLayout("CHW");
  const auto &shape = images.shape();
  const int n = shape.num_samples();
  if (n == 0) return;
  DALI_ENFORCE(n <= 65535, ::dali::make_string(
      "normalize_occlude: at most 65535 samples per batch on the GPU, got ", n, "."));
  cudaStream_t stream = ws.stream();
  ::dali::kernels::DynamicScratchpad scratch{::dali::AccessOrder(stream)};
  // each row's colour parameters, and room for the affine the first launch derives from them
  const auto params = ColorParams(ws, n);
  std::vector<float> host_params;
  for (const float *p : params) host_params.insert(host_params.end(), p, p + kernels::kColorParams);
  const float *dev_params = params.empty() ? nullptr : scratch.ToGPU(stream, host_params);
  kernels::ColorAffine *dev_affine = params.empty() ? nullptr : scratch.AllocateGPU<kernels::ColorAffine>(n);
  const float *dev_table = nullptr;
  if (fill_mode_ != kernels::kFillConst) {
    if (table_dev_.size() == 0)
      table_dev_.from_host(kernels::NormalQuantiles(), kernels::kNormalTableSize, ::dali::AccessOrder(stream));
    dev_table = table_dev_.data();
  }
  std::vector<NormDesc> descs(n);
  int64_t max_plane = 0;
  for (int i = 0; i < n; i++) {
    auto s = shape.tensor_shape_span(i);
    auto &d = descs[i];
    d.H = static_cast<int>(s[0]);
    d.W = static_cast<int>(s[1]);
    d.C = static_cast<int>(s[2]);
    d.in = images.tensor<uint8_t>(i);
    d.out = out.raw_mutable_tensor(i);
    d.boxes = has_boxes_ ? ws.Input<::dali::GPUBackend>(1).tensor<int32_t>(i) : nullptr;
    d.K = has_boxes_ ? static_cast<int>(ws.Input<::dali::GPUBackend>(1).shape()[i][0]) : 0;
    d.index = indexed_ ? ws.Input<::dali::GPUBackend>(2).tensor<int32_t>(i) : nullptr;
    d.mirror = Mirror(ws, i) ? 1 : 0;
    d.blend = Blend(ws, i);
    d.noise_seed = fill_mode_ == kernels::kFillConst ? 0u : NoiseSeed(ws, i);
    if (dev_params) {
      d.color_params = dev_params + static_cast<int64_t>(i) * kernels::kColorParams;
      d.color = dev_affine + i;
    }
    max_plane = std::max<int64_t>(max_plane, int64_t(d.H) * d.W);
  }
  if (max_plane == 0) return;
  const NormDesc *dev_descs = scratch.ToGPU(stream, descs);
  const float *dev_mean = scratch.ToGPU(stream, mean_);
  const float *dev_inv = scratch.ToGPU(stream, inv_std_);
  const float *dev_fill = scratch.ToGPU(stream, fill_);
  namespace k = ::occlusion::kernels;
  if (out_type_ == DALI_FLOAT)
    CUDA_CALL(k::LaunchNormalizeOcclude<float>(dev_descs, n, max_plane, dev_mean, dev_inv, dev_fill, fill_mode_,
                                               dev_table, dev_params != nullptr, stream));
  else if (out_type_ == DALI_FLOAT16)
    CUDA_CALL(k::LaunchNormalizeOcclude<__half>(dev_descs, n, max_plane, dev_mean, dev_inv, dev_fill, fill_mode_,
                                                dev_table, dev_params != nullptr, stream));
  else
    DALI_FAIL("normalize_occlude: unsupported output type");
}

}  // namespace occlusion

DALI_REGISTER_OPERATOR(occlusion__NormalizeOcclude,
                       ::occlusion::NormalizeOcclude<::dali::GPUBackend>, ::dali::GPU);
