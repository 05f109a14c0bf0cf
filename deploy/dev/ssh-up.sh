#!/usr/bin/env bash
# Start an OpenSSH server on 127.0.0.1 without systemd so that `ssh localhost true` works
# non-interactively for root (key auth only). Used by the SLURM-over-SSH tests.
#
# - installs openssh-server/openssh-client when missing;
# - host keys via ssh-keygen -A; root key ~/.ssh/id_ed25519 (created when missing) is
#   authorized; localhost/127.0.0.1 host keys go to ~/.ssh/known_hosts;
# - sshd listens on 127.0.0.1:$EM_SSH_PORT (default 22) with its own config and pid file
#   (/run/emanager-sshd.pid), so a system sshd, if any, is left alone;
# - idempotent.
set -euo pipefail

PORT=${EM_SSH_PORT:-22}
CONF=/etc/ssh/emanager-sshd.conf
PID=/run/emanager-sshd.pid
say() { echo "ssh-up: $*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "ssh-up: must run as root" >&2
  exit 1
fi
T0=$(date +%s)

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null 2>&1; then
  say "installing openssh-server openssh-client"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
else
  say "openssh already installed"
fi

ssh-keygen -A >/dev/null
install -d -m 0755 /run/sshd
install -d -m 0700 /root/.ssh
if [ ! -f /root/.ssh/id_ed25519 ]; then
  say "generating /root/.ssh/id_ed25519"
  ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519 -C "root@emanager-dev"
fi
touch /root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
if ! grep -qF "$(cat /root/.ssh/id_ed25519.pub)" /root/.ssh/authorized_keys; then
  say "authorizing the key for root"
  cat /root/.ssh/id_ed25519.pub >>/root/.ssh/authorized_keys
fi

# bash sources ~/.bashrc even for `ssh host command`; an interactive setup there (pyenv
# init runs `pyenv rehash`, which serialises on a lock for up to 60 s per session) would
# stall every batch command the SSH adapter runs. Sessions of this sshd skip it.
GUARD='[ -n "${EMANAGER_SSH:-}" ] && return  # added by emanager deploy/dev/ssh-up.sh'
if [ -f /root/.bashrc ] && ! grep -qF "$GUARD" /root/.bashrc; then
  say "making /root/.bashrc return early in sessions of the dev sshd"
  { printf '%s\n' "$GUARD"; cat /root/.bashrc; } >/root/.bashrc.emanager-tmp
  cat /root/.bashrc.emanager-tmp >/root/.bashrc && rm -f /root/.bashrc.emanager-tmp
fi

cat >"$CONF.tmp" <<EOF
# Written by deploy/dev/ssh-up.sh
Port $PORT
ListenAddress 127.0.0.1
PidFile $PID
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_rsa_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
MaxSessions 64
MaxStartups 64:30:128
AcceptEnv LANG LC_*
# Batch commands over this sshd get a clean shell (see the .bashrc guard below).
SetEnv EMANAGER_SSH=1
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
CHANGED=1
if [ -f "$CONF" ] && cmp -s "$CONF.tmp" "$CONF"; then CHANGED=0; fi
mv "$CONF.tmp" "$CONF"
/usr/sbin/sshd -t -f "$CONF"

if [ -f "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; then
  if [ "$CHANGED" = 1 ]; then
    say "config changed: reloading sshd (pid $(cat "$PID"))"
    kill -HUP "$(cat "$PID")"
    sleep 0.5
  else
    say "sshd already running (pid $(cat "$PID"), 127.0.0.1:$PORT)"
  fi
else
  say "starting sshd on 127.0.0.1:$PORT"
  /usr/sbin/sshd -f "$CONF"
fi

for _ in $(seq 1 50); do
  ssh-keyscan -p "$PORT" -T 2 127.0.0.1 >/dev/null 2>&1 && break
  sleep 0.1
done
touch /root/.ssh/known_hosts
for host in localhost 127.0.0.1 "$(hostname -s)"; do
  entry=$host
  [ "$PORT" != 22 ] && entry="[$host]:$PORT"
  if ! ssh-keygen -F "$entry" -f /root/.ssh/known_hosts >/dev/null 2>&1; then
    say "adding $entry to known_hosts"
    ssh-keyscan -p "$PORT" -T 5 127.0.0.1 2>/dev/null | sed "s/^[^ ]*/$entry/" >>/root/.ssh/known_hosts
  fi
done

ssh -p "$PORT" -o BatchMode=yes localhost true
say "ready in $(( $(date +%s) - T0 )) s: ssh -p $PORT localhost works"
