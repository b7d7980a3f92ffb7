// paste_boxes on the CPU, DALI-free.  See paste_boxes_cpu.h.

#include "paste_boxes/paste_boxes_cpu.h"

#include <cstring>

#include "common/boxes.h"

namespace occlusion {
namespace kernels {

void PasteBoxesCpu(const void *in, void *out, const void *partner, int elem_bytes, bool chw, int H,
                   int W, int C, const int32_t *boxes, int K) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  std::memcpy(out, in, plane * C * elem_bytes);
  if (!partner) return;
  auto *dst = static_cast<char *>(out);
  const auto *src = static_cast<const char *>(partner);
  // Row copies: CHW rows are per channel, HWC rows hold all channels.
  for (int k = 0; k < K; k++) {
    ClippedBox b;
    if (!ClipBox(boxes + 4 * k, H, W, b)) continue;
    const int64_t bw = b.x1 - b.x0;
    if (chw) {
      for (int c = 0; c < C; c++) {
        for (int y = b.y0; y < b.y1; y++) {
          const int64_t off = (c * plane + static_cast<int64_t>(y) * W + b.x0) * elem_bytes;
          std::memcpy(dst + off, src + off, bw * elem_bytes);
        }
      }
    } else {
      for (int y = b.y0; y < b.y1; y++) {
        const int64_t off = (static_cast<int64_t>(y) * W + b.x0) * C * elem_bytes;
        std::memcpy(dst + off, src + off, bw * C * elem_bytes);
      }
    }
  }
}

}  // namespace kernels
}  // namespace occlusion
