#!/usr/bin/env bash
# End-to-end test of the Slurm executor on a real single-node Slurm
# (Debian's slurm-wlm and munge): starts munged, slurmctld and slurmd as
# root with a throwaway config, submits a small study as an sbatch array
# through `algoprog sweep run --executor slurm --submit` into a store whose
# path holds a space (and an --sbatch option whose value does), cancels the
# array with `scancel` once some runs have ended, checks that a resubmission
# queues exactly the runs that had not ended and trains them, that no run
# ended before the cancel was started again, and with `algoprog sweep
# status` that every run is done. .ci/run runs it after the test suite.
#
#   apt-get install slurm-wlm munge      # once (.ci/run does it when missing)
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

# a small study: 8 runs, two diverging; the others long enough to cancel the array mid-way
STORE="$WORK/my store"
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
widths = [16, 32]
budget = { steps = 400 }
lr = [1e-2, 3e-3]
seeds = [0]
[[groups]]
name = "tune"
role = "tune"
families = ["modern"]
widths = [16, 32]
budget = { steps = 20 }
lr = [30.0]
STUDY
wait_queue() {
  for _ in $(seq 900); do
    if [ -z "$(squeue -h 2>/dev/null)" ]; then return 0; fi
    sleep 1
  done
  echo "the array did not finish"; exit 1
}
ended() { "$BIN" sweep status --all --store "$STORE" | awk '/^  [a-z]/ && ($1 == "done" || $1 == "diverged") {print $2}' | sort; }
training() { "$BIN" sweep status --all --store "$STORE" | awk '/^  running/ {n++} END {print n+0}'; }
started=$(date +%s)
"$BIN" sweep run --study "$WORK/study.toml" --store "$STORE" --executor slurm --cpus-per-task 1 \
  --sbatch="--comment=algoprog e2e" --submit
cat "$STORE/slurm/sweep.sbatch"
grep -q '^#SBATCH --comment="algoprog e2e"$' "$STORE/slurm/sweep.sbatch"
# Cancel the array once some runs ended while others are being trained.
for _ in $(seq 1200); do
  if [ "$(ended | wc -l)" -ge 1 ] && [ "$(training)" -ge 1 ]; then break; fi
  sleep 0.25
done
scancel --name=algoprog-sweep
wait_queue
"$BIN" sweep status --all --store "$STORE" | tee "$WORK/cancelled.txt"
ended > "$WORK/ended-before.txt"
n_before=$(wc -l < "$WORK/ended-before.txt")
echo "ended before the cancel: $n_before of 10"
[ "$n_before" -ge 1 ] && [ "$n_before" -lt 10 ] || { echo "the cancel did not land mid-array"; exit 1; }
# Runs cancelled mid-training are interrupted and resume from their checkpoints.
grep -qE "[1-9][0-9]* interrupted" "$WORK/cancelled.txt" || { echo "no run was cancelled mid-training"; exit 1; }
# Attempts of the runs that had ended: none may be started again.
for id in $(cat "$WORK/ended-before.txt"); do wc -l < "$STORE/runs/$id/attempts.log" > "$WORK/attempts-$id"; done
# Resubmit: the script lists exactly the runs that had not ended.
"$BIN" sweep run --study "$WORK/study.toml" --store "$STORE" --executor slurm --cpus-per-task 1 --submit | tee "$WORK/resubmit.txt"
grep -q "0 trained, 0 diverged, $n_before already done" "$WORK/resubmit.txt"
sed -n '/^IDS=(/,/^)/p' "$STORE/slurm/sweep.sbatch" | grep -v '[()]' | tr -d ' ' | sort > "$WORK/queued.txt"
"$BIN" sweep status --all --store "$STORE" | awk '/^  [a-z]/ && $1 != "done" && $1 != "diverged" {print $2}' | sort > "$WORK/missing.txt"
diff "$WORK/queued.txt" "$WORK/missing.txt"
wait_queue
sacct 2>/dev/null || true
"$BIN" sweep status --all --store "$STORE" | tee "$WORK/status.txt"
grep -q "10 runs: 8 done, 2 diverged, 0 running, 0 interrupted, 0 failed, 0 corrupt, 0 pending" "$WORK/status.txt"
ls "$STORE/slurm/"*.out > /dev/null
for id in $(cat "$WORK/ended-before.txt"); do
  [ "$(wc -l < "$STORE/runs/$id/attempts.log")" = "$(cat "$WORK/attempts-$id")" ] || { echo "run $id was started again"; exit 1; }
done
# A run cancelled mid-training resumed from its checkpoint.
for id in $(awk '/^  interrupted/ {print $2}' "$WORK/cancelled.txt"); do
  tail -n 1 "$STORE/runs/$id/attempts.log" | grep -q ' resume$' || { echo "run $id did not resume"; exit 1; }
done
# Every run that had not ended was started by the resubmitted array.
for id in $(cat "$WORK/missing.txt"); do
  grep -q . "$STORE/runs/$id/attempts.log" || { echo "run $id has no attempt"; exit 1; }
done
# Resubmitting again queues nothing: every run is finished.
"$BIN" sweep run --study "$WORK/study.toml" --store "$STORE" --executor slurm --submit | tee "$WORK/again.txt"
grep -q "0 trained, 0 diverged, 10 already done" "$WORK/again.txt"
echo "slurm e2e: OK in $(( $(date +%s) - started )) s; $(wc -l < "$WORK/missing.txt") runs resubmitted after the cancel ($WORK)"
