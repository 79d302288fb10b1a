#!/usr/bin/env bash
# golden.sh SENTINELD FILE: good/ files must validate; bad/ files must fail with exit 2 and
# print exactly FILE's .err (the config is given by its base name so messages are stable).
set -u
sentineld=$1 conf=$2
name=$(basename "$conf")
err=$(mktemp)
"$sentineld" -t -c "$name" 2> "$err.raw"
rc=$?
# The plugin directory depends on the build tree: name it PLUGIN_DIR in the golden files.
plugins=$(cd "$(dirname "$sentineld")/../plugins" && pwd)
sed "s|$plugins|PLUGIN_DIR|g" "$err.raw" > "$err"
rm -f "$err.raw"
case "$(basename "$(dirname "$conf")")" in
  good)
    [ $rc -eq 0 ] || { echo "expected exit 0, got $rc:"; cat "$err"; exit 1; } ;;
  bad)
    [ $rc -eq 2 ] || { echo "expected exit 2, got $rc:"; cat "$err"; exit 1; }
    diff -u "${conf%.conf}.err" "$err" || exit 1 ;;
esac
rm -f "$err"
