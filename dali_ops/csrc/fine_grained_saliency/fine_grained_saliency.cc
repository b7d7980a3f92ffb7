// fn.occlusion.fine_grained_saliency: the CPU operator on DALI's thread pool, its registration and
// the schema.  See fine_grained_saliency.h; the saliency itself is the DALI-free kernel
// fine_grained_saliency_cpu.cc.

#include "fine_grained_saliency/fine_grained_saliency.h"

#include <algorithm>

namespace occlusion {

template <>
void FineGrainedSaliency<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws) {
  const auto &input = ws.Input<::dali::CPUBackend>(0);
  auto &output = ws.Output<::dali::CPUBackend>(0);
  output.SetLayout("HW");
  const auto &shape = input.shape();
  auto &tp = ws.GetThreadPool();
  if (static_cast<int>(cpu_scratch_.size()) < tp.NumThreads())
    cpu_scratch_.resize(tp.NumThreads());
  const bool float_input = input.type() == DALI_FLOAT;
  for (int i = 0; i < shape.num_samples(); i++) {
    auto s = shape.tensor_shape_span(i);
    int H = static_cast<int>(s[0]), W = static_cast<int>(s[1]);
    bool mirror = Mirror(ws, i);
    if (Skip(ws, i)) {
      float *out = output.mutable_tensor<float>(i);
      if (ws.NumInput() > 1) {
        const float *prior = ws.Input<::dali::CPUBackend>(1).tensor<float>(i);
        std::copy(prior, prior + static_cast<int64_t>(H) * W, out);
      } else {
        std::fill(out, out + static_cast<int64_t>(H) * W, 0.0f);
      }
      continue;
    }
    tp.AddWork([&, i, H, W, mirror, float_input](int thread_id) {
      if (float_input)
        fgs::FineGrainedSaliencyCpu(input.tensor<float>(i), H, W, mirror,
                                    output.mutable_tensor<float>(i), cpu_scratch_[thread_id]);
      else
        fgs::FineGrainedSaliencyCpu(input.tensor<uint8_t>(i), H, W, max_side_, mirror,
                                    output.mutable_tensor<float>(i), cpu_scratch_[thread_id]);
    }, static_cast<int64_t>(H) * W);
  }
  tp.RunAll();
}

}  // namespace occlusion

DALI_REGISTER_OPERATOR(occlusion__FineGrainedSaliency,
                       ::occlusion::FineGrainedSaliency<::dali::CPUBackend>, ::dali::CPU);

DALI_SCHEMA(occlusion__FineGrainedSaliency)
    .DocStr(R"code(Fine-grained static saliency map of RGB images, as used by SaliencyMix.

Computes OpenCV contrib's ``StaticSaliencyFineGrained`` (``opencv_contrib`` module ``saliency``;
Montabone & Soto, 2010), the saliency SaliencyMix (Uddin et al., ICLR 2021) uses to centre its
paste box, bit-exactly: gray conversion (OpenCV's ``BGR2GRAY`` of the image), two 3x3 Gaussian
blurs, a float32 integral image and on/off centre-surround differences over the neighbourhoods
12, 24, 48, 28, 56 and 112, mixed and normalised as OpenCV does. The output equals
``cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(bgr)[1]`` for the BGR version
of the same image.

Input: ``HWC`` uint8 RGB images, any size per sample. Output: ``HW`` float32 in [0, 1], same
height and width as the input.

float32 input (``HWC``, 3 channels) is what SaliencyMix's official code hands OpenCV (Uddin et al.,
arXiv 2006.01791; ``afm-shahab-uddin/SaliencyMix``, ``saliency_bbox``: the mean/std-normalised
tensor as an HWC array). The output then equals
``cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(image)[1]`` for the same float
array (channel 0 weighted as OpenCV's blue), as opencv-contrib-python-headless 5.0.0 computes it on
x86-64: OpenCV keeps a float32 gray plane (its float ``BGR2GRAY`` rounding, two float 3x3 Gaussian
blurs, a float integral image in OpenCV's addition order) and reads the centre value of every pixel
as ``gray.at<uchar>(y, x)``, i.e. byte ``x`` of row ``y`` of the float32 buffer, so its on / off
responses wrap modulo 256. ``max_side`` must be 0 for float input.

With ``max_side`` > 0, images whose longer side exceeds it are processed at a reduced working
resolution: the gray image is box-averaged down so that its longer side is ``max_side``, the
saliency is computed there (neighbourhood sizes in working-resolution pixels) and resized back to
the input size with bilinear interpolation. This is an approximation of the full-resolution map,
identical on CPU and GPU.)code")
    .NumInput(1, 2)
    .InputDox(0, "images", "TensorList of uint8 or float32 HWC images",
              "Images to compute the saliency of (3 channels; uint8: RGB order; float32: handed to "
              "OpenCV's algorithm as they are, channel 0 as blue).")
    .InputDox(1, "prior", "TensorList of float32 HW maps",
              "Optional: the map of each sample whose ``skip`` is set, output as it is (one map per "
              "sample, of the image's height and width; the saliency bank's re-cropped maps).")
    .NumOutput(1)
    .AddOptionalArg("max_side",
        R"code(Longest side of the working resolution; 0 (default) computes at full resolution,
exactly like OpenCV. Images already within it are processed at full resolution. uint8 input
only.)code",
        0)
    .AddOptionalArg("mirror",
        R"code(Per-sample flag: the saliency of the horizontally mirrored image (the same numbers
as ``fine_grained_saliency(flip(images))``, without the copy): the map of the image as
``crop_mirror_normalize(mirror=...)`` delivers it.)code",
        0, true)
    .AddOptionalArg("skip",
        R"code(Per-sample flag: the sample's map is not computed; the output is the sample of the
``prior`` input, or all zeros without it (rows whose saliency comes from elsewhere, e.g. the saliency
bank: their cost is skipped, not masked, and no further operator merges the two).)code",
        0, true);
