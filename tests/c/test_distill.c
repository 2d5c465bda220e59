/* LwF distillation from C: KD loss and soft targets against a double-precision
 * reference computed here from the definition, and every bad input (NULL,
 * released structs, wrong types, nulls, shapes, temperatures, NaN logits, empty
 * batch, 8 threads at once). The target store: test_distill_targets.c. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"

/* ---- double reference -------------------------------------------------- */

static void ref_log_softmax(const float* z, int c, double T, double* out) {
  double m = -INFINITY, s = 0;
  for (int j = 0; j < c; j++) m = fmax(m, z[j] / T);
  for (int j = 0; j < c; j++) s += exp(z[j] / T - m);
  for (int j = 0; j < c; j++) out[j] = z[j] / T - m - log(s);
}

/* loss = T^2/N sum_i sum_j q(log q - log p); grad = T/N (p - q) */
static double ref_kd(const float* s, const float* t, int n, int c, double T, double* grad) {
  double* lp = (double*)malloc(sizeof(double) * (size_t)c);
  double* lq = (double*)malloc(sizeof(double) * (size_t)c);
  double loss = 0;
  for (int i = 0; i < n; i++) {
    ref_log_softmax(s + (size_t)i * c, c, T, lp);
    ref_log_softmax(t + (size_t)i * c, c, T, lq);
    for (int j = 0; j < c; j++) {
      double q = exp(lq[j]);
      loss += q * (lq[j] - lp[j]);
      if (grad) grad[(size_t)i * c + j] = T / n * (exp(lp[j]) - q);
    }
  }
  free(lp);
  free(lq);
  return T * T * loss / n;
}

static uint64_t rng_state = 88172645463325252ull;
static float randn(void) { /* xorshift + Box-Muller */
  double u[2];
  for (int k = 0; k < 2; k++) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    u[k] = ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
  }
  return (float)(sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

static float* rand_logits(int n, int c, float scale) {
  float* v = (float*)malloc(sizeof(float) * (size_t)n * c);
  for (int i = 0; i < n * c; i++) v[i] = scale * randn();
  return v;
}


/* A matrix whose values child carries a validity bitmap with one null. */
static uint8_t null_bitmap[8] = {0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static void make_matrix_with_null(struct ArrowArray* a, struct ArrowSchema* s, const float* v, int rows, int cols) {
  make_matrix(a, s, v, rows, cols);
  struct ArrowArray* child = a->children[0];
  xt_array_private* p = (xt_array_private*)child->private_data;
  p->bufptrs[0] = null_bitmap;
  child->null_count = 1;
}

/* ---- KD loss ------------------------------------------------------------ */

static void test_kd_loss(void) {
  const int shapes[][2] = {{1, 1}, {3, 7}, {64, 100}, {65, 101}, {300, 9}};
  const double temps[] = {2.0, 1.0, 2.0, 4.0, 0.5};
  for (int k = 0; k < 5; k++) {
    int n = shapes[k][0], c = shapes[k][1];
    double T = temps[k];
    float* s = rand_logits(n, c, 3);
    float* t = rand_logits(n, c, 3);
    double* wg = (double*)malloc(sizeof(double) * (size_t)n * c);
    double want = ref_kd(s, t, n, c, T, wg);

    struct ArrowArray sa, ta, ga;
    struct ArrowSchema ss, ts, gs;
    make_matrix(&sa, &ss, s, n, c);
    make_matrix(&ta, &ts, t, n, c);
    double loss = -1;
    CHECK_STATUS(exitnet_distill_kd_loss(&loss, &ga, &gs, &sa, &ss, &ta, &ts, T), EXITNET_OK);
    CHECK(sa.release == NULL && ta.release == NULL && ss.release == NULL, "inputs moved in");
    CHECK(fabs(loss - want) <= 1e-5 * want + 2e-7 * T * T * (1 + 12 / T), "%dx%d T=%g: loss %.9g want %.9g", n, c,
          T, loss, want);
    CHECK(ga.length == n && gs.n_children == 1 && strcmp(gs.format, "+w:") > 0, "grad shape/format %s", gs.format);
    const float* g = (const float*)ga.children[0]->buffers[1] + ga.children[0]->offset;
    double gmax = 0, err = 0;
    for (int i = 0; i < n * c; i++) {
      gmax = fmax(gmax, fabs(wg[i]));
      err = fmax(err, fabs(g[i] - wg[i]));
    }
    CHECK(err <= 1e-5 * gmax + 1e-9, "%dx%d: grad error %g (max %g)", n, c, err, gmax);

    /* the raw-buffer entry point gives the same bits */
    float* g2 = (float*)malloc(sizeof(float) * (size_t)n * c);
    double loss2 = -1;
    CHECK_STATUS(exitnet_distill_kd_loss_raw(&loss2, g2, s, t, n, c, T), EXITNET_OK);
    CHECK(loss2 == loss && memcmp(g, g2, sizeof(float) * (size_t)n * c) == 0, "raw == arrow");
    double loss3 = -1;
    CHECK_STATUS(exitnet_distill_kd_loss_raw(&loss3, NULL, s, t, n, c, T), EXITNET_OK);
    CHECK(loss3 == loss, "loss only == with gradient");
    ga.release(&ga);
    gs.release(&gs);
    free(g2);
    free(s);
    free(t);
    free(wg);
  }
}

static void test_soft_targets(void) {
  int n = 9, c = 13;
  float* z = rand_logits(n, c, 4);
  double ref[13];
  struct ArrowArray a, o;
  struct ArrowSchema s, os;
  make_matrix(&a, &s, z, n, c);
  CHECK_STATUS(exitnet_distill_soft_targets(&o, &os, &a, &s, 2.0), EXITNET_OK);
  const float* p = (const float*)o.children[0]->buffers[1];
  double err = 0;
  for (int i = 0; i < n; i++) {
    ref_log_softmax(z + i * c, c, 2.0, ref);
    for (int j = 0; j < c; j++) err = fmax(err, fabs(p[i * c + j] - exp(ref[j])) / exp(ref[j]));
  }
  CHECK(err < 3e-6, "soft targets relative error %g", err);
  o.release(&o);
  os.release(&os);

  /* sliced: rows 2..5 through the list offset */
  make_matrix(&a, &s, z, n, c);
  a.offset = 2;
  a.length = 4;
  CHECK_STATUS(exitnet_distill_soft_targets(&o, &os, &a, &s, 2.0), EXITNET_OK);
  p = (const float*)o.children[0]->buffers[1];
  ref_log_softmax(z + 2 * c, c, 2.0, ref);
  CHECK(o.length == 4 && fabs(p[0] - exp(ref[0])) < 1e-6, "sliced input honoured");
  o.release(&o);
  os.release(&os);

  /* empty batch: an empty result */
  make_matrix(&a, &s, z, 0, c);
  CHECK_STATUS(exitnet_distill_soft_targets(&o, &os, &a, &s, 2.0), EXITNET_OK);
  CHECK(o.length == 0, "empty soft targets");
  o.release(&o);
  os.release(&os);
  free(z);
}

static void test_sliced_kd(void) {
  int n = 20, c = 6;
  float* s = rand_logits(n, c, 2);
  float* t = rand_logits(n, c, 2);
  struct ArrowArray sa, ta;
  struct ArrowSchema ss, ts;
  make_matrix(&sa, &ss, s, n, c);
  make_matrix(&ta, &ts, t, n, c);
  sa.offset = ta.offset = 5;
  sa.length = ta.length = 10;
  double loss = 0, want = 0;
  CHECK_STATUS(exitnet_distill_kd_loss(&loss, NULL, NULL, &sa, &ss, &ta, &ts, 2.0), EXITNET_OK);
  CHECK_STATUS(exitnet_distill_kd_loss_raw(&want, NULL, s + 5 * c, t + 5 * c, 10, c, 2.0), EXITNET_OK);
  CHECK(loss == want, "sliced %g vs %g", loss, want);
  free(s);
  free(t);
}

/* ---- bad input ---------------------------------------------------------- */

static void test_bad_input(void) {
  float v[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  struct ArrowArray sa, ta, ga;
  struct ArrowSchema ss, ts, gs;
  double loss;

  /* NULL student: teacher still moved in */
  make_matrix(&ta, &ts, v, 3, 4);
  CHECK_STATUS(exitnet_distill_kd_loss(&loss, NULL, NULL, NULL, NULL, &ta, &ts, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(contains(exitnet_last_error(), "student: NULL"), "names student");
  CHECK(ta.release == NULL && ts.release == NULL, "teacher moved in");

  /* NULL out_loss, half an output pair */
  make_matrix(&sa, &ss, v, 3, 4);
  make_matrix(&ta, &ts, v, 3, 4);
  CHECK_STATUS(exitnet_distill_kd_loss(NULL, NULL, NULL, &sa, &ss, &ta, &ts, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(contains(exitnet_last_error(), "out_loss"), "names out_loss");
  make_matrix(&sa, &ss, v, 3, 4);
  make_matrix(&ta, &ts, v, 3, 4);
  CHECK_STATUS(exitnet_distill_kd_loss(&loss, &ga, NULL, &sa, &ss, &ta, &ts, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(contains(exitnet_last_error(), "out_grad"), "names out_grad");
  CHECK(sa.release == NULL && ta.release == NULL, "moved in on error");

  /* released ArrowArray */
  make_matrix(&sa, &ss, v, 3, 4);
  make_matrix(&ta, &ts, v, 3, 4);
  sa.release(&sa);
  CHECK_STATUS(exitnet_distill_kd_loss(&loss, NULL, NULL, &sa, &ss, &ta, &ts, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(contains(exitnet_last_error(), "already released"), "released struct");
  CHECK(ss.release == NULL && ta.release == NULL, "the rest moved in");

  /* wrong dtype: a float32 leaf, an int64 array */
  make_f32(&sa, &ss, v, 12);
  make_matrix(&ta, &ts, v, 3, 4);
  CHECK_STATUS(exitnet_distill_kd_loss(&loss, NULL, NULL, &sa, &ss, &ta, &ts, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(contains(exitnet_last_error(), "student"), "wrong type names student");
  int64_t iv[3] = {1, 2, 3};
  make_matrix(&sa, &ss, v, 3, 4);
  make_i64(&ta, &ts, iv, 3);
  CHECK_STATUS(exitnet_distill_kd_loss(&loss, NULL, NULL, &sa, &ss, &ta, &ts, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(contains(exitnet_last_error(), "teacher"), "wrong type names teacher");

  /* nulls */
  make_matrix_with_null(&sa, &ss, v, 3, 4);
  make_matrix(&ta, &ts, v, 3, 4);
  CHECK_STATUS(exitnet_distill_kd_loss(&loss, NULL, NULL, &sa, &ss, &ta, &ts, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(contains(exitnet_last_error(), "null"), "nulls refused: %s", exitnet_last_error());

  /* shape mismatch */
  make_matrix(&sa, &ss, v, 3, 4);
  make_matrix(&ta, &ts, v, 4, 3);
  CHECK_STATUS(exitnet_distill_kd_loss(&loss, NULL, NULL, &sa, &ss, &ta, &ts, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(contains(exitnet_last_error(), "shapes must match"), "shape mismatch");

  /* temperatures */
  const double bad_t[] = {0.0, -1.0, NAN, INFINITY, -INFINITY, 1e-300};
  for (int k = 0; k < 6; k++) {
    make_matrix(&sa, &ss, v, 3, 4);
    make_matrix(&ta, &ts, v, 3, 4);
    CHECK_STATUS(exitnet_distill_kd_loss(&loss, NULL, NULL, &sa, &ss, &ta, &ts, bad_t[k]),
                 EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(contains(exitnet_last_error(), "temperature"), "T=%g", bad_t[k]);
    make_matrix(&sa, &ss, v, 3, 4);
    CHECK_STATUS(exitnet_distill_soft_targets(&ga, &gs, &sa, &ss, bad_t[k]), EXITNET_ERR_INVALID_ARGUMENT);
  }

  /* NaN / Inf logits: the message names the argument, row and column */
  const float bad_v[] = {NAN, INFINITY, -INFINITY};
  for (int k = 0; k < 3; k++) {
    float w[12];
    memcpy(w, v, sizeof w);
    w[6] = bad_v[k]; /* row 1, column 2 */
    make_matrix(&sa, &ss, v, 3, 4);
    make_matrix(&ta, &ts, w, 3, 4);
    CHECK_STATUS(exitnet_distill_kd_loss(&loss, &ga, &gs, &sa, &ss, &ta, &ts, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(contains(exitnet_last_error(), "teacher: row 1, column 2"), "%s", exitnet_last_error());
    CHECK(ga.release == NULL, "no output on failure");
    CHECK_STATUS(exitnet_distill_kd_loss_raw(&loss, NULL, w, v, 3, 4, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(contains(exitnet_last_error(), "student: row 1, column 2"), "%s", exitnet_last_error());
  }

  /* empty batch: a defined error */
  make_matrix(&sa, &ss, v, 0, 4);
  make_matrix(&ta, &ts, v, 0, 4);
  CHECK_STATUS(exitnet_distill_kd_loss(&loss, &ga, &gs, &sa, &ss, &ta, &ts, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(contains(exitnet_last_error(), "empty batch"), "%s", exitnet_last_error());
  CHECK_STATUS(exitnet_distill_kd_loss_raw(&loss, NULL, NULL, NULL, 0, 4, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_distill_kd_loss_raw(&loss, NULL, NULL, v, 3, 4, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_distill_kd_loss_raw(NULL, NULL, v, v, 3, 4, 2.0), EXITNET_ERR_INVALID_ARGUMENT);

  /* NULL output pair of soft targets: input still moved in */
  make_matrix(&sa, &ss, v, 3, 4);
  CHECK_STATUS(exitnet_distill_soft_targets(NULL, NULL, &sa, &ss, 2.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(sa.release == NULL, "moved in");
}

/* ---- threads ------------------------------------------------------------ */

typedef struct {
  const float *s, *t;
  int n, c;
  double loss;
  float* grad;
  int status;
} kd_job;

static void* kd_thread(void* arg) {
  kd_job* j = (kd_job*)arg;
  for (int rep = 0; rep < 5 && j->status == 0; rep++) {
    struct ArrowArray sa, ta, ga;
    struct ArrowSchema ss, ts, gs;
    make_matrix(&sa, &ss, j->s, j->n, j->c);
    make_matrix(&ta, &ts, j->t, j->n, j->c);
    j->status = exitnet_distill_kd_loss(&j->loss, &ga, &gs, &sa, &ss, &ta, &ts, 2.0);
    if (j->status == 0) {
      memcpy(j->grad, ga.children[0]->buffers[1], sizeof(float) * (size_t)j->n * j->c);
      ga.release(&ga);
      gs.release(&gs);
    }
  }
  return NULL;
}

static void test_threads(void) {
  int n = 1000, c = 100;
  float* s = rand_logits(n, c, 3);
  float* t = rand_logits(n, c, 3);
  float* g1 = (float*)malloc(sizeof(float) * (size_t)n * c);
  double l1;
  CHECK_STATUS(exitnet_set_num_threads(1), EXITNET_OK);
  CHECK_STATUS(exitnet_distill_kd_loss_raw(&l1, g1, s, t, n, c, 2.0), EXITNET_OK);
  CHECK_STATUS(exitnet_set_num_threads(4), EXITNET_OK);
  pthread_t th[8];
  kd_job jobs[8];
  for (int k = 0; k < 8; k++) {
    jobs[k] = (kd_job){s, t, n, c, 0, (float*)malloc(sizeof(float) * (size_t)n * c), 0};
    pthread_create(&th[k], NULL, kd_thread, &jobs[k]);
  }
  for (int k = 0; k < 8; k++) {
    pthread_join(th[k], NULL);
    CHECK(jobs[k].status == 0, "thread %d status %d", k, jobs[k].status);
    CHECK(jobs[k].loss == l1, "thread %d loss %.17g vs %.17g", k, jobs[k].loss, l1);
    CHECK(memcmp(jobs[k].grad, g1, sizeof(float) * (size_t)n * c) == 0, "thread %d gradient differs", k);
    free(jobs[k].grad);
  }
  free(s);
  free(t);
  free(g1);
}


int main(void) {
  test_kd_loss();
  test_soft_targets();
  test_sliced_kd();
  test_bad_input();
  test_threads();
  return test_summary();
}
