// Box operators of the occlusion plugin: apply (erase / paste) and search, CPU and CUDA.
//
//   fn.occlusion.erase_boxes(images, boxes, fill=...)
//       Cutout (DeVries & Taylor 2017, uoguelph-mlrg/Cutout util/cutout.py), Hide-and-Seek
//       (Singh & Lee 2017) and Fong & Vedaldi's occlusion: the pixels inside any of a sample's
//       boxes take `fill`, the others are copied.
//   fn.occlusion.paste_boxes(images, boxes, partners[, partner_index])
//       CutMix (Yun et al. 2019, Algorithm A1; clovaai/CutMix-PyTorch train.py
//       `input[:, :, y0:y1, x0:x1] = input[rand_index, :, y0:y1, x0:x1]`), SaliencyMix and
//       KeepAugment's selective-paste: the pixels inside the boxes come from the partner at the
//       same location.  Without `partner_index` the partner of sample i is partners[i]; with it,
//       partners[partner_index[i]] (so `partners` can be the batch itself: no permute_batch copy);
//       an index of -1 leaves the sample unchanged.
//   fn.occlusion.box_search(saliency, draws[, map_index], method=...) (CPU and CUDA)
//       SaliencyMix peak box, Fong & Vedaldi max window, KeepAugment selective cut / paste (their
//       box rules in kernels/boxes.h, restated in NumPy by tests/oracles.py); the CUDA kernel
//       (kernels/box_search.cuh, DALI-free) gives the CPU operator's boxes bit for bit.
//
// Boxes are int32 (K, 4) per sample, (y0, x0, y1, x1) half-open in pixels, clipped to the image;
// an empty box (y1 <= y0 or x1 <= x0, e.g. the -1 padding) covers no pixel.  Overlapping boxes
// replace their union once, so `lam` is the union's share (kernels.apply.lam_from_boxes).
//
// Why C++ and not DALI's numba_function: the numba CPU operator runs its samples one after the
// other on one thread and a per-pixel run function cannot memcpy; these run one sample per thread
// of DALI's pool as row memcpy + box fill, and the CUDA version is one launch for the batch.

#ifndef OCCLUSION_BOX_OPS_H_
#define OCCLUSION_BOX_OPS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dali/pipeline/operator/operator.h"

namespace occlusion {

/// Validated shapes of an erase / paste call; computed in Setup on both backends.
struct BoxApplyShapes {
  bool chw = true;   // layout "CHW" (else "HWC")
  bool indexed = false;
};

/// Shared Setup of erase_boxes / paste_boxes: checks inputs, output = images' shape and type.
template <typename Backend>
BoxApplyShapes CheckBoxApplyInputs(const char *op, const ::dali::Workspace &ws, bool paste);

/// Fill values (one per channel, or one for all) checked against the image type.
std::vector<float> CheckFill(const ::dali::OpSpec &spec);

template <typename Backend>
class EraseBoxes : public ::dali::Operator<Backend> {
 public:
  explicit EraseBoxes(const ::dali::OpSpec &spec)
      : ::dali::Operator<Backend>(spec), fill_(CheckFill(spec)) {}

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc,
                 const ::dali::Workspace &ws) override {
    shapes_ = CheckBoxApplyInputs<Backend>("erase_boxes", ws, false);
    const auto &images = ws.Input<Backend>(0);
    CheckFillFits(images.type(), images.shape());
    output_desc.resize(1);
    output_desc[0] = {images.shape(), images.type()};
    return true;
  }
  void RunImpl(::dali::Workspace &ws) override;

 private:
  void CheckFillFits(::dali::DALIDataType type, const ::dali::TensorListShape<> &shape) const {
    for (int i = 0; i < shape.num_samples(); i++) {
      int C = static_cast<int>(shape.tensor_shape_span(i)[shapes_.chw ? 0 : 2]);
      DALI_ENFORCE(fill_.size() == 1 || static_cast<int>(fill_.size()) == C, ::dali::make_string(
          "erase_boxes: argument `fill` has ", fill_.size(), " values; sample ", i, " has ", C,
          " channels (give one value or one per channel)."));
    }
    if (type == DALI_UINT8) {
      for (float f : fill_)
        DALI_ENFORCE(f >= 0 && f <= 255 && f == static_cast<float>(static_cast<int>(f)),
                     ::dali::make_string("erase_boxes: for uint8 images `fill` must hold integers "
                                         "in [0, 255], got ", f, "."));
    }
  }
  std::vector<float> fill_;
  BoxApplyShapes shapes_;
};

template <typename Backend>
class PasteBoxes : public ::dali::Operator<Backend> {
 public:
  explicit PasteBoxes(const ::dali::OpSpec &spec) : ::dali::Operator<Backend>(spec) {}

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc,
                 const ::dali::Workspace &ws) override {
    shapes_ = CheckBoxApplyInputs<Backend>("paste_boxes", ws, true);
    const auto &images = ws.Input<Backend>(0);
    output_desc.resize(1);
    output_desc[0] = {images.shape(), images.type()};
    return true;
  }
  void RunImpl(::dali::Workspace &ws) override;

 private:
  BoxApplyShapes shapes_;
};

/// Per-thread scratch of BoxSearch.
struct SearchScratch {
  std::vector<double> integral;
  std::vector<double> scores;  // KeepAugment region scores, or one grid row of max-window sums
  std::vector<std::pair<double, bool>> tested;  // KeepAugment: (score, passes) of the tries so far
};

/// box_search's arguments, parsed and checked once; shared by both backends.
struct BoxSearchArgs {
  enum class Method { kPeak, kMaxWindow, kKeepCut, kKeepPaste };
  Method method;
  int size, stride, jitter;
  double tau;
  bool quantize;
  bool per_row_size;  // `size` is an argument input: one side per row (KeepCutMix)
  explicit BoxSearchArgs(const ::dali::OpSpec &spec);
  bool keep() const { return method == Method::kKeepCut || method == Method::kKeepPaste; }
  /// The side row `i` searches: `size`, or its per-row value (checked).
  int Size(const ::dali::OpSpec &spec, const ::dali::Workspace &ws, int i) const;
};

/// Setup of box_search on both backends: checks `saliency`, `draws` (their values too on the CPU)
/// and the CPU input `map_index`; returns the map each row searches (-1: none).
template <typename Backend>
std::vector<int> SetupBoxSearch(const BoxSearchArgs &args, const ::dali::Workspace &ws,
                                std::vector<::dali::OutputDesc> &output_desc);

class BoxSearch : public ::dali::Operator<::dali::CPUBackend> {
 public:
  explicit BoxSearch(const ::dali::OpSpec &spec)
      : ::dali::Operator<::dali::CPUBackend>(spec), args_(spec) {}

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc,
                 const ::dali::Workspace &ws) override {
    map_index_ = SetupBoxSearch<::dali::CPUBackend>(args_, ws, output_desc);
    return true;
  }
  void RunImpl(::dali::Workspace &ws) override;

 private:
  using Method = BoxSearchArgs::Method;
  BoxSearchArgs args_;
  std::vector<SearchScratch> scratch_;
  std::vector<int> map_index_;  // per row: the map it searches, -1 for none
};

/// box_search on the GPU: one launch for the batch (kernels/box_search.cuh), the same boxes as the
/// CPU operator.  `map_index` stays a CPU input (the map pointers are resolved on the host).
class BoxSearchGPU : public ::dali::Operator<::dali::GPUBackend> {
 public:
  explicit BoxSearchGPU(const ::dali::OpSpec &spec)
      : ::dali::Operator<::dali::GPUBackend>(spec), args_(spec) {}

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc,
                 const ::dali::Workspace &ws) override {
    map_index_ = SetupBoxSearch<::dali::GPUBackend>(args_, ws, output_desc);
    return true;
  }
  void RunImpl(::dali::Workspace &ws) override;

 private:
  BoxSearchArgs args_;
  std::vector<int> map_index_;
};

template <> void EraseBoxes<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws);
template <> void EraseBoxes<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws);
template <> void PasteBoxes<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws);
template <> void PasteBoxes<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws);

}  // namespace occlusion

#endif  // OCCLUSION_BOX_OPS_H_
