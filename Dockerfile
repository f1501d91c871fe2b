# HELSSA Live gateway. Native addons (@discordjs/opus, webrtcvad) are compiled in the build stage.
FROM node:24-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# Fixes to dependencies, applied by npm's postinstall (patch-package): patches/README.md.
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY client-sdk ./client-sdk
RUN node_modules/.bin/tsc -p client-sdk && npm prune --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim
# ffmpeg/ffprobe read uploaded recordings.
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
COPY drizzle ./drizzle
COPY client-sdk/src ./client-sdk/src
COPY --from=build /app/client-sdk/dist ./client-sdk/dist
COPY public ./public
# PGlite data, the encrypted spool and the local archive: mount a volume here (or use DATABASE_URL and S3).
ENV DATA_DIR=/var/lib/helssa
RUN mkdir -p /var/lib/helssa && chown node:node /var/lib/helssa
VOLUME /var/lib/helssa
USER node
EXPOSE 8080
HEALTHCHECK CMD node -e "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# The same image runs an upload worker with: node src/worker.ts
# npm start's flags (package.json; not npm itself as PID 1, which would not pass signals on): a young generation
# of at most 4 MB per isolate, 0.6–1.1 MB less memory per live track, no CPU lost (README, Sizing).
CMD ["node", "--max-semi-space-size=4", "src/main.ts"]
