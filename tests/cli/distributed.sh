#!/usr/bin/env bash
# Data-parallel training on c10d/Gloo, end to end on loopback:
#  - 2 ranks x half the global batch end with one process's weights (clf, dsm) to 1e-5;
#  - a 2-rank run stopped and resumed equals an uninterrupted 2-rank run bit for bit
#    (task ebm: per-rank replay buffers and generators travel in rank 0's checkpoint);
#  - a killed rank ends the other with a clear error within 30 s, and `launch` fails;
#  - bad flags are usage errors.
# Usage: distributed.sh PATH/TO/ebm REPO_ROOT
set -uo pipefail
EBM=$1
ROOT=$2
# shellcheck source=lib/check.bash
source "$(dirname "$0")/lib/check.bash"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3

check "launch --help" 0 "$EBM" launch --help
has "launch help names the appended flags" "$T/out" "world-size"
check "launch without a command" 2 "$EBM" launch -n 2
base=(train --data mnist --threads 1 --seed 5 --eval-n 50 --checkpoint-every 1000 --quiet)
check "--world-size 2 without --master" 2 "$EBM" "${base[@]}" --task clf --steps 2 --out "$T/x" --world-size 2
check "--rank outside the world" 2 "$EBM" "${base[@]}" --task clf --steps 2 --out "$T/x" --world-size 2 --rank 2 --master 127.0.0.1:1
check "--batch not a multiple of --world-size" 2 "$EBM" "${base[@]}" --task clf --steps 2 --batch 33 --out "$T/x" \
  --world-size 2 --master 127.0.0.1:1
check "a bad --master" 2 "$EBM" "${base[@]}" --task clf --steps 2 --out "$T/x" --world-size 2 --master nohostport

# Max |difference| over every parameter of two model folders' weights.pt.
maxdiff() {
  "$PY" - "$1/weights.pt" "$2/weights.pt" <<'PY'
import sys, torch
a, b = (dict(torch.jit.load(p).named_parameters()) for p in sys.argv[1:3])
assert a.keys() == b.keys() and a, (sorted(a), sorted(b))
print(max((a[k] - b[k]).abs().max().item() for k in a))
PY
}
within() {  # within DESCRIPTION VALUE TOL
  if "$PY" -c "import sys; sys.exit(0 if float('$2') <= float('$3') else 1)"; then echo "ok: $1 ($2 <= $3)";
  else echo "FAIL: $1: $2 > $3"; fails=$((fails + 1)); fi
}

# 1 process x batch 32 vs 2 ranks x 16: no augmentation, 1 thread.
for task in clf dsm; do
  args=("${base[@]}" --task "$task" --batch 32 --steps 15 --data-noise 0)
  check "$task: one process" 0 "$EBM" "${args[@]}" --out "$T/$task-1"
  check "$task: two ranks (ebm launch -n 2)" 0 "$EBM" launch -n 2 -- ebm "${args[@]}" --out "$T/$task-2"
  has "$task: the card records the world size" "$T/$task-2/card.json" '"world_size": 2'
  d=$(maxdiff "$T/$task-1" "$T/$task-2")
  within "$task: 2-rank weights equal 1-process weights" "$d" 1e-5
done

# Stop at step 4, resume, and compare with an uninterrupted run (task ebm: buffers).
ebm_args=("${base[@]}" --task ebm --batch 16 --steps 8 --sgld-steps 3 --buffer-size 64)
check "ebm: 2 ranks uninterrupted" 0 "$EBM" launch -n 2 -- ebm "${ebm_args[@]}" --out "$T/ebm-a"
check "ebm: 2 ranks stopped at step 4" 0 "$EBM" launch -n 2 -- ebm "${ebm_args[@]}" --out "$T/ebm-b" --stop-after 4
check "a 2-rank checkpoint does not resume in one process" 1 "$EBM" "${ebm_args[@]}" --out "$T/ebm-b" --resume
has "... and says how to resume it" "$T/err" "world-size 2"
check "ebm: 2 ranks resumed" 0 "$EBM" launch -n 2 -- ebm "${ebm_args[@]}" --out "$T/ebm-b" --resume
d=$(maxdiff "$T/ebm-a" "$T/ebm-b")
within "ebm: resumed 2-rank run equals the uninterrupted one" "$d" 0

# A rank that never finds its peer gives up after --dist-timeout with a clear error.
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start=$(date +%s)
check "rank 0 alone: rendezvous times out" 1 "$EBM" "${base[@]}" --task clf --steps 2 --out "$T/alone" \
  --world-size 2 --rank 0 --master "127.0.0.1:$port" --dist-timeout 3
has "... naming the rendezvous" "$T/err" "rendezvous"
within "... within 20 s" "$(( $(date +%s) - start ))" 20

# Kill rank 1 with SIGKILL mid-run: rank 0 must stop with a clear error, within 30 s.
"$EBM" launch -n 2 --grace 60 -- ebm train --data mnist --threads 1 --task clf --batch 32 --steps 100000 \
  --checkpoint-every 100000 --out "$T/kill" >"$T/kill.out" 2>"$T/kill.err" &
lpid=$!
for _ in $(seq 1 300); do  # wait for rank 1 (at most 60 s), then let both load data and start stepping
  pgrep -f -- "--out $T/kill --world-size 2 --rank 1 --master" >/dev/null && break
  sleep 0.2
done
sleep 8
r1=$(pgrep -f -- "--out $T/kill --world-size 2 --rank 1 --master" | head -1)
if [ -z "$r1" ]; then
  echo "FAIL: rank 1 of the kill test was not found"; fails=$((fails + 1)); kill -- "$lpid" 2>/dev/null
else
  killed_at=$(date +%s)
  kill -9 "$r1"
  wait "$lpid"; rc=$?
  took=$(( $(date +%s) - killed_at ))
  if [ "$rc" != 0 ]; then echo "ok: launch fails when a rank is killed (exit $rc)"; else
    echo "FAIL: launch exited 0 after a rank was killed"; fails=$((fails + 1)); fi
  within "rank 0 stopped within 30 s of the kill" "$took" 30
  has "rank 0 names the lost peer" "$T/kill.err" "rank 0: .*failed: another rank exited"
  has "launch names the killed rank" "$T/kill.err" "rank 1 was killed by signal 9"
fi
finish
