# `make test` works on a fresh machine that has nothing but Python >= 3.11.
PYTHON ?= python3
# `make run` waits for the first of its processes to exit (wait -n).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# Every dependency of every role at one exact version (pip constraints). `make lock` refreshes it.
CONSTRAINTS := requirements/constraints.txt
# The extras of this venv: the API, the render worker, the tiny preset and the tests, all in one.
EXTRAS := api,worker,tiny,dev
# Where torch comes from when the venv has none: pip's configured sources (on the CI machine, a local
# CPU wheel). Elsewhere, TORCH_INDEX=https://download.pytorch.org/whl/cpu gets the CPU build.
TORCH_INDEX ?=
UV_VERSION := 0.13.9
# Request headers up to 1 MiB reach the API, which answers past its own limit with a JSON 431 (api/limits.py).
UVICORN_HEADERS := --http h11 --h11-max-incomplete-event-size 1048576

.PHONY: run test lint install lock clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is installed only when the venv has none, so a CUDA build of the locked release stays.
$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || \
		$(BIN)/python -m pip install -c $(CONSTRAINTS) torch $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install -c $(CONSTRAINTS) -e ./clients/python
	touch $@

install: $(VENV)/.installed

# Resolves pyproject.toml's dependencies, all extras, for Linux, macOS and Windows on Python >= 3.11
# (requirements/pins.txt holds the versions chosen on purpose, torch's among them). Pins still allowed
# are kept; `make lock LOCK_FLAGS=--upgrade` moves everything to the newest versions.
lock: | $(BIN)/python
	$(BIN)/python -m pip install "uv==$(UV_VERSION)"
	$(BIN)/uv pip compile pyproject.toml --extra api --extra worker --extra tiny --extra xformers --extra dev \
		--universal --python-version 3.11 -c requirements/pins.txt --custom-compile-command "make lock" \
		$(LOCK_FLAGS) -o $(CONSTRAINTS)

# The service on this machine: the API on $PORT (default 8000), one render worker, the webhook worker and the
# scheduler (Celery beat: the retention sweep and the reaper). Needs PAINTS_UNDO_API_KEYS; PAINTS_UNDO_MODEL=tiny
# where the real weights are not downloaded. Ctrl+C stops all; so does any of them exiting (a render worker
# that cannot get its models, say), with its message and a non-zero status.
run: install
	mkdir -p data
	$(BIN)/python -m api.preflight
	trap 'kill 0' EXIT; \
	$(BIN)/python -m worker.render_worker & \
	$(BIN)/python -m worker.webhook_worker & \
	$(BIN)/python -m worker.scheduler & \
	$(BIN)/uvicorn --factory api.main:create_app --host 127.0.0.1 --port $${PORT:-8000} $(UVICORN_HEADERS) & \
	wait -n; status=$$?; \
	echo "make run: a process of the service exited (status $$status); stopping the others" >&2; \
	exit $$(( status == 0 ? 1 : status ))

# Style, formatting, and the layer contracts of .importlinter (api → jobs ← worker → model_core).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The browser test (tests/e2e/test_playground.py) drives Debian's chromium. Installed with apt where this
# machine can (root, or sudo without a password); elsewhere that one test is skipped and says why.
browser:
	@command -v chromium >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	} || echo "make browser: chromium could not be installed; the browser test will be skipped" >&2

test: lint browser
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
