# hpsearch worker: pulls trials from the database and trains them, one child process per trial, on one GPU.
# Build from the repository root (KERAS_BACKEND: tensorflow, jax or torch):
#   docker build -f docker/worker.Dockerfile -t hpsearch-worker .
#   docker build -f docker/worker.Dockerfile --build-arg KERAS_BACKEND=jax -t hpsearch-worker:jax .
#
# The CUDA and cuDNN libraries come from the backend's own pip wheels (tensorflow[and-cuda], jax[cuda12], torch),
# pinned to the versions each framework was built with; the base image supplies the NVIDIA container runtime
# settings, and the host's driver is mounted in by the NVIDIA Container Toolkit. NVIDIA_DISABLE_REQUIRE drops the
# base image's "driver supports CUDA 12.6" start check: the wheels' CUDA 12 libraries run on drivers from 525 on
# (CUDA minor-version compatibility).
ARG BASE_IMAGE=nvidia/cuda:12.6.3-base-ubuntu24.04
FROM ${BASE_IMAGE}

ARG KERAS_BACKEND=tensorflow
# pip requirements that replace the backend's default below, e.g. "jax[cuda12]==0.7.2".
ARG BACKEND_PACKAGES=""

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    KERAS_BACKEND=${KERAS_BACKEND} \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_DISABLE_REQUIRE=true \
    TF_CPP_MIN_LOG_LEVEL=1 \
    HPSEARCH_ARTIFACTS=/artifacts

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# Dependencies first (from pyproject.toml alone, so editing src/ does not reinstall tensorflow), with the
# backend's GPU build, all on CUDA 12 (torch 2.11 and later default to CUDA 13, which needs a driver >= 580).
# tensorflow is installed for every backend: pyproject.toml requires it.
COPY pyproject.toml /tmp/hpsearch/pyproject.toml
RUN set -euf; \
    case "$KERAS_BACKEND" in \
      tensorflow) backend='tensorflow[and-cuda]>=2.20,<2.21' ;; \
      jax) backend='jax[cuda12]>=0.6,<0.8' ;; \
      torch) backend='torch>=2.4,<2.11' ;; \
      *) echo "KERAS_BACKEND must be tensorflow, jax or torch, not '$KERAS_BACKEND'" >&2; exit 1 ;; \
    esac; \
    python -c 'import tomllib; print("\n".join(tomllib.load(open("/tmp/hpsearch/pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/hpsearch/requirements.txt; \
    pip install -r /tmp/hpsearch/requirements.txt ${BACKEND_PACKAGES:-$backend}

COPY README.md /tmp/hpsearch/
COPY src /tmp/hpsearch/src
RUN set -eu; \
    pip install --no-deps /tmp/hpsearch; \
    rm -rf /tmp/hpsearch; \
    python -c "import keras, hpsearch.execution.worker; print('keras', keras.__version__, 'backend', keras.backend.backend())"; \
    hpsearch --help > /dev/null

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin hpsearch \
    && mkdir -p /artifacts /studies \
    && chown hpsearch:hpsearch /artifacts
USER hpsearch
WORKDIR /home/hpsearch

# `hpsearch worker` by default; the same image runs `study create`, which imports the hypermodel.
ENTRYPOINT ["hpsearch"]
CMD ["worker"]
