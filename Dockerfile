# syntax=docker/dockerfile:1
# The bigupload image: `docker build -t bigupload .`, then `docker run -p 8000:8000 -v
# bigupload-data:/data bigupload` (see "Run it in a container" in README.md). The web page is
# built into the package (src/bigupload/web/static), so no Node.js is needed here.

ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The venv is made at the path it keeps in the final stage: its scripts name their interpreter.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/bigupload \
    && /opt/bigupload/bin/pip install "$(ls /wheels/bigupload-*.whl)[redis]" \
    && /opt/bigupload/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
# tini is PID 1: it passes SIGTERM and SIGINT on to bigupload and reaps orphans. bigupload ends
# a graceful stop by dying of the signal it got (143); `-e 143` makes that exit 0.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini=0.19.* \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 bigupload \
    && useradd --system --uid 10001 --gid bigupload --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin bigupload \
    && mkdir /data \
    && chown bigupload:bigupload /data \
    && python -m pip uninstall --yes --quiet pip setuptools wheel
COPY --from=builder /opt/bigupload /opt/bigupload
ENV PATH=/opt/bigupload/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BIGUPLOAD_DATA_DIR=/data \
    BIGUPLOAD_HOST=0.0.0.0 \
    BIGUPLOAD_PORT=8000
# An empty working directory: bigupload reads a `.env` from it, and none should be there.
WORKDIR /srv/bigupload
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BIGUPLOAD_PORT', '8000') + '/health/ready', timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "-e", "143", "--", "bigupload"]
CMD ["serve"]
