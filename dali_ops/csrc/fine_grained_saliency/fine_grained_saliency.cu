// Fine-grained static saliency: the DALI shell of the CUDA implementation and its registration.
// The kernels live in fine_grained_saliency_gpu.cuh (DALI-free, see there for the stages);
// here: per-sample descriptors, one scratch allocation, the launches on the operator's stream.

#include <cuda_runtime_api.h>

#include "dali/core/cuda_error.h"
#include "dali/kernels/dynamic_scratchpad.h"
#include "fine_grained_saliency/fine_grained_saliency.h"
#include "fine_grained_saliency/fine_grained_saliency_gpu.cuh"

namespace occlusion {

template <>
void FineGrainedSaliency<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws) {
  using fgs::SampleDesc;
  const auto &input = ws.Input<::dali::GPUBackend>(0);
  auto &output = ws.Output<::dali::GPUBackend>(0);
  output.SetLayout("HW");
  const auto &shape = input.shape();
  const int n = shape.num_samples();
  cudaStream_t stream = ws.stream();
  const bool float_input = input.type() == DALI_FLOAT;

  std::vector<SampleDesc> descs;
  descs.reserve(n);
  for (int i = 0; i < n; i++) {
    auto s = shape.tensor_shape_span(i);
    SampleDesc d{};
    d.H = static_cast<int>(s[0]);
    d.W = static_cast<int>(s[1]);
    d.mirror = Mirror(ws, i) ? 1 : 0;
    if (d.H <= 0 || d.W <= 0) continue;  // empty sample: empty output, nothing to do
    if (float_input)
      d.rgb_f = input.tensor<float>(i);
    else
      d.rgb = input.tensor<uint8_t>(i);
    d.out = output.mutable_tensor<float>(i);
    if (Skip(ws, i)) {  // not computed: the prior's sample, or zeros
      if (ws.NumInput() > 1)
        CUDA_CALL(cudaMemcpyAsync(d.out, ws.Input<::dali::GPUBackend>(1).tensor<float>(i),
                                  sizeof(float) * d.H * d.W, cudaMemcpyDeviceToDevice, stream));
      else
        CUDA_CALL(cudaMemsetAsync(d.out, 0, sizeof(float) * d.H * d.W, stream));
      continue;
    }
    descs.push_back(d);
  }
  const int m = static_cast<int>(descs.size());
  if (m == 0) return;
  DALI_ENFORCE(m <= 65535, ::dali::make_string(
      "fine_grained_saliency: at most 65535 non-empty samples per batch on the GPU, got ", m, "."));
  ::dali::kernels::DynamicScratchpad scratch{::dali::AccessOrder(stream)};
  const int64_t bytes = fgs::FgsPlan(descs, max_side_);
  fgs::FgsAssignScratch(descs, scratch.AllocateGPU<uint8_t>(bytes, 64));
  const SampleDesc *dev_descs = scratch.ToGPU(stream, descs);
  CUDA_CALL(fgs::LaunchFineGrainedSaliency(dev_descs, descs, max_side_, stream));
}

}  // namespace occlusion

DALI_REGISTER_OPERATOR(occlusion__FineGrainedSaliency,
                       ::occlusion::FineGrainedSaliency<::dali::GPUBackend>, ::dali::GPU);
