#!/usr/bin/env bash
# End-to-end test of `kaizen sweep` on a real, single-node Slurm started here (no cgroups, no accounting):
# installs slurm-wlm + munge with apt-get when missing, starts munged, slurmctld and slurmd on localhost with a
# throwaway config, plans configs/sweeps/smoke.toml, submits the emitted job array with `sbatch --wait`, collects,
# checks that every run finished and that a resubmission does nothing, then preempts a longer run with SIGUSR1 and
# checks that it is requeued and resumes to the uninterrupted run's summary; stops the daemons it started (by their
# pids) however it exits.
#
#   bash scripts/slurm-local.sh [path/to/kaizen]      (default: target/release/kaizen; needs root)
#
# Exit 0 on success, 1 on a failed check; when Slurm cannot be set up here (not root, no apt-get, install
# failed) it prints `skipped: <reason>` and exits 0, so CI can call it unconditionally.
set -uo pipefail
cd "$(dirname "$0")/.."
KAIZEN="$(realpath "${1:-target/release/kaizen}")"
skip() { echo "slurm-local: skipped: $*"; exit 0; }
fail() { echo "slurm-local: FAILED: $*"; for f in "$D"/*.log "$D"/sweep/logs/*.out; do [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (the Slurm and munge daemons)"
[ -x "$KAIZEN" ] || skip "no kaizen binary at $KAIZEN (build it first)"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || skip "slurm-wlm / munge are not installed and there is no apt-get"
  echo "slurm-local: installing slurm-wlm and munge"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge) \
    >/tmp/slurm-local-apt.log 2>&1 || skip "apt-get install slurm-wlm munge failed (see /tmp/slurm-local-apt.log)"
fi

D="$(mktemp -d /tmp/kaizen-slurm.XXXXXX)"
chmod 755 "$D"   # the munge user must reach its folder inside
PIDS=()
cleanup() {
  # slurmd, slurmctld, then munged, by the pids recorded when they started.
  local p
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$D"
}
trap cleanup EXIT

# munge: its own key and socket in $D (run by root with --force: a throwaway single-node setup).
mkdir -p "$D/munge" "$D/run"
mungekey --create --keyfile="$D/munge/munge.key" --force >/dev/null 2>&1 || dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 700 "$D/munge"; chmod 400 "$D/munge/munge.key"; chmod 755 "$D/run"
SOCK="$D/run/munge.socket"
munged --force --foreground --key-file="$D/munge/munge.key" --socket="$SOCK" \
  --pid-file="$D/munge/munged.pid" --log-file="$D/munge.log" --seed-file="$D/munge/seed" >"$D/munged.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || fail "munged did not start"

HOST="$(hostname -s)"
CPUS="$(nproc)"
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
mkdir -p "$D/state" "$D/spool"
cat > "$D/slurm.conf" <<CONF
ClusterName=kaizen-local
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$D/slurm.conf"
slurmctld -D -f "$SLURM_CONF" >"$D/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" >"$D/slurmd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed)' && break; sleep 0.2; done
sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed)' || fail "the Slurm node did not come up: $(sinfo 2>&1)"
echo "slurm-local: Slurm $(sinfo -V | awk '{print $2}') up on $HOST ($CPUS CPUs)"

SW="$D/sweep"
"$KAIZEN" sweep plan --grid configs/sweeps/smoke.toml --out "$SW" >/dev/null || fail "sweep plan"
"$KAIZEN" sweep emit slurm "$SW" --cpus 1 --mem 1G --time 00:10:00 --parallel "$CPUS" >/dev/null || fail "sweep emit"
START=$(date +%s)
sbatch --wait "$SW/sweep.slurm" || fail "sbatch --wait: some array task failed"
echo "slurm-local: job array finished in $(( $(date +%s) - START )) s"
"$KAIZEN" sweep collect "$SW" >"$D/collect.txt" || fail "sweep collect"
N=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["runs"]))' "$SW/sweep.json" 2>/dev/null || echo 4)
grep -q "$N of $N runs finished" "$D/collect.txt" || fail "not every run finished: $(head -5 "$D/collect.txt")"
for i in $(seq 0 $((N - 1))); do
  [ -s "$SW/logs/$i.out" ] || fail "no Slurm log for array task $i"
done
# A second submission does nothing but confirm (idempotent workers).
sbatch --wait "$SW/sweep.slurm" >/dev/null || fail "resubmission"
grep -q "already finished" "$SW/logs/0.out" || fail "the resubmitted task did not see its finished run"
echo "slurm-local: OK: $N runs through a Slurm job array, collected; resubmission idempotent"

# Preemption: a longer run is sent SIGUSR1 (what --signal=USR1@N does before the time limit) while it trains; the
# worker checkpoints and exits 130, the script requeues the task, and the requeued task resumes to the numbers of
# the same run done without interruption.
cat > "$D/long.toml" <<GRID
preset = "smoke"
seeds = [3]
strategies = ["kaizen"]
[set]
"train.epochs" = 40
GRID
LONG="$D/long"
"$KAIZEN" sweep plan --grid "$D/long.toml" --out "$LONG" >/dev/null || fail "plan (long)"
"$KAIZEN" sweep emit slurm "$LONG" --cpus 1 --mem 1G --time 00:10:00 >/dev/null || fail "emit (long)"
RUN="$LONG/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["runs"][0]["dir"])' "$LONG/sweep.json")"
JOB=$(sbatch --parsable "$LONG/sweep.slurm") || fail "sbatch (long)"
for _ in $(seq 600); do [ -f "$RUN/checkpoints/latest.safetensors" ] && break; sleep 0.1; done
[ -f "$RUN/checkpoints/latest.safetensors" ] || fail "the long run never checkpointed"
scancel --signal=USR1 "${JOB}_0" || fail "scancel --signal=USR1"
# Slurm holds a requeued job back for a while (BeginTime); let it start at once.
for _ in $(seq 1200); do
  [ -f "$RUN/summary.json" ] && break
  if squeue -h -j "$JOB" -o %T 2>/dev/null | grep -q PENDING; then
    scontrol update JobId="$JOB" StartTime=now >/dev/null 2>&1 || true
  fi
  sleep 0.25
done
[ -f "$RUN/summary.json" ] || fail "the signalled task was not requeued to completion"
grep -q "resuming" "$LONG/logs/0.out" || fail "the requeued task did not resume (log: $(tail -3 "$LONG/logs/0.out"))"
# The same run without interruption, outside Slurm, for the numbers.
REF="$D/ref"
"$KAIZEN" sweep plan --grid "$D/long.toml" --out "$REF" >/dev/null
# Same thread count as the Slurm task (--cpus 1): results are bit-identical for a fixed thread count.
RAYON_NUM_THREADS=1 "$KAIZEN" sweep worker "$REF" --index 0 --quiet >/dev/null 2>&1 || fail "reference run"
cmp -s "$RUN/summary.json" "$REF/${RUN#"$LONG"/}/summary.json" || fail "the requeued run's summary differs from the uninterrupted run's"
echo "slurm-local: OK: SIGUSR1 -> checkpoint, exit 130, requeue, resume to the uninterrupted run's summary"
