#!/usr/bin/env bash
# Stop the sshd that deploy/dev/ssh-up.sh started (its own pid file, /run/emanager-sshd.pid);
# a system sshd is left alone. Keys and known_hosts stay for the next ssh-up.sh.
set -euo pipefail

PID=/run/emanager-sshd.pid
say() { echo "ssh-down: $*"; }

if [ ! -f "$PID" ]; then
  say "no pid file ($PID): nothing started by ssh-up.sh"
  exit 0
fi
pid=$(cat "$PID")
if ! kill -0 "$pid" 2>/dev/null; then
  say "not running (stale pid $pid)"
  rm -f "$PID"
  exit 0
fi
say "stopping sshd (pid $pid)"
kill -TERM "$pid"
for _ in $(seq 1 50); do
  if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$PID"
    say "done"
    exit 0
  fi
  sleep 0.1
done
say "sshd did not stop after 5 s: SIGKILL"
kill -KILL "$pid" 2>/dev/null || true
rm -f "$PID"
