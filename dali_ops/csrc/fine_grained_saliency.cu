// Fine-grained static saliency: the CUDA implementation and its registration.
// See fine_grained_saliency.h for the algorithm and the reference it reproduces; the per-pixel
// arithmetic is the same DALI_HOST_DEV code the CPU operator runs.
//
// One launch per stage for the whole batch (blockIdx.z or blockIdx.y = sample):
//   gray (+ optional box downsampling) -> blur -> blur -> integral rows (exact integer scan)
//   -> integral columns (sequential float32 accumulation down each column, which is OpenCV's
//   order: I[y+1][x+1] = I[y][x+1] + row prefix) -> centre-surround over six scales with
//   per-sample maxima -> on/off mixing -> optional bilinear upsampling.

#include <cuda_runtime_api.h>

#include <cub/block/block_scan.cuh>

#include "dali/core/cuda_error.h"
#include "dali/kernels/dynamic_scratchpad.h"
#include "fine_grained_saliency.h"

namespace occlusion {
namespace fgs {
namespace {

struct SampleDesc {
  const uint8_t *rgb;
  float *out;
  int H, W;        // input size
  int mirror;      // gray of the horizontally mirrored image
  int h, w;        // working size
  int stride;      // integral row stride: w + 1
  uint8_t *gray;   // h * w, also the final uint8 map when resizing
  uint8_t *blurred;
  float *integral;  // (h + 1) * stride
  uint16_t *on, *off;
  int *max_on_off;  // [2]
};

constexpr int kBlockX = 32, kBlockY = 8;
constexpr int kScanThreads = 256;
constexpr int kColumnThreads = 128;

__global__ void GrayKernel(const SampleDesc *samples) {
  const SampleDesc &d = samples[blockIdx.z];
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  int i = blockIdx.y * blockDim.y + threadIdx.y;
  if (i >= d.h || j >= d.w) return;
  if (d.h == d.H && d.w == d.W) {
    const uint8_t *p = d.rgb + (static_cast<int64_t>(i) * d.W + (d.mirror ? d.W - 1 - j : j)) * 3;
    d.gray[static_cast<int64_t>(i) * d.w + j] = RgbToGray(p[0], p[1], p[2]);
    return;
  }
  int y0, y1, x0, x1;
  AreaSpan(i, d.H, d.h, y0, y1);
  AreaSpan(j, d.W, d.w, x0, x1);
  int64_t sum = 0;
  for (int y = y0; y < y1; y++) {
    const uint8_t *row = d.rgb + static_cast<int64_t>(y) * d.W * 3;
    for (int x = x0; x < x1; x++) {
      const uint8_t *p = row + 3 * (d.mirror ? d.W - 1 - x : x);
      sum += RgbToGray(p[0], p[1], p[2]);
    }
  }
  int64_t count = static_cast<int64_t>(y1 - y0) * (x1 - x0);
  d.gray[static_cast<int64_t>(i) * d.w + j] = static_cast<uint8_t>((sum + count / 2) / count);
}

/// GaussianBlur 3x3 (reflect-101): gray -> blurred when `forward`, blurred -> gray otherwise.
__global__ void BlurKernel(const SampleDesc *samples, bool forward) {
  const SampleDesc &d = samples[blockIdx.z];
  int x = blockIdx.x * blockDim.x + threadIdx.x;
  int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (y >= d.h || x >= d.w) return;
  const uint8_t *src = forward ? d.gray : d.blurred;
  uint8_t *dst = forward ? d.blurred : d.gray;
  int xs[3] = {Reflect101(x - 1, d.w), x, Reflect101(x + 1, d.w)};
  int ys[3] = {Reflect101(y - 1, d.h), y, Reflect101(y + 1, d.h)};
  int sum = 0;
  #pragma unroll
  for (int a = 0; a < 3; a++) {
    const uint8_t *row = src + static_cast<int64_t>(ys[a]) * d.w;
    int r = row[xs[0]] + 2 * row[xs[1]] + row[xs[2]];
    sum += (a == 1 ? 2 : 1) * r;
  }
  dst[static_cast<int64_t>(y) * d.w + x] = BlurRound(sum);
}

/// Integral image, pass 1: row y of the gray image -> exact integer prefix sums, stored as float
/// (exact below 2^24) in row y + 1 of the integral image; column 0 is zero.
__global__ void IntegralRowsKernel(const SampleDesc *samples) {
  using Scan = cub::BlockScan<int, kScanThreads>;
  __shared__ typename Scan::TempStorage temp;
  __shared__ int carry;
  const SampleDesc &d = samples[blockIdx.y];
  int y = blockIdx.x;
  if (y >= d.h) return;
  const uint8_t *g = d.gray + static_cast<int64_t>(y) * d.w;
  float *row = d.integral + static_cast<int64_t>(y + 1) * d.stride;
  if (threadIdx.x == 0) {
    row[0] = 0.f;
    carry = 0;
  }
  __syncthreads();
  for (int base = 0; base < d.w; base += kScanThreads) {
    int x = base + threadIdx.x;
    int v = x < d.w ? g[x] : 0, prefix, total;
    Scan(temp).InclusiveSum(v, prefix, total);
    int c = carry;
    if (x < d.w) row[x + 1] = static_cast<float>(c + prefix);
    __syncthreads();  // everyone has read carry and temp
    if (threadIdx.x == 0) carry = c + total;
    __syncthreads();
  }
}

/// Integral image, pass 2: accumulate each column downwards in float32, one thread per column.
__global__ void IntegralColumnsKernel(const SampleDesc *samples) {
  const SampleDesc &d = samples[blockIdx.y];
  int x = blockIdx.x * blockDim.x + threadIdx.x;
  if (x > d.w) return;
  float *col = d.integral + x;
  col[0] = 0.f;
  float acc = 0.f;
  for (int y = 1; y <= d.h; y++) {
    float *p = col + static_cast<int64_t>(y) * d.stride;
    acc = acc + *p;
    *p = acc;
  }
}

__device__ inline int WarpMax(int v) {
  #pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// On/off sums over the six scales, and their per-sample maxima.
__global__ void CentreSurroundKernel(const SampleDesc *samples) {
  const SampleDesc &d = samples[blockIdx.z];
  int x = blockIdx.x * blockDim.x + threadIdx.x;
  int y = blockIdx.y * blockDim.y + threadIdx.y;
  int on = 0, off = 0;
  if (y < d.h && x < d.w) {
    int64_t idx = static_cast<int64_t>(y) * d.w + x;
    CentreSurroundAt(d.integral, d.stride, d.h, d.w, y, x, static_cast<float>(d.gray[idx]),
                     on, off);
    d.on[idx] = static_cast<uint16_t>(on);
    d.off[idx] = static_cast<uint16_t>(off);
  }
  on = WarpMax(on);
  off = WarpMax(off);
  if ((threadIdx.x & 31) == 0) {
    if (on) atomicMax(&d.max_on_off[0], on);
    if (off) atomicMax(&d.max_on_off[1], off);
  }
}

/// mixScales + mixOnOff; writes the float output, or the uint8 map when it is to be resized.
__global__ void MixKernel(const SampleDesc *samples) {
  const SampleDesc &d = samples[blockIdx.z];
  int x = blockIdx.x * blockDim.x + threadIdx.x;
  int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (y >= d.h || x >= d.w) return;
  int max_on = d.max_on_off[0], max_off = d.max_on_off[1];
  int max_val = max(ScaleSum(max_on, max_on), ScaleSum(max_off, max_off));
  int64_t idx = static_cast<int64_t>(y) * d.w + x;
  uint8_t v = MixOnOff(ScaleSum(d.on[idx], max_on), ScaleSum(d.off[idx], max_off), max_val);
  if (d.h == d.H && d.w == d.W)
    d.out[idx] = ToUnit(v);
  else
    d.gray[idx] = v;
}

/// Bilinear upsampling of the uint8 map (working size) to the input size.
__global__ void UpsampleKernel(const SampleDesc *samples) {
  const SampleDesc &d = samples[blockIdx.z];
  if (d.h == d.H && d.w == d.W) return;
  int X = blockIdx.x * blockDim.x + threadIdx.x;
  int Y = blockIdx.y * blockDim.y + threadIdx.y;
  if (Y >= d.H || X >= d.W) return;
  int y0, y1, fy, x0, x1, fx;
  BilinearCoord(Y, d.h, d.H, y0, y1, fy);
  BilinearCoord(X, d.w, d.W, x0, x1, fx);
  const uint8_t *m0 = d.gray + static_cast<int64_t>(y0) * d.w;
  const uint8_t *m1 = d.gray + static_cast<int64_t>(y1) * d.w;
  d.out[static_cast<int64_t>(Y) * d.W + X] =
      BilinearUnit(m0[x0], m0[x1], m1[x0], m1[x1], fy, fx);
}

inline unsigned DivUp(int64_t a, int b) {
  return static_cast<unsigned>((a + b - 1) / b);
}

}  // namespace
}  // namespace fgs

template <>
void FineGrainedSaliency<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws) {
  using fgs::SampleDesc;
  const auto &input = ws.Input<::dali::GPUBackend>(0);
  auto &output = ws.Output<::dali::GPUBackend>(0);
  output.SetLayout("HW");
  const auto &shape = input.shape();
  const int n = shape.num_samples();
  cudaStream_t stream = ws.stream();

  std::vector<SampleDesc> descs;
  descs.reserve(n);
  int64_t total_pix = 0, total_integral = 0;
  int max_h = 0, max_w = 0, max_H = 0, max_W = 0;
  for (int i = 0; i < n; i++) {
    auto s = shape.tensor_shape_span(i);
    SampleDesc d{};
    d.H = static_cast<int>(s[0]);
    d.W = static_cast<int>(s[1]);
    d.mirror = Mirror(ws, i) ? 1 : 0;
    if (d.H <= 0 || d.W <= 0) continue;  // empty sample: empty output, nothing to do
    fgs::WorkingSize(d.H, d.W, max_side_, d.h, d.w);
    d.stride = d.w + 1;
    d.rgb = input.tensor<uint8_t>(i);
    d.out = output.mutable_tensor<float>(i);
    total_pix += static_cast<int64_t>(d.h) * d.w;
    total_integral += static_cast<int64_t>(d.h + 1) * d.stride;
    max_h = std::max(max_h, d.h);
    max_w = std::max(max_w, d.w);
    max_H = std::max(max_H, d.H);
    max_W = std::max(max_W, d.W);
    descs.push_back(d);
  }
  const int m = static_cast<int>(descs.size());
  if (m == 0) return;
  DALI_ENFORCE(m <= 65535, ::dali::make_string(
      "fine_grained_saliency: at most 65535 non-empty samples per batch on the GPU, got ", m, "."));

  ::dali::kernels::DynamicScratchpad scratch{::dali::AccessOrder(stream)};
  uint8_t *gray = scratch.AllocateGPU<uint8_t>(total_pix);
  uint8_t *blurred = scratch.AllocateGPU<uint8_t>(total_pix);
  uint16_t *on = scratch.AllocateGPU<uint16_t>(total_pix);
  uint16_t *off = scratch.AllocateGPU<uint16_t>(total_pix);
  float *integral = scratch.AllocateGPU<float>(total_integral);
  int *maxima = scratch.AllocateGPU<int>(2 * m);
  int64_t pix_offset = 0, integral_offset = 0;
  for (int i = 0; i < m; i++) {
    auto &d = descs[i];
    d.gray = gray + pix_offset;
    d.blurred = blurred + pix_offset;
    d.on = on + pix_offset;
    d.off = off + pix_offset;
    d.integral = integral + integral_offset;
    d.max_on_off = maxima + 2 * i;
    pix_offset += static_cast<int64_t>(d.h) * d.w;
    integral_offset += static_cast<int64_t>(d.h + 1) * d.stride;
  }
  CUDA_CALL(cudaMemsetAsync(maxima, 0, 2 * m * sizeof(int), stream));
  const SampleDesc *dev_descs = scratch.ToGPU(stream, descs);

  dim3 block(fgs::kBlockX, fgs::kBlockY);
  dim3 grid(fgs::DivUp(max_w, fgs::kBlockX), fgs::DivUp(max_h, fgs::kBlockY), m);
  fgs::GrayKernel<<<grid, block, 0, stream>>>(dev_descs);
  fgs::BlurKernel<<<grid, block, 0, stream>>>(dev_descs, true);
  fgs::BlurKernel<<<grid, block, 0, stream>>>(dev_descs, false);
  fgs::IntegralRowsKernel<<<dim3(max_h, m), fgs::kScanThreads, 0, stream>>>(dev_descs);
  fgs::IntegralColumnsKernel<<<dim3(fgs::DivUp(max_w + 1, fgs::kColumnThreads), m),
                               fgs::kColumnThreads, 0, stream>>>(dev_descs);
  fgs::CentreSurroundKernel<<<grid, block, 0, stream>>>(dev_descs);
  fgs::MixKernel<<<grid, block, 0, stream>>>(dev_descs);
  if (max_side_ > 0) {
    dim3 up_grid(fgs::DivUp(max_W, fgs::kBlockX), fgs::DivUp(max_H, fgs::kBlockY), m);
    fgs::UpsampleKernel<<<up_grid, block, 0, stream>>>(dev_descs);
  }
  CUDA_CALL(cudaGetLastError());
}

}  // namespace occlusion

DALI_REGISTER_OPERATOR(occlusion__FineGrainedSaliency,
                       ::occlusion::FineGrainedSaliency<::dali::GPUBackend>, ::dali::GPU);
