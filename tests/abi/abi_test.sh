#!/usr/bin/env bash
# Out-of-tree plugin test: install the project into a temp prefix, build examples/executor-hello
# with only the installed header and pkg-config file, load it through sentineld, run it in a
# pipeline check, and prove a wrong ABI major is refused.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > /dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig:$tmp/prefix/lib/x86_64-linux-gnu/pkgconfig"
cflags=$(pkg-config --cflags sentinel-plugin)
inc=$(pkg-config --variable=includedir sentinel-plugin)
[ -f "$inc/sentinel/plugin.h" ] && [ "$(cd "$inc" && pwd)" = "$tmp/prefix/include" ] || {
  echo "pkg-config points elsewhere: $cflags"; exit 1; }
mkdir "$tmp/plugins" "$tmp/bad"
make -s -C "$src/examples/executor-hello" -f Makefile sn_executor_hello.so \
  PKG_CONFIG_PATH="$PKG_CONFIG_PATH" CFLAGS="-O2 -Wall -Wextra -Werror -std=c11" > /dev/null
mv "$src/examples/executor-hello/sn_executor_hello.so" "$tmp/plugins/"
cc -O2 -Wall -Wextra -Werror -std=c11 $cflags -shared -fPIC -o "$tmp/bad/sn_executor_hello.so" \
  "$src/tests/abi/wrong_major.c"
sentineld="$tmp/prefix/sbin/sentineld"
out=$("$sentineld" --describe executor/hello -p "$tmp/plugins")
echo "$out" | grep -q "greet" || { echo "describe did not list the verb:"; echo "$out"; exit 1; }
echo "ok - out-of-tree executor loads and describes itself"
exports=$(nm -D --defined-only "$tmp/plugins/sn_executor_hello.so" | awk '$2 ~ /[TDB]/ {print $3}')
[ "$exports" = "sn_plugin_entry" ] || { echo "exports: $exports"; exit 1; }
echo "ok - it exports only sn_plugin_entry"
if err=$("$sentineld" --describe executor/hello -p "$tmp/bad" 2>&1); then
  echo "wrong ABI major was accepted"; exit 1
fi
echo "$err" | grep -q "ABI 2" || { echo "unexpected refusal: $err"; exit 1; }
echo "ok - a wrong ABI major is refused: $err"
cat > "$tmp/hello.conf" <<CONF
[sentinel]
plugin_dir = $tmp/plugins
[input:events]
plugin = http
[detector:z]
plugin = zscore
[analyzer:rca]
plugin = stats
[executor:hello]
plugin = hello
allow = deployment/shop/*
[pipeline]
edge = events -> z -> correlate -> rca -> approve -> hello -> verify -> resolve
CONF
# The example lives in its own plugin_dir; the in-tree plugins come from the install.
sed -i "s|plugin_dir = .*|plugin_dir = $tmp/plugins|" "$tmp/hello.conf"
cp "$tmp/prefix/lib/sentinel/plugins/"*.so "$tmp/plugins/" 2>/dev/null || \
  cp "$tmp/prefix/lib/x86_64-linux-gnu/sentinel/plugins/"*.so "$tmp/plugins/"
"$sentineld" -t -c "$tmp/hello.conf"
echo "ok - a pipeline using the out-of-tree executor validates"
