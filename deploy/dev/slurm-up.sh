#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine, without systemd.
#
# - installs Debian's slurmctld, slurmd, slurm-client and munge when missing;
# - starts munged as its user (key created when missing), then slurmctld and slurmd as
#   plain daemons (pid files under $STATE);
# - configures select/cons_tres, proctrack/linuxproc, no accounting, fast scheduling;
# - partitions: `debug` (default, MaxTime 1 h) and `short` (MaxTime 1 min, MaxNodes 1)
#   for walltime-limit tests; the only node is this host with its real CPUs and memory;
# - idempotent: when everything already runs it only checks that the node is idle.
#
# Several independent clusters can run side by side (one campaign over several sites):
#   deploy/dev/slurm-up.sh                     # cluster a: emanager-dev, /etc/slurm
#   EM_SLURM_CLUSTER=b deploy/dev/slurm-up.sh  # cluster b: emanager-dev-b, /etc/slurm-b,
#                                              # ports 6827/6828, node $(hostname -s)-b
# Clients of cluster b: SLURM_CONF=/etc/slurm-b/slurm.conf sinfo. Names, ports and
# directories of each cluster: deploy/dev/slurm-cluster.sh.
#
# Environment: EM_SLURM_CLUSTER (default a), EM_SLURM_STATE (default
# /var/lib/emanager-slurm[-X]) holds the config copy, logs, spool and the pid files of
# what this script started (read by slurm-down.sh).
set -euo pipefail

DEV=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=slurm-cluster.sh
source "$DEV/slurm-cluster.sh"
TEMPLATE=$(cd "$DEV/../slurm" && pwd)/slurm.conf.in

say() { echo "slurm-up: $*"; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-up: must run as root (it installs packages and starts daemons)" >&2
    exit 1
  fi
}

install_packages() {
  local missing=()
  for bin in slurmctld slurmd sbatch munged; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing slurmctld slurmd slurm-client munge (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  else
    say "packages already installed ($(slurmd -V))"
  fi
}

pid_alive() { # pidfile
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

start_munge() {
  install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
  install -d -o munge -g munge -m 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
    return
  fi
  say "starting munged as user munge"
  rm -f /run/munge/munge.socket.2.lock
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 1 50); do
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
      # munged daemonizes and writes its own pid file; remember it as ours.
      cp /run/munge/munged.pid "$STATE/munged.pid" 2>/dev/null ||
        pgrep -u munge -x munged | head -n1 >"$STATE/munged.pid"
      return
    fi
    sleep 0.1
  done
  echo "slurm-up: munged did not come up (see /var/log/munge/munged.log)" >&2
  exit 1
}

# The lines only a non-default cluster has: its ports, and job ids of its own range so an
# id never names a job on two clusters.
cluster_params() {
  [ -z "$SLURM_SUFFIX" ] && return
  echo "# Dev cluster $SLURM_CLUSTER (deploy/dev/slurm-cluster.sh): own ports and job id range."
  echo "SlurmctldPort=$CTLD_PORT"
  echo "SlurmdPort=$SLURMD_PORT"
  echo "FirstJobId=$(( SLURM_INDEX * 1000000 ))"
}

write_config() {
  local node_line
  # Real CPUs and memory of this host, as slurmd sees them. A non-default cluster names
  # its node $HOST-X, reached on 127.0.0.1 at its own slurmd port.
  node_line=$(slurmd -C | head -n1)
  if [ -n "$SLURM_SUFFIX" ]; then
    node_line="NodeName=$NODE NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$SLURMD_PORT ${node_line#NodeName=* }"
  fi
  install -d -m 0755 "$CONF_DIR"
  install -d -o slurm -g slurm -m 0755 "$STATE" "$STATE/ctld" "$STATE/d" "$STATE/log"
  local tmp
  tmp=$(mktemp)
  sed -e "s|@NODE_LINE@|$node_line|" -e "s|@NODE@|$NODE|g" -e "s|@HOST@|$HOST|g" \
    -e "s|@STATE@|$STATE|g" -e "s|@CLUSTER@|$CLUSTER_NAME|g" -e "s|@CONF@|$CONF|g" \
    "$TEMPLATE" | awk -v params="$(cluster_params)" \
    '$0 == "@CLUSTER_PARAMS@" { if (params != "") print params; next } { print }' >"$tmp"
  if [ -f "$CONF" ] && cmp -s "$tmp" "$CONF"; then
    say "config $CONF unchanged"
    rm -f "$tmp"
    CONFIG_CHANGED=0
  else
    say "writing $CONF ($node_line)"
    install -m 0644 "$tmp" "$CONF"
    rm -f "$tmp"
    CONFIG_CHANGED=1
  fi
}

start_daemons() {
  if pid_alive "$STATE/slurmctld.pid"; then
    say "slurmctld already running (pid $(cat "$STATE/slurmctld.pid"))"
    if [ "$CONFIG_CHANGED" = 1 ]; then
      say "config changed: scontrol reconfigure"
      scontrol reconfigure
    fi
  else
    say "starting slurmctld"
    /usr/sbin/slurmctld -f "$CONF"
  fi
  if pid_alive "$STATE/slurmd.pid"; then
    say "slurmd already running (pid $(cat "$STATE/slurmd.pid"))"
  else
    say "starting slurmd ($NODE)"
    /usr/sbin/slurmd -f "$CONF" -N "$NODE"
  fi
}

wait_idle() {
  say "waiting for node $NODE to be idle"
  local state=""
  for i in $(seq 1 120); do
    state=$(sinfo -h -n "$NODE" -p debug -o '%t' 2>/dev/null | head -n1 || true)
    case "$state" in
      idle|mix|alloc)
        say "node $NODE is $state; sinfo:"
        sinfo
        return
        ;;
      down*|drain*|drng*|fail*)
        say "node $NODE is $state: resuming it"
        scontrol update nodename="$NODE" state=resume || true
        ;;
    esac
    sleep 0.5
    if [ "$i" = 60 ]; then say "still waiting (state '${state:-none}')"; fi
  done
  echo "slurm-up: node $NODE did not become idle (state '${state:-none}'); see $STATE/log/" >&2
  exit 1
}

need_root
T0=$(date +%s)
install_packages
install -d -m 0755 "$STATE"
start_munge
write_config
start_daemons
wait_idle
if [ -z "$SLURM_SUFFIX" ]; then
  say "ready in $(( $(date +%s) - T0 )) s (partitions debug [1 h], short [1 min])"
else
  say "ready in $(( $(date +%s) - T0 )) s (cluster $CLUSTER_NAME, partitions debug [1 h], short [1 min]; export SLURM_CONF=$CONF)"
fi
