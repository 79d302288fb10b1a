#!/bin/sh
# CTest `sentinel_detect`: runs sentinel-detect (embedded configuration, real plugins) on
# quirky input and checks row counts, verbatim echo, warnings with line numbers, score range,
# determinism and config errors with file:line.
# usage: test-detect.sh BINARY TESTDATA_DIR
set -u
bin=$1
data=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
pass=0
ok() { pass=$((pass + 1)); }
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
check() { if eval "$2"; then ok; else fail "$1"; fi; }

# Every score is a number in [0, 1]; prints the number of bad ones.
bad_scores() {
    awk -F, 'NR > 1 { s = $NF; if (s !~ /^[0-9.]+$/ || s + 0 < 0 || s + 0 > 1) n++ } END { print n + 0 }' "$1"
}

# 1. quirks: bad values, NaN, duplicate and backwards timestamps, other timestamp formats,
#    a quoted value, a blank line, a row without a value column, an unreadable timestamp.
"$bin" < "$data/quirks.csv" > "$tmp/q.out" 2> "$tmp/q.err"
check "quirks: exit 0" '[ $? -eq 0 ]'
check "quirks: header" '[ "$(head -1 "$tmp/q.out")" = "timestamp,value,anomaly_score" ]'
rows_in=$(tail -n +2 "$data/quirks.csv" | grep -c .)
check "quirks: one row per non-blank input row" '[ "$(tail -n +2 "$tmp/q.out" | wc -l)" -eq "$rows_in" ]'
check "quirks: timestamps and values echoed verbatim" \
    '[ "$(cut -d, -f1,2 "$tmp/q.out" | tail -n +2)" = "$(tail -n +2 "$data/quirks.csv" | grep . | sed "s/\$/,/" | cut -d, -f1,2)" ]'
for n in 4 5; do
    check "quirks: warning for bad value on line $n" "grep -q 'line $n: bad value' '$tmp/q.err'"
done
check "quirks: warning for missing value on line 12" "grep -q 'line 12: no value column' '$tmp/q.err'"
check "quirks: warning for bad timestamp on line 13" "grep -q 'line 13: unreadable timestamp' '$tmp/q.err'"
check "quirks: exactly 4 warnings" '[ "$(wc -l < "$tmp/q.err")" -eq 4 ]'
check "quirks: bad rows score 0" \
    '[ "$(awk -F, "NR == 3 || NR == 4 || NR == 11 || NR == 12 { print \$NF }" "$tmp/q.out" | sort -u)" = "0.00000000" ]'
check "quirks: scores in [0,1]" '[ "$(bad_scores "$tmp/q.out")" -eq 0 ]'

# 2. CRLF input: same rows, no carriage return in the output.
"$bin" < "$data/crlf.csv" > "$tmp/c.out" 2> "$tmp/c.err"
check "crlf: exit 0" '[ $? -eq 0 ]'
check "crlf: row count" '[ "$(wc -l < "$tmp/c.out")" -eq 6 ]'
check "crlf: no CR in output" '! grep -q "$(printf "\r")" "$tmp/c.out"'
check "crlf: bad value on line 5 named" "grep -q 'line 5: bad value' '$tmp/c.err'"
check "crlf: values echoed" '[ "$(sed -n 2p "$tmp/c.out")" = "2015-02-26 21:42:53,104,0.00000000" ]'

# 3. a long CRLF series (epoch seconds, 5-minute steps, deterministic noise) with a spike, a duplicate and a
#    backwards timestamp: deterministic, in range, the spike stands out, the stale rows are 0.
awk 'BEGIN {
    printf "timestamp,value\r\n"; s = 12345; t = 1396310400
    for (i = 0; i < 1200; i++) {
        s = (s * 16807) % 2147483647; v = 50 + (s / 2147483647 - 0.5) * 4
        if (i == 1000) v = 90
        printf "%d,%.3f\r\n", t, v
        if (i == 1100) printf "%d,%.3f\r\n", t, 95
        if (i == 1150) printf "%d,%.3f\r\n", t - 3600, 95
        t += 300
    }
}' > "$tmp/long.csv"
"$bin" < "$tmp/long.csv" > "$tmp/l1.out" 2> "$tmp/l1.err"
check "long: exit 0" '[ $? -eq 0 ]'
"$bin" < "$tmp/long.csv" > "$tmp/l2.out" 2>&1
check "long: two runs identical" 'cmp -s "$tmp/l1.out" "$tmp/l2.out"'
check "long: 1202 rows" '[ "$(wc -l < "$tmp/l1.out")" -eq 1203 ]'
check "long: scores in [0,1]" '[ "$(bad_scores "$tmp/l1.out")" -eq 0 ]'
check "long: no warnings" '[ ! -s "$tmp/l1.err" ]'
# row of point i is line i + 2 (header first); the duplicate follows point 1100, the
# backwards one point 1150.
check "long: spike scored above 0.5" "awk -F, 'NR == 1002 { exit !(\$NF > 0.5) }' '$tmp/l1.out'"
check "long: duplicate timestamp scored 0" "awk -F, 'NR == 1103 { exit !(\$NF == 0) }' '$tmp/l1.out'"
check "long: backwards timestamp scored 0" "awk -F, 'NR == 1154 { exit !(\$NF == 0) }' '$tmp/l1.out'"
check "long: quiet rows score 0 (onsets only)" \
    "[ \"\$(awk -F, 'NR > 1 && \$NF > 0' '$tmp/l1.out' | wc -l)\" -le 3 ]"

# 4. configuration: -t on the embedded one, errors with file:line, combine = mean.
"$bin" -t > "$tmp/t.out" 2>&1
check "config: embedded configuration is valid" '[ $? -eq 0 ]'
printf '[detector:a]\nplugin = zscore\nwindwo = 10\n\n[detector:b]\nplugin = nosuch\n\n[pipeline]\ncombine = median\n' > "$tmp/bad.conf"
"$bin" -t -c "$tmp/bad.conf" > "$tmp/b.out" 2> "$tmp/b.err"
check "config: invalid configuration exits 2" '[ $? -eq 2 ]'
check "config: unknown key named with file:line" "grep -q 'bad.conf:3: unknown key .windwo.' '$tmp/b.err'"
check "config: missing plugin named with file:line" "grep -q 'bad.conf:6: .detector:b.: plugin .nosuch.' '$tmp/b.err'"
check "config: bad combine named with file:line" "grep -q 'bad.conf:9: key .combine.' '$tmp/b.err'"
printf '[detector:a]\nplugin = zscore\nweight = 1\n[detector:b]\nplugin = likelihood\nemit = onset\nweight = 3\n[pipeline]\ncombine = mean\n' > "$tmp/mean.conf"
"$bin" -c "$tmp/mean.conf" < "$tmp/long.csv" > "$tmp/m.out" 2> "$tmp/m.err"
check "config: combine = mean runs" '[ $? -eq 0 ] && [ "$(wc -l < "$tmp/m.out")" -eq 1203 ]'
check "config: combine = mean in [0,1]" '[ "$(bad_scores "$tmp/m.out")" -eq 0 ]'
"$bin" -E | cmp -s - "$data/../../../etc/detect.conf"
check "config: -E prints etc/detect.conf" '[ $? -eq 0 ]'

echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
