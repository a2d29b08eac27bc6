# One image per role, as build targets of this file (docker-compose.yml builds all three):
#
#   docker build --target api -t paints-undo-api .          # the HTTP API: slim Python, no torch
#   docker build --target service -t paints-undo-service .  # webhook worker and scheduler: the base only
#   docker build --target worker -t paints-undo-worker .    # the GPU render worker: CUDA and its torch
#   docker build --target worker --build-arg WITH_XFORMERS=1 -t paints-undo-worker:xformers .
#
# Every install is constrained by requirements/constraints.txt (`make lock`), the same versions CI tests.
# Nothing secret goes into an image: keys and passwords come from the environment at run time.

# --- The light images: python:3.11-slim, no torch ------------------------------------------------

FROM python:3.11-slim-bookworm AS slim

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# uid 10001 owns /app (the default file:// storage writes ./data there) and /var/lib/paints-undo (the
# scheduler's schedule file; a named volume mounted there starts with this ownership).
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/app --shell /usr/sbin/nologin app \
    && mkdir -p /app /var/lib/paints-undo \
    && chown 10001:10001 /app /var/lib/paints-undo \
    && python -m venv /opt/venv

WORKDIR /app
COPY requirements/constraints.txt ./requirements/
COPY pyproject.toml ./

# The API: api/, jobs/ and model_core's light modules (settings, events); `.[api]` installs no torch.
FROM slim AS api
# The dependencies alone, so this layer is rebuilt only when pyproject.toml or the lock changes: without
# the sources yet, `pip install` builds an empty package, removed again.
RUN touch README.md \
    && pip install --constraint requirements/constraints.txt ".[api]" \
    && pip uninstall -y paints-undo \
    && rm -rf README.md build ./*.egg-info
COPY README.md ./
COPY model_core ./model_core
COPY jobs ./jobs
COPY api ./api
RUN pip install --no-deps . && rm -rf build ./*.egg-info
USER 10001:10001
EXPOSE 8000
CMD ["uvicorn", "api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", \
     "--http", "h11", "--h11-max-incomplete-event-size", "1048576"]

# The webhook worker and the scheduler (Celery beat): the base dependencies only.
FROM slim AS service
RUN touch README.md \
    && pip install --constraint requirements/constraints.txt . \
    && pip uninstall -y paints-undo \
    && rm -rf README.md build ./*.egg-info
COPY README.md ./
COPY model_core ./model_core
COPY jobs ./jobs
COPY worker ./worker
RUN pip install --no-deps . && rm -rf build ./*.egg-info
USER 10001:10001
# docker-compose.yml runs the scheduler from this image too: python -m worker.scheduler.
CMD ["python", "-m", "worker.webhook_worker"]

# --- The GPU render worker ------------------------------------------------------------------------
#
# The CUDA version of the base image and the torch wheel index (TORCH_CUDA) go together: cu128 is
# CUDA 12.8. Change both at once, and pick an index that has the locked torch. The host needs an
# NVIDIA driver for that CUDA version and the NVIDIA Container Toolkit.

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS worker

ARG TORCH_CUDA=cu128
# 1 adds the `xformers` extra (memory-efficient attention kernels).
ARG WITH_XFORMERS=0
ARG DEBIAN_FRONTEND=noninteractive

# Ubuntu 24.04's own Python is 3.12. The venv keeps pip away from the system packages (PEP 668).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models/huggingface

# uid 10001 owns /app (./data of the default file:// storage) and /models (the Hugging Face cache; a
# named volume mounted there starts with this ownership).
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/app --shell /usr/sbin/nologin app \
    && mkdir -p /app /models/huggingface \
    && chown 10001:10001 /app /models /models/huggingface

WORKDIR /app
COPY requirements/constraints.txt ./requirements/

# The CUDA build of the locked torch release first, alone, from the PyTorch index (PyPI's build is for
# another CUDA); its dependencies come with the next layer, from PyPI at their locked versions. This torch
# pins its own CUDA libraries and triton exactly, so the lock's pins of those (PyPI's build's) are left
# out. A package asking for another torch fails the build rather than swapping in a different build
# (2.13.0+cu128 satisfies torch==2.13.0).
RUN grep -vE '^(nvidia-|triton==)' requirements/constraints.txt > /tmp/constraints.txt \
    && pip install --no-deps --constraint /tmp/constraints.txt torch \
        --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"

# The dependencies alone, before the sources (see the api stage).
COPY pyproject.toml ./
RUN touch README.md \
    && if [ "$WITH_XFORMERS" = "1" ]; then target=".[worker,tiny,xformers]"; else target=".[worker,tiny]"; fi \
    && pip install --constraint /tmp/constraints.txt "$target" \
    && pip uninstall -y paints-undo \
    && rm -rf README.md build ./*.egg-info

COPY README.md ./
COPY model_core ./model_core
COPY jobs ./jobs
COPY worker ./worker
RUN pip install --no-deps . && rm -rf build ./*.egg-info

USER 10001:10001

CMD ["python", "-m", "worker.render_worker"]
