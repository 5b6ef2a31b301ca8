# Set-up and tests for nnunet-robustness. Everything goes into a virtual environment ($(VENV)).
#
# torch: a torch already importable in the venv is kept (GPU users: install your CUDA build into
# .venv first, or pass TORCH="torch==X.Y.Z --index-url https://download.pytorch.org/whl/cuXYZ").
# Otherwise $(TORCH) is installed before anything that depends on it, so pip never pulls the
# multi-GB CUDA wheels on a CPU-only machine.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install demo test e2e doctor clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "keeping installed torch $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else \
		$(BIN)/python -m pip install $(TORCH); \
	fi
	# pin the torch now installed so that no dependency can swap it for another build
	$(BIN)/python -m pip install -e ".[test]" \
		"torch==$$($(BIN)/python -c 'import torch; print(torch.__version__.split("+")[0])')"
	# editable installs do not always place the trainer shim inside nnunetv2; this is idempotent
	$(BIN)/nnunet-robust install-shim
	touch $@

# Main job: synthetic data -> three nnU-Net models -> robustness report (demo_output/evaluation/report.html).
demo: install
	$(BIN)/nnunet-robust demo -o demo_output

# The whole suite, as CI runs it (.ci/run).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The end-to-end path through nnU-Net's real CLIs (plan, train our trainers, predict, evaluate).
e2e: install
	$(BIN)/python -m pytest -m e2e -v $(PYTEST_ARGS)

doctor: install
	$(BIN)/nnunet-robust doctor

clean:
	rm -rf $(VENV) .pytest_cache build dist
