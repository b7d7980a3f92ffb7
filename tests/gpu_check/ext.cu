// The plugin's CUDA kernels (dali_ops/csrc/*/*_gpu.cuh, DALI-free) as a small torch extension, for
// `make gpu-check` on a GPU machine without DALI.  Each function builds the per-sample descriptors
// the DALI operator would build, uploads them, and calls the same entry point on torch's current
// stream; inputs are CUDA tensors (lists of tensors for ragged batches).

#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <cstring>
#include <vector>

#include "box_search/box_search_gpu.cuh"
#include "fine_grained_saliency/fine_grained_saliency_gpu.cuh"
#include "normalize_occlude/normalize_occlude_gpu.cuh"
#include "paste_boxes/paste_boxes_gpu.cuh"

namespace {

namespace k = ::occlusion::kernels;

void Check(cudaError_t err, const char *what) {
  TORCH_CHECK(err == cudaSuccess, what, ": ", cudaGetErrorString(err));
}

/// A host vector of plain descriptors copied to the device (kept alive by the returned tensor).
template <typename D>
torch::Tensor Upload(const std::vector<D> &v, const torch::Device &dev) {
  auto host = torch::empty({static_cast<int64_t>(v.size() * sizeof(D))},
                           torch::dtype(torch::kUInt8).pinned_memory(true));
  std::memcpy(host.data_ptr(), v.data(), v.size() * sizeof(D));
  return host.to(dev, /*non_blocking=*/true);
}

void CheckCuda(const torch::Tensor &t, const char *name, c10::ScalarType type) {
  TORCH_CHECK(t.is_cuda() && t.is_contiguous() && t.scalar_type() == type, name,
              " must be a contiguous CUDA tensor of ", type, ", got ", t.scalar_type(),
              t.is_cuda() ? "" : " (not on the GPU)");
}

torch::Tensor BoxSearch(const std::vector<torch::Tensor> &maps, const std::vector<torch::Tensor> &draws,
                        const std::vector<int64_t> &index, int64_t method, int64_t size,
                        int64_t stride, int64_t jitter, double tau, bool quantize, int64_t grid,
                        int64_t top_k, int64_t image_size) {
  const int n = static_cast<int>(draws.size());
  TORCH_CHECK(static_cast<int>(index.size()) == n, "index: one map row per draws row");
  TORCH_CHECK(!maps.empty(), "maps: at least one map");
  const auto dev = maps[0].device();
  c10::cuda::CUDAGuard guard(dev);
  k::SearchParams p;
  p.method = static_cast<int>(method);
  p.size = static_cast<int>(size);
  p.stride = static_cast<int>(stride);
  p.jitter = static_cast<int>(jitter);
  p.tau = tau;
  p.quantize = quantize ? 1 : 0;
  p.grid = static_cast<int>(grid);
  p.top_k = static_cast<int>(top_k);
  p.image_h = p.image_w = static_cast<int>(image_size);
  const int boxes = k::SearchBoxes(p);
  auto out = torch::empty({n, boxes, 4}, torch::dtype(torch::kInt32).device(dev));
  std::vector<k::SearchSample> samples(n);
  std::vector<int64_t> offset(n, 0);
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    CheckCuda(draws[i], "draws", torch::kInt32);
    auto &s = samples[i];
    s.box = out.data_ptr<int32_t>() + 4 * boxes * i;
    s.draws = draws[i].data_ptr<int32_t>();
    s.tries = draws[i].dim() == 2 ? static_cast<int>(draws[i].size(0)) : 1;
    const int64_t m = index[i];
    if (m < 0) continue;
    TORCH_CHECK(m < static_cast<int64_t>(maps.size()), "index ", m, " out of range");
    CheckCuda(maps[m], "maps", torch::kFloat32);
    s.map = maps[m].data_ptr<float>();
    s.H = static_cast<int>(maps[m].size(0));
    s.W = static_cast<int>(maps[m].size(1));
    offset[i] = total;
    total += k::BoxSearchScratchDoubles(p, s.H, s.W);
  }
  auto scratch = torch::empty({total > 0 ? total : 1}, torch::dtype(torch::kFloat64).device(dev));
  for (int i = 0; i < n; i++)
    if (samples[i].map) samples[i].scratch = scratch.data_ptr<double>() + offset[i];
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto descs = Upload(samples, dev);
  Check(k::LaunchBoxSearch(reinterpret_cast<const k::SearchSample *>(descs.data_ptr()), n, p, stream),
        "box_search");
  return out;
}

std::vector<torch::Tensor> FineGrainedSaliency(const std::vector<torch::Tensor> &images,
                                               const std::vector<int64_t> &mirror, int64_t max_side) {
  using ::occlusion::fgs::SampleDesc;
  TORCH_CHECK(images.size() == mirror.size(), "mirror: one value per image");
  std::vector<torch::Tensor> outs;
  std::vector<SampleDesc> descs;
  if (images.empty()) return outs;
  const auto dev = images[0].device();
  c10::cuda::CUDAGuard guard(dev);
  for (size_t i = 0; i < images.size(); i++) {
    const bool float_input = images[0].scalar_type() == torch::kFloat32;  // one type per batch
    CheckCuda(images[i], "images", float_input ? torch::kFloat32 : torch::kUInt8);
    TORCH_CHECK(images[i].dim() == 3 && images[i].size(2) == 3, "images: HWC, 3 channels");
    outs.push_back(torch::empty({images[i].size(0), images[i].size(1)},
                                torch::dtype(torch::kFloat32).device(dev)));
    SampleDesc d{};
    d.H = static_cast<int>(images[i].size(0));
    d.W = static_cast<int>(images[i].size(1));
    d.mirror = mirror[i] ? 1 : 0;
    if (d.H <= 0 || d.W <= 0) continue;
    if (float_input)
      d.rgb_f = images[i].data_ptr<float>();
    else
      d.rgb = images[i].data_ptr<uint8_t>();
    d.out = outs.back().data_ptr<float>();
    descs.push_back(d);
  }
  const int64_t bytes = ::occlusion::fgs::FgsPlan(descs, static_cast<int>(max_side));
  auto scratch = torch::empty({bytes}, torch::dtype(torch::kUInt8).device(dev));
  ::occlusion::fgs::FgsAssignScratch(descs, scratch.data_ptr());
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto dd = Upload(descs, dev);
  Check(::occlusion::fgs::LaunchFineGrainedSaliency(reinterpret_cast<const SampleDesc *>(dd.data_ptr()),
                                                    descs, static_cast<int>(max_side), stream),
        "fine_grained_saliency");
  return outs;
}

/// images (N, H, W, C) uint8; boxes (N, K, 4) int32 or empty; partner (N,) int32 or empty (erase);
/// mean / inv_std / fill (C,) float32 CUDA; output (N, C, H, W) float32 or float16.
torch::Tensor NormalizeOcclude(const torch::Tensor &images, const torch::Tensor &boxes,
                               const torch::Tensor &partner, const std::vector<int64_t> &mirror,
                               const torch::Tensor &mean, const torch::Tensor &inv_std,
                               const torch::Tensor &fill, bool half) {
  CheckCuda(images, "images", torch::kUInt8);
  const auto dev = images.device();
  c10::cuda::CUDAGuard guard(dev);
  const int n = static_cast<int>(images.size(0)), H = static_cast<int>(images.size(1));
  const int W = static_cast<int>(images.size(2)), C = static_cast<int>(images.size(3));
  auto out = torch::empty({n, C, H, W}, torch::dtype(half ? torch::kFloat16 : torch::kFloat32).device(dev));
  const bool has_boxes = boxes.numel() > 0, indexed = partner.numel() > 0;
  if (has_boxes) CheckCuda(boxes, "boxes", torch::kInt32);
  if (indexed) CheckCuda(partner, "partner", torch::kInt32);
  std::vector<k::NormDesc> descs(n);
  const int64_t sample = static_cast<int64_t>(H) * W * C;
  for (int i = 0; i < n; i++) {
    auto &d = descs[i];
    d.in = images.data_ptr<uint8_t>() + i * sample;
    d.out = static_cast<char *>(out.data_ptr()) + i * sample * out.element_size();
    d.K = has_boxes ? static_cast<int>(boxes.size(1)) : 0;
    d.boxes = has_boxes ? boxes.data_ptr<int32_t>() + i * 4 * d.K : nullptr;
    d.index = indexed ? partner.data_ptr<int32_t>() + i : nullptr;
    d.H = H;
    d.W = W;
    d.C = C;
    d.mirror = mirror[i] ? 1 : 0;
  }
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto dd = Upload(descs, dev);
  const auto *dp = reinterpret_cast<const k::NormDesc *>(dd.data_ptr());
  const int64_t plane = static_cast<int64_t>(H) * W;
  // the "const" fill and no colour transform: the vectors of tests/gpu_vectors cover those (the noise and colour
  // paths run on the host against the CPU operator in tests/dali_ops/test_normalize_emulated.py)
  cudaError_t err = half ? k::LaunchNormalizeOcclude<__half>(dp, n, plane, mean.data_ptr<float>(),
                                                             inv_std.data_ptr<float>(), fill.data_ptr<float>(),
                                                             k::kFillConst, nullptr, false, stream)
                         : k::LaunchNormalizeOcclude<float>(dp, n, plane, mean.data_ptr<float>(),
                                                            inv_std.data_ptr<float>(), fill.data_ptr<float>(),
                                                            k::kFillConst, nullptr, false, stream);
  Check(err, "normalize_occlude");
  return out;
}

template <typename T>
torch::Tensor PasteTyped(const torch::Tensor &images, const torch::Tensor &boxes, const torch::Tensor &partner,
                         bool chw) {
  const auto dev = images.device();
  const int n = static_cast<int>(images.size(0));
  const int C = static_cast<int>(chw ? images.size(1) : images.size(3));
  const int H = static_cast<int>(chw ? images.size(2) : images.size(1));
  const int W = static_cast<int>(chw ? images.size(3) : images.size(2));
  auto out = torch::empty_like(images);
  const int64_t sample = static_cast<int64_t>(H) * W * C;
  const T *base = reinterpret_cast<const T *>(images.data_ptr());
  std::vector<k::PasteDesc<T>> descs(n);
  std::vector<const T *> ptrs(n);
  for (int i = 0; i < n; i++) {
    auto &d = descs[i];
    d.in = base + i * sample;
    d.out = reinterpret_cast<T *>(out.data_ptr()) + i * sample;
    d.K = static_cast<int>(boxes.size(1));
    d.boxes = boxes.data_ptr<int32_t>() + i * 4 * d.K;
    d.index = partner.data_ptr<int32_t>() + i;
    d.H = H;
    d.W = W;
    d.C = C;
    ptrs[i] = base + i * sample;  // partners: the batch itself (paste_boxes(images, boxes, images, index))
  }
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto dd = Upload(descs, dev);
  auto dp = Upload(ptrs, dev);
  Check(k::LaunchPasteBoxes<T>(reinterpret_cast<const k::PasteDesc<T> *>(dd.data_ptr()), n,
                               static_cast<int64_t>(H) * W, reinterpret_cast<const T *const *>(dp.data_ptr()), n,
                               chw, stream),
        "paste_boxes");
  return out;
}

/// images (N, C, H, W) or (N, H, W, C) uint8 / float16 / float32; boxes (N, K, 4) int32; partner (N,) int32:
/// the row of the batch each row pastes from (-1: none).
torch::Tensor PasteBoxes(const torch::Tensor &images, const torch::Tensor &boxes, const torch::Tensor &partner,
                         bool chw) {
  TORCH_CHECK(images.is_cuda() && images.is_contiguous() && images.dim() == 4, "images: contiguous 4-D CUDA");
  CheckCuda(boxes, "boxes", torch::kInt32);
  CheckCuda(partner, "partner", torch::kInt32);
  c10::cuda::CUDAGuard guard(images.device());
  switch (images.scalar_type()) {
    case torch::kUInt8: return PasteTyped<uint8_t>(images, boxes, partner, chw);
    case torch::kFloat16: return PasteTyped<__half>(images, boxes, partner, chw);
    case torch::kFloat32: return PasteTyped<float>(images, boxes, partner, chw);
    default: TORCH_CHECK(false, "images: uint8, float16 or float32");
  }
  return {};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("box_search", &BoxSearch, "fn.occlusion.box_search's CUDA kernel");
  m.def("fine_grained_saliency", &FineGrainedSaliency, "fn.occlusion.fine_grained_saliency's CUDA kernels");
  m.def("normalize_occlude", &NormalizeOcclude, "fn.occlusion.normalize_occlude's CUDA kernel");
  m.def("paste_boxes", &PasteBoxes, "fn.occlusion.paste_boxes' CUDA kernel");
}
