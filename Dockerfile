# Production image: compiled JavaScript on Node 20, no dev dependencies.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json mikro-orm.config.ts ./
COPY subjects ./subjects
COPY src ./src
COPY test/bench ./test/bench
RUN npx tsc -p tsconfig.build.json

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY --from=build /app/dist ./dist
USER node
EXPOSE 8001
# Exec form: SIGTERM reaches node, which drains and exits cleanly.
CMD ["node", "dist/src/main.js"]
