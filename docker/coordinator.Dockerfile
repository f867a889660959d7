# hpsearch coordinator (also `hpsearch db upgrade`, `status`, `best`, `trials`): no keras, no tensorflow, no GPU.
# Build from the repository root:
#   docker build -f docker/coordinator.Dockerfile -t hpsearch-coordinator .
#   docker build -f docker/coordinator.Dockerfile --build-arg WITH_GP=1 -t hpsearch-coordinator .  # algorithm = "bayesian"
FROM python:3.11-slim-bookworm

# 1: also install CPU-only torch, which Optuna's Gaussian-process sampler (algorithm = "bayesian") needs.
# Without it a bayesian study stops the coordinator with "No module named 'torch'" once its Sobol start is over.
ARG WITH_GP=0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HPSEARCH_ARTIFACTS=/artifacts

COPY docker/coordinator-requirements.txt /tmp/hpsearch/requirements.txt
RUN set -eu; \
    pip install -r /tmp/hpsearch/requirements.txt; \
    if [ "$WITH_GP" = "1" ]; then pip install --index-url "$TORCH_INDEX_URL" "torch>=2.4"; fi

# The package itself without its dependencies: pyproject.toml lists keras and tensorflow for the workers.
COPY pyproject.toml README.md /tmp/hpsearch/
COPY src /tmp/hpsearch/src
RUN set -eu; \
    pip install --no-deps /tmp/hpsearch; \
    rm -rf /tmp/hpsearch; \
    python -c "import sys, hpsearch.cli, hpsearch.control.coordinator, hpsearch.strategies.samplers, scipy.stats.qmc, optuna; \
bad = sorted({m.split('.')[0] for m in sys.modules} & {'keras', 'keras_tuner', 'tensorflow'}); \
sys.exit(f'the coordinator imports {bad}') if bad else print('coordinator imports: ok')"; \
    hpsearch --help > /dev/null

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin hpsearch \
    && mkdir -p /artifacts /studies \
    && chown hpsearch:hpsearch /artifacts
USER hpsearch
WORKDIR /home/hpsearch

ENTRYPOINT ["hpsearch"]
CMD ["coordinator"]
