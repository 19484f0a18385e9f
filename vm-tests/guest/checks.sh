# shellcheck shell=bash
# Assertion helpers for vm-tests scenarios. Sourced by the guest runner (in
# the VM) and by the host runner for a scenario's compare step; the same
# helpers, the same output on both sides:
#
#   ok 3 - description
#   not ok 4 - description
#   #   <output of the failed command, indented>
#
# and, from `verdict`, exactly one closing line `vm-tests: N passed, M failed`.
#
# Every helper returns the check's status, so a scenario can stop a chain of
# dependent checks:  check "module loads" modprobe x || return 0

CHECKS_PASSED=0
CHECKS_FAILED=0
CHECK_OUTPUT=''   # combined stdout+stderr of the last `check`/`check_fails`

_check_report() {   # _check_report STATUS DESCRIPTION [DETAIL]
    local n=$((CHECKS_PASSED + CHECKS_FAILED + 1))
    if (($1 == 0)); then
        CHECKS_PASSED=$((CHECKS_PASSED + 1))
        printf 'ok %d - %s\n' "$n" "$2"
    else
        CHECKS_FAILED=$((CHECKS_FAILED + 1))
        printf 'not ok %d - %s\n' "$n" "$2"
        [[ -z ${3:-} ]] || printf '%s\n' "$3" | sed 's/^/#   /'
    fi
    return "$1"
}

_quoted() {   # a command line as the shell would need it typed
    local q
    printf -v q '%q ' "$@"
    printf '%s' "${q% }"
}

# check DESC CMD [ARG...]: passes when CMD exits 0.
check() {
    local desc=$1 rc=0
    shift
    CHECK_OUTPUT=$("$@" 2>&1) || rc=$?
    _check_report "$rc" "$desc" "$(printf '$ %s\n%s\nexit status %d' "$(_quoted "$@")" "$CHECK_OUTPUT" "$rc")"
}

# check_fails DESC CMD [ARG...]: passes when CMD exits non-zero.
check_fails() {
    local desc=$1 rc=0
    shift
    CHECK_OUTPUT=$("$@" 2>&1) || rc=$?
    _check_report "$((rc == 0))" "$desc" "$(printf '$ %s\n%s\nexit status 0, expected a failure' "$(_quoted "$@")" "$CHECK_OUTPUT")"
}

# check_status DESC STATUS CMD [ARG...]: passes when CMD exits with STATUS.
check_status() {
    local desc=$1 want=$2 rc=0
    shift 2
    CHECK_OUTPUT=$("$@" 2>&1) || rc=$?
    _check_report "$((rc != want))" "$desc" "$(printf '$ %s\n%s\nexit status %d, expected %d' "$(_quoted "$@")" "$CHECK_OUTPUT" "$rc" "$want")"
}

# check_eq DESC EXPECTED ACTUAL
check_eq() {
    [[ $2 == "$3" ]]
    _check_report "$?" "$1" "$(printf 'expected: %s\nactual:   %s' "$2" "$3")"
}

# check_match DESC ERE TEXT: TEXT matches the extended regular expression.
check_match() {
    [[ $3 =~ $2 ]]
    _check_report "$?" "$1" "$(printf 'pattern: %s\ntext:    %s' "$2" "$3")"
}

# check_same_file DESC FILE_A FILE_B: identical contents (diff on failure).
check_same_file() {
    local d rc=0
    if [[ ! -f $2 || ! -f $3 ]]; then
        _check_report 1 "$1" "missing: $( [[ -f $2 ]] || echo "$2") $( [[ -f $3 ]] || echo "$3")"
        return
    fi
    d=$(diff -u "$2" "$3") || rc=$?
    _check_report "$rc" "$1" "$d"
}

# record NAME [FILE]: saves FILE (or stdin) as result NAME of this boot
# ($OUT/NAME, copied back to the host) and prints it between markers.
record() {
    local name=$1
    [[ -n ${OUT:-} ]] || { echo "record: OUT is not set" >&2; return 1; }
    # stdin read by cat itself: bullseye's init= boot has no /dev/stdin link.
    if (($# > 1)); then
        cat "$2" >"$OUT/$name"
    else
        cat >"$OUT/$name"
    fi
    printf -- '--- record %s ---\n' "$name"
    cat "$OUT/$name"
    printf -- '--- end record %s ---\n' "$name"
}

# note TEXT...: a comment line in the output (never counted).
note() { printf '# %s\n' "$*"; }

# verdict: the one closing line. Returns non-zero when a check failed.
verdict() {
    printf 'vm-tests: %d passed, %d failed\n' "$CHECKS_PASSED" "$CHECKS_FAILED"
    ((CHECKS_FAILED == 0))
}
