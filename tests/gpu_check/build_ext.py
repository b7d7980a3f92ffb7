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


NAME = "occlusion_gpu_check"
TORCH_NVCC_FLAGS = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__"]


def build(build_dir: Path, verbose: bool = False, arch: str = "9.0"):
    """Compile ``tests/gpu_check/ext.cu`` (+ ``dali_ops/csrc/*/*_gpu.cuh``) and import it.

    Returns ``(module, seconds)``. Only ``arch`` is compiled (SASS, no PTX): the check machine is one
    H200, and one architecture keeps the build well inside the check's time budget. With ninja (what
    ``torch.utils.cpp_extension.load`` needs) torch builds it; without ninja, or with
    ``OCC_GPU_CHECK_DIRECT=1``, one nvcc command does (:func:`build_direct`), so a machine without ninja
    still runs the check.
    """
    home = cuda_home()
    if home:
        os.environ["CUDA_HOME"] = home  # read when torch.utils.cpp_extension is first imported
    from torch.utils import cpp_extension as ce

    if os.environ.get("OCC_GPU_CHECK_DIRECT") == "1" or not ce.is_ninja_available():
        return build_direct(Path(build_dir), home, arch, verbose)
    return build_ninja(Path(build_dir), home, arch, verbose)


def _paths(fn):
    """include_paths / library_paths for CUDA across torch versions (cuda=True or device_type="cuda")."""
    try:
        return fn(device_type="cuda")
    except TypeError:
        return fn(cuda=True)


def build_direct(build_dir: Path, home, arch: str, verbose: bool):
    """nvcc ext.cu -> a Python extension module in build_dir, then import it (no ninja, no setuptools)."""
    import importlib.util
    import subprocess
    import sysconfig

    import torch
    from torch.utils import cpp_extension as ce

    build_dir.mkdir(parents=True, exist_ok=True)
    cc = arch.replace(".", "")
    so = build_dir / f"{NAME}_direct{sysconfig.get_config_var('EXT_SUFFIX')}"
    nvcc = f"{home}/bin/nvcc" if home else "nvcc"
    libdirs = _paths(ce.library_paths) + ([f"{home}/lib64", f"{home}/lib"] if home else [])
    cmd = [nvcc, "-O3", "-std=c++20", "-shared", "-Xcompiler", "-fPIC", f"-gencode=arch=compute_{cc},code=sm_{cc}",
           "--expt-relaxed-constexpr", "--cudart", "shared", *TORCH_NVCC_FLAGS,
           f"-DTORCH_EXTENSION_NAME={NAME}", "-DTORCH_API_INCLUDE_EXTENSION_H",
           f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
           *[f"-I{p}" for p in [str(ROOT / "dali_ops" / "csrc"), *_paths(ce.include_paths),
                                sysconfig.get_paths()["include"]]],
           str(ROOT / "tests" / "gpu_check" / "ext.cu"),
           *[f"-L{p}" for p in libdirs if os.path.isdir(p)],
           "-lc10", "-lc10_cuda", "-ltorch", "-ltorch_cpu", "-ltorch_cuda", "-ltorch_python", "-o", str(so)]
    t0 = time.perf_counter()
    if verbose:
        print(" ".join(cmd))
    subprocess.run(cmd, check=True)
    spec = importlib.util.spec_from_file_location(NAME, so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, time.perf_counter() - t0


def build_ninja(build_dir: Path, home, arch: str, verbose: bool):
    if home:
        os.environ["CUDA_HOME"] = home  # read when torch.utils.cpp_extension is first imported
    from torch.utils import cpp_extension

    os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    build_dir.mkdir(parents=True, exist_ok=True)
    cc = arch.replace(".", "")
    t0 = time.perf_counter()
    mod = cpp_extension.load(
        name=NAME,
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
