# make demo : set everything up, then train on the built-in demo data (CPU here, GPU where there is one)
# make test : set everything up, then run the whole test suite
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := build/.setup-stamp

.PHONY: setup build demo test bench pictures clean gpu-vectors gpu-check

# Python dependencies are pinned in pyproject.toml; torch/torchvision wheels come from this machine's disk.
$(STAMP): pyproject.toml CMakeLists.txt $(shell find dali_ops/csrc -type f)
	# cupy-cuda13x replaces cupy-cuda12x (both install the `cupy` package): one CUDA stack (docs/gpu_and_cuda.md)
	-$(PIP) uninstall -y cupy-cuda12x
	$(PIP) install "scikit-build-core>=0.10" "nvidia-dali-cuda120==2.4.0" "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install --no-build-isolation -e ".[test]"
	mkdir -p build && touch $(STAMP)

setup: $(STAMP)

build: setup
	$(PIP) install --no-build-isolation --no-deps -e .

demo: setup
	$(PYTHON) train_example.py --demo --epochs 2 --image-size 128

test: setup
	$(PYTHON) -m pytest -q

bench: setup
	$(PYTHON) -m bench.loader_bench --repeats 5 --batches 30 --methods none,cutout,hide_and_seek,cutmix,mixup,cutmix_mixup,saliencymix,saliency_occlusion,keep_cutout,keep_paste,keep_cutmix
	$(PYTHON) -m bench.saliency_bench --repeats 15
	$(PYTHON) -m bench.kernels_bench --out results/kernels_bench.json
	$(PYTHON) -m bench.bank_bench --repeats 9
	$(PYTHON) -m bench.feedback_bench --repeats 8
	$(PYTHON) -m bench.ops_bench
	$(PYTHON) -m bench.sweep_memory --sizes 250,1000
	$(PYTHON) -m bench.scale_bench --repeats 3
	$(PYTHON) -m bench.plot results/loader_bench.json --out-dir docs

# the pictures of docs/methods.md: one grid per method family on the demo data (160 px, seed 0), and the loader benchmark plot
SHOW = $(PYTHON) -m pipelines.tools.show $$($(PYTHON) -m pipelines.data.demo_data) --size 160 --rows 4 --copies 2
pictures: setup
	$(PYTHON) -m bench.plot results/loader_bench.json --out-dir docs
	$(SHOW) --method "hide_and_seek:patch_sizes=(40,)" --p-keep-image 1.0,0.0 --out docs/grid_hide_and_seek.png
	$(SHOW) --method cutout --copy-mode batch_aug --out docs/grid_cutout.png
	$(SHOW) --method cutmix --out docs/grid_cutmix.png
	$(SHOW) --method mixup --out docs/grid_mixup.png
	$(SHOW) --method "saliency_occlusion:size=40,jitter=12" --out docs/grid_saliency_occlusion.png
	$(SHOW) --method keep_cutout:size=40 --out docs/grid_keep_cutout.png

clean:
	rm -rf build dali_ops/*.so dali_ops/_build_info.txt

# GPU check without DALI (issue 9). gpu-vectors (here, with DALI): inputs and CPU-operator outputs of every
# CUDA kernel as small .npz files in tests/gpu_vectors/ (committed). gpu-check (on a GPU machine with torch and
# nvcc, no DALI): builds dali_ops/csrc/*/*_gpu.cuh into a torch extension for sm_90, checks it against the vectors
# and the training side's torch rules on the GPU against the CPU, bit for bit, times each per 256 x 224^2 batch
# -> $(OUT)/gpu_check.json.
OUT ?= results

gpu-vectors: setup
	$(PYTHON) tests/gpu_check/make_vectors.py --out tests/gpu_vectors

gpu-check:
	$(PYTHON) tests/gpu_check/run.py --out $(OUT)
