# Shared by the CLI end-to-end scripts (tests/cli/*.sh): a scratch dir $T removed
# on exit, a failure count, and two checks. Source it; end with `finish`.
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
check() {  # check DESCRIPTION EXPECTED_RC CMD...
  local what=$1 want=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ "$rc" != "$want" ]; then
    echo "FAIL: $what: exit $rc, want $want"; sed 's/^/  | /' "$T/err" | head -5; fails=$((fails + 1))
  else
    echo "ok: $what"
  fi
}
has() {  # has DESCRIPTION FILE PATTERN
  if grep -q -- "$3" "$2"; then echo "ok: $1"; else echo "FAIL: $1 ('$3' not in $2)"; fails=$((fails + 1)); fi
}
finish() { [ "$fails" = 0 ] || { echo "$fails check(s) failed"; exit 1; }; }
