# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this
# Sourced by slurm-up.sh and slurm-down.sh: which dev SLURM cluster they act on.
#
# EM_SLURM_CLUSTER selects it (one letter; unset, empty or `a` is the default cluster):
#
#   cluster  ClusterName       config                     state                      ports      node
#   a        emanager-dev      /etc/slurm/slurm.conf      /var/lib/emanager-slurm    6817/6818  $(hostname -s)
#   b        emanager-dev-b    /etc/slurm-b/slurm.conf    /var/lib/emanager-slurm-b  6827/6828  $(hostname -s)-b
#   c        emanager-dev-c    /etc/slurm-c/slurm.conf    /var/lib/emanager-slurm-c  6837/6838  $(hostname -s)-c
#
# and so on (ports 6817 + 10 * index). Every cluster is one slurmctld and one slurmd on
# this host; they share munge and may all claim this host's CPUs. Clients pick a cluster
# with SLURM_CONF (the default cluster's config is SLURM's default path).
# EM_SLURM_STATE overrides the state directory.

SLURM_CLUSTER=${EM_SLURM_CLUSTER:-a}
case "$SLURM_CLUSTER" in
  a) SLURM_SUFFIX="" ;;
  [b-z]) SLURM_SUFFIX="-$SLURM_CLUSTER" ;;
  *)
    echo "EM_SLURM_CLUSTER must be one letter a-z (a is the default cluster), got '$SLURM_CLUSTER'" >&2
    exit 2
    ;;
esac
SLURM_INDEX=$(( $(printf '%d' "'$SLURM_CLUSTER") - 97 ))
CLUSTER_NAME=emanager-dev$SLURM_SUFFIX
STATE=${EM_SLURM_STATE:-/var/lib/emanager-slurm$SLURM_SUFFIX}
CONF_DIR=/etc/slurm$SLURM_SUFFIX
CONF=$CONF_DIR/slurm.conf
HOST=$(hostname -s)
NODE=$HOST$SLURM_SUFFIX
CTLD_PORT=$(( 6817 + 10 * SLURM_INDEX ))
SLURMD_PORT=$(( 6818 + 10 * SLURM_INDEX ))
# Every command of the scripts (sinfo, scontrol, scancel) talks to this cluster.
export SLURM_CONF=$CONF
