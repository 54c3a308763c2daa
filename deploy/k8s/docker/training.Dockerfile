# syntax=docker/dockerfile:1.7
# Training image for KubeRay: the Ray head, workers and job submitter of the `prepare`, `train` and `batch`
# RayJobs and of the interactive RayCluster. Entrypoints (run on the head, RAY_ADDRESS set by KubeRay):
#   python -m training.prepare --out /app/var/data/feast [--postgres DSN]
#   python -m training.pipeline --feature-repo /app/features --bundle-dir /var/lib/recsys/bundles --workers N
#   python -m training.batch_recommend --bundle-dir /var/lib/recsys/bundles --feature-repo /app/features
#   python -m training.ray_jobs --model <name> ...
# The chart mounts the Feast feature_store.yaml over /app/features/feature_store.yaml.
#
# Build from the repository root:
#   docker build -f deploy/k8s/docker/training.Dockerfile -t <registry>/recsys/training:<version> .
#
# The Ray version of the base image must equal ray in requirements.lock and `training.rayVersion` in the chart.
# The image runs as the base image's `ray` user (UID 1000, GID 100). Bundles are written to the bundles claim
# mounted at /var/lib/recsys/bundles, never into the image. Pin the base by digest for reproducible builds.
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-cpu

FROM ${RAY_IMAGE}
LABEL org.opencontainers.image.title="recsys-training" \
      org.opencontainers.image.description="recsys training (Ray) image" \
      org.opencontainers.image.source="https://github.com/example/recsys" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
USER root
RUN mkdir -p /app /var/lib/recsys/bundles \
    && chown 1000:100 /app /var/lib/recsys/bundles
USER 1000:100
WORKDIR /app
COPY --chown=1000:100 requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY --chown=1000:100 services/ services/
COPY --chown=1000:100 artifacts/ artifacts/
COPY --chown=1000:100 training/ training/
COPY --chown=1000:100 recsys/ recsys/
COPY --chown=1000:100 features/ features/
COPY --chown=1000:100 protos/ protos/
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build *.egg-info
# /app first on sys.path: the data paths of training.prepare resolve under /app/var/data (the data claim).
ENV PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RECSYS_BUNDLE_DIR=/var/lib/recsys/bundles \
    RECSYS_FEATURE_REPO=/app/features \
    RAY_USAGE_STATS_ENABLED=0
USER 1000:100
