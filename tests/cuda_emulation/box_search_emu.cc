// box_search_gpu.cuh's kernel on the host (see cuda_runtime.h here): a C entry point for ctypes.
#include "box_search/box_search_gpu.cuh"

extern "C" int emu_box_search(occlusion::kernels::SearchSample *samples, int n, int method, int size,
                              int stride, int jitter, double tau, int quantize) {
  occlusion::kernels::SearchParams p;
  p.method = method;
  p.size = size;
  p.stride = stride;
  p.jitter = jitter;
  p.tau = tau;
  p.quantize = quantize;
  occ_emu::Launch(n, occlusion::kernels::detail::kThreads,
                  [&] { occlusion::kernels::detail::BoxSearchKernel(samples, p); });
  return 0;
}
