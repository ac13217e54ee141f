# Two commands on a fresh machine: `make repro` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: repro test venv lock bench clean-venv

# uv installs the pinned set with parallel downloads: 89 s from a cold cache against pip's 182 s (2 cores).
# The bytecode is compiled at install, as pip does: imports would otherwise recompile it wherever
# PYTHONDONTWRITEBYTECODE is set (torch's import: 5.6 s instead of 2.2 s, in every stage).
UV := uv==0.13.9
# The install's wall time goes to .venv/.install_seconds (docs/RESULTS.md reports it).
$(STAMP): requirements.lock pyproject.toml
	start=$$(date +%s); \
	{ test -x $(BIN)/python || $(PY) -m venv $(VENV); } && \
	$(BIN)/pip install -q $(UV) && \
	$(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode -r requirements.lock && \
	$(BIN)/uv pip install --python $(BIN)/python -q --no-deps -e . && \
	echo $$(( $$(date +%s) - start )) > $(VENV)/.install_seconds
	touch $(STAMP)

venv: $(STAMP)

# Stage commands call `python`: the venv's must come first on PATH.
repro: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -q

# grid_recipe.py and vocoders.py measure a finished GRID run (see their docstrings)
bench: $(STAMP)
	for b in benchmarks/features.py benchmarks/roi.py benchmarks/train.py; do $(BIN)/python $$b || exit 1; done

# Re-resolve the pins from requirements.in (needs the package registry).
lock:
	rm -rf /tmp/v2s-lock && $(PY) -m venv /tmp/v2s-lock
	/tmp/v2s-lock/bin/pip install -q -r requirements.in
	/tmp/v2s-lock/bin/pip freeze --exclude-editable | grep -v '^v2s-pipeline' > requirements.lock

clean-venv:
	rm -rf $(VENV)
