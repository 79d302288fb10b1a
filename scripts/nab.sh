#!/usr/bin/env bash
# make nab: score sentinel-detect (its embedded configuration unless SENTINEL_DETECT_ARGS says
# otherwise) on the NAB tuning set in tests/data/nab-tuning with tools/nab/nab_eval.py, and
# print the three NAB profile scores as `bench: NAME VALUE score` lines.
#
# usage: scripts/nab.sh [BUILD_DIR]        (default: build; configured and built if needed)
# env:   SENTINEL_DETECT=PATH      use this binary instead of building BUILD_DIR
#        SENTINEL_DETECT_ARGS=...  extra arguments, e.g. "-c etc/detect.conf"
#        NAB_DIR=DIR               another NAB-layout folder (data/, labels/, config/)
#        NAB_KEEP=DIR              keep the per-file results there
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
bin=${SENTINEL_DETECT:-}
if [ -z "$bin" ]; then
    if [ ! -f "$build/CMakeCache.txt" ]; then
        cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
    fi
    # Only what scoring needs: the tool and the detector plugins.
    targets=sentinel-detect
    for d in plugins/detectors/*/CMakeLists.txt; do
        targets="$targets sn_detector_$(basename "$(dirname "$d")")"
    done
    # shellcheck disable=SC2086
    cmake --build "$build" -j "${JOBS:-$(nproc)}" --target $targets >&2
    bin=$build/tools/sentinel-detect/sentinel-detect
fi
[ -x "$bin" ] || { echo "nab.sh: $bin is not an executable" >&2; exit 2; }
nab=${NAB_DIR:-tests/data/nab-tuning}
keep=()
[ -n "${NAB_KEEP:-}" ] && keep=(--keep "$NAB_KEEP")
python3 tools/nab/nab_eval.py --nab "$nab" --cmd "$bin ${SENTINEL_DETECT_ARGS:-}" \
    "${keep[@]}" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
p = r["profiles"]
print("nab: %d files, %d rows, %.2f s" % (r["files"], r["rows"], r["seconds"]), file=sys.stderr)
for key, name in (("standard", "nab_standard"), ("reward_low_FP_rate", "nab_reward_low_fp"),
                  ("reward_low_FN_rate", "nab_reward_low_fn")):
    print("bench: %s %.2f score" % (name, p[key]["score"]))
'
