#!/usr/bin/env bash
# make bench: run every benchmark; each figure is one `bench: NAME VALUE UNIT` line.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
python3 scripts/bench.py "$build"
python3 scripts/alert_fatigue.py --sentineld "$build/core/sentineld"
# Detector throughput, memory per series and verdict latency (tools/sentinel-bench).
"$build/tools/sentinel-bench/sentinel-bench"
python3 tests/bench/bench_remote_write.py "$build"
python3 tests/bench/bench_alertmanager.py "$build"
python3 tests/bench/bench_detect_to_execute.py "$build"
python3 tests/bench/bench_kafka.py "$build"
python3 tests/bench/bench_kafka_lag.py "$build"
python3 tests/bench/bench_llm.py "$build"
