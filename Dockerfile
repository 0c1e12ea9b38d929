# syntax=docker/dockerfile:1
# The stackops operator image: `docker build -t stackops:0.1.0 .` (deploy/ refers to stackops:0.1.0), or `make image`
# (buildah, no registry needed: stackops_lab/image.py).
# Stage 1 builds wheels of stackops and of every dependency; stage 2 installs them into a venv from those wheels
# only (no index, no compiler, no build tools, no test dependencies) and runs as an unprivileged user. The lab
# (lab/, the stackops-lab distribution) is not in the build context, so not in the image
# (tests/unit/test_lab_distribution.py builds this wheel and checks).
# SSH goes through paramiko, so no openssh-client is needed. PID 1 is tini (Debian's package): it reaps every orphaned
# child (a local build's detached processes among them), which the operator as PID 1 would leave as zombies that
# still look alive to `kill -0`, and forwards signals to the operator.
# BASE_IMAGE: any Debian bookworm image with Python 3.11, pip and venv (python:3.11-slim has them in /usr/local/bin,
# Debian's python3 packages in /usr/bin: `python` and `pip` are on PATH in both). `make image` on a machine that
# reaches no registry builds one from Debian's packages (debootstrap).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# PIP_CONFIG_FILE: a pip.conf the builder mounts for this build only (index settings, a proxy's CA: `make image`
# mounts one with `buildah bud --volume`); unset, pip's defaults. Nothing of it is copied into a layer.
ARG PIP_CONFIG_FILE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
# The dependencies' wheels first, in a layer that only pyproject.toml changes (a stand-in package and README in place
# of operator/ and README.md), so that a change of the sources rebuilds the stackops wheel alone.
RUN mkdir -p operator/stackops && touch operator/stackops/__init__.py README.md \
    && pip wheel --no-cache-dir --wheel-dir /wheels/deps . \
    && rm -rf operator README.md /wheels/deps/stackops-*.whl
COPY README.md ./
COPY operator/ operator/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels/stackops .

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="stackops" \
      org.opencontainers.image.description="Kubernetes operator that runs Apache CloudStack infrastructure from Git" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/stackops \
    PATH=/opt/stackops/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1* \
    && rm -rf /var/lib/apt/lists/* \
    && python -m venv /opt/stackops \
    && groupadd --system --gid 10001 stackops \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin stackops
# The dependencies, then stackops: two layers, so that a change of the sources adds a small one. DEPS_HASH and
# SOURCE_HASH: `make image` passes the hashes of pyproject.toml and of the build context, because buildah before
# 1.30 reuses a cached RUN whose `--mount=from=` stage changed (containers/buildah#4522); docker build needs neither.
ARG DEPS_HASH
RUN --mount=type=bind,from=build,source=/wheels/deps,target=/wheels \
    /opt/stackops/bin/pip install --no-cache-dir --no-index --no-deps /wheels/*.whl
ARG SOURCE_HASH
RUN --mount=type=bind,from=build,source=/wheels/stackops,target=/wheels \
    /opt/stackops/bin/pip install --no-cache-dir --no-index --no-deps /wheels/stackops-*.whl \
    && /opt/stackops/bin/pip check
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080 9100
ENTRYPOINT ["/usr/bin/tini", "--", "stackops"]
CMD ["run"]
