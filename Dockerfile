# The lobby service image: compiled JavaScript on Node 20, production dependencies only, run as
# the unprivileged `node` user. `docker compose up` (docker-compose.yml) runs it with NATS and
# PostgreSQL; alone: docker run -e NATS_URL=... -e DATABASE_URL=postgresql://... -p 8001:8001 <image>

# ---- build: compile TypeScript with the dev dependencies ----
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json mikro-orm.config.ts ./
COPY subjects ./subjects
COPY src ./src
COPY test/bench ./test/bench
RUN npx tsc -p tsconfig.build.json

# ---- runtime: dist/ and production dependencies, nothing else ----
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
# Listen on every interface inside the container (the service's default is 127.0.0.1).
ENV HTTP_HOST=0.0.0.0
ENV HTTP_PORT=8001
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The embedded database (used when DATABASE_URL is unset) lives in ./data: writable by `node`.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 8001
# The slim image has no curl: node itself asks GET /health (200 when the database and NATS are up).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.HTTP_PORT || 8001) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: SIGTERM reaches node, which drains and exits cleanly.
CMD ["node", "dist/src/main.js"]
