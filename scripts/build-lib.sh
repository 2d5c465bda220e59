#!/bin/sh
# Builds libexitnet.so into the directory $1 (default: build). One place for the
# flags, used by the Makefile and by the Python build hook (hatch_build.py).
#   -buildmode=c-shared      a C shared library with the Go runtime inside
#   --version-script         export only exitnet_* (capi/exitnet.map)
#   -soname                  libexitnet.so.0, so installed copies version cleanly
# The header cgo generates is deleted: include/exitnet.h is the contract.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$root/build"}
mkdir -p "$out"
tmp="$out/.libexitnet.so.$$"
trap 'rm -f "$tmp" "$out"/.libexitnet.so.*.h "$out"/.libexitnet.so.h' EXIT
cd "$root"
CGO_ENABLED=1 ${GO:-go} build -buildmode=c-shared -trimpath \
  -ldflags "-s -w -extldflags '-Wl,--version-script=$root/capi/exitnet.map -Wl,-soname,libexitnet.so.0'" \
  -o "$tmp" ./capi
rm -f "$out"/.libexitnet.so*.h
mv -f "$tmp" "$out/libexitnet.so"
