/* Per-call cost of the distill ABI from C (process CPU time, best of several rounds).
 *
 *   gcc -std=c99 -O2 -Iinclude -Itests/c bench/bench_distill.c -Lbuild -lexitnet -lpthread -lm \
 *       -o build/bench_distill && LD_LIBRARY_PATH=build build/bench_distill
 *
 * (build/ holds libexitnet.so; link against an installed copy with pkg-config instead.)
 * Prints: a trivial call (exitnet_get_num_threads), the KD loss on 1x1 through raw
 * buffers and through Arrow structs (building the structs is timed separately and
 * subtracted), the KD loss + gradient on 4096x100 on one thread, and a 256-row gather
 * from a 60,000-row target file. */
#define _POSIX_C_SOURCE 200809L
#include <time.h>
#include <unistd.h>

#include "check.h"

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef void (*bench_fn)(void*);

static double best_per_call(bench_fn f, void* arg, long n) {
  double best = 1e30;
  for (int r = 0; r < 9; r++) {
    double t0 = cpu_now();
    for (long i = 0; i < n; i++) f(arg);
    double dt = (cpu_now() - t0) / n;
    if (dt < best) best = dt;
  }
  return best;
}

static float s1[1] = {0.5f}, t1[1] = {-0.5f}, g1[1];

static void trivial(void* a) {
  int n;
  (void)a;
  exitnet_get_num_threads(&n);
}

static void raw_1x1(void* a) {
  double loss;
  (void)a;
  exitnet_distill_kd_loss_raw(&loss, g1, s1, t1, 1, 1, 2.0);
}

static void build_only(void* a) {
  struct ArrowArray sa, ta;
  struct ArrowSchema ss, ts;
  (void)a;
  make_matrix(&sa, &ss, s1, 1, 1);
  make_matrix(&ta, &ts, t1, 1, 1);
  sa.release(&sa);
  ss.release(&ss);
  ta.release(&ta);
  ts.release(&ts);
}

static void arrow_1x1(void* a) {
  struct ArrowArray sa, ta, ga;
  struct ArrowSchema ss, ts, gs;
  double loss;
  (void)a;
  make_matrix(&sa, &ss, s1, 1, 1);
  make_matrix(&ta, &ts, t1, 1, 1);
  exitnet_distill_kd_loss(&loss, &ga, &gs, &sa, &ss, &ta, &ts, 2.0);
  ga.release(&ga);
  gs.release(&gs);
}

typedef struct {
  float *s, *t, *g;
  int n, c;
} big_args;

static void raw_big(void* a) {
  big_args* b = (big_args*)a;
  double loss;
  exitnet_distill_kd_loss_raw(&loss, b->g, b->s, b->t, b->n, b->c, 2.0);
}

typedef struct {
  exitnet_targets* t;
  int64_t ids[256];
  float out[256 * 100];
} gather_args;

static void gather(void* a) {
  gather_args* g = (gather_args*)a;
  exitnet_targets_gather_raw(g->out, 256 * 100, g->t, g->ids, 256, 0);
}

int main(void) {
  exitnet_set_num_threads(1);
  double triv = best_per_call(trivial, NULL, 200000);
  double raw = best_per_call(raw_1x1, NULL, 100000);
  double build = best_per_call(build_only, NULL, 100000);
  double arrow = best_per_call(arrow_1x1, NULL, 20000);
  printf("per-call cost from C (process CPU time)\n");
  printf("  exitnet_get_num_threads (trivial)          %8.3f us\n", triv * 1e6);
  printf("  exitnet_distill_kd_loss_raw 1x1            %8.3f us\n", raw * 1e6);
  printf("  exitnet_distill_kd_loss 1x1 (Arrow in/out) %8.3f us  (struct building, %.3f us, subtracted)\n",
         (arrow - build) * 1e6, build * 1e6);

  big_args b = {NULL, NULL, NULL, 4096, 100};
  size_t n = (size_t)b.n * b.c;
  b.s = (float*)malloc(n * sizeof(float));
  b.t = (float*)malloc(n * sizeof(float));
  b.g = (float*)malloc(n * sizeof(float));
  uint64_t x = 1;
  for (size_t i = 0; i < n; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    b.s[i] = (float)((double)(x >> 40) / (1 << 24) * 6 - 3);
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    b.t[i] = (float)((double)(x >> 40) / (1 << 24) * 6 - 3);
  }
  double big = best_per_call(raw_big, &b, 20);
  printf("  KD loss + gradient 4096x100, 1 thread      %8.1f us  (%.2f ns/elem)\n", big * 1e6, big * 1e9 / n);

  /* a 60,000-row store, 1 exit, 100 classes */
  char dir[] = "/tmp/exitnet-bench-distill-XXXXXX";
  if (mkdtemp(dir) == NULL) return 1;
  char path[256];
  snprintf(path, sizeof path, "%s/t.arrow", dir);
  exitnet_targets_writer* w = NULL;
  exitnet_targets_writer_new(&w, 1, 100);
  int64_t* ids = (int64_t*)malloc(60000 * sizeof(int64_t));
  float* lg = (float*)malloc((size_t)60000 * 100 * sizeof(float));
  for (int i = 0; i < 60000; i++) ids[i] = i;
  for (size_t i = 0; i < (size_t)60000 * 100; i++) lg[i] = (float)(i % 1000) * 0.001f;
  struct ArrowArray ia, la;
  struct ArrowSchema is, ls;
  make_i64(&ia, &is, ids, 60000);
  make_matrix(&la, &ls, lg, 60000, 100);
  if (exitnet_targets_writer_add(w, 0, &ia, &is, &la, &ls) != 0 || exitnet_targets_writer_save(w, path) != 0) {
    fprintf(stderr, "%s\n", exitnet_last_error());
    return 1;
  }
  exitnet_targets_writer_free(&w);
  gather_args* g = (gather_args*)malloc(sizeof *g);
  exitnet_targets_open(&g->t, path);
  for (int i = 0; i < 256; i++) g->ids[i] = (int64_t)((i * 7919u) % 60000u);
  double ga = best_per_call(gather, g, 2000);
  printf("  gather 256 rows x 100 of 60,000 (raw)      %8.3f us\n", ga * 1e6);
  exitnet_targets_free(&g->t);
  remove(path);
  rmdir(dir);
  free(g);
  free(ids);
  free(lg);
  free(b.s);
  free(b.t);
  free(b.g);
  return 0;
}
