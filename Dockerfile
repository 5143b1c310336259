# memory-layer service image (CPU only).
#   docker build -t memory-layer .
#   docker run -p 8000:8000 -v memory-data:/data memory-layer        # embedded PostgreSQL in /data
# With docker-compose.yml the same image runs against a PostgreSQL + pgvector service instead.
FROM python:3.11-slim

# The pinned CPU build of torch goes in first, so sentence-transformers never pulls a CUDA build.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

WORKDIR /app
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[gemini]"

# Migrations are read from the working directory (`memory-layer migrate`, `alembic upgrade head`).
COPY alembic.ini ./
COPY alembic ./alembic

RUN useradd --create-home --uid 10001 memory \
    && mkdir -p /data \
    && chown memory:memory /data
USER memory

ENV MEMORY_HOST=0.0.0.0 \
    MEMORY_PORT=8000 \
    MEMORY_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v1/admin/health', timeout=4)"]

CMD ["memory-layer", "serve"]
