# syntax=docker/dockerfile:1.7
# Image of the rerank service (`python -m services.rerank`, gRPC on 50054).
#
# Build from the repository root (the context holds requirements.lock, pyproject.toml and the sources):
#   docker build -f deploy/k8s/docker/rerank.Dockerfile -t <registry>/recsys/rerank:<version> .
# rerank.Dockerfile.dockerignore (next to this file) keeps the context small (BuildKit reads it).
#
# The model bundle is not in the image: it is mounted read-only at /var/lib/recsys/bundles (RECSYS_BUNDLE_DIR).
# The base image is pinned by tag; pin it by digest too (PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:...)
# for reproducible builds.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies first: this layer is reused until requirements.lock changes.
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY services/ services/
COPY artifacts/ artifacts/
COPY recsys/ recsys/
COPY features/ features/
COPY protos/ protos/
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build *.egg-info

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="recsys-rerank" \
      org.opencontainers.image.description="recsys rerank gRPC service" \
      org.opencontainers.image.source="https://github.com/example/recsys" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 recsys \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin recsys
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    RECSYS_BUNDLE_DIR=/var/lib/recsys/bundles \
    RECSYS_FEATURE_REPO=/app/features \
    RECSYS_LOG_JSON=true \
    RECSYS_RERANK_HOST=0.0.0.0 \
    RECSYS_RERANK_PORT=50054
USER 10001:10001
EXPOSE 50054
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "services.rerank"]
