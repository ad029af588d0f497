# Two commands do everything on a fresh machine:
#   make reproduce   the main job: synthetic DEAP -> faces -> every notebook (papermill) -> figures/
#   make test        unit tests + a smoke run of every notebook
# Both create .venv from the pinned requirements when it is missing or out of date.

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
PROFILE  ?= cpu
DEAP_ROOT ?=
DATA     ?= data
BUILD    ?= build
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
PYTEST_WORKERS ?= 2

.PHONY: bench-train readme-results venv lab html test test-unit test-notebooks reproduce gpu-env gpu-check bench bench-scan bench-model bench-models bench-data bench-difficulty lock clean

$(STAMP): requirements.txt requirements-lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

## Students: JupyterLab on notebooks/ from .venv; the course as an offline website in build/site/ from the executed
## notebooks (run make reproduce first, any profile; msvssm.site: maths as MathML, no network needed).
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

html: $(STAMP)
	$(BIN)/python -m msvssm.site --notebooks $(BUILD)/notebooks --out $(BUILD)/site --results $(BUILD)/results.md

## Tests: unit tests, then every notebook with the tiny "smoke" profile.
test: test-unit test-notebooks

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) -m "not notebook and not gpu" tests

test-notebooks: $(STAMP)
	$(BIN)/python -m pytest -q -m notebook tests

## The main job: prepare the profile's data (resumable), run every notebook, write figures/.
##   make reproduce PROFILE=cpu-cv            the longer CPU course: the trial and subject splits cross-validated
##                                            (3 folds; frame-split runs shared with cpu); its figures go to
##                                            build/figures-cpu-cv/ (figures/ holds the cpu profile's)
##   make reproduce PROFILE=gpu               in the GPU environment (GPU_PYTHON; default .venv-gpu, built with
##                                            the [gpu] extra: mamba-ssm compiles against its torch, README GPU)
##   make reproduce PROFILE=gpu DRY_RUN=1     checks the environment, trains the paper-scale config 2 steps
##   make reproduce PROFILE=gpu DRY_RUN=1 DEVICE=cpu   the same code path on a CPU (in .venv)
##   make reproduce JOBS=1                    training runs at once before the notebooks (default: the profile's:
##                                            cpu 2 of one thread each, gpu one per GPU; msvssm.train.plan)
DRY_RUN  ?=
DEVICE   ?=
JOBS     ?=
FIGURES  ?= $(if $(filter cpu-cv,$(PROFILE)),$(BUILD)/figures-cpu-cv,figures)
GPU_VENV ?= .venv-gpu
GPU_PYTHON ?= $(GPU_VENV)/bin/python
MAX_JOBS ?= 4
REPRO_PY  := $(BIN)/python
REPRO_ENV := $(STAMP)
ifeq ($(PROFILE),gpu)
ifneq ($(DEVICE),cpu)
REPRO_PY  := $(GPU_PYTHON)
REPRO_ENV := gpu-env
endif
endif

reproduce: $(REPRO_ENV)
	$(REPRO_PY) -m msvssm.reproduce --profile $(PROFILE) --data $(DATA) --out $(BUILD)/notebooks --results $(BUILD)/results.md --figures $(FIGURES) $(if $(DEAP_ROOT),--deap-root $(DEAP_ROOT)) $(if $(DRY_RUN),--dry-run) $(if $(DEVICE),--device $(DEVICE)) $(if $(JOBS),--jobs $(JOBS)) $(NOTEBOOKS)

## After make reproduce (profile cpu or cpu-cv): keep its results.md as docs/results_cpu.md (or docs/results_cpu_cv.md)
## and regenerate the README's Results block of that profile from it (msvssm.results.keep_reproduction;
## tests/test_results.py checks that the README and both files agree).
readme-results: $(STAMP)
	$(BIN)/python -m msvssm.results $(BUILD)/results.md .

## The GPU environment: a venv with the pinned requirements and the [gpu] extra (mamba-ssm, compiled
## against this torch with nvcc of the same CUDA major; MAX_JOBS bounds the compiler's memory).
## Skipped when GPU_PYTHON points at an environment of your own (the README's conda env).
ifeq ($(GPU_PYTHON),$(GPU_VENV)/bin/python)
gpu-env: $(GPU_VENV)/.installed
else
gpu-env:
	$(GPU_PYTHON) -c "import msvssm" || { echo "$(GPU_PYTHON) has no msvssm: pip install -e '.[notebooks,gpu]' --no-build-isolation there"; exit 1; }
endif

$(GPU_VENV)/.installed: requirements.txt requirements-lock.txt pyproject.toml
	test -x $(GPU_VENV)/bin/python || $(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(GPU_VENV)/bin/python -m pip install --quiet -r requirements.txt -c requirements-lock.txt
	@# before compiling mamba-ssm: a torch that sees no GPU (old driver, no driver) says so, not a compile error
	$(GPU_VENV)/bin/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'torch ' + \
	  torch.__version__ + ' (CUDA ' + str(torch.version.cuda) + ') sees no usable GPU: check nvidia-smi; an older \
	  driver needs torch from the wheel index of its CUDA (README, GPU section)')"
	MAX_JOBS=$(MAX_JOBS) MAMBA_KEEP_CUDA_BUILD=TRUE $(GPU_VENV)/bin/python -m pip install --no-build-isolation \
	  -c requirements-lock.txt -e ".[gpu]"
	$(GPU_VENV)/bin/python -m msvssm.cli info
	touch $@

## On a GPU machine: the environment, msvssm info, the gpu-marked tests, training img/s at 224 (one script, < 10 min).
gpu-check:
	bash tools/gpu_check.sh

## Benchmarks: speed and memory, measured side by side, printed as ratios.
bench: bench-scan bench-model bench-train bench-data

$(VENV)/.bench: $(STAMP) requirements-bench.txt
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	touch $@

bench-scan: $(VENV)/.bench
	$(BIN)/python benchmarks/bench_scan.py

bench-model: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py

## Training throughput: data paths, fp32 / bf16 / AdamW variants, peak memory (needs the cpu-profile data).
bench-train: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py --data $(DATA)/faces-synth-default-128

## Cost table of every model compared (VSSM, MS-VSSM, RepViT, DilateFormer): params, FLOPs, throughput.
bench-models: $(STAMP)
	$(BIN)/python benchmarks/bench_models.py --out $(BUILD)/bench/models

bench-data: $(STAMP)
	$(BIN)/python benchmarks/bench_data.py

## How separable the synthetic DEAP is under each split protocol (linear baselines).
bench-difficulty: $(STAMP)
	$(BIN)/python benchmarks/data_difficulty.py --data $(DATA)

## Refresh the full pin list after changing requirements.txt.
lock: $(STAMP)
	( echo "# Full transitive freeze used as pip constraints (-c) so a fresh venv matches the tested one."; \
	  echo "# Regenerate with: make lock"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v -e '^msvssm' -e '^mambapy' ) > requirements-lock.txt

clean:
	rm -rf $(BUILD) .pytest_cache
