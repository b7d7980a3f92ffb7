// OCC_MULTIVERSION: compile a hot loop for AVX-512, AVX2 and baseline x86-64 and pick the variant
// at load time, so a portable build still runs vectorised.  Only for loops whose results do not
// depend on the variant (IEEE adds, subtracts, divides and compares of the same operands).

#ifndef OCCLUSION_COMMON_MULTIVERSION_H_
#define OCCLUSION_COMMON_MULTIVERSION_H_

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define OCC_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define OCC_MULTIVERSION
#endif

#include <cstdint>

namespace occlusion {

// GCC vector types for loops written with explicit 8-lane vectors (in-register scans, transposes,
// reductions), which the compiler lowers to the widest registers of each variant.
using I8 = int32_t __attribute__((vector_size(32)));
using F8 = float __attribute__((vector_size(32)));
using D8 = double __attribute__((vector_size(64)));

}  // namespace occlusion

#endif  // OCCLUSION_COMMON_MULTIVERSION_H_
