// Host emulation of the few CUDA device features dali_ops/csrc/box_search/box_search_gpu.cuh and
// fine_grained_saliency/fine_grained_saliency_gpu.cuh use, so that their kernels can run here (no GPU) in
// tests/dali_ops/test_box_search_emulated.py and tests/dali_ops/test_saliency_emulated.py: each block runs as one
// std::thread per thread of the block (1-, 2- or 3-D), __syncthreads is a std::barrier, a warp shuffle
// is an exchange through a block-wide buffer between two barriers (the kernel calls every shuffle and
// barrier with the whole block, as the real code must; warps are 32 consecutive linear thread ids),
// shared memory is a static (blocks run one after the other), the _rn intrinsics are plain IEEE
// operations (what they guarantee: no contraction), cub::BlockScan is cub/block/block_scan.cuh here.
// Not a CUDA simulator in general.
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
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace occ_emu {
inline std::barrier<> *bar = nullptr;
inline std::vector<uint64_t> xchg;
}  // namespace occ_emu

inline void __syncthreads() { occ_emu::bar->arrive_and_wait(); }

namespace occ_emu {
/// The linear thread id within the block (x fastest), which is what makes up warps.
inline unsigned LinearThread() {
  return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

/// Every thread of the block publishes `v`; each gets the value of thread `src(t)` (itself when < 0).
template <typename T, typename F>
inline T Exchange(T v, F src) {
  static_assert(sizeof(T) <= 8, "8-byte lanes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  const unsigned t = LinearThread();
  xchg[t] = bits;
  __syncthreads();
  const long from = src(t);
  const uint64_t got = from >= 0 ? xchg[from] : bits;
  __syncthreads();
  T r;
  std::memcpy(&r, &got, sizeof(T));
  return r;
}
}  // namespace occ_emu

template <typename T>
inline T __shfl_down_sync(unsigned, T v, int off) {
  return occ_emu::Exchange(v, [off](unsigned t) { return (t & 31u) + off < 32 ? long(t + off) : -1L; });
}

template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask) {
  return occ_emu::Exchange(v, [lane_mask](unsigned t) { return long(t ^ unsigned(lane_mask)); });
}

inline unsigned atomicAdd(unsigned *p, unsigned v) {
  return std::atomic_ref<unsigned>(*p).fetch_add(v);
}

inline int atomicMax(int *p, int v) {
  std::atomic_ref<int> a(*p);
  int old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}

inline cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}

using std::max;
using std::min;

inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
inline double __dsub_rn(double a, double b) { volatile double r = a - b; return r; }
inline long long __double_as_longlong(double d) { long long r; std::memcpy(&r, &d, 8); return r; }
inline double __longlong_as_double(long long v) { double r; std::memcpy(&r, &v, 8); return r; }
using std::floor;

namespace occ_emu {
/// Runs `kernel()` for every block of `grid`, `block` threads each, one block at a time: one host thread
/// per thread of the block, kept for the whole grid, with a barrier between blocks (shared statics).
template <typename F>
void Launch(dim3 grid, dim3 block, F &&kernel) {
  const unsigned threads = block.x * block.y * block.z;
  std::barrier<> b(threads);
  bar = &b;
  xchg.assign(threads, 0);
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (unsigned t = 0; t < threads; t++) {
    pool.emplace_back([&, t] {
      blockDim = block;
      gridDim = grid;
      threadIdx.x = t % block.x;
      threadIdx.y = t / block.x % block.y;
      threadIdx.z = t / (block.x * block.y);
      for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
          for (unsigned bx = 0; bx < grid.x; bx++) {
            blockIdx.x = bx;
            blockIdx.y = by;
            blockIdx.z = bz;
            kernel();
            b.arrive_and_wait();  // the block is done before the next one starts
          }
    });
  }
  for (auto &th : pool) th.join();
  bar = nullptr;
}
}  // namespace occ_emu

#endif  // OCC_CUDA_EMULATION_RUNTIME_H_
