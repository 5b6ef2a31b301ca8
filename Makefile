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
TORCH_VERSION := from importlib.metadata import version; print(version('torch').split('+')[0])
PYTEST_ARGS ?=
# two pytest-xdist workers, one test file each at a time (a file's module fixtures, e.g. the wheel's venv,
# are then built once); `make test PYTEST_WORKERS=0` runs serially
PYTEST_WORKERS ?= 2

.PHONY: install demo test lint e2e doctor clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml hatch_build.py nnunet_robustness/shim/template.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# torch's version is read from its metadata: importing torch before numpy is installed warns
	@if $(BIN)/python -c "import importlib.util as u; exit(u.find_spec('torch') is None)"; then \
		echo "keeping installed torch $$($(BIN)/python -c "$(TORCH_VERSION)")"; \
	else \
		$(BIN)/python -m pip install $(TORCH); \
	fi
	# pin the torch now installed so that no dependency can swap it for another build
	$(BIN)/python -m pip install -e ".[test]" \
		"torch==$$($(BIN)/python -c "$(TORCH_VERSION)")"
	# editable installs do not always place the trainer shim inside nnunetv2; this is idempotent
	$(BIN)/nnunet-robust install-shim
	touch $@

# Main job: synthetic data -> three nnU-Net models -> robustness report (demo_output/evaluation/report.html).
demo: install
	$(BIN)/nnunet-robust demo -o demo_output

# The whole suite, as CI runs it (.ci/run): lint and import order (ruff), then every test, including the
# wheel installed into a fresh environment (tests/test_wheel_install.py).
test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

# The end-to-end path through nnU-Net's real CLIs (plan, train our trainers, predict, evaluate).
e2e: install
	$(BIN)/python -m pytest -m e2e -v $(PYTEST_ARGS)

doctor: install
	$(BIN)/nnunet-robust doctor

clean:
	rm -rf $(VENV) .pytest_cache build dist
