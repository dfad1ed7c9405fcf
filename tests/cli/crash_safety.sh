#!/usr/bin/env bash
# Crash safety of training and of every write:
#  - SIGKILL at 10 random points of a training run, each followed by --resume:
#    the final weights equal an uninterrupted run's bit for bit (1 thread, fixed
#    seed), and every checkpoint left behind is readable (the next resume reads it);
#  - a full disk (RLIMIT_FSIZE: writes beyond the limit fail with EFBIG, as on a
#    full filesystem, without root) during a checkpoint or a report write: the
#    command fails with a clear error, the previous file survives byte for byte,
#    and no temporary file is left;
#  - a diverging energy ends sample, denoise, inpaint and purify with a
#    divergence error and exit 1, and writes no output.
# Usage: crash_safety.sh PATH/TO/ebm REPO_ROOT
set -uo pipefail
EBM=$1
ROOT=$2
# shellcheck source=lib/check.bash
source "$(dirname "$0")/lib/check.bash"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3

# Task ebm exercises everything a checkpoint holds: weights, Adam state, the
# replay buffer and the generator.
args=(train --task ebm --data mnist --batch 32 --steps 60 --sgld-steps 5 --buffer-size 256 --checkpoint-every 3
      --threads 1 --seed 3 --eval-n 50 --quiet)
check "uninterrupted reference run" 0 "$EBM" "${args[@]}" --out "$T/ref"

RANDOM=2026  # reproducible kill times (the points they land on still vary with the machine)
kills=0 progressed=0 last=-1
while [ "$kills" -lt 10 ]; do
  resume=(); [ -e "$T/run/checkpoint.pt" ] && resume=(--resume)
  "$EBM" "${args[@]}" --out "$T/run" "${resume[@]}" >"$T/run.out" 2>"$T/run.err" &
  pid=$!
  if [ "$kills" -lt 2 ]; then
    sleep "$(( RANDOM % 20 / 10 + 1 )).$(( RANDOM % 10 ))"  # 1.0 .. 2.9 s: startup, steps, or a checkpoint write
  else
    # Later kills wait for this run's first new checkpoint (each write is a rename,
    # so the inode changes), then land 0.0 .. 0.9 s after it: in the steps or the
    # next write. Fixed sleeps alone drift onto startup on a loaded machine.
    ino=$(stat -c %i "$T/run/checkpoint.pt" 2>/dev/null || echo none)
    for _ in $(seq 600); do
      kill -0 "$pid" 2>/dev/null || break
      now=$(stat -c %i "$T/run/checkpoint.pt" 2>/dev/null || echo none)
      [ "$now" != "$ino" ] && break
      sleep 0.1
    done
    sleep "0.$(( RANDOM % 10 ))"
  fi
  if ! kill -0 "$pid" 2>/dev/null; then  # finished (or failed) before the kill
    wait "$pid"; rc=$?
    if [ "$rc" != 0 ]; then echo "FAIL: a resume failed (exit $rc)"; sed 's/^/  | /' "$T/run.err" | head -5; fails=$((fails + 1)); break; fi
    echo "note: the run finished before kill $((kills + 1)); starting over to place the rest"
    rm -rf "$T/run"; last=-1
    continue
  fi
  kill -9 "$pid"; wait "$pid" 2>/dev/null
  kills=$((kills + 1))
  if [ -e "$T/run/checkpoint.pt" ]; then
    # The checkpoint must be whole: the archive opens and its step is readable.
    step=$("$PY" -c "import sys, torch; m = torch.jit.load(sys.argv[1]); print(int(m.meta[0]))" "$T/run/checkpoint.pt" 2>"$T/ck.err")
    if [ -z "$step" ]; then echo "FAIL: kill $kills left an unreadable checkpoint"; sed 's/^/  | /' "$T/ck.err" | head -3; fails=$((fails + 1)); break; fi
    [ "$step" -gt "$last" ] && progressed=$((progressed + 1))
    last=$step
    echo "ok: kill $kills: checkpoint readable at step $step"
  else
    echo "ok: kill $kills: before the first checkpoint"
  fi
done
check "the run resumed after the last kill completes" 0 "$EBM" "${args[@]}" --out "$T/run" --resume
if [ "$progressed" -ge 3 ]; then echo "ok: $progressed of the kills landed after new checkpoints"; else
  echo "FAIL: only $progressed kills landed after new checkpoints (the kill times did not cover the run)"; fails=$((fails + 1)); fi
if cmp -s "$T/ref/weights.pt" "$T/run/weights.pt"; then echo "ok: weights after 10 SIGKILLs equal the uninterrupted run's, byte for byte"
else echo "FAIL: weights differ from the uninterrupted run"; fails=$((fails + 1)); fi
ls "$T/run" | grep -q '\.tmp\.' && echo "note: a kill mid-write left a temporary file (never read; the next write of that file replaces it)"

# Full disk during a checkpoint: stop at step 6, then resume with a 256 KiB file-size limit.
check "a run stopped at step 6" 0 "$EBM" "${args[@]}" --out "$T/full" --stop-after 6
before=$(sha256sum "$T/full/checkpoint.pt" | cut -d' ' -f1)
check "a checkpoint write on a full disk fails" 1 bash -c 'trap "" XFSZ; ulimit -f 256; exec "$@"' _ "$EBM" "${args[@]}" --out "$T/full" --resume
has "... with a clear error" "$T/err" "cannot write .*checkpoint.pt.*File too large"
[ "$(sha256sum "$T/full/checkpoint.pt" | cut -d' ' -f1)" = "$before" ] && echo "ok: the previous checkpoint is unchanged" ||
  { echo "FAIL: the previous checkpoint changed"; fails=$((fails + 1)); }
ls "$T/full" | grep -q '\.tmp\.' && { echo "FAIL: a temporary file was left behind"; fails=$((fails + 1)); } || echo "ok: no temporary file left"
check "... and the run resumes from it afterwards" 0 "$EBM" "${args[@]}" --out "$T/full" --resume --stop-after 3

# Full disk during a report write (a 1 KiB limit: the one-line error on stderr
# still fits, the 1.5 KB report does not): the report already there is unchanged.
echo '{"old": true}' >"$T/report.json"
check "a report write on a full disk fails" 1 bash -c 'trap "" XFSZ; ulimit -f 1; exec "$@"' _ "$EBM" ood eval \
  --model "$ROOT/models/mnist-eft" --in mnist --n-in 64 --ood uniform --n-ood 8 --threads 1 --json "$T/report.json" -q
has "... with a clear error" "$T/err" "cannot write .*report.json.*File too large"
has "... and the old report is intact" "$T/report.json" '"old": true'

# A diverging energy: E(x) = exp(200 * sum x) overflows to inf at once.
cat >"$T/diverge.py" <<'PY'
import sys, torch
class Boom(torch.nn.Module):
    def forward(self, x):
        return torch.exp(200.0 * x.flatten(1).sum(1))
torch.jit.script(Boom()).save(sys.argv[1])
PY
check "a diverging TorchScript energy" 0 "$PY" "$T/diverge.py" "$T/diverge.pt"
check "test images" 0 "$EBM" data export --data mnist --split test --n 4 --out "$T/x.npy" --quiet
for c in "sample --n 4 --steps 5 --out $T/d-sample.png" \
         "denoise --input $T/x.npy --steps 5 --out $T/d-denoise.npy" \
         "inpaint --input $T/x.npy --mask center:14 --steps 5 --out $T/d-inpaint.npy"; do
  read -r -a a <<<"$c"
  check "${a[0]} with a diverging energy exits 1" 1 "$EBM" "${a[@]}" --model "$T/diverge.pt" --threads 1 --quiet
  has "... with a divergence error" "$T/err" "diverged"
  out=${a[-1]}
  [ -e "$out" ] && { echo "FAIL: ${a[0]} wrote $out"; fails=$((fails + 1)); } || echo "ok: ... and wrote nothing"
done
finish
