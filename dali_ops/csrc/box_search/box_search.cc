// fn.occlusion.box_search: argument and input checks, the CPU operator on DALI's thread pool, the
// schema.  See box_search.h; the search itself is the DALI-free kernel box_search_cpu.cc.

#include "box_search/box_search.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

#include "common/input_checks.h"

namespace occlusion {

using ::dali::make_string;

namespace {

double ParseTau(const std::string &s) {
  char *end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  DALI_ENFORCE(!s.empty() && end == s.c_str() + s.size() && v >= 0 && v <= 1, make_string(
      "box_search: `tau` must be a decimal quantile level in [0, 1], got \"", s, "\"."));
  return v;
}

}  // namespace

BoxSearchArgs::BoxSearchArgs(const ::dali::OpSpec &spec)
    : per_row_size(spec.HasTensorArgument("size")) {
  size = per_row_size ? 0 : spec.GetArgument<int>("size");
  stride = spec.GetArgument<int>("stride");
  jitter = spec.GetArgument<int>("jitter");
  tau = ParseTau(spec.GetArgument<std::string>("tau"));
  quantize = spec.GetArgument<bool>("quantize") ? 1 : 0;
  grid = spec.GetArgument<int>("grid");
  top_k = spec.GetArgument<int>("top_k");
  image_h = image_w = spec.GetArgument<int>("image_size");
  auto m = spec.GetArgument<std::string>("method");
  if (m == "peak") method = kernels::kSearchPeak;
  else if (m == "max_window") method = kernels::kSearchMaxWindow;
  else if (m == "keep_cut") method = kernels::kSearchKeepCut;
  else if (m == "keep_paste") method = kernels::kSearchKeepPaste;
  else if (m == "topk_cells") method = kernels::kSearchTopkCells;
  else
    DALI_FAIL(make_string("box_search: argument `method` must be \"peak\", \"max_window\", "
                          "\"keep_cut\", \"keep_paste\" or \"topk_cells\", got \"", m, "\"."));
  if (method == kernels::kSearchTopkCells) {
    DALI_ENFORCE(grid >= 1, make_string("box_search: `grid` must be >= 1, got ", grid, "."));
    DALI_ENFORCE(top_k >= 0 && top_k <= grid * grid, make_string(
        "box_search: `top_k` must lie in [0, grid * grid] = [0, ", grid * grid, "], got ", top_k, "."));
    DALI_ENFORCE(image_h == 0 || image_h >= grid, make_string(
        "box_search: `image_size` must be 0 (the map's own size) or >= grid (", grid, "), got ", image_h, "."));
  }
  DALI_ENFORCE(stride >= 1, make_string("box_search: `stride` must be >= 1, got ", stride, "."));
  DALI_ENFORCE(jitter >= 0, make_string("box_search: `jitter` must be >= 0, got ", jitter, "."));
  if (method != kernels::kSearchPeak && method != kernels::kSearchTopkCells && !per_row_size)
    DALI_ENFORCE(size >= (method == kernels::kSearchMaxWindow ? 1 : 2), make_string(
        "box_search: `size` must be >= ", method == kernels::kSearchMaxWindow ? 1 : 2, " for \"", m,
        "\", got ", size, "."));
}

int BoxSearchArgs::Size(const ::dali::OpSpec &spec, const ::dali::Workspace &ws, int i) const {
  if (!per_row_size) return size;
  // per row (KeepCutMix: the row's CutMix side, 0 or 1 when lam is near 1: an empty region)
  const int v = spec.GetArgument<int>("size", &ws, i);
  DALI_ENFORCE(v >= (method == kernels::kSearchMaxWindow ? 1 : 0), make_string(
      "box_search: `size` must be >= ", method == kernels::kSearchMaxWindow ? 1 : 0, ", got ", v,
      " for sample ", i, "."));
  return v;
}

template <typename Backend>
std::vector<int> SetupBoxSearch(const BoxSearchArgs &args, const ::dali::Workspace &ws,
                                std::vector<::dali::OutputDesc> &output_desc) {
  const auto &sal = ws.Input<Backend>(0);
  const auto &draws = ws.Input<Backend>(1);
  const int n = sal.num_samples();
  DALI_ENFORCE(sal.type() == DALI_FLOAT && sal.shape().sample_dim() == 2, make_string(
      "box_search: input `saliency` must be (H, W) float32 maps, got ", sal.type(), " with ",
      sal.shape().sample_dim(), " dimensions."));
  DALI_ENFORCE(draws.type() == DALI_INT32 && draws.num_samples() == n, make_string(
      "box_search: input `draws` must be int32, one sample per map (", n, "), got ",
      draws.num_samples(), " samples of ", draws.type(), "."));
  for (int i = 0; i < n; i++) {
    auto d = draws.shape()[i];
    auto s = sal.shape()[i];
    DALI_ENFORCE(s[0] > 0 && s[1] > 0, make_string(
        "box_search: saliency map ", i, " is empty (shape ", s, ")."));
    if (args.method == kernels::kSearchTopkCells) {
      DALI_ENFORCE(s[0] >= args.grid && s[1] >= args.grid, make_string(
          "box_search: \"topk_cells\" needs maps of at least grid x grid (", args.grid, " x ", args.grid,
          ") pixels; saliency map ", i, " has shape ", s, "."));
      continue;  // the draws are not read
    }
    if (args.keep())
      DALI_ENFORCE(d.sample_dim() == 2 && d[0] >= 1 && d[1] == 2, make_string(
          "box_search: `draws` for KeepAugment are (T, 2) candidate centres (cy, cx), T >= 1; "
          "sample ", i, " has shape ", d, "."));
    else
      DALI_ENFORCE(d.num_elements() == 2, make_string(
          "box_search: `draws` for \"", args.method == kernels::kSearchPeak ? "peak" : "max_window",
          "\" are 2 values per sample (", args.method == kernels::kSearchPeak ? "cut_h, cut_w" : "ry, rx",
          "); sample ", i, " has shape ", d, "."));
    if constexpr (std::is_same_v<Backend, ::dali::CPUBackend>) {
      if (args.method == kernels::kSearchMaxWindow && args.jitter > 0) {
        // The shift is lo + r % (hi - lo + 1): r must be a uniform draw in [0, 2^31 - 1).  (The
        // GPU operator cannot read device values in Setup; its kernel keeps any r in the image.)
        for (int k = 0; k < 2; k++) {
          const int32_t r = draws.template tensor<int32_t>(i)[k];
          DALI_ENFORCE(r >= 0 && r < std::numeric_limits<int32_t>::max(), make_string(
              "box_search: `draws` for \"max_window\" are (ry, rx) uniform in [0, 2**31 - 1); "
              "sample ", i, " holds ", r, "."));
        }
      }
    }
  }
  std::vector<int> map_index(n);
  if (ws.NumInput() > 2) {
    const auto &index = ws.Input<::dali::CPUBackend>(2);
    CheckRowIndex("box_search", "map_index", index, n);
    map_index = ReadRowIndex("box_search", "map_index", index, n);
  } else {
    for (int i = 0; i < n; i++) map_index[i] = i;
  }
  output_desc.resize(1);
  output_desc[0] = {::dali::uniform_list_shape(n, ::dali::TensorShape<2>(kernels::SearchBoxes(args), 4)),
                    DALI_INT32};
  return map_index;
}

template std::vector<int> SetupBoxSearch<::dali::CPUBackend>(const BoxSearchArgs &,
    const ::dali::Workspace &, std::vector<::dali::OutputDesc> &);
template std::vector<int> SetupBoxSearch<::dali::GPUBackend>(const BoxSearchArgs &,
    const ::dali::Workspace &, std::vector<::dali::OutputDesc> &);

void BoxSearch::RunImpl(::dali::Workspace &ws) {
  const auto &sal = ws.Input<::dali::CPUBackend>(0);
  const auto &draws = ws.Input<::dali::CPUBackend>(1);
  auto &out = ws.Output<::dali::CPUBackend>(0);
  auto &tp = ws.GetThreadPool();
  if (static_cast<int>(scratch_.size()) < tp.NumThreads()) scratch_.resize(tp.NumThreads());
  for (int i = 0; i < sal.num_samples(); i++) {
    const int m = map_index_[i];
    int32_t *box = out.mutable_tensor<int32_t>(i);
    if (m < 0) {  // row not occluded
      std::fill(box, box + 4 * kernels::SearchBoxes(args_), -1);
      continue;
    }
    int H = static_cast<int>(sal.shape()[m][0]), W = static_cast<int>(sal.shape()[m][1]);
    const int size = args_.Size(spec_, ws, i);
    const int tries = args_.keep() ? static_cast<int>(draws.shape()[i][0]) : 1;
    tp.AddWork([&, i, m, H, W, box, size, tries](int thread) {
      kernels::SearchParams p = args_;
      p.size = size;
      kernels::BoxSearchCpu(p, sal.tensor<float>(m), H, W, draws.tensor<int32_t>(i), tries,
                            scratch_[thread], box);
    }, static_cast<int64_t>(H) * W);
  }
  tp.RunAll();
}

}  // namespace occlusion

DALI_REGISTER_OPERATOR(occlusion__BoxSearch, ::occlusion::BoxSearch, ::dali::CPU);

DALI_SCHEMA(occlusion__BoxSearch)
    .DocStr(R"code(Searches a box in each saliency map.  CPU: one sample per pool thread; GPU: one
launch for the batch, one thread block per row, the CPU operator's boxes bit for bit.

``method="peak"``: SaliencyMix (Uddin et al. 2021, official ``saliency_bbox``): the first maximum
of ``(map * 255).astype(uint8)`` (``quantize=True``) or of the float map; ``draws`` = ``(cut_h,
cut_w)``; box = ``clip(peak -+ cut // 2)``.

``method="max_window"``: Fong & Vedaldi 2019 (arXiv 1910.10651): the first ``size x size`` window of
largest saliency sum on the ``stride`` grid (integral image), at ``(y0, x0)`` in an ``H x W`` map,
then jittered by a shift uniform over the integer shifts within ``+-jitter`` that keep it inside:
``draws`` = ``(ry, rx)`` int32 uniform in ``[0, 2**31 - 1)`` drawn on the host (read only when
``jitter > 0``), ``lo_y = max(-jitter, -y0)``, ``hi_y = min(jitter, H - size - y0)``,
``dy = lo_y + ry % (hi_y - lo_y + 1)`` (same for x); box ``(y0+dy, x0+dx, y0+dy+size, x0+dx+size)``.
A map smaller than the window gives ``(-1, -1, -1, -1)``.

``method="keep_cut" | "keep_paste"``: KeepAugment (Gong et al. 2021, arXiv 2011.11778): region
score = saliency *sum* over the box ``clip(c -+ size // 2)`` around each pixel ``c`` (Eq. 1),
threshold = the ``tau``-quantile of the scores of every pixel as centre (NumPy's linear method,
exactly); ``draws`` = ``(T, 2)`` candidate centres ``(cy, cx)``; the first one scoring below (cut) /
above (paste) the threshold, else the lowest / highest-scoring one (first among equal).

``method="topk_cells"``: Attentive CutMix (Walawalkar et al. 2020, arXiv 2003.13048; openmixup
``attentivemix``): the map is scored on a ``grid x grid`` grid of cells (cells of ``H // grid`` pixels
from 0, the last one also covering the remainder; a cell's score is the mean of the map over it, so
a ``grid x grid`` map is its own grid), the ``top_k`` cells of largest score are kept (the lower
row-major index first among equal scores; NaN ranks lowest), and the output holds the boxes of the
``grid * grid - top_k`` other cells, row-major: the cells the partner pastes.  The boxes are in the
cell geometry of an ``image_size`` square image (0: the map's own size).  Maps need at least
``grid x grid`` pixels; ``draws`` are not read.

With ``map_index``, row ``i`` searches the map ``saliency[map_index[i]]`` with its own draws
(SaliencyMix: the partner's map, no ``permute_batch`` copy of the maps), and ``-1`` gives the
row the box ``(-1, -1, -1, -1)`` (not occluded).

Output: int32 ``(1, 4)`` per sample (``(grid * grid - top_k, 4)`` for ``topk_cells``).)code")
    .NumInput(2, 3)
    .InputDox(0, "saliency", "TensorList", "``(H, W)`` float32 saliency maps.")
    .InputDox(1, "draws", "TensorList", "int32 random draws of the method (see above).")
    .InputDox(2, "map_index", "TensorList", "Optional int32 scalar per row: the map to search, -1: none (CPU input).")
    .InputDevice(2, ::dali::InputDevice::CPU)
    .NumOutput(1)
    .AddArg("method", "``peak``, ``max_window``, ``keep_cut``, ``keep_paste`` or ``topk_cells``.", DALI_STRING)
    .AddOptionalArg("size", R"code(Window side (max_window) or region side (keep_*); per sample as an
argument input (KeepCutMix: the row's CutMix side, >= 0).)code", 56, true)
    .AddOptionalArg("stride", "Window stride (max_window).", 1)
    .AddOptionalArg("jitter", R"code(Jitter amplitude tau in pixels (max_window), >= 0; Fong & Vedaldi
use 16 at 224 px.  0 disables the jitter (the draws are then not read).)code", 16)
    .AddOptionalArg("tau", R"code(Quantile level in [0, 1] (keep_*), as a decimal string: DALI float
arguments are float32, and the level must be the float64 NumPy's quantile gets.)code",
                    std::string("0.6"))
    .AddOptionalArg("quantize", "Peak of the uint8-quantised map, as the reference (peak).", true)
    .AddOptionalArg("grid", "Cells per side (topk_cells); Attentive CutMix's 7.", 7)
    .AddOptionalArg("top_k", "Cells kept from the row's own image (topk_cells); Attentive CutMix's 6.", 6)
    .AddOptionalArg("image_size", R"code(Side of the square image the cell boxes are for (topk_cells); 0:
the map's own size.)code", 0);
