#!/usr/bin/env bash
# Stop the dev SLURM cluster started by deploy/dev/slurm-up.sh: only the daemons whose pid
# files that script wrote (slurmd, slurmctld, and munged when it started it).
set -euo pipefail

STATE=${EM_SLURM_STATE:-/var/lib/emanager-slurm}

say() { echo "slurm-down: $*"; }

stop_pidfile() { # name pidfile
  local name=$1 file=$2
  if [ ! -f "$file" ]; then
    say "$name: no pid file ($file), not started by slurm-up.sh"
    return
  fi
  local pid
  pid=$(cat "$file")
  if ! kill -0 "$pid" 2>/dev/null; then
    say "$name: not running (stale pid $pid)"
    rm -f "$file"
    return
  fi
  say "stopping $name (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return; }
    sleep 0.1
  done
  say "$name did not stop after 5 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$file"
}

stop_pidfile slurmd "$STATE/slurmd.pid"
stop_pidfile slurmctld "$STATE/slurmctld.pid"
stop_pidfile munged "$STATE/munged.pid"
say "done"
