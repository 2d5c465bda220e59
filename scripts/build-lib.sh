#!/bin/sh
# Builds libexitnet.so into the directory $1 (default: build). One place for the
# flags, used by the Makefile and by the Python build hook (hatch_build.py).
#   -buildmode=c-shared      a C shared library with the Go runtime inside
#   --version-script         export only exitnet_* (capi/exitnet.map)
#   -soname                  libexitnet.so.0 (EXITNET_SONAME overrides: the wheel
#                            uses libexitnet.so, the only name a wheel can ship)
#   glibc_compat.h           on glibc, bind the pthread/dl functions to their
#                            original symbol versions so the library needs glibc
#                            2.17, not the build machine's (docs/design.md)
#   EXITNET_TAGS             Go build tags (exitnet_debug: the test-only exports)
# The header cgo generates is deleted: include/exitnet.h is the contract.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$root/build"}
GO=${GO:-go}

# Fail first, and say what is needed, when the toolchain cannot build the library.
need=$(sed -n 's/^go \([0-9][0-9.]*\).*/\1/p' "$root/go.mod")
if ! command -v "$GO" >/dev/null 2>&1; then
  echo "exitnet: building libexitnet.so needs Go >= $need (and gcc for cgo), but there is no '$GO' on PATH." >&2
  echo "exitnet: install Go from https://go.dev/dl/ (or set GO=/path/to/go), or install a prebuilt manylinux wheel." >&2
  exit 1
fi
have=$("$GO" env GOVERSION 2>/dev/null | sed 's/^go//; s/[^0-9.].*//')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -t. -k1,1n -k2,2n -k3,3n | head -n1)" != "$need" ]; then
  echo "exitnet: building libexitnet.so needs Go >= $need, but '$GO' is Go ${have:-unknown}." >&2
  echo "exitnet: install a newer Go from https://go.dev/dl/ (or set GO=/path/to/go), or install a prebuilt manylinux wheel." >&2
  exit 1
fi
CC=${CC:-gcc}
if ! command -v "$CC" >/dev/null 2>&1; then
  echo "exitnet: building libexitnet.so needs a C compiler for cgo (gcc), but there is no '$CC' on PATH." >&2
  exit 1
fi

compat_cflags=
compat_ldflags=
if "$CC" -dM -E - </dev/null 2>/dev/null | grep -q __gnu_linux__; then
  compat_cflags="-include $root/capi/glibc_compat.h"
  # An old glibc defines the pthread/dl functions in these two libraries.
  compat_ldflags="-Wl,--no-as-needed -l:libpthread.so.0 -l:libdl.so.2"
fi

mkdir -p "$out"
tmp="$out/.libexitnet.so.$$"
trap 'rm -f "$tmp" "$out"/.libexitnet.so.*.h "$out"/.libexitnet.so.h' EXIT
cd "$root"
CGO_ENABLED=1 CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} $compat_cflags" \
  "$GO" build -buildmode=c-shared -trimpath ${EXITNET_TAGS:+-tags "$EXITNET_TAGS"} \
  -ldflags "-s -w -extldflags '-Wl,--version-script=$root/capi/exitnet.map -Wl,-soname,${EXITNET_SONAME:-libexitnet.so.0} $compat_ldflags'" \
  -o "$tmp" ./capi
rm -f "$out"/.libexitnet.so*.h
mv -f "$tmp" "$out/libexitnet.so"
