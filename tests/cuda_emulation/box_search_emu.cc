// box_search_gpu.cuh's kernel on the host (see cuda_runtime.h here): a C entry point for ctypes.
#include "box_search/box_search_gpu.cuh"

extern "C" int emu_box_search(occlusion::kernels::SearchSample *samples, int n, int method, int size,
                              int stride, int jitter, double tau, int quantize, int grid, int top_k,
                              int image_size) {
  occlusion::kernels::SearchParams p;
  p.method = method;
  p.size = size;
  p.stride = stride;
  p.jitter = jitter;
  p.tau = tau;
  p.quantize = quantize;
  p.grid = grid;
  p.top_k = top_k;
  p.image_h = p.image_w = image_size;
  occ_emu::Launch(n, occlusion::kernels::detail::kThreads,
                  [&] { occlusion::kernels::detail::BoxSearchKernel(samples, p); });
  return 0;
}
