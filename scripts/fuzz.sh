#!/bin/sh
# Builds the libFuzzer harnesses (build-fuzz: clang, ASan+UBSan, coverage).
# For each harness it first runs every committed seed of tests/fuzz/corpus/
# whole (the regression inputs among them), then fuzzes for SECONDS
# (default 20) from a scratch copy of that corpus, so the committed seeds
# never change.  Prints per harness the executions, the coverage
# (libFuzzer's final cov:) and the result; exits non-zero when any harness
# found a crash, a leak, undefined behaviour or a slow input (over 2 s).
# Logs and such inputs stay in build-fuzz/fuzz-out/HARNESS/ (reproduce one:
# build-fuzz/tests/fuzz/fuzz-HARNESS FILE).
#
#   scripts/fuzz.sh [SECONDS [HARNESS...]]      e.g. scripts/fuzz.sh 36000 qmp rpc
set -eu
cd "$(dirname "$0")/.."
secs=${1:-20}
[ $# -gt 0 ] && shift
harnesses=${*:-"qmp rpc event loader ctl mig-dest mig-dest-pc mig-src pagemap snapfile"}
dir=build-fuzz

if [ -d "$dir" ]; then
	CC=clang meson setup --reconfigure "$dir" -Dfuzzing=true \
		-Db_sanitize=address,undefined -Db_lundef=false >/dev/null
else
	CC=clang meson setup "$dir" -Dfuzzing=true \
		-Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
targets=tests/fuzz/fuzz-corpus-gen # built too, so it keeps compiling
for h in $harnesses; do
	targets="$targets tests/fuzz/fuzz-$h"
done
ninja -C "$dir" $targets

# Undefined behaviour is a finding, not a warning; libnng's own exit-time
# leftovers are not ours (see the suppression file).
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$PWD/tests/unit/monitor/lsan-nng.supp

failed=0
summary=""
for h in $harnesses; do
	out=$dir/fuzz-out/$h
	bin=$dir/tests/fuzz/fuzz-$h
	rm -rf "$out"
	mkdir -p "$out/corpus"
	cp tests/fuzz/corpus/"$h"/* "$out/corpus/"
	set -- -max_total_time="$secs" -timeout=2 -print_final_stats=1 \
		-close_fd_mask=3 -artifact_prefix="$out/"
	case $h in
	qmp) # Mutating its 1 MiB regression seed whole would be slow: replayed only.
		set -- "$@" -dict=tests/fuzz/qmp.dict -max_len=16384 ;;
	esac
	echo "== fuzz $h: ${secs} s"
	rc=0
	phase="replaying the committed seeds"
	"$bin" -timeout=2 -close_fd_mask=3 -artifact_prefix="$out/" tests/fuzz/corpus/"$h"/* \
		>"$out/log" 2>&1 || rc=$?
	if [ "$rc" -eq 0 ]; then
		phase=fuzzing
		"$bin" "$@" "$out/corpus" >"$out/log" 2>&1 || rc=$?
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -n 1)
	cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' "$out/log" | tail -n 1)
	if [ "$rc" -eq 0 ]; then
		result=ok
	else
		result="FAILED (exit $rc, $phase; log: $out/log)"
		failed=1
		# What it found, and the input that shows it.
		grep -E '^==[0-9]+==(ERROR|WARNING)|runtime error|deadly signal|ALARM|Test unit written' \
			"$out/log" | head -n 20 || true
	fi
	line="$h: ${execs:-0} executions, cov ${cov:-?}, $result"
	echo "$line"
	summary="$summary$line
"
done

echo
echo "== fuzz summary (${secs} s each) =="
printf '%s' "$summary"
exit $failed
