#!/usr/bin/env bash
# Stop the Grid Engine daemons that deploy/dev/sge-up.sh started (execd, then qmaster), by
# the pid files they wrote; a daemon it found already running (a site's own Grid Engine) is
# left alone. The cell configuration and queues stay for the next sge-up.sh.
set -euo pipefail

RUN=/run/gridengine
say() { echo "sge-down: $*"; }

stop_pidfile() { # name pidfile
  local name=$1 file=$2 pid
  if [ ! -f "$file" ]; then
    say "$name: no pid file ($file)"
    return
  fi
  pid=$(cat "$file")
  if ! kill -0 "$pid" 2>/dev/null; then
    say "$name: not running (stale pid $pid)"
    rm -f "$file"
    return
  fi
  say "stopping $name (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return; }
    sleep 0.1
  done
  say "$name did not stop after 10 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$file"
}

stop_started() { # name marker pidfile
  if [ ! -f "$2" ]; then
    say "$1: not started by sge-up.sh; left as it is"
    return
  fi
  stop_pidfile "$1" "$3"
  rm -f "$2"
}

stop_started sge_execd "$RUN/execd.started-by-sge-up" "$RUN/execd.pid"
stop_started sge_qmaster "$RUN/qmaster.started-by-sge-up" /var/spool/gridengine/qmaster/qmaster.pid
rm -f "$RUN/qmaster.pid"
say "done"
