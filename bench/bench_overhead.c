/* Per-call overhead of the C ABI, from C: a C-only call (no Go), the cheapest
 * call into Go, and a call that imports one Arrow matrix (moved in, validated,
 * released). Reported in ns per call; the ratio to the C-only call is the cost of
 * entering Go (cgo) and of the Arrow import. Build and run: make bench-c. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <time.h>

#include "check.h"

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(void) {
  const int n = 200000;
  volatile int sink = 0;
  double t0 = now_ns();
  for (int i = 0; i < n; i++) sink += exitnet_abi_version();
  double c_only = (now_ns() - t0) / n;

  int threads = 0;
  t0 = now_ns();
  for (int i = 0; i < n; i++) exitnet_get_num_threads(&threads);
  double go_call = (now_ns() - t0) / n;

  float v[400];
  for (int i = 0; i < 400; i++) v[i] = (float)i;
  const int m = 50000;
  double build = 0, total = 0;
  for (int i = 0; i < m; i++) {
    struct ArrowArray a;
    struct ArrowSchema s;
    double b0 = now_ns();
    make_matrix(&a, &s, v, 4, 100);
    double b1 = now_ns();
    uintptr_t addr;
    exitnet_debug_data_address(&addr, &a, &s);
    double b2 = now_ns();
    build += b1 - b0;
    total += b2 - b1;
  }
  printf("C ABI per-call overhead (ns/call, %d calls)\n", n);
  printf("  %-44s %8.1f\n", "exitnet_abi_version (C only, no Go)", c_only);
  printf("  %-44s %8.1f  (%.0fx the C-only call)\n", "exitnet_get_num_threads (enters Go)", go_call,
         go_call / c_only);
  printf("  %-44s %8.1f  (%.1fx a plain Go call)\n", "exitnet_debug_data_address (Arrow import)",
         total / m, (total / m) / go_call);
  printf("  (building the 4x100 Arrow struct in C took %.1f ns, not counted)\n", build / m);
  return sink == -1;
}
