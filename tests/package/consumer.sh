#!/usr/bin/env bash
# Installs the built tree into a scratch prefix, then builds and runs
# examples/consumer against it with find_package(ebmkit 0.2): the way another
# C++ project links ebmkit. Also checks the pkg-config file.
# Usage: consumer.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/ebm/core/energy.h"
test -x "$work/prefix/bin/ebm"
"$work/prefix/bin/ebm" --version | grep -q "ebm 0.2"
PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --modversion ebmkit | grep -qx "0.2.0"
cmake -S "$src/examples/consumer" -B "$work/consumer" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer" -j2 >/dev/null
"$work/consumer/consumer"
