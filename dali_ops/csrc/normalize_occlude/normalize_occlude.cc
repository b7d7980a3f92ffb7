// fn.occlusion.normalize_occlude: checks, the CPU operator on DALI's thread pool and the schema.  See
// normalize_occlude.h; the CPU kernel is the DALI-free template normalize_occlude_cpu.h, instantiated
// here for float and float16 (so this file is compiled with -ffp-contract=off, see CMakeLists.txt).

#include "normalize_occlude/normalize_occlude.h"

#include <cmath>

#include "common/input_checks.h"
#include "dali/core/float16.h"
#include "dali/core/static_switch.h"
#include "normalize_occlude/normal_table.h"
#include "normalize_occlude/normalize_occlude_cpu.h"

namespace occlusion {

using ::dali::make_string;

namespace {

std::vector<float> PerChannel(const char *name, const std::vector<float> &v, int C) {
  DALI_ENFORCE(v.size() == 1 || static_cast<int>(v.size()) == C, make_string(
      "normalize_occlude: argument `", name, "` has ", v.size(), " values; the images have ", C,
      " channels (give one value or one per channel)."));
  return v.size() == 1 ? std::vector<float>(C, v[0]) : v;
}

}  // namespace

template <typename Backend>
float NormalizeOcclude<Backend>::Blend(const ::dali::Workspace &ws, int sample) const {
  const float w = this->spec_.template GetArgument<float>("blend", &ws, sample);
  DALI_ENFORCE(std::isfinite(w) && w >= 0.f && w <= 1.f, make_string(
      "normalize_occlude: argument `blend` must be in [0, 1] (the weight of the row's own pixels), got ",
      w, " for sample ", sample, "."));
  return w;
}

template <typename Backend>
std::vector<const float *> NormalizeOcclude<Backend>::ColorParams(const ::dali::Workspace &ws, int n) const {
  std::vector<const float *> params;
  if (this->spec_.HasTensorArgument("color")) {
    const auto &color = ws.ArgumentInput("color");
    DALI_ENFORCE(color.type() == DALI_FLOAT && color.num_samples() == n, make_string(
        "normalize_occlude: `color` must be float32, ", kernels::kColorParams, " values per sample (",
        n, " samples), got ", color.num_samples(), " samples of ", color.type(), "."));
    for (int i = 0; i < n; i++) {
      DALI_ENFORCE(color.shape()[i].num_elements() == kernels::kColorParams, make_string(
          "normalize_occlude: `color` of sample ", i, " has shape ", color.shape()[i], "; expected ",
          kernels::kColorParams, " values (A 3x3, B 3x3, b0 3: out = A x + B mean(x) + b0)."));
      params.push_back(color.tensor<float>(i));
    }
  } else if (!color_arg_.empty()) {
    params.assign(n, color_arg_.data());
  }
  for (const float *p : params)
    for (int j = 0; j < kernels::kColorParams; j++)
      DALI_ENFORCE(std::isfinite(p[j]), make_string("normalize_occlude: `color` must be finite, got ", p[j], "."));
  return params;
}

template <typename Backend>
NormalizeOcclude<Backend>::NormalizeOcclude(const ::dali::OpSpec &spec)
    : ::dali::StatelessOperator<Backend>(spec),
      out_type_(spec.GetArgument<::dali::DALIDataType>("dtype")),
      mean_arg_(spec.GetRepeatedArgument<float>("mean")),
      std_arg_(spec.GetRepeatedArgument<float>("std")),
      fill_arg_(spec.GetRepeatedArgument<float>("fill")) {
  const auto mode = spec.GetArgument<std::string>("fill_mode");
  DALI_ENFORCE(mode == "const" || mode == "rand" || mode == "pixel", make_string(
      "normalize_occlude: `fill_mode` must be \"const\", \"rand\" or \"pixel\", got \"", mode, "\"."));
  fill_mode_ = mode == "const" ? kernels::kFillConst : mode == "rand" ? kernels::kFillRand : kernels::kFillPixel;
  if (spec.HasArgument("color") && !spec.HasTensorArgument("color")) {
    color_arg_ = spec.GetRepeatedArgument<float>("color");
    DALI_ENFORCE(static_cast<int>(color_arg_.size()) == kernels::kColorParams, make_string(
        "normalize_occlude: `color` has ", color_arg_.size(), " values; expected ", kernels::kColorParams, "."));
  }
  DALI_ENFORCE(out_type_ == DALI_FLOAT || out_type_ == DALI_FLOAT16, make_string(
      "normalize_occlude: `dtype` must be FLOAT or FLOAT16, got ", out_type_, "."));
  for (float s : std_arg_)
    DALI_ENFORCE(std::isfinite(s) && s != 0.f, make_string(
        "normalize_occlude: `std` must be finite and non-zero, got ", s, "."));
  for (const auto *v : {&mean_arg_, &fill_arg_})
    for (float f : *v)
      DALI_ENFORCE(std::isfinite(f), make_string(
          "normalize_occlude: `mean` and `fill` must be finite, got ", f, "."));
}

template <typename Backend>
bool NormalizeOcclude<Backend>::SetupImpl(std::vector<::dali::OutputDesc> &output_desc,
                                          const ::dali::Workspace &ws) {
  const auto &images = ws.Input<Backend>(0);
  const auto &shape = images.shape();
  const int n = shape.num_samples();
  has_boxes_ = ws.NumInput() > 1;
  DALI_ENFORCE(images.type() == DALI_UINT8 && shape.sample_dim() == 3, make_string(
      "normalize_occlude: input `images` must be HWC uint8, got ", images.type(), " with ",
      shape.sample_dim(), " dimensions."));
  const auto &layout = images.GetLayout();
  DALI_ENFORCE(layout.empty() || layout == "HWC", make_string(
      "normalize_occlude: input `images` must have layout \"HWC\", got \"", layout, "\"."));
  if (has_boxes_) CheckBoxes("normalize_occlude", ws.Input<Backend>(1), n);
  indexed_ = ws.NumInput() > 2;
  int C = n > 0 ? static_cast<int>(shape.tensor_shape_span(0)[2]) : 1;
  ::dali::TensorListShape<3> out_shape(n);
  for (int i = 0; i < n; i++) {
    auto s = shape.tensor_shape_span(i);
    DALI_ENFORCE(s[2] == C, make_string(
        "normalize_occlude: every sample needs the same channel count; sample 0 has ", C,
        ", sample ", i, " has ", s[2], "."));
    out_shape.set_tensor_shape(i, ::dali::TensorShape<3>(s[2], s[0], s[1]));
  }
  DALI_ENFORCE(C == 3 || !(this->spec_.HasTensorArgument("color") || !color_arg_.empty()), make_string(
      "normalize_occlude: `color` needs RGB images (3 channels), got ", C, " channels."));
  if (indexed_) {
    if (n > 0) CheckOneShape("normalize_occlude", "images", shape, shape[0]);
    CheckRowIndex("normalize_occlude", "partner_index", ws.Input<Backend>(2), n);
  }
  mean_ = PerChannel("mean", mean_arg_, C);
  fill_ = PerChannel("fill", fill_arg_, C);
  auto std = PerChannel("std", std_arg_, C);
  inv_std_.resize(C);
  for (int c = 0; c < C; c++) inv_std_[c] = 1.f / std[c];  // crop_mirror_normalize's inv_stddev
  output_desc.resize(1);
  output_desc[0] = {out_shape, out_type_};
  return true;
}

template <>
void NormalizeOcclude<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws) {
  const auto &images = ws.Input<::dali::CPUBackend>(0);
  auto &out = ws.Output<::dali::CPUBackend>(0);
  out.SetLayout("CHW");
  const auto &shape = images.shape();
  const int n = shape.num_samples();
  std::vector<char> mirror(n);
  std::vector<float> blend(n);
  for (int i = 0; i < n; i++) {
    mirror[i] = Mirror(ws, i);
    blend[i] = Blend(ws, i);
  }
  const std::vector<int> src = indexed_
      ? ReadRowIndex("normalize_occlude", "partner_index", ws.Input<::dali::CPUBackend>(2), n)
      : std::vector<int>(n, -1);
  const kernels::NormalizeChannels channels{mean_.data(), inv_std_.data(), fill_.data()};
  auto &tp = ws.GetThreadPool();
  if (static_cast<int>(spans_.size()) < tp.NumThreads()) spans_.resize(tp.NumThreads());
  // each row's colour transform first: a partner's pixels are pasted with the partner's own
  const auto params = ColorParams(ws, n);
  affine_.resize(params.empty() ? 0 : n);
  for (int i = 0; i < static_cast<int>(params.size()); i++) {
    const int64_t pixels = shape.tensor_shape_span(i)[0] * shape.tensor_shape_span(i)[1];
    tp.AddWork([&, i, pixels](int) {
      uint64_t sums[3];
      kernels::ChannelSums(images.tensor<uint8_t>(i), pixels, sums);
      kernels::ColorAffineOf(params[i], sums, pixels, affine_[i]);
    }, pixels);
  }
  if (!params.empty()) tp.RunAll();
  const float *table = fill_mode_ == kernels::kFillConst ? nullptr : kernels::NormalQuantiles();
  auto source = [&](int row) {
    return kernels::RowSource{images.tensor<uint8_t>(row), mirror[row] != 0,
                              affine_.empty() ? nullptr : &affine_[row]};
  };
  TYPE_SWITCH(out_type_, ::dali::type2id, T, (float, ::dali::float16), (
    for (int i = 0; i < n; i++) {
      auto s = shape.tensor_shape_span(i);
      const int H = static_cast<int>(s[0]), W = static_cast<int>(s[1]), C = static_cast<int>(s[2]);
      // a row without partner (index -1) is left whole; erase when there is no index at all
      const bool occlude = has_boxes_ && !(indexed_ && src[i] < 0);
      const int K = occlude ? static_cast<int>(ws.Input<::dali::CPUBackend>(1).shape()[i][0]) : 0;
      const int32_t *boxes = occlude ? ws.Input<::dali::CPUBackend>(1).tensor<int32_t>(i) : nullptr;
      const bool pasted = occlude && indexed_;
      kernels::EraseFill fill;
      fill.mode = fill_mode_;
      fill.seed = fill_mode_ == kernels::kFillConst ? 0u : NoiseSeed(ws, i);
      fill.table = table;
      tp.AddWork([&, i, H, W, C, K, boxes, pasted, fill](int thread) {
        const kernels::RowSource own = source(i), partner = pasted ? source(src[i]) : own;
        kernels::NormalizeOccludeCpu<T>(own, pasted ? &partner : nullptr, blend[i], boxes, K, H, W, C, channels,
                                        fill, out.mutable_tensor<T>(i), spans_[thread]);
      }, static_cast<int64_t>(H) * W * C);
    }
  ), DALI_FAIL("normalize_occlude: unsupported output type"));  // NOLINT
  tp.RunAll();
}

template class NormalizeOcclude<::dali::CPUBackend>;
template class NormalizeOcclude<::dali::GPUBackend>;  // RunImpl: normalize_occlude.cu

}  // namespace occlusion

DALI_REGISTER_OPERATOR(occlusion__NormalizeOcclude,
                       ::occlusion::NormalizeOcclude<::dali::CPUBackend>, ::dali::CPU);

DALI_SCHEMA(occlusion__NormalizeOcclude)
    .DocStr(R"code(``crop_mirror_normalize`` (HWC uint8 -> CHW float, per-sample mirror, mean / std)
fused with occluding each sample's boxes: Cutout / Hide-and-Seek / Fong & Vedaldi erase (``fill``,
in normalised units: 0 is the dataset mean, the references' fill) or, with ``partner_index``, the
CutMix / SaliencyMix paste of the partner row's normalised pixels (its own mirror) at the same
location (``input[rand_index, :, y0:y1, x0:x1]``).  With a partner, ``blend`` w != 1 makes the pixels
outside the boxes ``own * w + partner * (1 - w)`` of the normalised values (MixUp, Zhang et al. 2018,
arXiv 1710.09412: ``lam * x + (1 - lam) * x[index]``); w = 1 leaves them exactly the row's own.

Pixels outside the boxes are exactly ``crop_mirror_normalize``'s: ``(float(x) - mean) * (1 / std)``.
Boxes are int32 ``(K, 4)`` per sample, ``(y0, x0, y1, x1)`` half-open in output pixels, clipped;
empty boxes (``-1`` padding) cover nothing; overlaps are replaced once.  ``partner_index`` -1
leaves the row whole; on the CPU an index outside ``[-1, batch)`` raises, the GPU kernel treats it
as -1.  Each output value is written once: no separate float copy for the occlusion.)code")
    .NumInput(1, 3)
    .InputDox(0, "images", "TensorList", "HWC uint8 images (the crops).")
    .InputDox(1, "boxes", "TensorList", "Optional int32 (K, 4) boxes per sample (none: normalise only).")
    .InputDox(2, "partner_index", "TensorList", "Optional int32 scalar per sample: paste from that row.")
    .NumOutput(1)
    .AddOptionalArg("mean", "Mean per channel (or one), in pixel units.", std::vector<float>{0.f})
    .AddOptionalArg("std", "Standard deviation per channel (or one), in pixel units.",
                    std::vector<float>{1.f})
    .AddOptionalArg("fill", "Erase value per channel (or one), in normalised units.",
                    std::vector<float>{0.f})
    .AddOptionalArg("mirror", "Per-sample flag: mirror the image horizontally.", 0, true)
    .AddOptionalArg("blend", R"code(Per-sample weight in [0, 1] of the row's own pixels outside its
boxes when it has a partner (the partner's get ``1 - blend``); 1: no blending.)code", 1.f, true)
    .AddOptionalArg("fill_mode", R"code(How erased pixels are filled (Random Erasing's modes, timm's
``RandomErasing(mode=)``): ``"const"`` with ``fill``; ``"rand"`` with one standard normal value per box
and channel; ``"pixel"`` with one per channel and pixel (normalised units).  The noise is a pure
function of the row's ``noise_seed``: the standard normal's quantile at the top 16 bits of SplitMix64
of the seed and a counter (box and channel, or channel and pixel), the same bits on the CPU and the
GPU.  Where boxes overlap, the last box holding a pixel gives its ``"rand"`` value.)code",
                    std::string("const"))
    .AddOptionalArg("noise_seed", "Per-sample seed (int32) of the ``\"rand\"`` / ``\"pixel\"`` fill.", 0, true)
    .AddOptionalArg<std::vector<float>>("color", R"code(Per-sample colour transform applied before the
normalisation (ColorJitter + PCA Lighting of clovaai/CutMix-PyTorch, composed on the host): 21 floats,
``A`` (3x3 row-major), ``B`` (3x3 row-major), ``b0`` (3), in pixel units, giving
``A @ px + B @ mean(px) + b0`` where ``mean(px)`` is the sample's mean colour (exact channel sums).  A
partner's pixels are pasted with the partner's own transform.  RGB images only.)code", nullptr, true)
    .AddOptionalTypeArg("dtype", "Output type: FLOAT or FLOAT16.", DALI_FLOAT);
