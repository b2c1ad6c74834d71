#!/usr/bin/env bash
# End-to-end test of the Slurm executor on a real single-node Slurm
# (Debian's slurm-wlm and munge): starts munged, slurmctld and slurmd as
# root with a throwaway config, submits a small study as an sbatch array
# through `algoprog sweep run --executor slurm --submit`, waits for the
# array, and checks with `algoprog sweep status` that every run is done.
#
#   apt-get install slurm-wlm munge      # once
#   cargo build --release
#   sudo tests/slurm/slurm_e2e.sh [target/release/algoprog]
#
# It stops the daemons it started when it exits.
set -euo pipefail
BIN=$(readlink -f "${1:-target/release/algoprog}")
WORK=$(mktemp -d /tmp/algoprog-slurm.XXXXXX)
HOST=$(hostname -s)
CPUS=$(nproc)
export ALGOPROG_CACHE=${ALGOPROG_CACHE:-$WORK/cache}
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# munge
mkdir -p "$WORK/munge" /run/munge
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1 count=1024 status=none
chmod 400 "$WORK/munge/munge.key"
munged --key-file="$WORK/munge/munge.key" --socket=/run/munge/munge.socket.2 \
  --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/munge/munged.log" --seed-file="$WORK/munge/seed" --force
PIDS+=("$(cat "$WORK/munge/munged.pid")")

# slurm: one node, one partition, no cgroups
mkdir -p "$WORK/spool/ctld" "$WORK/spool/d" "$WORK/log"
cat > "$WORK/slurm.conf" <<CONF
ClusterName=algoprog-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$WORK/spool/ctld
SlurmdSpoolDir=$WORK/spool/d
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
NodeName=$HOST CPUs=$CPUS State=UNKNOWN
PartitionName=test Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$WORK/slurm.conf"
slurmctld -D -f "$SLURM_CONF" > "$WORK/log/slurmctld.out" 2>&1 & PIDS+=("$!")
slurmd -D -f "$SLURM_CONF" > "$WORK/log/slurmd.out" 2>&1 & PIDS+=("$!")
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed)'; then break; fi
  sleep 1
done
sinfo

# a small study: 4 runs, one diverging
cat > "$WORK/study.toml" <<STUDY
name = "slurm"
eval_interval = 5
[base]
data = { corpus = "embedded", tokenizer = "bpe-512", seq_len = 32, val_tokens = 8192 }
train = { batch_size = 8, eval_batches = 2 }
[[groups]]
name = "scan"
role = "scan"
families = ["modern", "retro"]
widths = [16]
budget = { steps = 20 }
lr = [1e-2]
seeds = [0]
[[groups]]
name = "tune"
role = "tune"
families = ["modern"]
widths = [16, 32]
budget = { steps = 20 }
lr = [30.0]
STUDY
"$BIN" sweep run --study "$WORK/study.toml" --store "$WORK/store" --executor slurm --cpus-per-task 1 --submit
cat "$WORK/store/slurm/sweep.sbatch"
for _ in $(seq 600); do
  if [ -z "$(squeue -h 2>/dev/null)" ]; then break; fi
  sleep 1
done
sacct 2>/dev/null || true
"$BIN" sweep status --all --store "$WORK/store" | tee "$WORK/status.txt"
grep -q "4 runs: 2 done, 2 diverged, 0 running, 0 interrupted, 0 failed, 0 corrupt, 0 pending" "$WORK/status.txt"
ls "$WORK/store/slurm/"*.out > /dev/null
# Resubmitting writes nothing to run: every run is finished.
"$BIN" sweep run --study "$WORK/study.toml" --store "$WORK/store" --executor slurm --submit | tee "$WORK/again.txt"
grep -q "0 trained, 0 diverged, 4 already done" "$WORK/again.txt"
echo "slurm e2e: OK ($WORK)"
