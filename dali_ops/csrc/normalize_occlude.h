// fn.occlusion.normalize_occlude: crop_mirror_normalize's HWC uint8 -> CHW float step fused with
// the occlusion of a sample's boxes (erase with a fill, or paste from a partner row), CPU and CUDA.
//
//   out[c, y, x] = (float(img[y, x', c]) - mean[c]) * (1 / std[c])        outside the boxes
//                = fill[c]                                                 inside (erase)
//                = (float(partner[y, x'', c]) - mean[c]) * (1 / std[c])   inside (paste)
//
// and, with a partner and a per-sample `blend` w != 1 (MixUp), outside the boxes
//   out[c, y, x] = own * w + partner * (1 - w)   of the two normalised values, in float.
//
// where x' / x'' mirror x when the sample's / the partner's `mirror` flag is set.  This is
// exactly DALI's crop_mirror_normalize arithmetic (slice_flip_normalize_permute_pad_cpu.h:
// (float(in) - mean) * inv_stddev, then ConvertSat to the output type), so rows without boxes
// equal crop_mirror_normalize's output bit for bit; the occlusion is then the papers' operation
// after normalisation (Cutout / Hide-and-Seek: mask multiply, 0 = the dataset mean; CutMix /
// SaliencyMix: input[rand_index] at the same location, the partner with its own flip).
//
// Why fused: normalising and then erasing / pasting copies the float batch once more (4 bytes
// per value, the largest buffer of the pipeline); here each output value is written once.

#ifndef OCCLUSION_NORMALIZE_OCCLUDE_H_
#define OCCLUSION_NORMALIZE_OCCLUDE_H_

#include <vector>

#include "dali/pipeline/operator/operator.h"

namespace occlusion {

template <typename Backend>
class NormalizeOcclude : public ::dali::Operator<Backend> {
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

 private:
  ::dali::DALIDataType out_type_;
  std::vector<float> mean_, inv_std_, fill_;  // per channel after Setup
  std::vector<float> mean_arg_, std_arg_, fill_arg_;
  bool has_boxes_ = false, indexed_ = false;
  /// A clipped box (CPU implementation; per-thread scratch below).
  struct Span {
    int y0, x0, y1, x1;
  };
  std::vector<std::vector<Span>> spans_;
};

template <> void NormalizeOcclude<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws);
template <> void NormalizeOcclude<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws);

}  // namespace occlusion

#endif  // OCCLUSION_NORMALIZE_OCCLUDE_H_
