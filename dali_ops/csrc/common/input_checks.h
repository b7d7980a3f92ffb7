// Input checks shared by the DALI shells of the box operators (box_search, normalize_occlude,
// paste_boxes): the boxes and row-index inputs.  Host code, DALI's types; the rules the checked
// values then follow (clipping, -1 padding) are DALI-free in common/boxes.h.
//
//   boxes        int32 (K, 4) per sample, (y0, x0, y1, x1) half-open in pixels, any K >= 0;
//                clipped to the image, an empty box (e.g. -1 padding) covers nothing.
//   row index    int32, one value per sample: a row of another batch (a partner, a map),
//                -1 for none.

#ifndef OCCLUSION_COMMON_INPUT_CHECKS_H_
#define OCCLUSION_COMMON_INPUT_CHECKS_H_

#include <cstdint>
#include <vector>

#include "dali/pipeline/operator/operator.h"

namespace occlusion {

/// `boxes` is int32 (K, 4) per sample, n samples.
template <typename Backend>
void CheckBoxes(const char *op, const ::dali::TensorList<Backend> &boxes, int n) {
  DALI_ENFORCE(boxes.type() == DALI_INT32, ::dali::make_string(
      op, ": input `boxes` must be int32 (K, 4) per sample, got ", boxes.type(), "."));
  DALI_ENFORCE(boxes.num_samples() == n, ::dali::make_string(
      op, ": `boxes` has ", boxes.num_samples(), " samples, `images` ", n, "."));
  const auto &shape = boxes.shape();
  for (int i = 0; i < n; i++) {
    DALI_ENFORCE(shape.sample_dim() == 2 && shape.tensor_shape_span(i)[1] == 4, ::dali::make_string(
        op, ": input `boxes` must be (K, 4) per sample (y0, x0, y1, x1), sample ", i,
        " has shape ", shape[i], "."));
  }
}

/// `index` (named `name`) holds one int32 per sample, n samples.
template <typename Backend>
void CheckRowIndex(const char *op, const char *name, const ::dali::TensorList<Backend> &index,
                   int n) {
  DALI_ENFORCE(index.type() == DALI_INT32 && index.num_samples() == n, ::dali::make_string(
      op, ": `", name, "` must be one int32 per sample (", n, " samples), got ",
      index.num_samples(), " samples of ", index.type(), "."));
  for (int i = 0; i < n; i++) {
    DALI_ENFORCE(index.shape()[i].num_elements() == 1, ::dali::make_string(
        op, ": `", name, "` sample ", i, " must hold one value, has shape ", index.shape()[i],
        "."));
  }
}

/// The values of a checked CPU row index, each in [-1, rows) (-1: none).
inline std::vector<int> ReadRowIndex(const char *op, const char *name,
                                     const ::dali::TensorList<::dali::CPUBackend> &index,
                                     int rows) {
  std::vector<int> v(index.num_samples());
  for (int i = 0; i < index.num_samples(); i++) {
    v[i] = index.tensor<int32_t>(i)[0];
    DALI_ENFORCE(v[i] >= -1 && v[i] < rows, ::dali::make_string(
        op, ": `", name, "` of sample ", i, " is ", v[i], "; expected -1 (none) or a row in [0, ",
        rows, ")."));
  }
  return v;
}

/// Every sample of `shape` equals `first` (any row may take any other row's pixels).
inline void CheckOneShape(const char *op, const char *what, const ::dali::TensorListShape<> &shape,
                          const ::dali::TensorShape<> &first) {
  for (int i = 0; i < shape.num_samples(); i++) {
    DALI_ENFORCE(shape[i] == first, ::dali::make_string(
        op, ": with `partner_index`, every sample of `", what, "` must have the shape ", first,
        "; sample ", i, " is ", shape[i], "."));
  }
}

}  // namespace occlusion

#endif  // OCCLUSION_COMMON_INPUT_CHECKS_H_
