# syntax=docker/dockerfile:1.7
#
# The dr image: the CLI, the CronJob workloads and the data mover (`dr mover …`)
# are all this one image (ENTRYPOINT dr).
#
# Why distroless and not python:3.11-slim with the shell removed:
# gcr.io/distroless/python3-debian12 has no shell, no package manager, no
# compilers and no coreutils to begin with, so nothing has to be deleted
# (deleting /bin/sh from a slim image leaves dpkg, perl-base and their CVEs
# behind and breaks nothing visible until someone relies on it), the scan
# surface is a few Debian libraries, and the `nonroot` tag already runs as
# uid 65532. Its interpreter is Debian 12's /usr/bin/python3.11, so the
# builder is Debian 12 with Debian's python3.11 too — NOT python:3.11-slim,
# whose interpreter lives in /usr/local and whose venv would point at a
# python that does not exist in the final image. Same distribution, same
# interpreter build, same ABI for the compiled wheels (cryptography,
# zstandard, blake3, pyfastcdc, grpcio); the builder checks it below.
#
# Pin both images by digest in CI (e.g. `--build-arg BUILDER_IMAGE=debian:12-slim@sha256:…`).
ARG BUILDER_IMAGE=debian:12-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/python3-debian12:nonroot

# --------------------------------------------------------------------------- builder
FROM ${BUILDER_IMAGE} AS builder
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# Compilers live here only, for dependencies that ship no wheel for this platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dr ./dr
# Build dr's wheel, then install it (and its dependencies) into a venv that is
# copied as a whole into the final image.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip build \
 && /opt/venv/bin/python -m build --wheel --outdir /wheels . \
 && /opt/venv/bin/pip install /wheels/dr-*.whl \
 && /opt/venv/bin/pip uninstall -y build pip \
 && /opt/venv/bin/python -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version" \
 && /opt/venv/bin/dr --version

# --------------------------------------------------------------------------- runtime
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="dr" \
      org.opencontainers.image.description="Kubernetes backup, restore and disaster-recovery orchestrator with envelope encryption and verified restore drills" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/dr-project/dr" \
      org.opencontainers.image.url="https://github.com/dr-project/dr" \
      org.opencontainers.image.vendor="dr project" \
      org.opencontainers.image.base.name="gcr.io/distroless/python3-debian12:nonroot"
COPY --from=builder /opt/venv /opt/venv
# Read-only root file system: everything that writes goes to /tmp, an emptyDir
# in the manifests. No .pyc files at run time (they are compiled at install).
ENV PATH=/opt/venv/bin:/usr/bin:/bin \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    XDG_DATA_HOME=/tmp/.local/share \
    XDG_STATE_HOME=/tmp/.local/state \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DR_LOG_FORMAT=json
WORKDIR /tmp
USER 65532:65532
ENTRYPOINT ["/opt/venv/bin/dr"]
CMD ["--help"]
