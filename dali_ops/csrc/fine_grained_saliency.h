// Fine-grained static saliency (fn.occlusion.fine_grained_saliency), CPU and CUDA.
//
// A bit-exact port of OpenCV contrib's StaticSaliencyFineGrained
// (opencv_contrib modules/saliency/src/staticSaliencyFineGrained.cpp, after Montabone & Soto,
// "Human detection using a mobile platform and novel features derived from a visual saliency
// mechanism", IVC 2010), the saliency map SaliencyMix (Uddin et al., ICLR 2021) takes its
// paste box from.  The steps, as opencv-contrib-python-headless 5.0.0 runs them:
//
//   1. gray = cvtColor(BGR2GRAY): fixed point, 15 fractional bits, rounded
//      (R 9798, G 19235, B 3735; checked against OpenCV 5.0.0 on all 2^24 colours);
//   2. GaussianBlur(3x3, sigma 0) twice on uint8, BORDER_REFLECT_101: OpenCV's fixed-point path
//      is exact for the binomial kernel, i.e. (sum of [1 2 1]x[1 2 1] weighted pixels + 8) >> 4;
//   3. float32 integral image of size (H+1) x (W+1), accumulated like cv::integral:
//      I[y+1][x+1] = I[y][x+1] + (running sum of row y up to x), in float32;
//   4. for each neighbourhood n in {12, 24, 48, 28, 56, 112}: corners x-n+1, x+n+1 (same in y)
//      clamped to the integral image, surround mean = (box - centre) / (area - 1) in float32,
//      on = centre - mean and off = mean - centre truncated to uint8 where positive;
//   5. on and off summed over the six scales (uint16), each sum scaled to uint8 by
//      255 * (sum / max sum) (truncated), final = uint8(255 * (on + off) / max(max on, max off));
//   6. OpenCV 5 returns final * (1/255) as float32.
//
// float32 input (SaliencyMix's official code hands OpenCV the mean/std-normalised float tensor;
// Uddin et al., arXiv 2006.01791, afm-shahab-uddin/SaliencyMix saliency_bbox): OpenCV never converts
// it to 8 bits.  Steps 1-3 run on a float32 gray plane (GrayFloat, BlurTapFloat, RowPrefixFloat:
// opencv-contrib-python-headless 5.0.0's x86-64 roundings and addition order), and step 4 reads the
// centre value as gray.at<uchar>(y, x): byte x of row y of the float32 buffer, so the responses wrap
// modulo 256 (ResponseByte).  Steps 4-6 are otherwise shared with the uint8 path.
//
// The per-pixel arithmetic lives in kernels/fine_grained_saliency_math.h (DALI-free host/device
// inline functions) shared by the CPU operator (fine_grained_saliency.cc), the CUDA kernels
// (kernels/fine_grained_saliency.cuh, wrapped by fine_grained_saliency.cu) and mirrored by
// kernels/saliency.py (tests prove all three and OpenCV agree).
//
// Optional reduced working resolution (argument max_side): the gray image is box-averaged down so
// that its longer side is max_side, saliency is computed there, and the uint8 map is resized back
// to the input size bilinearly.  Both resizes use integer arithmetic (see WorkingSize, AreaSpan,
// BilinearCoord) so that every backend gives identical numbers.

#ifndef OCCLUSION_FINE_GRAINED_SALIENCY_H_
#define OCCLUSION_FINE_GRAINED_SALIENCY_H_

#include <cstdint>
#include <vector>

#include "dali/pipeline/operator/operator.h"
#include "kernels/fine_grained_saliency_math.h"

namespace occlusion {
namespace fgs {

/// Per-thread working memory of the CPU implementation (grown on demand, never shrunk).
struct CpuScratch {
  std::vector<uint8_t> gray, blurred, gray_row;
  std::vector<uint16_t> row_sums, on, off;
  std::vector<int32_t> area_acc, area_spans, taps, horizontal;
  std::vector<double> area_sums;
  std::vector<float> integral, widths;
  std::vector<float> gray_f, blurred_f, rows_f;  // float32 input
};

/// Saliency of one HWC uint8 RGB image (H x W) into out (H x W float32), on the calling thread.
void FineGrainedSaliencyCpu(const uint8_t *rgb, int H, int W, int max_side, bool mirror,
                            float *out, CpuScratch &scratch);

/// Saliency OpenCV computes for one HWC float32 image (H x W, channel 0 as blue), at full resolution.
void FineGrainedSaliencyCpu(const float *image, int H, int W, bool mirror, float *out,
                            CpuScratch &scratch);

}  // namespace fgs

/// fn.occlusion.fine_grained_saliency: HWC uint8 RGB or float32 -> HW float32 saliency in [0, 1].
template <typename Backend>
class FineGrainedSaliency : public ::dali::Operator<Backend> {
 public:
  explicit FineGrainedSaliency(const ::dali::OpSpec &spec)
      : ::dali::Operator<Backend>(spec), max_side_(spec.GetArgument<int>("max_side")) {
    DALI_ENFORCE(max_side_ >= 0, ::dali::make_string(
        "fine_grained_saliency: argument `max_side` must be >= 0 (0 = full resolution), got ",
        max_side_, "."));
  }

  FineGrainedSaliency(const FineGrainedSaliency &) = delete;
  FineGrainedSaliency &operator=(const FineGrainedSaliency &) = delete;

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc,
                 const ::dali::Workspace &ws) override {
    const auto &input = ws.Input<Backend>(0);
    const auto &shape = input.shape();
    const auto &layout = input.GetLayout();
    DALI_ENFORCE(input.type() == DALI_UINT8 || input.type() == DALI_FLOAT, ::dali::make_string(
        "fine_grained_saliency: input `images` must be uint8 (HWC RGB) or float32 (HWC, as handed to "
        "OpenCV), got ", input.type(), "."));
    DALI_ENFORCE(input.type() == DALI_UINT8 || max_side_ == 0, ::dali::make_string(
        "fine_grained_saliency: argument `max_side` must be 0 for float32 input (OpenCV's float path "
        "has no reduced resolution), got ", max_side_, "."));
    DALI_ENFORCE(shape.sample_dim() == 3, ::dali::make_string(
        "fine_grained_saliency: input `images` must have 3 dimensions (HWC), got ",
        shape.sample_dim(), " dimensions."));
    DALI_ENFORCE(layout.empty() || layout == "HWC", ::dali::make_string(
        "fine_grained_saliency: input `images` must have layout \"HWC\", got \"", layout, "\"."));
    int n = shape.num_samples();
    ::dali::TensorListShape<2> out_shape(n);
    for (int i = 0; i < n; i++) {
      auto s = shape.tensor_shape_span(i);
      DALI_ENFORCE(s[2] == 3, ::dali::make_string(
          "fine_grained_saliency: input `images` must have 3 channels (RGB), sample ", i,
          " has shape ", shape[i], "."));
      DALI_ENFORCE(s[0] * s[1] < (int64_t(1) << 31), ::dali::make_string(
          "fine_grained_saliency: sample ", i, " of shape ", shape[i], " is too large."));
      out_shape.set_tensor_shape(i, ::dali::TensorShape<2>(s[0], s[1]));
    }
    output_desc.resize(1);
    output_desc[0] = {out_shape, DALI_FLOAT};
    return true;
  }

  void RunImpl(::dali::Workspace &ws) override;

  /// The per-sample `mirror` argument (an argument input or a constant).
  bool Mirror(const ::dali::Workspace &ws, int sample) const {
    return this->spec_.template GetArgument<int>("mirror", &ws, sample) != 0;
  }

  /// The per-sample `skip` argument: the sample's map is not computed (zeros).
  bool Skip(const ::dali::Workspace &ws, int sample) const {
    return this->spec_.template GetArgument<int>("skip", &ws, sample) != 0;
  }

 private:
  int max_side_ = 0;
  /// Per-thread scratch of the CPU implementation (unused by the GPU one).
  std::vector<fgs::CpuScratch> cpu_scratch_;
};

}  // namespace occlusion

#endif  // OCCLUSION_FINE_GRAINED_SALIENCY_H_
