"""Build the plugin's DALI-free CUDA kernels into a torch extension (sm_90 only), without DALI."""
from __future__ import annotations

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cuda_home() -> str | None:
    """The CUDA toolkit to build with: $CUDA_HOME, else the first of /usr/local/cuda, /usr/local/cuda-*
    that has bin/nvcc and the runtime library (a `nvcc` wrapper script on PATH, as on the dev machine,
    would make torch guess /usr/local, which has no libcudart)."""
    import glob

    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    for home in ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]:
        if os.path.exists(f"{home}/bin/nvcc") and (glob.glob(f"{home}/lib64/libcudart.so*")
                                                   or glob.glob(f"{home}/lib/libcudart.so*")):
            return home
    return None


def build(build_dir: Path, verbose: bool = False, arch: str = "9.0"):
    """Compile ``tests/gpu_check/ext.cu`` (+ ``dali_ops/csrc/kernels/*.cuh``) and import it.

    Returns ``(module, seconds)``. Only ``arch`` is compiled (SASS, no PTX): the check machine is one
    H200, and one architecture keeps the build well inside the check's time budget.
    """
    home = cuda_home()
    if home:
        os.environ["CUDA_HOME"] = home  # read when torch.utils.cpp_extension is first imported
    from torch.utils import cpp_extension

    os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    cc = arch.replace(".", "")
    t0 = time.perf_counter()
    mod = cpp_extension.load(
        name="occlusion_gpu_check",
        sources=[str(ROOT / "tests" / "gpu_check" / "ext.cu")],
        extra_include_paths=[str(ROOT / "dali_ops" / "csrc")],
        extra_cflags=["-O2", "-std=c++20"],
        extra_cuda_cflags=["-O3", "-std=c++20", f"-gencode=arch=compute_{cc},code=sm_{cc}",
                           "--expt-relaxed-constexpr"],
        extra_ldflags=[f"-L{home}/lib64", f"-L{home}/lib"] if home else [],
        build_directory=str(build_dir),
        verbose=verbose,
    )
    return mod, time.perf_counter() - t0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build-dir", default=str(ROOT / "build" / "gpu_check"))
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    mod, sec = build(Path(args.build_dir), args.verbose)
    print(f"built and imported {mod.__name__} ({', '.join(n for n in dir(mod) if not n.startswith('_'))}) "
          f"in {sec:.1f} s")
