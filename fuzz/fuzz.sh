#!/bin/sh
# libFuzzer harnesses of fuzz/targets: build and run.
#
#   sh fuzz/fuzz.sh build [NAME...]    build build/fuzz/NAME
#   sh fuzz/fuzz.sh run [NAME...]      build, then fuzz each for FUZZ_SECONDS
#   sh fuzz/fuzz.sh list               the harness names
#
# Environment:
#   FUZZ_SECONDS   seconds per harness (default 60)
#   FUZZ_JOBS      harnesses run at the same time (default: number of CPUs)
#   FUZZ_RUNS      stop each harness after this many executions instead
#   FUZZ_ARGS      more libFuzzer flags (e.g. -max_len=8192)
#   FUZZ_CC        compiler (default clang)
#   BUILD          build directory (default build)
#
# Each run starts from the seeds in fuzz/corpus/NAME and the working corpus
# build/fuzz/corpus/NAME (new inputs go there, the repository is never
# written); crashes go to build/fuzz/crashes/NAME-*.  Output: a log per
# harness (build/fuzz/NAME.log) and one summary line each:
#   fuzz: NAME runs=N execs_per_sec=N cov=N ft=N corpus=N seconds=N ok|CRASH
# Exit status 1 when any harness crashed, leaked or failed to build.
set -eu
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
OUT=$BUILD/fuzz
CC_FUZZ=${FUZZ_CC:-clang}
SECONDS_EACH=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
CFLAGS_FUZZ="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wall -Werror -Wno-unused-parameter -I. -Ifuzz -Ibench"

targets() {
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' fuzz/targets | awk '{print $1}'
}

line_of() {
    sed -e 's/#.*//' fuzz/targets | awk -v n="$1" '$1 == n { $1 = ""; print }'
}

build_one() {
    name=$1
    deps=$(line_of "$name")
    if [ ! -f "fuzz/$name.c" ]; then
        echo "fuzz: no fuzz/$name.c for target $name" >&2
        return 1
    fi
    mkdir -p "$OUT"
    # shellcheck disable=SC2086
    $CC_FUZZ $CFLAGS_FUZZ -o "$OUT/$name.tmp" "fuzz/$name.c" $deps \
        && mv -f "$OUT/$name.tmp" "$OUT/$name"
}

run_one() {
    name=$1
    log=$OUT/$name.log
    mkdir -p "$OUT/corpus/$name" "$OUT/crashes" "fuzz/corpus/$name"
    dict=
    [ -f "fuzz/$name.dict" ] && dict="-dict=fuzz/$name.dict"
    limit="-max_total_time=$SECONDS_EACH"
    [ -n "${FUZZ_RUNS:-}" ] && limit="-runs=$FUZZ_RUNS"
    start=$(date +%s)
    rc=0
    # shellcheck disable=SC2086
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$OUT/$name" $limit -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$OUT/crashes/$name-" $dict ${FUZZ_ARGS:-} \
        "$OUT/corpus/$name" "fuzz/corpus/$name" > "$log" 2>&1 || rc=$?
    secs=$(( $(date +%s) - start ))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
    verdict=ok
    if [ "$rc" -ne 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
        verdict=CRASH
    fi
    echo "fuzz: $name runs=${runs:-?} execs_per_sec=${eps:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?} seconds=$secs $verdict"
    if [ "$verdict" != ok ]; then
        echo "fuzz: $name: see $log; its tail:" >&2
        tail -40 "$log" | sed 's/^/    /' >&2
        return 1
    fi
}

cmd=${1:-run}
[ $# -gt 0 ] && shift
names=${*:-$(targets)}

case $cmd in
list)
    targets
    ;;
build)
    status=0
    for n in $names; do build_one "$n" || status=1; done
    exit $status
    ;;
run)
    command -v "$CC_FUZZ" >/dev/null || { echo "fuzz: $CC_FUZZ not found (make deps)" >&2; exit 1; }
    status=0
    for n in $names; do build_one "$n" || status=1; done
    [ $status -eq 0 ] || exit 1
    # JOBS at a time, each with its own result file
    rm -f "$OUT"/*.result
    running=0
    for n in $names; do
        ( run_one "$n" > "$OUT/$n.result" 2>&1; echo $? >> "$OUT/$n.result" ) &
        running=$((running + 1))
        if [ "$running" -ge "$JOBS" ]; then
            wait
            running=0
        fi
    done
    wait
    for n in $names; do
        sed '$d' "$OUT/$n.result"
        [ "$(tail -1 "$OUT/$n.result")" = 0 ] || status=1
    done
    exit $status
    ;;
*)
    echo "usage: $0 build|run|list [NAME...]" >&2
    exit 2
    ;;
esac
