// fn.occlusion.box_search on the GPU: the DALI shell around box_search_gpu.cuh (which holds the
// kernel and knows nothing of DALI).  Setup is shared with the CPU operator (box_search.cc); here the
// per-row descriptors (map pointer after `map_index`, draws, output box, scratch) go to the device
// and the whole batch is one launch on the operator's stream.

#include <cuda_runtime_api.h>

#include <vector>

#include "box_search/box_search.h"
#include "box_search/box_search_gpu.cuh"
#include "dali/core/cuda_error.h"
#include "dali/kernels/dynamic_scratchpad.h"

namespace occlusion {

void BoxSearchGPU::RunImpl(::dali::Workspace &ws) {
  namespace k = ::occlusion::kernels;
  const auto &sal = ws.Input<::dali::GPUBackend>(0);
  const auto &draws = ws.Input<::dali::GPUBackend>(1);
  auto &out = ws.Output<::dali::GPUBackend>(0);
  const int n = sal.num_samples();
  if (n == 0) return;
  const k::SearchParams &p = args_;

  std::vector<k::SearchSample> samples(n);
  std::vector<int64_t> offset(n, 0);
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    const int m = map_index_[i];
    auto &s = samples[i];
    s.box = out.mutable_tensor<int32_t>(i);
    s.draws = draws.tensor<int32_t>(i);
    s.tries = args_.keep() ? static_cast<int>(draws.shape()[i][0]) : 1;
    if (args_.per_row_size) s.size = args_.Size(spec_, ws, i);
    if (m < 0) continue;  // map null: the kernel writes (-1, -1, -1, -1)
    s.map = sal.tensor<float>(m);
    s.H = static_cast<int>(sal.shape()[m][0]);
    s.W = static_cast<int>(sal.shape()[m][1]);
    offset[i] = total;
    total += k::BoxSearchScratchDoubles(p, s.H, s.W);
  }
  cudaStream_t stream = ws.stream();
  ::dali::kernels::DynamicScratchpad scratch{::dali::AccessOrder(stream)};
  double *buf = total > 0 ? scratch.AllocateGPU<double>(total) : nullptr;
  for (int i = 0; i < n; i++)
    if (samples[i].map) samples[i].scratch = buf + offset[i];
  const k::SearchSample *dev = scratch.ToGPU(stream, samples);
  CUDA_CALL(k::LaunchBoxSearch(dev, n, p, stream));
}

}  // namespace occlusion

DALI_REGISTER_OPERATOR(occlusion__BoxSearch, ::occlusion::BoxSearchGPU, ::dali::GPU);
