// Host emulation of the few CUDA device features dali_ops/csrc/kernels/box_search.cuh uses, so that
// its kernel can run here (no GPU) in tests/test_box_search_emulated.py: each block runs as blockDim.x
// std::threads, __syncthreads is a std::barrier, a warp shuffle is an exchange through a block-wide
// buffer between two barriers (the kernel calls every shuffle and barrier with the whole block, as the
// real code must), shared memory is a static (blocks run one after the other), the _rn intrinsics are
// plain IEEE operations (what they guarantee: no contraction).  Not a CUDA simulator in general.
#ifndef OCC_CUDA_EMULATION_RUNTIME_H_
#define OCC_CUDA_EMULATION_RUNTIME_H_

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#define OCC_KERNEL_EMULATION 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(n)

typedef int cudaError_t;
typedef void *cudaStream_t;
constexpr cudaError_t cudaSuccess = 0;
inline cudaError_t cudaGetLastError() { return cudaSuccess; }

struct uint3 { unsigned x = 0, y = 0, z = 0; };
struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;

namespace occ_emu {
inline std::barrier<> *bar = nullptr;
inline std::vector<uint64_t> xchg;
}  // namespace occ_emu

inline void __syncthreads() { occ_emu::bar->arrive_and_wait(); }

template <typename T>
inline T __shfl_down_sync(unsigned, T v, int off) {
  static_assert(sizeof(T) <= 8, "8-byte lanes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  const unsigned t = threadIdx.x, lane = t & 31u;
  occ_emu::xchg[t] = bits;
  __syncthreads();
  const uint64_t got = lane + off < 32 ? occ_emu::xchg[t + off] : bits;
  __syncthreads();
  T r;
  std::memcpy(&r, &got, sizeof(T));
  return r;
}

inline unsigned atomicAdd(unsigned *p, unsigned v) {
  return std::atomic_ref<unsigned>(*p).fetch_add(v);
}

inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
inline double __dsub_rn(double a, double b) { volatile double r = a - b; return r; }
inline long long __double_as_longlong(double d) { long long r; std::memcpy(&r, &d, 8); return r; }
inline double __longlong_as_double(long long v) { double r; std::memcpy(&r, &v, 8); return r; }
using std::floor;

namespace occ_emu {
/// Runs `kernel(args...)` for blocks 0..grid-1 of `threads` threads each, one block at a time.
template <typename F>
void Launch(int grid, int threads, F &&kernel) {
  std::barrier<> b(threads);
  bar = &b;
  xchg.assign(threads, 0);
  for (int blk = 0; blk < grid; blk++) {
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int t = 0; t < threads; t++) {
      pool.emplace_back([&, t, blk] {
        threadIdx.x = t;
        blockIdx.x = blk;
        blockDim.x = threads;
        kernel();
      });
    }
    for (auto &th : pool) th.join();
  }
  bar = nullptr;
}
}  // namespace occ_emu

#endif  // OCC_CUDA_EMULATION_RUNTIME_H_
