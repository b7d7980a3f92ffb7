// Fine-grained static saliency on the CPU, DALI-free: one image on the calling thread (the DALI
// operator, fine_grained_saliency.cc, runs one image per thread of its pool; tests/cpu_kernels builds
// this kernel alone against kernels/saliency.py and tests/oracles_saliency.py).  The algorithm, the
// OpenCV contrib reference it reproduces bit for bit and the per-pixel arithmetic it shares with the
// CUDA kernels: fine_grained_saliency_math.h.

#ifndef OCCLUSION_FINE_GRAINED_SALIENCY_FINE_GRAINED_SALIENCY_CPU_H_
#define OCCLUSION_FINE_GRAINED_SALIENCY_FINE_GRAINED_SALIENCY_CPU_H_

#include <cstdint>
#include <vector>

namespace occlusion {
namespace fgs {

/// Per-thread working memory of the CPU kernel (grown on demand, never shrunk).
struct CpuScratch {
  std::vector<uint8_t> gray, blurred, gray_row;
  std::vector<uint16_t> row_sums, on, off;
  std::vector<int32_t> area_acc, area_spans, taps, horizontal;
  std::vector<double> area_sums;
  std::vector<float> integral, widths;
  std::vector<float> gray_f, blurred_f, rows_f;  // float32 input
};

/// Saliency of one HWC uint8 RGB image (H x W) into out (H x W float32), of the horizontally mirrored
/// image when `mirror`; max_side > 0: at the reduced working resolution (fine_grained_saliency_math.h).
void FineGrainedSaliencyCpu(const uint8_t *rgb, int H, int W, int max_side, bool mirror,
                            float *out, CpuScratch &scratch);

/// Saliency OpenCV computes for one HWC float32 image (H x W, channel 0 as blue), at full resolution.
void FineGrainedSaliencyCpu(const float *image, int H, int W, bool mirror, float *out,
                            CpuScratch &scratch);

}  // namespace fgs
}  // namespace occlusion

#endif  // OCCLUSION_FINE_GRAINED_SALIENCY_FINE_GRAINED_SALIENCY_CPU_H_
