// fn.occlusion.fine_grained_saliency: the DALI shell, CPU and CUDA, of OpenCV contrib's
// StaticSaliencyFineGrained (the saliency SaliencyMix takes its paste box from; the algorithm and the
// reference are stated in fine_grained_saliency_math.h).  The kernels are DALI-free:
// fine_grained_saliency_cpu.{h,cc} (one image per pool thread) and fine_grained_saliency_gpu.cuh (one
// launch per stage for the batch).  A pure function of its inputs: a StatelessOperator, so pipelines
// that use it can be checkpointed.

#ifndef OCCLUSION_FINE_GRAINED_SALIENCY_FINE_GRAINED_SALIENCY_H_
#define OCCLUSION_FINE_GRAINED_SALIENCY_FINE_GRAINED_SALIENCY_H_

#include <vector>

#include "dali/pipeline/operator/checkpointing/stateless_operator.h"
#include "fine_grained_saliency/fine_grained_saliency_cpu.h"

namespace occlusion {

/// fn.occlusion.fine_grained_saliency: HWC uint8 RGB or float32 -> HW float32 saliency in [0, 1].
template <typename Backend>
class FineGrainedSaliency : public ::dali::StatelessOperator<Backend> {
 public:
  explicit FineGrainedSaliency(const ::dali::OpSpec &spec)
      : ::dali::StatelessOperator<Backend>(spec), max_side_(spec.GetArgument<int>("max_side")) {
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
    if (ws.NumInput() > 1) {  // the maps of the skipped samples
      const auto &prior = ws.Input<Backend>(1);
      DALI_ENFORCE(prior.type() == DALI_FLOAT && prior.shape().sample_dim() == 2 &&
                   prior.shape().num_samples() == n, ::dali::make_string(
          "fine_grained_saliency: input `prior` must be ", n, " float32 HW maps, got ", prior.type(), " of shape ",
          prior.shape(), "."));
      for (int i = 0; i < n; i++)
        DALI_ENFORCE(prior.shape()[i] == out_shape[i], ::dali::make_string(
            "fine_grained_saliency: input `prior` sample ", i, " has shape ", prior.shape()[i],
            ", the image's map has ", out_shape[i], "."));
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

  /// The per-sample `skip` argument: the sample's map is not computed (the `prior` input's sample, or zeros).
  bool Skip(const ::dali::Workspace &ws, int sample) const {
    return this->spec_.template GetArgument<int>("skip", &ws, sample) != 0;
  }

 private:
  int max_side_ = 0;
  /// Per-thread scratch of the CPU implementation (unused by the GPU one).
  std::vector<fgs::CpuScratch> cpu_scratch_;
};

}  // namespace occlusion

#endif  // OCCLUSION_FINE_GRAINED_SALIENCY_FINE_GRAINED_SALIENCY_H_
