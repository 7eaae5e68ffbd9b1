# syntax=docker/dockerfile:1
# One image for every aitl process; the command picks which:
#   docker run aitl:0.1.0 gateway start --host 0.0.0.0
#   docker run aitl:0.1.0 processors start
# Build: docker build -t aitl:0.1.0 .   (docker-compose.yml and deploy/k8s/ use this tag)
ARG PYTHON_VERSION=3.11

# --- build: resolve the locked dependencies into /app/.venv with uv -----------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /app
# Dependencies first, so this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
# The project itself, installed editable: code finds schemas/ beside its packages.
COPY schemas ./schemas
COPY kernel ./kernel
COPY aitl ./aitl
COPY streams ./streams
COPY processors ./processors
COPY serving ./serving
COPY trainers ./trainers
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

# --- runtime: the same Python, the venv and the code; runs as an unprivileged user -------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
# (KubeRay starts Ray through `bash -l`, whose /etc/profile would drop the venv from PATH;
# the single quotes keep $PATH for the login shell to expand.)
# hadolint ignore=SC2016
RUN groupadd --system --gid 10001 aitl \
    && useradd --system --uid 10001 --gid aitl --create-home --home-dir /home/aitl aitl \
    && mkdir -p /data \
    && chown aitl:aitl /data \
    && echo 'export PATH=/app/.venv/bin:$PATH' > /etc/profile.d/aitl-venv.sh
# Code and venv stay owned by root: the process can read but not change them.
COPY --from=build /app /app
WORKDIR /app
# DL3064 flags TOKENIZERS_PARALLELISM for its name; no secret is set here.
# hadolint ignore=DL3064
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    RAY_USAGE_STATS_ENABLED=0 \
    AITL_DATA_DIR=/data \
    AITL_SHARD_STORE=/data/shards \
    AITL_CHECKPOINT_STORE=/data/checkpoints \
    AITL_QDRANT_PATH=/data/qdrant \
    AITL_GATEWAY_HOST=0.0.0.0
USER 10001:10001
VOLUME ["/data"]
# gateway, Ray Serve HTTP, Ray dashboard, /metrics of processors and trainers
EXPOSE 8080 8000 8265 9108
ENTRYPOINT ["aitl"]
CMD ["gateway", "start"]
