#!/bin/sh
# Start lanchat from this release folder (Linux, macOS).
# Settings are environment variables (CONFIG.md); data goes to ./data.
# Hosts beyond loopback (CHAT_BROADCAST, a Postgres or Redis host) go in
# LANCHAT_ALLOW_NET, e.g. LANCHAT_ALLOW_NET=192.168.0.255,db.lan:5432
# (a compiled ./lanchat has its permissions built in: rebuild it with
# "deno task release --allow-net-extra ..." instead).
set -eu
cd "$(dirname "$0")"
# Two glibc malloc arenas instead of one per thread: less memory kept after a
# load peak, no throughput cost measured (docs/deploy.md). Set it to override.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
mkdir -p data
if [ -x ./lanchat ]; then
  exec ./lanchat "$@"
fi
NET="0.0.0.0,127.0.0.1,127.255.255.255${LANCHAT_ALLOW_NET:+,$LANCHAT_ALLOW_NET}"
ENVS="HOST,PORT,CHAT_DATA,CHAT_DB,CHAT_BUS,CHAT_UDP_PORT,CHAT_BROADCAST,CHAT_SECRET,CHAT_NODE_ID,CHAT_ORIGINS,CHAT_UPLOAD_MAX_BYTES,CHAT_BODY_MAX_BYTES,CHAT_TOKEN_TTL,CHAT_GROUPS_PER_USER,CHAT_ALLOW_STRANGERS,CHAT_DURABLE_ACKS,CHAT_LOG_LEVEL,CHAT_METRICS_ADDR,CHAT_MSG_RATE,CHAT_CONNECT_RATE,CHAT_USER_CONNECTIONS,CHAT_LOGIN_ATTEMPTS,CHAT_LOGIN_IP_ATTEMPTS,CHAT_REGISTER_IP_ATTEMPTS,CHAT_LOOKUP_RATE,CHAT_FRIEND_ADDS,CHAT_GROUP_JOINS,CHAT_UPLOAD_QUOTA_BYTES,CHAT_UPLOAD_CONCURRENCY,CHAT_TRUSTED_PROXIES,CHAT_IDLE_TIMEOUT,PGBINARY,PGREPLICATION,REDIS_DEBUG_MAINTENANCE,REDIS_EMIT_DIAGNOSTICS"
if command -v deno >/dev/null 2>&1; then
  DENO="deno"
else
  DENO="npx -y deno@2.9.6"
fi
# $DENO is split on purpose (it may be "npx -y deno@2.9.6").
# shellcheck disable=SC2086
exec $DENO run --unstable-net --no-prompt --v8-flags=--max-semi-space-size=4 --allow-net="$NET" --allow-read=./static,./templates,./data,./lib \
  --allow-write=./data --allow-env="$ENVS" server.js "$@"
