#!/usr/bin/env bash
# Start a single-host Grid Engine (Debian's gridengine 8.1.9) on this machine, without
# systemd.
#
# - preseeds debconf (cell `default`, this host as master) and installs gridengine-master,
#   gridengine-exec and gridengine-client when missing (the package creates the cell);
# - maps `localhost` to this host in host_aliases: Debian's /etc/hosts resolves 127.0.0.1
#   to `localhost`, which commlib would otherwise reject ("access denied: client IP
#   resolved to host name localhost");
# - starts sge_qmaster and sge_execd directly (pid files under /run/gridengine);
# - global config: min_uid/min_gid 0 (root may submit), accounting flushed every second
#   (qacct is the only record of a finished job); scheduler runs every second;
# - a parallel environment `smp` ($pe_slots) and two queues on this host: `all.q`
#   (h_rt 1 h) and `short.q` (h_rt 1 min) for walltime-limit tests;
# - idempotent: already running daemons and existing objects are left alone.
set -euo pipefail

export SGE_ROOT=${SGE_ROOT:-/var/lib/gridengine}
export SGE_CELL=${SGE_CELL:-default}
HOST=$(hostname -s)
COMMON=$SGE_ROOT/$SGE_CELL/common
RUN=/run/gridengine
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

say() { echo "sge-up: $*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "sge-up: must run as root (it installs packages and starts daemons)" >&2
  exit 1
fi
T0=$(date +%s)

# --- packages -------------------------------------------------------------------------
if ! command -v qsub >/dev/null 2>&1 || [ ! -x /usr/sbin/sge_qmaster ] || [ ! -x /usr/sbin/sge_execd ]; then
  say "preseeding debconf and installing gridengine-master gridengine-exec gridengine-client"
  for pkg in gridengine-common gridengine-client gridengine-master; do
    cat <<EOF | debconf-set-selections
$pkg shared/gridenginemaster string $HOST
$pkg shared/gridenginecell string $SGE_CELL
$pkg shared/gridengineconfig boolean true
EOF
  done
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends gridengine-master gridengine-exec gridengine-client >/dev/null
else
  say "packages already installed"
fi
if [ ! -f "$COMMON/bootstrap" ]; then
  echo "sge-up: $COMMON/bootstrap missing: the package did not create the cell (reinstall gridengine-master)" >&2
  exit 1
fi

# --- host name resolution ---------------------------------------------------------------
if ! grep -qx "$HOST localhost" "$COMMON/host_aliases" 2>/dev/null; then
  say "writing $COMMON/host_aliases ($HOST localhost)"
  echo "$HOST localhost" >"$COMMON/host_aliases"
fi
echo "$HOST" >"$COMMON/act_qmaster"

install -d -o sgeadmin -g sgeadmin -m 0755 "$RUN" /var/spool/gridengine/execd

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- qmaster ----------------------------------------------------------------------------
QM_PID=/var/spool/gridengine/qmaster/qmaster.pid
if alive "$QM_PID"; then
  say "sge_qmaster already running (pid $(cat "$QM_PID"))"
else
  say "starting sge_qmaster"
  SGE_MASTER_PIDFILE=$RUN/qmaster.pid /usr/sbin/sge_qmaster
  # sge-down.sh stops only the daemons this script started.
  touch "$RUN/qmaster.started-by-sge-up"
fi
for i in $(seq 1 60); do
  qconf -sh >/dev/null 2>&1 && break
  sleep 0.5
  if [ "$i" = 60 ]; then
    echo "sge-up: qmaster does not answer; see /var/spool/gridengine/qmaster/messages" >&2
    exit 1
  fi
done
cp "$QM_PID" "$RUN/qmaster.pid" 2>/dev/null || true

# --- global and scheduler configuration ---------------------------------------------------
mkdir -p "$WORK/cfg"
qconf -sconf global >"$WORK/cfg/global"
if ! grep -Eq '^min_uid +0$' "$WORK/cfg/global" || ! grep -q 'flush_time=00:00:01' "$WORK/cfg/global" \
  || ! grep -Eq '^login_shells +none$' "$WORK/cfg/global"; then
  # login_shells none: job shells are not login shells, so a profile's interactive setup
  # (e.g. pyenv's rehash, which waits up to 60 s on a lock) does not stall or outlive jobs.
  say "global config: min_uid/min_gid 0, accounting flush every second, no login shells"
  # reporting_params spans two lines (backslash continuation): rewrite it whole.
  awk '
    /^reporting_params/ {print "reporting_params             accounting=true reporting=false flush_time=00:00:01 joblog=false sharelog=00:00:00"; skip=1; next}
    skip && /^[ \t]/ {next}
    {skip=0}
    /^min_uid/ {print "min_uid                      0"; next}
    /^min_gid/ {print "min_gid                      0"; next}
    /^login_shells/ {print "login_shells                 none"; next}
    {print}
  ' "$WORK/cfg/global" >"$WORK/cfg/global.new"
  mv "$WORK/cfg/global.new" "$WORK/cfg/global"
  qconf -Mconf "$WORK/cfg/global"
fi
qconf -ssconf >"$WORK/sched"
if ! grep -Eq '^schedule_interval +0:0:1$' "$WORK/sched"; then
  say "scheduler: interval 1 s, flush on submit/finish"
  sed -i -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
    -e 's/^flush_submit_sec .*/flush_submit_sec                  1/' \
    -e 's/^flush_finish_sec .*/flush_finish_sec                  1/' "$WORK/sched"
  qconf -Msconf "$WORK/sched"
fi

# --- hosts --------------------------------------------------------------------------------
qconf -sh 2>/dev/null | grep -qx "$HOST" || qconf -ah "$HOST"
qconf -ss 2>/dev/null | grep -qx "$HOST" || qconf -as "$HOST"
if ! qconf -sel 2>/dev/null | grep -qx "$HOST"; then
  say "adding execution host $HOST"
  printf 'hostname %s\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' "$HOST" >"$WORK/exechost"
  qconf -Ae "$WORK/exechost"
fi

# --- execd --------------------------------------------------------------------------------
if alive "$RUN/execd.pid"; then
  say "sge_execd already running (pid $(cat "$RUN/execd.pid"))"
else
  say "starting sge_execd"
  SGE_EXECD_PIDFILE=$RUN/execd.pid /usr/sbin/sge_execd
  touch "$RUN/execd.started-by-sge-up"
fi

# --- parallel environment and queues --------------------------------------------------------
# qconf -ap / -aq open $EDITOR on a template; a sed "editor" fills it in non-interactively.
if ! qconf -spl 2>/dev/null | grep -qx smp; then
  say "adding parallel environment smp"
  printf '#!/bin/sh\nsed -i -e "s/^slots .*/slots              9999/" "$1"\n' >"$WORK/pe-editor"
  chmod +x "$WORK/pe-editor"
  EDITOR=$WORK/pe-editor qconf -ap smp
fi
SLOTS=$(nproc)
add_queue() { # name h_rt
  if qconf -sql 2>/dev/null | grep -qx "$1"; then
    say "queue $1 exists"
    return
  fi
  say "adding queue $1 (host $HOST, $SLOTS slots, h_rt $2)"
  cat >"$WORK/q-editor" <<EOF
#!/bin/sh
sed -i -e "s/^hostlist .*/hostlist              $HOST/" \
  -e "s/^slots .*/slots                 $SLOTS/" \
  -e "s/^h_rt .*/h_rt                  $2/" \
  -e "s/^pe_list .*/pe_list               smp/" \
  -e "s/^load_thresholds .*/load_thresholds       NONE/" "\$1"
EOF
  chmod +x "$WORK/q-editor"
  EDITOR=$WORK/q-editor qconf -aq "$1"
}
add_queue all.q 01:00:00
add_queue short.q 00:01:00

# --- wait for the queue instance ---------------------------------------------------------------
say "waiting for all.q@$HOST to be available"
for i in $(seq 1 120); do
  line=$(qstat -f -q "all.q@$HOST" 2>/dev/null | grep "^all.q@" || true)
  if [ -n "$line" ]; then
    # columns: queuename qtype resv/used/tot load_avg arch [states]
    states=$(echo "$line" | awk '{print $6}')
    if [ -z "$states" ]; then
      qstat -g c
      say "ready in $(( $(date +%s) - T0 )) s (queues all.q [1 h], short.q [1 min]; export SGE_ROOT=$SGE_ROOT SGE_CELL=$SGE_CELL)"
      exit 0
    fi
    case "$states" in
      *E*) say "queue in error state ($states): clearing"; qmod -c "all.q@$HOST" >/dev/null || true ;;
      *d*) say "queue disabled ($states): enabling"; qmod -e "all.q@$HOST" >/dev/null || true ;;
    esac
  fi
  sleep 0.5
done
echo "sge-up: all.q@$HOST not available (qstat -f: ${line:-none}); see /var/spool/gridengine/" >&2
exit 1
