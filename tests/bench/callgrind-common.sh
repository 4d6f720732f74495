# Shared by delivery-cost.sh and trace-cost.sh (sourced, not run): the
# seccomp wrapper that lets the server run under valgrind, and a bounded wait
# for a KEY=value line in a process's log.
#
# rustix asks the kernel for the aux vector (prctl PR_GET_AUXV), which under
# valgrind names the host's vDSO and crashes the server; noauxv.c (20 lines of
# seccomp) makes that prctl fail so rustix reads valgrind's emulated
# /proc/self/auxv. Needs a C compiler (Debian: gcc).

# noauxv_wrapper OUT: builds $OUT/noauxv once and prints its path.
noauxv_wrapper() {
    local wrap=$1/noauxv
    if [ ! -x "$wrap" ]; then
        cc -O2 -o "$wrap" "$(dirname "${BASH_SOURCE[0]}")/noauxv.c"
    fi
    echo "$wrap"
}

# wait_for FILE KEY: the value of KEY=... once FILE has it (bounded: 120 s).
wait_for() {
    for _ in $(seq 1200); do
        if grep -q "$2=" "$1" 2>/dev/null; then
            grep -o "$2=[^ ]*" "$1" | head -1 | cut -d= -f2; return 0
        fi
        sleep 0.1
    done
    echo "no $2 in $1 after 120 s" >&2; return 1
}
