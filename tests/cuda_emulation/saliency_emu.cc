// fine_grained_saliency_gpu.cuh's kernels on the host (see cuda_runtime.h here), through its own
// FgsPlan / FgsAssignScratch / LaunchFineGrainedSaliency: a C entry point for ctypes.
#include <vector>

#include "fine_grained_saliency/fine_grained_saliency_gpu.cuh"

/// n non-empty images (uint8 RGB, or float32 when `float_input`), each H[i] x W[i] x 3, into out[i].
extern "C" int emu_fine_grained_saliency(const void *const *images, int float_input, const int *H,
                                         const int *W, const int *mirror, float *const *out, int n,
                                         int max_side) {
  using occlusion::fgs::SampleDesc;
  std::vector<SampleDesc> descs(n);
  for (int i = 0; i < n; i++) {
    SampleDesc d{};
    if (float_input)
      d.rgb_f = static_cast<const float *>(images[i]);
    else
      d.rgb = static_cast<const uint8_t *>(images[i]);
    d.out = out[i];
    d.H = H[i];
    d.W = W[i];
    d.mirror = mirror[i];
    descs[i] = d;
  }
  std::vector<uint64_t> scratch((occlusion::fgs::FgsPlan(descs, max_side) + 7) / 8);
  occlusion::fgs::FgsAssignScratch(descs, scratch.data());
  return occlusion::fgs::LaunchFineGrainedSaliency(descs.data(), descs, max_side, nullptr);
}
