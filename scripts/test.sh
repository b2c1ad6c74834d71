#!/usr/bin/env bash
# The project's tests, as the README gives them and as CI runs them
# (`.ci/run` calls exactly this script):
#   0. formatting (`cargo fmt --all --check`: seconds);
#   1. the workspace's test suite (release build: the tests train tiny models);
#   2. the real-Slurm end-to-end test (tests/slurm/slurm_e2e.sh): a one-node
#      Slurm started for the test, installing Debian's slurm-wlm and munge when
#      they are missing. Set ALGOPROG_SKIP_SLURM=1 to skip it on a machine
#      without root or apt.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo test --workspace --release

if [ "${ALGOPROG_SKIP_SLURM:-0}" = 1 ]; then
  echo "slurm e2e: skipped (ALGOPROG_SKIP_SLURM=1)"
  exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge
fi
"${SUDO[@]}" env ALGOPROG_CACHE="$PWD/target/tmp/algoprog-test-cache" bash tests/slurm/slurm_e2e.sh target/release/algoprog
