// Host emulation of the one cub primitive fine_grained_saliency_gpu.cuh uses (see ../../cuda_runtime.h):
// cub::BlockScan<T, N>::InclusiveSum(value, prefix, total) over the block's threads in linear order,
// through the block-wide exchange buffer between two barriers (every thread of the block calls it).
#ifndef OCC_CUDA_EMULATION_CUB_BLOCK_SCAN_CUH_
#define OCC_CUDA_EMULATION_CUB_BLOCK_SCAN_CUH_

#include <cstdint>
#include <cstring>

#include "cuda_runtime.h"

namespace cub {

template <typename T, int kThreads>
struct BlockScan {
  struct TempStorage {};
  explicit BlockScan(TempStorage &) {}

  void InclusiveSum(T value, T &prefix, T &total) {
    static_assert(sizeof(T) <= 8, "8-byte lanes");
    const unsigned t = occ_emu::LinearThread();
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    occ_emu::xchg[t] = bits;
    __syncthreads();
    T run = T(), all = T();
    for (unsigned i = 0; i < blockDim.x * blockDim.y * blockDim.z; i++) {
      T v;
      std::memcpy(&v, &occ_emu::xchg[i], sizeof(T));
      all = all + v;
      if (i == t) run = all;
    }
    prefix = run;
    total = all;
    __syncthreads();
  }
};

}  // namespace cub

#endif  // OCC_CUDA_EMULATION_CUB_BLOCK_SCAN_CUH_
