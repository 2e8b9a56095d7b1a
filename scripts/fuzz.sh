#!/usr/bin/env bash
# Fuzzes tether's parsers with libFuzzer (cargo-fuzz) on the stable toolchain, SECONDS per target
# (default 300), and prints executions, time, coverage and crashes per target. Installs what it
# needs on a fresh machine. See FUZZING.md for the choices (why `--sanitizer none` on stable) and
# the figures of the recorded runs.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   fuzz each target (all when none are named)
#   scripts/fuzz.sh --merge [TARGET...]     fold the working corpora (fuzz/work/) into the
#                                           committed ones (fuzz/corpus/): the seed-* and
#                                           regression-* files, plus the fewest inputs that reach
#                                           every edge any of them reaches
#
# Environment: FUZZ_ASAN=1 builds with AddressSanitizer instead, through RUSTC_BOOTSTRAP=1 (the
# stable toolchain ships the ASan runtime but refuses -Zsanitizer without it; unsupported, and
# about half the speed). CARGO_TARGET_DIR is honoured (the fuzz build goes to $CARGO_TARGET_DIR/fuzz).
#
# Exit status: 0 when no target crashed; 1 when one did (its reproducer is under fuzz/artifacts/,
# replay it with `fuzz/target/.../TARGET FILE` or add it to fuzz/corpus/TARGET/ and run
# `cargo test --test fuzz_corpus`).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(request_head response_head chunked sse_framer)
# Longest input libFuzzer makes: heads and bodies of a few KiB reach every limit with the small
# limits the targets choose (see tether_testkit::props).
MAX_LEN=4096

merge=0
seconds=300
if [[ ${1:-} == --merge ]]; then
  merge=1
  shift
elif [[ ${1:-} =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=("${ALL_TARGETS[@]}")

echo "== tools"
if ! command -v c++ >/dev/null; then
  # libfuzzer-sys compiles libFuzzer's C++ runtime.
  apt-get update -qq && apt-get install -y -qq g++
fi
if [[ $(cargo fuzz --version 2>/dev/null || true) != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

sanitizer=none
if [[ ${FUZZ_ASAN:-0} == 1 ]]; then
  sanitizer=address
  export RUSTC_BOOTSTRAP=1
fi
target_dir=fuzz/target
[[ -n ${CARGO_TARGET_DIR:-} ]] && target_dir=$CARGO_TARGET_DIR/fuzz
build=(--sanitizer "$sanitizer" --target-dir "$target_dir")
bin_dir=$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release

echo "== build (sanitizer: $sanitizer)"
cargo fuzz build "${build[@]}"

if [[ $merge == 1 ]]; then
  for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/work/$t"
    scratch=$(mktemp -d)
    mkdir "$scratch/all" "$scratch/chosen"
    cp fuzz/corpus/"$t"/* fuzz/work/"$t"/* "$scratch/all/" 2>/dev/null || true
    # Every seed-* and regression-* file, plus the fewest inputs that reach every edge the
    # candidates reach (see scripts/fuzz_cover.py).
    echo -n "$t: "
    python3 scripts/fuzz_cover.py "$bin_dir/$t" "$scratch/all" "$scratch/chosen"
    rm -f fuzz/corpus/"$t"/*
    cp "$scratch"/chosen/* "fuzz/corpus/$t/"
    rm -rf "$scratch"
  done
  exit 0
fi

summary=fuzz/work/summary.md
mkdir -p fuzz/work
{
  echo "| target | seconds | executions | execs/s | coverage (edges) | features | corpus | crashes |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$summary"
failed=0
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${seconds}s"
  mkdir -p "fuzz/work/$t" "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log=fuzz/work/$t.log
  before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  started=$(date +%s)
  # New inputs go to the working corpus (first directory); the committed one only seeds.
  status=0
  cargo fuzz run "${build[@]}" "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -max_len=$MAX_LEN -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  took=$(($(date +%s) - started))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  counters=$(sed -n 's/.*(\([0-9]*\) inline 8-bit counters).*/\1/p' "$log" | head -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  crashes=$(($(find "fuzz/artifacts/$t" -type f | wc -l) - before))
  rate=$((${execs:-0} / (took > 0 ? took : 1)))
  echo "| $t | $took | ${execs:-?} | $rate | ${cov:-?} of ${counters:-?} | ${ft:-?} | ${corp:-?} | $crashes |" >>"$summary"
  tail -n 3 "$log"
  if [[ $status != 0 || $crashes != 0 ]]; then
    failed=1
    echo "!! $t failed (exit $status); reproducers in fuzz/artifacts/$t/, log in $log" >&2
  fi
done
echo "== summary ($summary)"
cat "$summary"
exit $failed
