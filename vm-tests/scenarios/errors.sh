# shellcheck shell=bash
# errors (issue 4): not root, unknown module; nfkit next to modprobe in one
# boot.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="errors: not root (nfuser) and unknown module: clear message, exit code"
SCENARIO_BOOTS="main"

NO_SUCH=nfkit_no_such_module

boot_main() {
    # Oracle: what modprobe says to an unprivileged user.
    check_fails "oracle: modprobe nf_conntrack as nfuser fails" runuser -u nfuser -- modprobe nf_conntrack
    record oracle-not-root <<<"$CHECK_OUTPUT"
    check_fails "nf_conntrack is not loaded" grep -q '^nf_conntrack ' /proc/modules

    # nfkit's documented exit codes (nfkit::cli): 1 = an operation failed,
    # 2 = bad command line. A refusal is 1, never 2 and never a crash.
    check_status "nfkit modules load nf_conntrack as nfuser exits 1" 1 \
        runuser -u nfuser -- "$NFKIT" modules load nf_conntrack
    record nfkit-not-root <<<"$CHECK_OUTPUT"
    check_match "nfkit says root / permission is needed" "root|[Pp]ermission|CAP_SYS_MODULE" "$CHECK_OUTPUT"
    check_fails "nf_conntrack is still not loaded" grep -q '^nf_conntrack ' /proc/modules

    check_fails "oracle: modprobe $NO_SUCH fails" modprobe "$NO_SUCH"
    record oracle-unknown <<<"$CHECK_OUTPUT"
    check_match "oracle says not found" "not found" "$CHECK_OUTPUT"
    check_status "nfkit modules load $NO_SUCH exits 1" 1 "$NFKIT" modules load "$NO_SUCH"
    record nfkit-unknown <<<"$CHECK_OUTPUT"
    check_match "nfkit says not found and names the module" "$NO_SUCH.*not found|not found.*$NO_SUCH" "$CHECK_OUTPUT"
}
