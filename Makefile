# `make test` works on a fresh machine that has nothing but Python >= 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The CPU wheel of torch is installed only when no torch is present, so a GPU host keeps its CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "torch==2.13.0"
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The service on this machine: the API on $PORT (default 8000), one render worker and the webhook worker.
# Needs PAINTS_UNDO_API_KEYS; PAINTS_UNDO_MODEL=tiny where the real weights are not downloaded. Ctrl+C stops all.
run: install
	mkdir -p data
	$(BIN)/python -m api.preflight
	trap 'kill 0' EXIT; \
	$(BIN)/python -m worker.render_worker & \
	$(BIN)/python -m worker.webhook_worker & \
	$(BIN)/uvicorn --factory api.main:create_app --host 127.0.0.1 --port $${PORT:-8000}

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
