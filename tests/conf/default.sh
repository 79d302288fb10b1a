#!/usr/bin/env bash
# The shipped etc/sentinel.conf validates, with its state path moved to a temp dir.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/var/lib/sentinel/sentinel.db|$tmp/sentinel.db|" "$2" > "$tmp/sentinel.conf"
"$1" -T -c "$tmp/sentinel.conf"
