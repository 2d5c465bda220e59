#!/usr/bin/env bash
# Runs every Go fuzz target of golib for $1 (default 20s) each, one at a time
# (-parallel 1: the machine is shared), and prints each target's exec count.
# With $2, each run's log goes to $2/<target>.log and a summary to $2/summary.txt.
set -euo pipefail
time=${1:-20s}
logs=${2:-}
GO=${GO:-go}
[ -n "$logs" ] && mkdir -p "$logs" && : > "$logs/summary.txt"
for pkg in $($GO list ./golib/...); do
  for f in $($GO test -list 'Fuzz.*' "$pkg" | grep '^Fuzz' || true); do
    log=${logs:+$logs/$f.log}
    log=${log:-/dev/stdout}
    echo "== $f ($pkg, $time)"
    $GO test -run '^$' -fuzz "^$f\$" -fuzztime "$time" -fuzzminimizetime 5s -parallel 1 "$pkg" > "$log" 2>&1 || { echo "FAIL $f"; tail -30 "$log"; exit 1; }
    if [ -n "$logs" ]; then
      last=$(grep 'execs:' "$log" | tail -1)
      echo "$f $pkg $time: $last" | tee -a "$logs/summary.txt"
    fi
  done
done
