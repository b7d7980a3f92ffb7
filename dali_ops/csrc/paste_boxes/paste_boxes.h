// fn.occlusion.paste_boxes(images, boxes, partners[, partner_index]): the DALI shell, CPU and CUDA.
//
// CutMix, SaliencyMix and KeepAugment's selective-paste (paste_boxes_cpu.h): the pixels inside a
// sample's boxes come from its partner at the same location.  Without `partner_index` the partner of
// sample i is partners[i]; with it, partners[partner_index[i]] (so `partners` can be the batch
// itself: no permute_batch copy); an index of -1 leaves the sample unchanged.  The kernels are
// DALI-free: paste_boxes_cpu.{h,cc} (one sample per pool thread, row memcpy) and paste_boxes_gpu.cuh
// (one launch per batch).  The boxes are a regular input, so boxes searched inside the pipeline (on
// the GPU, from a saliency map) can drive it.  A pure function of its inputs: a StatelessOperator.

#ifndef OCCLUSION_PASTE_BOXES_PASTE_BOXES_H_
#define OCCLUSION_PASTE_BOXES_PASTE_BOXES_H_

#include <vector>

#include "dali/pipeline/operator/checkpointing/stateless_operator.h"

namespace occlusion {

/// Validated layout of a paste_boxes call; computed in Setup on both backends.
struct PasteShapes {
  bool chw = true;   // layout "CHW" (else "HWC")
  bool indexed = false;
};

/// Shared Setup of paste_boxes: checks the inputs; the output has the images' shape and type.
template <typename Backend>
PasteShapes CheckPasteInputs(const ::dali::Workspace &ws);

template <typename Backend>
class PasteBoxes : public ::dali::StatelessOperator<Backend> {
 public:
  explicit PasteBoxes(const ::dali::OpSpec &spec) : ::dali::StatelessOperator<Backend>(spec) {}

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc,
                 const ::dali::Workspace &ws) override {
    shapes_ = CheckPasteInputs<Backend>(ws);
    const auto &images = ws.Input<Backend>(0);
    output_desc.resize(1);
    output_desc[0] = {images.shape(), images.type()};
    return true;
  }
  void RunImpl(::dali::Workspace &ws) override;

 private:
  PasteShapes shapes_;
};

template <> void PasteBoxes<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws);
template <> void PasteBoxes<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws);

}  // namespace occlusion

#endif  // OCCLUSION_PASTE_BOXES_PASTE_BOXES_H_
