#!/usr/bin/env bash
# The README's test command: brings up the services the suite needs, then runs it.
#   deploy/dev/test.sh              # everything
#   deploy/dev/test.sh -p emanager  # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/../.."

bash deploy/dev/services-up.sh
for extra in slurm-up.sh sge-up.sh ssh-up.sh; do
  if [ -f "deploy/dev/$extra" ]; then bash "deploy/dev/$extra"; fi
done
# The second, independent SLURM cluster (emanager-dev-b, SLURM_CONF=/etc/slurm-b/slurm.conf)
# for the tests that use several sites.
EM_SLURM_CLUSTER=b bash deploy/dev/slurm-up.sh

export EMANAGER_AMQP_URL="${EMANAGER_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export EMANAGER_REDIS_URL="${EMANAGER_REDIS_URL:-redis://127.0.0.1:6379/}"
# The integration tests start the real pilot-agent and emanager binaries.
cargo build --workspace --bins
# Every test binary runs, so one failure does not hide the others.
cargo test --workspace --no-fail-fast "$@"
