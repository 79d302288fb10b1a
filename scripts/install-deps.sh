#!/usr/bin/env bash
# Installs the Debian packages Sentinel needs to build, test and run its demo. Idempotent: a
# no-op when everything is present, so every make target may call it.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libevent-dev libltdl-dev libcurl4-openssl-dev
      libjansson-dev libssl-dev check libsubunit-dev libinih-dev libsqlite3-dev sqlite3
      python3 curl
      libprotobuf-c-dev protobuf-c-compiler libsnappy-dev zlib1g-dev prometheus
      prometheus-alertmanager chromium chromium-driver
      postgresql libpq-dev librdkafka-dev kcat clickhouse-server
      rpm lintian rpmlint debootstrap systemd libyaml-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
