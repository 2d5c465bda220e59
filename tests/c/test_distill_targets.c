/* LwF target store from C: the writer/store round trip, coverage and duplicate
 * checks, gathers (Arrow and raw, 8 threads on one handle), unknown ids, wrong
 * types, dead/foreign handles, double free, truncated/corrupted files. Ends with a
 * leak check. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"

/* ---- target store -------------------------------------------------------- */

/* xorshift state of the random corruptions: test_distill.c's seed (before the split,
 * the state those tests had left) */
static uint64_t rng_state = 88172645463325252ull;

static float fixture(int exit, int64_t id, int col) { return (float)(exit * 1000) + (float)(id % 9973) * 0.5f - col * 0.25f; }

static void add_chunk(exitnet_targets_writer* w, int exit, const int64_t* ids, int n, int c, int want) {
  float* lg = (float*)malloc(sizeof(float) * (size_t)(n > 0 ? n : 1) * c);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < c; j++) lg[i * c + j] = fixture(exit, ids[i], j);
  struct ArrowArray ia, la;
  struct ArrowSchema is, ls;
  make_i64(&ia, &is, ids, n);
  make_matrix(&la, &ls, lg, n, c);
  CHECK_STATUS(exitnet_targets_writer_add(w, exit, &ia, &is, &la, &ls), want);
  CHECK(ia.release == NULL && la.release == NULL, "add moves its inputs in");
  free(lg);
}

typedef struct {
  exitnet_targets* t;
  int ok;
} gather_job;

static void* gather_thread(void* arg) {
  gather_job* j = (gather_job*)arg;
  int64_t ids[4] = {299, 0, 150, 7};
  float out[4 * 5];
  j->ok = 1;
  for (int rep = 0; rep < 200; rep++) {
    if (exitnet_targets_gather_raw(out, 20, j->t, ids, 4, 1) != EXITNET_OK) j->ok = 0;
    for (int i = 0; i < 4; i++)
      for (int c = 0; c < 5; c++)
        if (out[i * 5 + c] != fixture(1, ids[i], c)) j->ok = 0;
  }
  return NULL;
}

static void test_targets(const char* dir) {
  char path[512], bad[512];
  snprintf(path, sizeof path, "%s/targets.arrow", dir);
  snprintf(bad, sizeof bad, "%s/bad.arrow", dir);
  const int E = 2, C = 5, N = 300;
  exitnet_targets_writer* w = NULL;
  CHECK_STATUS(exitnet_targets_writer_new(&w, E, C), EXITNET_OK);
  CHECK(w != NULL, "writer handle");
  /* ids 0..N-1 in descending chunks for exit 0, ascending for exit 1 */
  int64_t ids[64];
  for (int lo = N; lo > 0; lo -= 50) {
    int n = 0;
    for (int64_t id = lo - 1; id >= lo - 50 && id >= 0; id--) ids[n++] = id;
    add_chunk(w, 0, ids, n, C, EXITNET_OK);
  }
  for (int lo = 0; lo < N - 1; lo += 60) {
    int n = 0;
    for (int64_t id = lo; id < lo + 60 && id < N - 1; id++) ids[n++] = id;
    add_chunk(w, 1, ids, n, C, EXITNET_OK);
  }
  int64_t rows = -1;
  CHECK_STATUS(exitnet_targets_writer_num_rows(&rows, w, 1), EXITNET_OK);
  CHECK(rows == N - 1, "rows %lld", (long long)rows);
  /* coverage: exit 1 lacks id N-1 */
  CHECK_STATUS(exitnet_targets_writer_save(w, path), EXITNET_ERR_INVALID_STATE);
  CHECK(contains(exitnet_last_error(), "exit 1: sample id 299"), "%s", exitnet_last_error());
  CHECK(access(path, F_OK) != 0, "no file after a failed save");
  /* duplicates */
  ids[0] = 5;
  add_chunk(w, 1, ids, 1, C, EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(contains(exitnet_last_error(), "sample id 5"), "%s", exitnet_last_error());
  ids[0] = N - 1;
  add_chunk(w, 1, ids, 1, C, EXITNET_OK);
  add_chunk(w, 2, ids, 1, C, EXITNET_ERR_INVALID_ARGUMENT); /* exit out of range */
  CHECK_STATUS(exitnet_targets_writer_save(w, NULL), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_targets_writer_save(w, "/nonexistent-dir/x.arrow"), EXITNET_ERR_IO);
  CHECK_STATUS(exitnet_targets_writer_save(w, path), EXITNET_OK);

  exitnet_targets* t = NULL;
  CHECK_STATUS(exitnet_targets_open(&t, path), EXITNET_OK);
  int e = 0, c = 0;
  CHECK_STATUS(exitnet_targets_shape(&rows, &e, &c, t), EXITNET_OK);
  CHECK(rows == N && e == E && c == C, "shape %lld %d %d", (long long)rows, e, c);

  /* gather through Arrow */
  int64_t q[3] = {299, 3, 120};
  struct ArrowArray ia, oa;
  struct ArrowSchema is, os;
  make_i64(&ia, &is, q, 3);
  CHECK_STATUS(exitnet_targets_gather(&oa, &os, t, &ia, &is, 1), EXITNET_OK);
  const float* g = (const float*)oa.children[0]->buffers[1];
  int good = oa.length == 3;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < C; j++) good &= g[i * C + j] == fixture(1, q[i], j);
  CHECK(good, "gathered values");
  oa.release(&oa);
  os.release(&os);
  /* unknown id */
  q[1] = 1000;
  make_i64(&ia, &is, q, 3);
  CHECK_STATUS(exitnet_targets_gather(&oa, &os, t, &ia, &is, 0), EXITNET_ERR_NOT_FOUND);
  CHECK(contains(exitnet_last_error(), "sample id 1000 (position 1)"), "%s", exitnet_last_error());
  CHECK(ia.release == NULL && oa.release == NULL, "moved in, no output");
  float out[15];
  CHECK_STATUS(exitnet_targets_gather_raw(out, 15, t, q, 3, 0), EXITNET_ERR_NOT_FOUND);
  CHECK_STATUS(exitnet_targets_gather_raw(out, 14, t, q, 3, 0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_targets_gather_raw(out, 15, t, q, 3, 2), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_targets_gather_raw(NULL, 15, t, q, 3, 0), EXITNET_ERR_INVALID_ARGUMENT);
  /* wrong id dtype */
  float fv[1] = {1};
  make_f32(&ia, &is, fv, 1);
  CHECK_STATUS(exitnet_targets_gather(&oa, &os, t, &ia, &is, 0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(contains(exitnet_last_error(), "ids"), "%s", exitnet_last_error());

  /* 8 threads gathering on one handle */
  pthread_t th[8];
  gather_job jobs[8];
  for (int k = 0; k < 8; k++) {
    jobs[k].t = t;
    pthread_create(&th[k], NULL, gather_thread, &jobs[k]);
  }
  for (int k = 0; k < 8; k++) {
    pthread_join(th[k], NULL);
    CHECK(jobs[k].ok, "thread %d gathers", k);
  }

  /* handles: wrong type, freed, double free, foreign, NULL */
  CHECK_STATUS(exitnet_targets_writer_save((exitnet_targets_writer*)t, path), EXITNET_ERR_INVALID_STATE);
  exitnet_targets* dead = t;
  CHECK_STATUS(exitnet_targets_free(&t), EXITNET_OK);
  CHECK(t == NULL, "free nulls the handle");
  CHECK_STATUS(exitnet_targets_free(&t), EXITNET_OK); /* pointer to NULL */
  CHECK_STATUS(exitnet_targets_free(NULL), EXITNET_OK);
  CHECK_STATUS(exitnet_targets_free(&dead), EXITNET_ERR_INVALID_STATE);
  CHECK(dead != NULL, "left unchanged on error");
  CHECK_STATUS(exitnet_targets_gather_raw(out, 15, dead, q, 3, 0), EXITNET_ERR_INVALID_STATE);
  make_i64(&ia, &is, q, 3);
  CHECK_STATUS(exitnet_targets_gather(&oa, &os, dead, &ia, &is, 0), EXITNET_ERR_INVALID_STATE);
  CHECK(ia.release == NULL, "ids moved in even for a dead handle");
  exitnet_targets* foreign = (exitnet_targets*)(uintptr_t)0xDEADBEE0;
  CHECK_STATUS(exitnet_targets_shape(&rows, NULL, NULL, foreign), EXITNET_ERR_INVALID_STATE);
  CHECK_STATUS(exitnet_targets_shape(&rows, NULL, NULL, NULL), EXITNET_ERR_INVALID_ARGUMENT);
  exitnet_targets_writer* wdead = w;
  CHECK_STATUS(exitnet_targets_writer_free(&w), EXITNET_OK);
  CHECK_STATUS(exitnet_targets_writer_free(&wdead), EXITNET_ERR_INVALID_STATE);
  CHECK_STATUS(exitnet_targets_writer_free(NULL), EXITNET_OK);
  add_chunk(wdead, 0, ids, 1, C, EXITNET_ERR_INVALID_STATE);
  CHECK_STATUS(exitnet_targets_writer_new(NULL, 1, 1), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_targets_writer_new(&w, 0, 1), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_targets_open(NULL, path), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_targets_open(&t, NULL), EXITNET_ERR_INVALID_ARGUMENT);

  /* truncated and corrupted files are IO errors */
  FILE* f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char* bytes = (unsigned char*)malloc((size_t)size);
  CHECK(fread(bytes, 1, (size_t)size, f) == (size_t)size, "read file");
  fclose(f);
  int io = 0, tried = 0;
  for (long n = 0; n < size; n += 1 + size / 40) {
    f = fopen(bad, "wb");
    fwrite(bytes, 1, (size_t)n, f);
    fclose(f);
    tried++;
    io += exitnet_targets_open(&t, bad) == EXITNET_ERR_IO;
  }
  CHECK(io == tried, "%d of %d truncations are IO errors", io, tried);
  for (int k = 0; k < 100; k++) {
    unsigned char* b = (unsigned char*)malloc((size_t)size);
    memcpy(b, bytes, (size_t)size);
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    b[rng_state % (uint64_t)size] ^= (unsigned char)(1 + (rng_state >> 32) % 255);
    f = fopen(bad, "wb");
    fwrite(b, 1, (size_t)size, f);
    fclose(f);
    int st = exitnet_targets_open(&t, bad);
    CHECK(st == EXITNET_OK || st == EXITNET_ERR_IO, "corruption gives OK or IO, got %s", exitnet_status_name(st));
    if (st == EXITNET_OK) exitnet_targets_free(&t);
    free(b);
  }
  CHECK_STATUS(exitnet_targets_open(&t, "/nonexistent/targets.arrow"), EXITNET_ERR_IO);
  free(bytes);
  remove(bad);
  remove(path);
}

int main(void) {
  char dir[] = "/tmp/exitnet-test-distill-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  test_targets(dir);
  rmdir(dir);

  int64_t bytes = -1, handles = -1;
  CHECK_STATUS(exitnet_allocated_bytes(&bytes), EXITNET_OK);
  CHECK_STATUS(exitnet_live_handles(&handles), EXITNET_OK);
  CHECK(bytes == 0, "%lld bytes of C-heap results leaked", (long long)bytes);
  CHECK(handles == 0, "%lld handles leaked", (long long)handles);
  return test_summary();
}
