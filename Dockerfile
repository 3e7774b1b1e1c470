# ClusterODM (TypeScript port) container image.
#
#   docker build -t clusterodm .
#   docker run -d -p 3000:3000 -p 8080:8080 -p 10000:10000 -v "$PWD/data:/var/www/data" clusterodm --admin-pass secret
#
# Arguments after the image name are ClusterODM flags (see `docker run --rm clusterodm --help`).
# Building needs network access: the npm registry, the Debian mirrors, and
# https://gitlab-docker-machine-downloads.s3.amazonaws.com for the pinned docker-machine release (below).
# test/unit/deployment.test.ts checks this file against the program (ports, paths, flags, user).

# ---------------------------------------------------------------------------------------------------------
# Build stage: compile the TypeScript sources to dist/.
FROM node:24-slim AS build
WORKDIR /build
COPY package.json package-lock.json ./
# --ignore-scripts: the `prepare` script runs tsc, and the sources are not here yet.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json index.ts ./
COPY src/ ./src/
RUN npm run build

# ---------------------------------------------------------------------------------------------------------
# Runtime stage: production dependencies, the compiled program and its static files. The program files
# stay owned by root (read-only for the daemon); only data/, tmp/ and logs/ are writable by it.
FROM node:24-slim

LABEL org.opencontainers.image.title="ClusterODM" \
      org.opencontainers.image.description="Reverse proxy, load balancer and task tracker for NodeODM nodes" \
      org.opencontainers.image.licenses="AGPL-3.0"

# docker-machine, as in the original image (the autoscaler drives it): GitLab's maintained fork, pinned to
# a release and checked against its sha256 (the same checksums GitLab Runner pins for this release).
ARG DOCKER_MACHINE_VERSION=v0.16.2-gitlab.21
ARG DOCKER_MACHINE_SHA256_AMD64=a4e9a416f30406772e76c3b9e795121d5a7e677978923f96b7fb72f0d8354740
ARG DOCKER_MACHINE_SHA256_ARM64=124ceefbe1a1eec44eeb932edf9f85dab1e532d449f5e3e236faed5e8b19caba
# Set by BuildKit (amd64, arm64); the legacy builder leaves it empty and dpkg tells.
ARG TARGETARCH

# telnet (admin CLI on 8080) and curl, as in the original image.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl telnet; \
    rm -rf /var/lib/apt/lists/*; \
    arch="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    case "$arch" in \
      amd64) dm_arch=x86_64; dm_sha256="$DOCKER_MACHINE_SHA256_AMD64" ;; \
      arm64) dm_arch=aarch64; dm_sha256="$DOCKER_MACHINE_SHA256_ARM64" ;; \
      *) echo "no docker-machine release for architecture $arch" >&2; exit 1 ;; \
    esac; \
    curl -fsSL --retry 3 -o /tmp/docker-machine \
      "https://gitlab-docker-machine-downloads.s3.amazonaws.com/${DOCKER_MACHINE_VERSION}/docker-machine-Linux-${dm_arch}"; \
    echo "${dm_sha256}  /tmp/docker-machine" | sha256sum -c -; \
    install -m 0755 /tmp/docker-machine /usr/local/bin/docker-machine; \
    rm -f /tmp/docker-machine; \
    docker-machine --version

ENV NODE_ENV=production
WORKDIR /var/www

COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would run tsc, which is a dev dependency; dist/ comes from the build stage.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && npm cache clean --force

COPY --from=build /build/dist ./dist
COPY index.js config-default.json ./
COPY public ./public

# data/ (state: nodes.json, routes.json, ...), tmp/ (uploads being staged) and logs/ (ClusterODM.log).
RUN mkdir -p /var/www/data /var/www/tmp /var/www/logs \
    && chown node:node /var/www/data /var/www/tmp /var/www/logs

USER node

# A volume created from the image starts with the ownership set above.
VOLUME ["/var/www/data"]

# Proxy (NodeODM API), admin CLI (telnet), admin web.
EXPOSE 3000 8080 10000

# Liveness: GET /healthz on the admin web port (no password needed, see README "Health endpoints"). node:24-slim
# has no wget, and node is here anyway. With the admin web moved or off (--admin-web-port), override or disable
# this (`docker run --no-healthcheck`, or `healthcheck:` in compose). Balancers should probe /readyz instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:10000/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# The daemon saves its state and exits 0 on SIGTERM.
STOPSIGNAL SIGTERM

# The program folder (/var/www) is read-only for the daemon, so the log file goes to logs/. A later
# `--log-dir` given to `docker run` wins (the last flag counts).
# --initial-heap-size=48 --max-semi-space-size=1: see src/core/node-flags.ts (given here, so index.js needs no second process).
ENTRYPOINT ["node", "--initial-heap-size=48", "--max-semi-space-size=1", "/var/www/index.js", "--log-dir", "/var/www/logs"]
