// fn.occlusion.normalize_occlude: crop_mirror_normalize's HWC uint8 -> CHW float step fused with
// the occlusion of a sample's boxes (erase with a fill or Random Erasing's noise, or paste from a
// partner row, blended with it for MixUp) and, per row, ColorJitter + Lighting's colour transform,
// CPU and CUDA: the DALI shell.  The arithmetic is that of the DALI-free kernels,
// normalize_occlude_cpu.h (its comment states it) and normalize_occlude_gpu.cuh.
//
// Why fused: normalising and then erasing / pasting copies the float batch once more (4 bytes
// per value, the largest buffer of the pipeline); here each output value is written once.  A pure
// function of its inputs: a StatelessOperator, so pipelines that use it can be checkpointed.

#ifndef OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_H_
#define OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_H_

#include <vector>

#include "common/boxes.h"
#include "dali/core/dev_buffer.h"
#include "dali/pipeline/operator/checkpointing/stateless_operator.h"
#include "normalize_occlude/normalize_occlude_math.h"

namespace occlusion {

template <typename Backend>
class NormalizeOcclude : public ::dali::StatelessOperator<Backend> {
 public:
  explicit NormalizeOcclude(const ::dali::OpSpec &spec);

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc,
                 const ::dali::Workspace &ws) override;
  void RunImpl(::dali::Workspace &ws) override;

  /// The per-sample `mirror` argument (an argument input or a constant).
  bool Mirror(const ::dali::Workspace &ws, int sample) const {
    return this->spec_.template GetArgument<int>("mirror", &ws, sample) != 0;
  }

  /// The per-sample `blend` argument: the weight of the row's own pixels outside its boxes.
  float Blend(const ::dali::Workspace &ws, int sample) const;

  /// The per-sample `noise_seed` argument (its 32 bits).
  uint32_t NoiseSeed(const ::dali::Workspace &ws, int sample) const {
    return static_cast<uint32_t>(this->spec_.template GetArgument<int>("noise_seed", &ws, sample));
  }

  /// The `color` parameters of each sample (kColorParams floats; null: none), checked; empty when the
  /// operator has no `color`.
  std::vector<const float *> ColorParams(const ::dali::Workspace &ws, int n) const;

 private:
  ::dali::DALIDataType out_type_;
  std::vector<float> mean_, inv_std_, fill_;  // per channel after Setup
  std::vector<float> mean_arg_, std_arg_, fill_arg_, color_arg_;
  bool has_boxes_ = false, indexed_ = false;
  int fill_mode_ = kernels::kFillConst;
  std::vector<kernels::ColorAffine> affine_;  // CPU: each row's colour transform, per run
  ::dali::DeviceBuffer<float> table_dev_;      // GPU: the noise table, uploaded once
  std::vector<std::vector<kernels::ClippedBox>> spans_;  // CPU kernel's working memory, one per thread
};

template <> void NormalizeOcclude<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws);
template <> void NormalizeOcclude<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws);

}  // namespace occlusion

#endif  // OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_H_
