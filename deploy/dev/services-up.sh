#!/usr/bin/env bash
# Makes sure RabbitMQ and Redis are installed and answering on 127.0.0.1, idempotently:
# installs them with apt-get when missing, starts them when down (no systemd needed),
# and waits until they answer. Safe to run when they already run.
set -euo pipefail

log() { printf 'services-up: %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else log "need root to run: $*"; exit 1
  fi
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name, seconds, command...
  local name=$1 secs=$2; shift 2
  for _ in $(seq 1 "$((secs * 4))"); do
    if "$@" >/dev/null 2>&1; then log "$name is up"; return 0; fi
    sleep 0.25
  done
  log "$name did not come up within ${secs}s"; return 1
}

# Redis: the machine's default keeps nothing on disk (tests that need persistence start
# their own redis-server with AOF on another port).
if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  log "starting redis-server on 127.0.0.1:6379"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
wait_for redis 30 sh -c 'redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG'

# RabbitMQ.
if ! port_open 5672; then
  log "starting rabbitmq-server"
  as_root rabbitmq-server -detached || true
fi
wait_for rabbitmq 120 port_open 5672
# Let the broker finish booting before clients declare quorum queues.
if ! as_root rabbitmqctl -q await_startup --timeout 120 >/dev/null 2>&1; then
  log "RabbitMQ listens on 5672 but did not finish booting within 120 s: see /var/log/rabbitmq/ and \`rabbitmqctl status\`"
  exit 1
fi
# The management API (queue depths and consumers for the bundle service; its tests need it).
if ! port_open 15672; then
  as_root rabbitmq-plugins -q enable rabbitmq_management >/dev/null 2>&1 || log "could not enable rabbitmq_management"
fi
wait_for "RabbitMQ management API" 60 port_open 15672
log "RabbitMQ amqp://guest:guest@127.0.0.1:5672/%2f and Redis redis://127.0.0.1:6379/ are ready"
