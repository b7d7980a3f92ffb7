// The standard normal's quantiles at the midpoints (i + 0.5) / 2^16, i = 0 .. 2^16 - 1, as float32:
// the noise table of normalize_occlude's Random Erasing fills (normalize_occlude_math.h).  Built once
// per process on the host, in double (Acklam's rational approximation refined by Halley steps on
// erfc, accurate to double rounding), and mirrored so that table[N - 1 - i] = -table[i] exactly: the
// noise has mean 0 by construction.  The CPU kernel reads it in place, the CUDA kernel reads a device
// copy of the same floats, so both fill with the same bits.  A draw from it is a normal variate
// quantised to 2^16 levels (|z| <= 4.33); tests/dali_ops/test_cpu_kernels.py checks the table
// against scipy.special.ndtri and the fill's statistics.

#ifndef OCCLUSION_NORMALIZE_OCCLUDE_NORMAL_TABLE_H_
#define OCCLUSION_NORMALIZE_OCCLUDE_NORMAL_TABLE_H_

#include <cmath>
#include <vector>

#include "normalize_occlude/normalize_occlude_math.h"

namespace occlusion {
namespace kernels {

namespace detail {

/// Phi^-1(p) for p in (0, 0.5]: Acklam's approximation (relative error 1.15e-9), then Halley steps.
inline double NormalQuantileLower(double p) {
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  double x;
  if (p < 0.02425) {
    const double q = std::sqrt(-2.0 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  } else {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
  }
  for (int step = 0; step < 3; step++) {  // Halley on Phi(x) - p, Phi(x) = erfc(-x / sqrt 2) / 2
    const double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
    const double u = e * std::sqrt(2.0 * M_PI) * std::exp(0.5 * x * x);
    x -= u / (1.0 + 0.5 * x * u);
  }
  return x;
}

inline std::vector<float> BuildNormalQuantiles() {
  std::vector<float> t(kNormalTableSize);
  for (int i = 0; i < kNormalTableSize / 2; i++) {
    t[i] = static_cast<float>(NormalQuantileLower((i + 0.5) / kNormalTableSize));
    t[kNormalTableSize - 1 - i] = -t[i];
  }
  return t;
}

}  // namespace detail

/// The table (kNormalTableSize floats), built on the first call (thread-safe).
inline const float *NormalQuantiles() {
  static const std::vector<float> table = detail::BuildNormalQuantiles();
  return table.data();
}

}  // namespace kernels
}  // namespace occlusion

#endif  // OCCLUSION_NORMALIZE_OCCLUDE_NORMAL_TABLE_H_
