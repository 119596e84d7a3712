# syntax=docker/dockerfile:1
# tunedeck images (docs/deploy.md). Two targets share one base:
#   web     FastAPI + the Celery client, no torch:   docker build --target web -t tunedeck-web .
#   worker  a CUDA build of torch + the worker extra: docker build --target worker -t tunedeck-worker .
# docker compose builds both (docker-compose.yml).

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------- front-end assets
# htmx, its SSE extension and uPlot, installed from the committed lockfile (npm ci) and copied
# into app/static/vendor by the same script `make setup` runs.
FROM node:20-bookworm-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/ scripts/
RUN bash scripts/vendor.sh

# ---------------------------------------------------------------- the source tree
# What both images run. app/ finds templates/, app/static and migrations/ beside itself, so the
# tree is installed in place (pip -e) rather than into site-packages.
FROM scratch AS source
COPY pyproject.toml README.m[d] alembic.ini /opt/tunedeck/
COPY app/ /opt/tunedeck/app/
COPY worker/ /opt/tunedeck/worker/
COPY migrations/ /opt/tunedeck/migrations/
COPY templates/ /opt/tunedeck/templates/
COPY --from=assets /src/app/static/vendor/ /opt/tunedeck/app/static/vendor/

# ---------------------------------------------------------------- shared base
FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TUNEDECK_DATA_DIR=/data
# One unprivileged user, uid 1000 in both images, owns the data dir: on a shared mount (NFS)
# every box writes files the others can read.
RUN useradd --create-home --uid 1000 --user-group tunedeck \
    && mkdir -p /data /home/tunedeck/.cache/huggingface \
    && chown -R tunedeck:tunedeck /data /home/tunedeck/.cache
WORKDIR /opt/tunedeck
# The base dependencies (the web set) straight from pyproject, before the source is copied, so a
# code change doesn't reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(deps))" > /tmp/requirements-web.txt \
    && pip install -r /tmp/requirements-web.txt

# ---------------------------------------------------------------- web
FROM base AS web
COPY --from=source /opt/tunedeck/ /opt/tunedeck/
RUN pip install --no-deps -e .
USER 1000:1000
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["tunedeck"]
CMD ["serve", "--no-worker", "--host", "0.0.0.0", "--port", "8000"]

# ---------------------------------------------------------------- worker
FROM base AS worker
# The torch wheel brings its own CUDA runtime; the host needs only the NVIDIA driver and the
# NVIDIA Container Toolkit. torch 2.10.0's Linux wheel is built with CUDA 12.8: driver 570 or
# newer, GPUs from Turing (sm_75) to Blackwell. For other CUDA builds point TORCH_INDEX_URL at
# one of PyTorch's per-CUDA indexes (docs/deploy.md, "Choosing the CUDA build").
ARG TORCH_VERSION=2.10.0
ARG TORCH_INDEX_URL=
RUN pip install "torch==${TORCH_VERSION}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
# The worker extra on top (torch is already satisfied, so it stays the CUDA build above).
RUN python -c "import tomllib; extras = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']; print('\n'.join(extras['worker']))" > /tmp/requirements-worker.txt \
    && pip install -r /tmp/requirements-worker.txt "nvidia-ml-py>=12.535"
COPY --from=source /opt/tunedeck/ /opt/tunedeck/
# Checks a new GPU box end to end (docs/deploy.md, "Checking a GPU box").
COPY benchmarks/gpu_check.py /opt/tunedeck/benchmarks/gpu_check.py
RUN pip install --no-deps -e .
USER 1000:1000
ENV HF_HOME=/home/tunedeck/.cache/huggingface \
    TOKENIZERS_PARALLELISM=false
ENTRYPOINT ["tunedeck"]
CMD ["worker"]
