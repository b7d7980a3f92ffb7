// fn.occlusion.normalize_occlude, CUDA: the whole batch in one launch, one thread per output pixel
// (blockIdx.y = sample), writing all channels.  See normalize_occlude.h for the arithmetic.

#include <cuda_runtime_api.h>

#include <algorithm>

#include "dali/core/convert.h"
#include "dali/core/cuda_error.h"
#include "dali/core/float16.h"
#include "dali/core/static_switch.h"
#include "dali/kernels/dynamic_scratchpad.h"
#include "normalize_occlude.h"

namespace occlusion {
namespace {

struct NormDesc {
  const uint8_t *in;
  void *out;
  const int32_t *boxes;  // K x 4, device
  const int32_t *index;  // partner row (device scalar); null: erase
  int K, H, W, C;
  int mirror;
  float blend;  // weight of the own pixels outside the boxes when there is a partner
};

constexpr int kThreads = 256;
constexpr int kMaxBlocksPerSample = 256;

template <typename T>
__global__ void NormalizeOccludeKernel(const NormDesc *descs, int n, const float *mean,
                                       const float *inv_std, const float *fill) {
  const NormDesc d = descs[blockIdx.y];
  const NormDesc *partner = nullptr;
  if (d.index) {
    int row = *d.index;
    partner = row >= 0 && row < n ? &descs[row] : nullptr;  // cannot raise on the device
  }
  T *out = static_cast<T *>(d.out);
  const int64_t plane = static_cast<int64_t>(d.H) * d.W;
  for (int64_t p = blockIdx.x * blockDim.x + threadIdx.x; p < plane;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int y = static_cast<int>(p / d.W), x = static_cast<int>(p - int64_t(y) * d.W);
    bool inside = false;
    if (!d.index || partner) {
      for (int k = 0; k < d.K && !inside; k++) {
        const int32_t *b = d.boxes + 4 * k;
        inside = b[0] <= y && y < b[2] && b[1] <= x && x < b[3];
      }
    }
    const bool erase = inside && !partner;
    const uint8_t *src = inside && partner ? partner->in : d.in;
    const int sx = (inside && partner ? partner->mirror : d.mirror) ? d.W - 1 - x : x;
    const uint8_t *px = src + (int64_t(y) * d.W + sx) * d.C;
    const bool mix = partner && !inside && d.blend != 1.f;
    const uint8_t *ppx = mix ? partner->in + (int64_t(y) * d.W + (partner->mirror ? d.W - 1 - x : x)) * d.C
                             : nullptr;
    for (int c = 0; c < d.C; c++) {
      float v = erase ? fill[c] : (static_cast<float>(px[c]) - mean[c]) * inv_std[c];
      if (mix) {  // the CPU's a * w + b * (1 - w), without contraction into an FMA
        const float b = (static_cast<float>(ppx[c]) - mean[c]) * inv_std[c];
        v = __fadd_rn(__fmul_rn(v, d.blend), __fmul_rn(b, 1.f - d.blend));
      }
      out[c * plane + p] = ::dali::ConvertSat<T>(v);
    }
  }
}

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
    max_plane = std::max<int64_t>(max_plane, int64_t(d.H) * d.W);
  }
  if (max_plane == 0) return;
  ::dali::kernels::DynamicScratchpad scratch{::dali::AccessOrder(stream)};
  const NormDesc *dev_descs = scratch.ToGPU(stream, descs);
  const float *dev_mean = scratch.ToGPU(stream, mean_);
  const float *dev_inv = scratch.ToGPU(stream, inv_std_);
  const float *dev_fill = scratch.ToGPU(stream, fill_);
  const int blocks = static_cast<int>(std::min<int64_t>((max_plane + kThreads - 1) / kThreads,
                                                        kMaxBlocksPerSample));
  TYPE_SWITCH(out_type_, ::dali::type2id, T, (float, ::dali::float16), (
    NormalizeOccludeKernel<T><<<dim3(blocks, n), kThreads, 0, stream>>>(
        dev_descs, n, dev_mean, dev_inv, dev_fill);
  ), DALI_FAIL("normalize_occlude: unsupported output type"));  // NOLINT
  CUDA_CALL(cudaGetLastError());
}

}  // namespace occlusion

DALI_REGISTER_OPERATOR(occlusion__NormalizeOcclude,
                       ::occlusion::NormalizeOcclude<::dali::GPUBackend>, ::dali::GPU);
