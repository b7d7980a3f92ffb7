// Fine-grained static saliency on the GPU, DALI-free (see fine_grained_saliency_math.h for the algorithm
// and the OpenCV contrib reference it reproduces bit for bit).  One launch per stage for the whole
// batch (blockIdx.z or blockIdx.y = sample):
//   gray (+ optional box downsampling) -> blur -> blur -> integral rows (exact integer scan)
//   -> integral columns (sequential float32 accumulation down each column, which is OpenCV's
//   order: I[y+1][x+1] = I[y][x+1] + row prefix) -> centre-surround over six scales with
//   per-sample maxima -> on/off mixing -> optional bilinear upsampling.
// float32 input (OpenCV's float path, see fine_grained_saliency_math.h): float gray -> float blur ->
//   float blur -> integral rows in OpenCV's float addition order (one thread per row) -> the same
//   integral columns, centre-surround (centre = the float plane's raw bytes) and mixing.
//
// Entry points (plain C++): FgsPlan (working sizes and scratch bytes of a batch), FgsAssignScratch
// and LaunchFineGrainedSaliency.  The DALI operator (fine_grained_saliency.cu) and the GPU check
// (tests/gpu_check) both call them.

#ifndef OCCLUSION_FINE_GRAINED_SALIENCY_FINE_GRAINED_SALIENCY_GPU_CUH_
#define OCCLUSION_FINE_GRAINED_SALIENCY_FINE_GRAINED_SALIENCY_GPU_CUH_

#include <cuda_runtime.h>

#include <cstdint>
#include <cub/block/block_scan.cuh>
#include <vector>

#include "fine_grained_saliency/fine_grained_saliency_math.h"

namespace occlusion {
namespace fgs {

/// One non-empty sample: fill rgb (uint8 input) or rgb_f (float32 input; one type per batch), out,
/// H, W, mirror; FgsPlan and FgsAssignScratch set the rest.
struct SampleDesc {
  const uint8_t *rgb;
  const float *rgb_f;
  float *out;
  int H, W;        // input size
  int mirror;      // gray of the horizontally mirrored image
  int h, w;        // working size
  int stride;      // integral row stride: w + 1
  uint8_t *gray;   // h * w, also the final uint8 map when resizing (uint8 input)
  uint8_t *blurred;
  float *gray_f, *blurred_f;  // h * w (float32 input)
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

/// float32 input: OpenCV's float BGR2GRAY of the (mirrored) image, at full resolution.
__global__ void GrayFloatKernel(const SampleDesc *samples) {
  const SampleDesc &d = samples[blockIdx.z];
  int x = blockIdx.x * blockDim.x + threadIdx.x;
  int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (y >= d.h || x >= d.w) return;
  const float *p = d.rgb_f + (static_cast<int64_t>(y) * d.W + (d.mirror ? d.W - 1 - x : x)) * 3;
  d.gray_f[static_cast<int64_t>(y) * d.w + x] = GrayFloat(p[0], p[1], p[2], x, d.w);
}

/// float32 GaussianBlur 3x3 (reflect-101), rows then columns as OpenCV: gray_f -> blurred_f when
/// `forward`, back otherwise.  Each thread recomputes the three row results it needs (the same values).
__global__ void BlurFloatKernel(const SampleDesc *samples, bool forward) {
  const SampleDesc &d = samples[blockIdx.z];
  int x = blockIdx.x * blockDim.x + threadIdx.x;
  int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (y >= d.h || x >= d.w) return;
  const float *src = forward ? d.gray_f : d.blurred_f;
  float *dst = forward ? d.blurred_f : d.gray_f;
  const int xl = Reflect101(x - 1, d.w), xr = Reflect101(x + 1, d.w);
  const int ys[3] = {Reflect101(y - 1, d.h), y, Reflect101(y + 1, d.h)};
  float r[3];
  #pragma unroll
  for (int a = 0; a < 3; a++) {
    const float *row = src + static_cast<int64_t>(ys[a]) * d.w;
    r[a] = BlurTapFloat(row[xl], row[x], row[xr]);
  }
  dst[static_cast<int64_t>(y) * d.w + x] = BlurTapFloat(r[0], r[1], r[2]);
}

/// Integral image, pass 1 for float32 input: row y's running sums in OpenCV's float order
/// (RowPrefixFloat: sequential, one thread per row) into row y + 1 of the integral image.
__global__ void IntegralRowsFloatKernel(const SampleDesc *samples) {
  const SampleDesc &d = samples[blockIdx.y];
  int y = blockIdx.x * blockDim.x + threadIdx.x;
  if (y >= d.h) return;
  float *row = d.integral + static_cast<int64_t>(y + 1) * d.stride;
  row[0] = 0.f;
  RowPrefixFloat(d.gray_f + static_cast<int64_t>(y) * d.w, d.w, row + 1);
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
    // float32 input: OpenCV's gray.at<uchar>(y, x) on the float plane, byte x of row y
    const uint8_t centre =
        d.rgb_f ? reinterpret_cast<const uint8_t *>(d.gray_f + static_cast<int64_t>(y) * d.w)[x]
                : d.gray[idx];
    CentreSurroundAt(d.integral, d.stride, d.h, d.w, y, x, static_cast<float>(centre), on, off);
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

// tests/cuda_emulation runs these kernels on the host through this very launch sequence, without <<<>>>.
#ifdef OCC_KERNEL_EMULATION
#define OCC_FGS_LAUNCH(kernel, grid, block, stream, ...) \
  occ_emu::Launch(dim3(grid), dim3(block), [&] { kernel(__VA_ARGS__); })
#else
#define OCC_FGS_LAUNCH(kernel, grid, block, stream, ...) kernel<<<grid, block, 0, stream>>>(__VA_ARGS__)
#endif

inline unsigned DivUp(int64_t a, int b) {
  return static_cast<unsigned>((a + b - 1) / b);
}

/// Working sizes of every sample (max_side as the operator's argument; float32 input is always at
/// full resolution) and the scratch bytes of the batch.  Samples must be non-empty.
inline int64_t FgsPlan(std::vector<SampleDesc> &descs, int max_side) {
  int64_t bytes = static_cast<int64_t>(2 * descs.size()) * sizeof(int);
  for (auto &d : descs) {
    WorkingSize(d.H, d.W, d.rgb_f ? 0 : max_side, d.h, d.w);
    d.stride = d.w + 1;
    const int64_t pix = static_cast<int64_t>(d.h) * d.w;
    bytes += 2 * pix * static_cast<int64_t>(sizeof(uint16_t));
    bytes += d.rgb_f ? 2 * pix * static_cast<int64_t>(sizeof(float)) : 2 * pix;
    bytes += static_cast<int64_t>(d.h + 1) * d.stride * static_cast<int64_t>(sizeof(float));
  }
  return bytes + 64;  // alignment slack
}

/// Points every sample's buffers into `scratch` (FgsPlan's bytes, device): the maxima of all samples
/// first (one memset clears them), then float32, uint16 and uint8 buffers (aligned by construction).
inline void FgsAssignScratch(std::vector<SampleDesc> &descs, void *scratch) {
  char *p = static_cast<char *>(scratch);
  int *maxima = reinterpret_cast<int *>(p);
  p += static_cast<int64_t>(2 * descs.size()) * sizeof(int);
  p += (16 - reinterpret_cast<uintptr_t>(p) % 16) % 16;
  for (size_t i = 0; i < descs.size(); i++) {
    auto &d = descs[i];
    d.max_on_off = maxima + 2 * i;
    d.integral = reinterpret_cast<float *>(p);
    p += static_cast<int64_t>(d.h + 1) * d.stride * sizeof(float);
    if (d.rgb_f) {
      const int64_t pix = static_cast<int64_t>(d.h) * d.w;
      d.gray_f = reinterpret_cast<float *>(p);
      d.blurred_f = d.gray_f + pix;
      p += 2 * pix * sizeof(float);
    }
  }
  for (auto &d : descs) {
    const int64_t pix = static_cast<int64_t>(d.h) * d.w;
    d.on = reinterpret_cast<uint16_t *>(p);
    p += pix * sizeof(uint16_t);
    d.off = reinterpret_cast<uint16_t *>(p);
    p += pix * sizeof(uint16_t);
  }
  for (auto &d : descs) {
    if (d.rgb_f) continue;  // the float planes above instead
    const int64_t pix = static_cast<int64_t>(d.h) * d.w;
    d.gray = reinterpret_cast<uint8_t *>(p);
    p += pix;
    d.blurred = reinterpret_cast<uint8_t *>(p);
    p += pix;
  }
}

/// The whole pipeline for the batch: `dev` is the device copy of `host` (after FgsAssignScratch);
/// the input type is the batch's (host[0].rgb_f set: float32).
inline cudaError_t LaunchFineGrainedSaliency(const SampleDesc *dev, const std::vector<SampleDesc> &host,
                                             int max_side, cudaStream_t stream) {
  const int m = static_cast<int>(host.size());
  if (m == 0) return cudaSuccess;
  int max_h = 0, max_w = 0, max_H = 0, max_W = 0;
  for (const auto &d : host) {
    max_h = d.h > max_h ? d.h : max_h;
    max_w = d.w > max_w ? d.w : max_w;
    max_H = d.H > max_H ? d.H : max_H;
    max_W = d.W > max_W ? d.W : max_W;
  }
  cudaError_t err = cudaMemsetAsync(host[0].max_on_off, 0, 2 * m * sizeof(int), stream);
  if (err != cudaSuccess) return err;
  dim3 block(kBlockX, kBlockY);
  dim3 grid(DivUp(max_w, kBlockX), DivUp(max_h, kBlockY), m);
  if (host[0].rgb_f) {
    OCC_FGS_LAUNCH(GrayFloatKernel, grid, block, stream, dev);
    OCC_FGS_LAUNCH(BlurFloatKernel, grid, block, stream, dev, true);
    OCC_FGS_LAUNCH(BlurFloatKernel, grid, block, stream, dev, false);
    OCC_FGS_LAUNCH(IntegralRowsFloatKernel, dim3(DivUp(max_h, kColumnThreads), m), kColumnThreads,
                   stream, dev);
  } else {
    OCC_FGS_LAUNCH(GrayKernel, grid, block, stream, dev);
    OCC_FGS_LAUNCH(BlurKernel, grid, block, stream, dev, true);
    OCC_FGS_LAUNCH(BlurKernel, grid, block, stream, dev, false);
    OCC_FGS_LAUNCH(IntegralRowsKernel, dim3(max_h, m), kScanThreads, stream, dev);
  }
  OCC_FGS_LAUNCH(IntegralColumnsKernel, dim3(DivUp(max_w + 1, kColumnThreads), m), kColumnThreads,
                 stream, dev);
  OCC_FGS_LAUNCH(CentreSurroundKernel, grid, block, stream, dev);
  OCC_FGS_LAUNCH(MixKernel, grid, block, stream, dev);
  if (max_side > 0) {
    dim3 up_grid(DivUp(max_W, kBlockX), DivUp(max_H, kBlockY), m);
    OCC_FGS_LAUNCH(UpsampleKernel, up_grid, block, stream, dev);
  }
  return cudaGetLastError();
}

}  // namespace fgs
}  // namespace occlusion

#endif  // OCCLUSION_FINE_GRAINED_SALIENCY_FINE_GRAINED_SALIENCY_GPU_CUH_
