# The production build of ukey-server in a container (docs/deployment.md).
#   docker build -t ukey-renew .
#   docker volume create ukey-data
#   docker run --rm -v ukey-data:/var/lib/ukey -v /etc/ukey/ca-passphrase:/run/secrets/ca-passphrase:ro \
#     ukey-renew init --data-dir /var/lib/ukey --public-url https://pki.example.cn
#   docker run -d --name ukey -p 8080:8080 -v ukey-data:/var/lib/ukey \
#     -v /etc/ukey/ca-passphrase:/run/secrets/ca-passphrase:ro ukey-renew
# packages/server/test/build/container-steps.test.ts runs this file's runtime
# steps in a clean Debian 12 root (the same base as node:20-bookworm-slim).

# ---- build: development dependencies, esbuild bundles, the portal ----
FROM node:20-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY packages/policy/package.json packages/policy/
COPY packages/ca/package.json packages/ca/
COPY packages/store/package.json packages/store/
COPY packages/server/package.json packages/server/
COPY packages/agent/package.json packages/agent/
COPY packages/web/package.json packages/web/
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

# ---- runtime: production dependencies only, a non-root user ----
FROM node:20-bookworm-slim
WORKDIR /opt/ukey-renew
COPY --from=build /src/package.json /src/package-lock.json ./
COPY --from=build /src/packages/policy/package.json packages/policy/
COPY --from=build /src/packages/ca/package.json packages/ca/
COPY --from=build /src/packages/store/package.json packages/store/
COPY --from=build /src/packages/server/package.json packages/server/
COPY --from=build /src/packages/agent/package.json packages/agent/
COPY --from=build /src/packages/web/package.json packages/web/
# better-sqlite3 and pkcs11js come prebuilt for linux-x64 glibc; no compiler in this image.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/packages/server/bin packages/server/bin
COPY --from=build /src/packages/server/dist packages/server/dist
COPY --from=build /src/packages/agent/bin packages/agent/bin
COPY --from=build /src/packages/agent/dist packages/agent/dist
COPY --from=build /src/packages/web/dist packages/web/dist
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/ukey --shell /usr/sbin/nologin ukey \
 && mkdir -p /var/lib/ukey && chown ukey:ukey /var/lib/ukey && chmod 0700 /var/lib/ukey
USER ukey
VOLUME ["/var/lib/ukey"]
# Secrets as files (docker secrets or a read-only mount), never as variables holding the secret.
ENV UKEY_CA_PASSPHRASE_FILE=/run/secrets/ca-passphrase
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/opt/ukey-renew/packages/server/bin/ukey-server.js"]
CMD ["start", "--data-dir", "/var/lib/ukey", "--host", "0.0.0.0", "--port", "8080"]
