// fn.occlusion.paste_boxes: input checks, the CPU operator on DALI's thread pool, the schema.  See
// paste_boxes.h; the paste itself is the DALI-free kernel paste_boxes_cpu.cc.

#include "paste_boxes/paste_boxes.h"

#include <vector>

#include "common/input_checks.h"
#include "paste_boxes/paste_boxes_cpu.h"

namespace occlusion {

using ::dali::make_string;

template <typename Backend>
PasteShapes CheckPasteInputs(const ::dali::Workspace &ws) {
  constexpr const char *op = "paste_boxes";
  PasteShapes r;
  const auto &images = ws.Input<Backend>(0);
  const auto &boxes = ws.Input<Backend>(1);
  const auto &shape = images.shape();
  const int n = shape.num_samples();
  auto type = images.type();
  DALI_ENFORCE(type == DALI_UINT8 || type == DALI_FLOAT16 || type == DALI_FLOAT, make_string(
      op, ": input `images` must be uint8, float16 or float32, got ", type, "."));
  DALI_ENFORCE(shape.sample_dim() == 3, make_string(
      op, ": input `images` must have 3 dimensions (CHW or HWC), got ", shape.sample_dim(), "."));
  const auto &layout = images.GetLayout();
  DALI_ENFORCE(layout == "CHW" || layout == "HWC", make_string(
      op, ": input `images` must have layout \"CHW\" or \"HWC\", got \"", layout, "\"."));
  r.chw = layout == "CHW";
  CheckBoxes(op, boxes, n);
  const auto &partners = ws.Input<Backend>(2);
  DALI_ENFORCE(partners.type() == type, make_string(
      op, ": `partners` must have the type of `images` (", type, "), got ", partners.type(), "."));
  const auto &pshape = partners.shape();
  r.indexed = ws.NumInput() > 3;
  if (!r.indexed) {
    DALI_ENFORCE(pshape == shape, make_string(
        op, ": without `partner_index`, `partners` must have the shape of `images` sample by "
        "sample; got ", pshape, " and ", shape, "."));
    return r;
  }
  // Any row may take any partner: every image and partner must share one shape.
  if (n > 0) {
    CheckOneShape(op, "images", shape, shape[0]);
    CheckOneShape(op, "partners", pshape, shape[0]);
  }
  CheckRowIndex(op, "partner_index", ws.Input<Backend>(3), n);
  return r;
}

template PasteShapes CheckPasteInputs<::dali::CPUBackend>(const ::dali::Workspace &);
template PasteShapes CheckPasteInputs<::dali::GPUBackend>(const ::dali::Workspace &);

template <>
void PasteBoxes<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws) {
  const auto &images = ws.Input<::dali::CPUBackend>(0);
  const auto &boxes = ws.Input<::dali::CPUBackend>(1);
  const auto &partners = ws.Input<::dali::CPUBackend>(2);
  auto &out = ws.Output<::dali::CPUBackend>(0);
  out.SetLayout(images.GetLayout());
  const auto &shape = images.shape();
  const int n = shape.num_samples();
  std::vector<int> src(n);
  if (shapes_.indexed) {
    src = ReadRowIndex("paste_boxes", "partner_index", ws.Input<::dali::CPUBackend>(3),
                       partners.num_samples());
  } else {
    for (int i = 0; i < n; i++) src[i] = i;
  }
  const int elem_bytes = static_cast<int>(images.type_info().size());
  auto &tp = ws.GetThreadPool();
  for (int i = 0; i < n; i++) {
    auto s = shape.tensor_shape_span(i);
    const int C = static_cast<int>(shapes_.chw ? s[0] : s[2]);
    const int H = static_cast<int>(shapes_.chw ? s[1] : s[0]);
    const int W = static_cast<int>(shapes_.chw ? s[2] : s[1]);
    // a row without partner keeps its pixels
    const void *partner = src[i] < 0 ? nullptr : partners.raw_tensor(src[i]);
    tp.AddWork([&, i, H, W, C, partner](int) {
      kernels::PasteBoxesCpu(images.raw_tensor(i), out.raw_mutable_tensor(i), partner, elem_bytes,
                             shapes_.chw, H, W, C, boxes.tensor<int32_t>(i),
                             static_cast<int>(boxes.shape()[i][0]));
    }, static_cast<int64_t>(H) * W * C);
  }
  tp.RunAll();
}

}  // namespace occlusion

DALI_REGISTER_OPERATOR(occlusion__PasteBoxes, ::occlusion::PasteBoxes<::dali::CPUBackend>,
                       ::dali::CPU);

DALI_SCHEMA(occlusion__PasteBoxes)
    .DocStr(R"code(Pastes a partner's pixels into each sample's boxes, at the same location:
CutMix (Yun et al. 2019, Algorithm A1: ``input[:, :, y0:y1, x0:x1] = input[rand_index, :, y0:y1,
x0:x1]``), SaliencyMix, KeepAugment's selective-paste.

Without ``partner_index`` sample ``i`` takes ``partners[i]``; with it, ``partners[partner_index[i]]``,
so ``partners`` may be the images themselves (no ``permute_batch`` copy); ``-1`` leaves the sample
unchanged.  On the CPU an index outside ``[-1, len(partners))`` raises; the GPU kernel cannot raise
and treats it as ``-1``.

The boxes are a regular input, so boxes searched inside the pipeline (on the GPU, from a saliency
map) can drive it.  Boxes are int32 ``(K, 4)`` per sample, ``(y0, x0, y1, x1)`` half-open in pixels,
clipped to the image; empty boxes (e.g. ``-1`` padding) cover nothing; overlaps are pasted once
(their union).)code")
    .NumInput(3, 4)
    .InputDox(0, "images", "TensorList", "``CHW`` or ``HWC`` uint8 / float16 / float32 images.")
    .InputDox(1, "boxes", "TensorList", "int32 ``(K, 4)`` boxes per sample.")
    .InputDox(2, "partners", "TensorList", "Images to take the boxes' pixels from (same type).")
    .InputDox(3, "partner_index", "TensorList", "Optional int32 scalar per sample: the partner row.")
    .NumOutput(1);

