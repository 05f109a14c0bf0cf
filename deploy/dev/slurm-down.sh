#!/usr/bin/env bash
# Stop a dev SLURM cluster started by deploy/dev/slurm-up.sh: only the daemons whose pid
# files that script wrote (slurmd, slurmctld, and munged when it started it).
#
#   deploy/dev/slurm-down.sh                      # cluster a (emanager-dev)
#   EM_SLURM_CLUSTER=b deploy/dev/slurm-down.sh   # cluster b (emanager-dev-b) only
#
# Options, to take one site away in a test (`slurm-up.sh` with the same EM_SLURM_CLUSTER
# brings it back):
#   --kill-jobs        first SIGKILL every process of the cluster's running jobs (as
#                      `scontrol listpids` lists them), as when a site is lost: pilots die
#                      without draining, their jobs end FAILED.
#   --controller-only  stop only slurmctld: every command of the cluster fails with
#                      "Unable to contact slurm controller" while slurmd and the running jobs
#                      go on; slurm-up.sh restarts it in about a second.
#
# munged is shared by the clusters: the one that started it hands it over to another
# cluster that still runs instead of stopping it.
set -euo pipefail

DEV=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=slurm-cluster.sh
source "$DEV/slurm-cluster.sh"

KILL_JOBS=0
CONTROLLER_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --kill-jobs) KILL_JOBS=1 ;;
    --controller-only) CONTROLLER_ONLY=1 ;;
    *)
      echo "usage: [EM_SLURM_CLUSTER=X] slurm-down.sh [--kill-jobs] [--controller-only]" >&2
      exit 2
      ;;
  esac
done

say() { echo "slurm-down: $*"; }

pid_alive() { # pidfile
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

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

# SIGKILL the processes of this cluster's jobs on its node until none is left. slurmd
# lists them (proctrack/linuxproc follows the process tree, setsid or not).
kill_jobs() {
  if ! pid_alive "$STATE/slurmd.pid"; then
    say "slurmd of $CLUSTER_NAME is not running: no job processes to list"
    return
  fi
  local pids
  for _ in $(seq 1 20); do
    pids=$({ scontrol listpids 2>/dev/null || true; } | awk 'NR > 1 && $1 ~ /^[0-9]+$/ { print $1 }' | tr '\n' ' ')
    if [ -z "${pids// /}" ]; then
      say "no job processes left on $NODE"
      return
    fi
    say "SIGKILL to the job processes of $CLUSTER_NAME: $pids"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
  done
  echo "slurm-down: job processes of $CLUSTER_NAME still alive after 20 rounds: $pids" >&2
  exit 1
}

# Leaves munged to another dev cluster that still runs, by moving the pid file there.
stop_or_hand_over_munge() {
  local file=$STATE/munged.pid other
  if [ -f "$file" ]; then
    for other in /var/lib/emanager-slurm /var/lib/emanager-slurm-?; do
      [ "$other" = "$STATE" ] && continue
      if pid_alive "$other/slurmctld.pid" || pid_alive "$other/slurmd.pid"; then
        if [ -f "$other/munged.pid" ]; then
          say "munged: still used by the cluster in $other, which also records it; leaving it running"
          rm -f "$file"
        else
          say "munged: still used by the cluster in $other; handing it over"
          mv "$file" "$other/munged.pid"
        fi
        return
      fi
    done
  fi
  stop_pidfile munged "$file"
}

if [ "$KILL_JOBS" = 1 ]; then
  kill_jobs
fi
if [ "$CONTROLLER_ONLY" = 1 ]; then
  stop_pidfile slurmctld "$STATE/slurmctld.pid"
  say "done (slurmctld of $CLUSTER_NAME only; restart: EM_SLURM_CLUSTER=$SLURM_CLUSTER deploy/dev/slurm-up.sh)"
  exit 0
fi
stop_pidfile slurmd "$STATE/slurmd.pid"
stop_pidfile slurmctld "$STATE/slurmctld.pid"
stop_or_hand_over_munge
say "done"
