/* The raw-pointer entry points from C: exitnet_fisher_update_rows_raw and
 * exitnet_fisher_update_linear_raw against C double loops on ragged sizes (and equal to
 * their Arrow twins), exitnet_policy_curve_raw against a brute force over every
 * threshold with +-Inf confidences, and bad sizes and pointers (errors naming the
 * argument, nothing added). */
#include <stdint.h>
#include <stdio.h>

#include "check.h"

static uint64_t g_seed = 777;
static float frand(void) { /* deterministic LCG in [-1, 1) */
  g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)((double)(g_seed >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void release_out(struct ArrowArray* a, struct ArrowSchema* s) {
  a->release(a);
  s->release(s);
}

static int close_rel(double got, double want, double tol) {
  double d = fabs(got - want), m = fabs(want) > 1e-6 ? fabs(want) : 1e-6;
  return d <= tol * m;
}

/* Fisher sums (compute * n_samples after one add_samples(1)) of a one-Linear layout. */
static int fisher_values(exitnet_fisher* acc, float* dst, int64_t n) {
  struct ArrowArray out;
  struct ArrowSchema outs;
  if (exitnet_fisher_add_samples(acc, 1) != EXITNET_OK) return 0;
  if (exitnet_fisher_compute(&out, &outs, acc) != EXITNET_OK) return 0;
  const float* f = matrix_values(&out);
  int ok = out.length == n;
  for (int64_t j = 0; ok && j < n; j++) dst[j] = f[j];
  release_out(&out, &outs);
  return ok;
}

#define MAXN 70
#define MAXIN 19
#define MAXOUT 9

static void linear_case(int n, int in, int out, int weighted) {
  static float A[MAXN * MAXIN], G[MAXN * MAXOUT], w[MAXN], raw[MAXOUT * MAXIN + MAXOUT], arw[MAXOUT * MAXIN + MAXOUT];
  for (int i = 0; i < n * in; i++) A[i] = frand() * 3;
  for (int i = 0; i < n * out; i++) G[i] = frand();
  for (int i = 0; i < n; i++) w[i] = 0.25f + (float)(i % 5);
  const char* names[] = {"w", "b"};
  const int64_t ndims[] = {2, 1};
  const int64_t dims[] = {out, in, out};
  int64_t P = (int64_t)out * in + out;
  exitnet_fisher *acc = NULL, *acc2 = NULL;
  CHECK_STATUS(exitnet_fisher_new(&acc, names, ndims, dims, 2, "exact"), EXITNET_OK);
  CHECK_STATUS(exitnet_fisher_new(&acc2, names, ndims, dims, 2, "exact"), EXITNET_OK);
  CHECK_STATUS(exitnet_fisher_update_linear_raw(acc, "w", "b", A, G, n, in, out, weighted ? w : NULL), EXITNET_OK);
  struct ArrowArray aa, ga, wa;
  struct ArrowSchema as, gs, ws;
  make_matrix(&aa, &as, A, n, in);
  make_matrix(&ga, &gs, G, n, out);
  if (weighted) make_f32(&wa, &ws, w, n);
  CHECK_STATUS(exitnet_fisher_update_linear(acc2, "w", "b", &aa, &as, &ga, &gs, weighted ? &wa : NULL,
                                            weighted ? &ws : NULL),
               EXITNET_OK);
  CHECK(fisher_values(acc, raw, P) && fisher_values(acc2, arw, P), "compute n=%d in=%d out=%d", n, in, out);
  int bad = 0, differ = 0;
  for (int o = 0; o < out; o++) {
    double sb = 0;
    for (int r = 0; r < n; r++) sb += (weighted ? w[r] : 1.0) * (double)G[r * out + o] * G[r * out + o];
    if (!close_rel(raw[out * in + o], sb, 1e-5)) bad++;
    for (int i = 0; i < in; i++) {
      double s = 0;
      for (int r = 0; r < n; r++) {
        double a = A[r * in + i], g = G[r * out + o];
        s += (weighted ? w[r] : 1.0) * g * g * a * a;
      }
      if (!close_rel(raw[o * in + i], s, 1e-5)) bad++;
    }
  }
  for (int64_t j = 0; j < P; j++) differ += raw[j] != arw[j];
  CHECK(bad == 0, "linear raw n=%d in=%d out=%d w=%d: %d values differ from the double loop", n, in, out, weighted, bad);
  CHECK(differ == 0, "linear raw n=%d in=%d out=%d: %d values differ from the Arrow path", n, in, out, differ);
  CHECK_STATUS(exitnet_fisher_free(&acc), EXITNET_OK);
  CHECK_STATUS(exitnet_fisher_free(&acc2), EXITNET_OK);
}

#define K 3
#define N 13
#define C 4

int main(void) {
  int64_t bytes0 = 0, handles0 = 0;
  CHECK_STATUS(exitnet_allocated_bytes(&bytes0), EXITNET_OK);
  CHECK_STATUS(exitnet_live_handles(&handles0), EXITNET_OK);

  /* ---- Linear factors, ragged sizes (below, at and past the 8-wide kernels) ---- */
  const int ns[] = {1, 7, 33, 70}, ins[] = {1, 9, 19}, outs[] = {1, 5, 9};
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < 3; b++)
      for (int c = 0; c < 3; c++) linear_case(ns[a], ins[b], outs[c], (a + b + c) % 2);

  /* ---- rows: whole layout and one parameter, against a double loop ---- */
  {
    const char* names[] = {"u", "v"};
    const int64_t ndims[] = {1, 2}, dims[] = {3, 2, 5};
    enum { R = 11, PR = 13 };
    float rows[R * PR], w[R], got[PR];
    for (int i = 0; i < R * PR; i++) rows[i] = frand();
    rows[4] = INFINITY; /* refused below, then restored */
    for (int i = 0; i < R; i++) w[i] = (float)(i % 3);
    exitnet_fisher* acc = NULL;
    CHECK_STATUS(exitnet_fisher_new(&acc, names, ndims, dims, 2, "empirical"), EXITNET_OK);
    CHECK_STATUS(exitnet_fisher_update_rows_raw(acc, NULL, rows, R, PR, w), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "\"v\"") != NULL, "Inf names the parameter: %s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_reset(acc), EXITNET_OK);
    rows[4] = 0.5f;
    CHECK_STATUS(exitnet_fisher_update_rows_raw(acc, NULL, rows, R, PR, w), EXITNET_OK);
    CHECK_STATUS(exitnet_fisher_update_rows_raw(acc, "v", rows, R, 10, NULL), EXITNET_OK); /* first 10 columns */
    CHECK(fisher_values(acc, got, PR), "compute rows");
    int bad = 0;
    for (int j = 0; j < PR; j++) {
      double s = 0;
      for (int r = 0; r < R; r++) s += (double)w[r] * rows[r * PR + j] * rows[r * PR + j];
      if (j >= 3)
        for (int r = 0; r < R; r++) s += (double)rows[r * 10 + j - 3] * rows[r * 10 + j - 3];
      if (!close_rel(got[j], s, 1e-6)) bad++;
    }
    CHECK(bad == 0, "rows raw: %d of %d values differ from the double loop", bad, PR);

    /* bad sizes and pointers: the message names the argument; nothing is added */
    CHECK_STATUS(exitnet_fisher_update_rows_raw(acc, NULL, NULL, 2, PR, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "rows: NULL") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_update_rows_raw(acc, NULL, rows, -1, PR, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "n_rows: -1") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_update_rows_raw(acc, NULL, rows, 1, 0, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "n_cols: 0") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_update_rows_raw(acc, NULL, rows, INT64_MAX / 2, 3, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "n_rows, n_cols") != NULL, "overflow: %s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_update_rows_raw(acc, NULL, rows, R, 7, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "rows: 7 columns") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_update_rows_raw(acc, "nope", rows, R, 7, NULL), EXITNET_ERR_NOT_FOUND);
    CHECK_STATUS(exitnet_fisher_update_rows_raw(acc, NULL, NULL, 0, PR, NULL), EXITNET_OK); /* zero rows */
    CHECK_STATUS(exitnet_fisher_update_rows_raw(NULL, NULL, rows, R, PR, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "fisher: NULL") != NULL, "%s", exitnet_last_error());
    w[3] = -1;
    CHECK_STATUS(exitnet_fisher_update_rows_raw(acc, NULL, rows, R, PR, w), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "weights: row 3") != NULL, "%s", exitnet_last_error());
    float again[PR];
    CHECK(fisher_values(acc, again, PR), "compute after errors");
    bad = 0;
    for (int j = 0; j < PR; j++) bad += !close_rel(again[j] * 2, got[j], 1e-6);
    CHECK(bad == 0, "failed updates added nothing (%d values moved)", bad);

    /* Linear: NULL, sizes, a NaN factor (nothing added), a wrong layout shape */
    float A[4 * 5], G[4 * 3];
    for (int i = 0; i < 20; i++) A[i] = frand();
    for (int i = 0; i < 12; i++) G[i] = frand();
    const char* ln[] = {"w"};
    const int64_t lnd[] = {2}, ld[] = {3, 5};
    exitnet_fisher* lin = NULL;
    CHECK_STATUS(exitnet_fisher_new(&lin, ln, lnd, ld, 1, "empirical"), EXITNET_OK);
    CHECK_STATUS(exitnet_fisher_update_linear_raw(lin, "w", NULL, A, NULL, 4, 5, 3, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "grad_outputs: NULL") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_update_linear_raw(lin, "w", NULL, A, G, 4, -5, 3, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "n_in: -5") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_update_linear_raw(lin, "w", NULL, A, G, 4, 5, INT64_MAX, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "n_rows, n_out") != NULL, "overflow: %s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_update_linear_raw(lin, NULL, NULL, A, G, 4, 5, 3, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "weight: NULL") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_update_linear_raw(lin, "w", NULL, A, G, 4, 3, 5, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "weight: parameter \"w\" has shape") != NULL, "%s", exitnet_last_error());
    G[7] = NAN;
    CHECK_STATUS(exitnet_fisher_update_linear_raw(lin, "w", NULL, A, G, 4, 5, 3, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "grad_outputs") != NULL, "NaN: %s", exitnet_last_error());
    float z[15];
    CHECK(fisher_values(lin, z, 15), "compute linear");
    bad = 0;
    for (int j = 0; j < 15; j++) bad += z[j] != 0;
    CHECK(bad == 0, "failed Linear updates added nothing (%d nonzero)", bad);
    CHECK_STATUS(exitnet_fisher_free(&lin), EXITNET_OK);
    CHECK_STATUS(exitnet_fisher_free(&acc), EXITNET_OK);
  }

  /* ---- curve: raw == brute force over every threshold, +-Inf confidences ---- */
  {
    float conf[K * N];
    int32_t pred[K * N];
    int64_t labels[N];
    uint32_t r = 99;
    for (int i = 0; i < K * N; i++) {
      r = r * 1664525u + 1013904223u;
      conf[i] = (float)((r >> 24) % 4) * 0.25f; /* ties */
      pred[i] = (int32_t)((r >> 8) % C);
    }
    conf[2] = INFINITY;
    conf[N + 5] = -INFINITY;
    for (int i = 0; i < N; i++) labels[i] = i % C;
    double costs[K] = {1, 2.5, 4};
    struct ArrowArray cv;
    struct ArrowSchema cvs;
    CHECK_STATUS(exitnet_policy_curve_raw(&cv, &cvs, conf, pred, labels, K, N, C, costs), EXITNET_OK);
    int64_t P = cv.length;
    const float* tau = (const float*)cv.children[0]->buffers[1];
    const int64_t* correct = (const int64_t*)cv.children[1]->buffers[1];
    const double* mean = (const double*)cv.children[3]->buffers[1];
    const int64_t* hist = (const int64_t*)cv.children[6]->children[0]->buffers[1];
    int mism = 0;
    for (int t = 0; t <= K * N; t++) {
      float probe = t == K * N ? INFINITY : conf[t];
      int64_t c = 0, h[K] = {0, 0, 0};
      for (int i = 0; i < N; i++) {
        int e = K - 1;
        for (int k = 0; k < K - 1; k++)
          if (conf[k * N + i] >= probe) {
            e = k;
            break;
          }
        h[e]++;
        c += pred[e * N + i] == labels[i];
      }
      double m = (h[0] * costs[0] + h[1] * costs[1] + h[2] * costs[2]) / N;
      int64_t p = 0;
      for (int64_t q = 0; q < P; q++)
        if (tau[q] >= probe) p = q;
      if (correct[p] != c || fabs(mean[p] - m) > 1e-12 || hist[p * K] != h[0] || hist[p * K + 2] != h[2]) mism++;
    }
    CHECK(P > 1 && mism == 0, "curve raw: %d brute-force mismatches (%lld points)", mism, (long long)P);
    release_out(&cv, &cvs);

    CHECK_STATUS(exitnet_policy_curve_raw(&cv, &cvs, NULL, pred, labels, K, N, C, costs), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "conf: NULL") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_policy_curve_raw(&cv, &cvs, conf, pred, labels, 0, N, C, costs), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "n_exits: 0") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_policy_curve_raw(&cv, &cvs, conf, pred, labels, K, 0, C, costs), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "n_samples: 0") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_policy_curve_raw(&cv, &cvs, conf, pred, labels, K, INT64_MAX / 2, C, costs),
                 EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "n_exits, n_samples") != NULL, "overflow: %s", exitnet_last_error());
    CHECK_STATUS(exitnet_policy_curve_raw(NULL, &cvs, conf, pred, labels, K, N, C, costs), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "out: NULL") != NULL, "%s", exitnet_last_error());
    labels[4] = (int64_t)1 << 40;
    CHECK_STATUS(exitnet_policy_curve_raw(&cv, &cvs, conf, pred, labels, K, N, C, costs), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "labels: value 1099511627776 at index 4") != NULL, "%s", exitnet_last_error());
    labels[4] = C;
    CHECK_STATUS(exitnet_policy_curve_raw(&cv, &cvs, conf, pred, labels, K, N, C, costs), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "labels") != NULL, "%s", exitnet_last_error());
    labels[4] = 0;
    conf[N + 1] = NAN;
    CHECK_STATUS(exitnet_policy_curve_raw(&cv, &cvs, conf, pred, labels, K, N, C, costs), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "NaN at exit 1, row 1") != NULL, "%s", exitnet_last_error());
  }

  /* ---- squared gradients of one parameter from a plain array ---- */
  {
    const char* names[] = {"u", "v"};
    const int64_t ndims[] = {1, 2}, dims[] = {3, 2, 5};
    float sq[10], got[13];
    for (int i = 0; i < 10; i++) sq[i] = 0.25f * (float)(i + 1);
    exitnet_fisher* acc = NULL;
    CHECK_STATUS(exitnet_fisher_new(&acc, names, ndims, dims, 2, "empirical"), EXITNET_OK);
    CHECK_STATUS(exitnet_fisher_update_squared_raw(acc, "v", sq, 10, 1), EXITNET_OK);
    CHECK(fisher_values(acc, got, 13), "compute squared");
    int bad = got[0] != 0 || got[1] != 0 || got[2] != 0;
    for (int i = 0; i < 10; i++) bad += got[3 + i] != sq[i];
    CHECK(bad == 0, "update_squared_raw: %d values differ", bad);
    CHECK_STATUS(exitnet_fisher_update_squared_raw(acc, "v", sq, 9, 1), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "10 elements") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_update_squared_raw(acc, "v", NULL, 10, 1), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "sq_sum: NULL") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_update_squared_raw(acc, "v", sq, -1, 1), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "n_values: -1") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_update_squared_raw(acc, "w", sq, 10, 1), EXITNET_ERR_NOT_FOUND);
    sq[3] = -1.0f;
    CHECK_STATUS(exitnet_fisher_update_squared_raw(acc, "v", sq, 10, 1), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(exitnet_fisher_free(&acc), EXITNET_OK);
  }

  /* ---- EWC penalty from plain arrays, 2 pairs, ragged length (past the 8-wide kernel) ---- */
  {
    enum { P = 1037 };
    static float th[P], a0[P], a1[P], f0[P], f1[P], g[P];
    for (int i = 0; i < P; i++) {
      th[i] = frand();
      a0[i] = frand();
      a1[i] = frand();
      f0[i] = frand() + 1.0f;
      f1[i] = 0.5f * (frand() + 1.0f);
    }
    const float* as[2] = {a0, a1};
    const float* fs[2] = {f0, f1};
    const double lam = 3.0;
    double v = -1, want = 0;
    int bad = 0;
    CHECK_STATUS(exitnet_ewc_penalty_raw(&v, g, th, as, fs, P, 2, lam), EXITNET_OK);
    for (int i = 0; i < P; i++) {
      double d0 = (double)th[i] - a0[i], d1 = (double)th[i] - a1[i];
      double gi = lam * ((double)f0[i] * d0 + (double)f1[i] * d1);
      want += lam / 2 * ((double)f0[i] * d0 * d0 + (double)f1[i] * d1 * d1);
      if (!close_rel(g[i], gi, 1e-5)) bad++;
    }
    CHECK(close_rel(v, want, 1e-6), "penalty raw value %.9g, double loop %.9g", v, want);
    CHECK(bad == 0, "penalty raw: %d gradient values differ from the double loop", bad);
    double v2 = -1;
    CHECK_STATUS(exitnet_ewc_penalty_raw(&v2, NULL, th, as, fs, P, 2, lam), EXITNET_OK);
    CHECK(v2 == v, "value without the gradient %.17g != %.17g", v2, v);
    CHECK_STATUS(exitnet_ewc_penalty_raw(&v2, NULL, NULL, NULL, NULL, 0, 1, lam), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "anchors: NULL") != NULL, "%s", exitnet_last_error());
    const float* none[1] = {NULL};
    CHECK_STATUS(exitnet_ewc_penalty_raw(&v2, NULL, NULL, none, none, 0, 1, lam), EXITNET_OK);
    CHECK(v2 == 0, "empty penalty %g", v2);
    CHECK_STATUS(exitnet_ewc_penalty_raw(NULL, g, th, as, fs, P, 2, lam), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "out_value: NULL") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_ewc_penalty_raw(&v2, g, th, as, fs, P, 0, lam), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "n_pairs: 0") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_ewc_penalty_raw(&v2, g, th, as, fs, -1, 2, lam), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "n: -1") != NULL, "%s", exitnet_last_error());
    const float* hole[2] = {a0, NULL};
    CHECK_STATUS(exitnet_ewc_penalty_raw(&v2, g, th, hole, fs, P, 2, lam), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "anchors[1]: NULL") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_ewc_penalty_raw(&v2, th + 5, th, as, fs, P, 2, lam), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "out_grad: overlaps params") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_ewc_penalty_raw(&v2, f1, th, as, fs, P, 2, lam), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "out_grad: overlaps fishers[1]") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_ewc_penalty_raw(&v2, g, th, as, fs, P, 2, -1.0), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "lambda") != NULL, "%s", exitnet_last_error());
  }

  int64_t bytes1 = -1, handles1 = -1;
  CHECK_STATUS(exitnet_allocated_bytes(&bytes1), EXITNET_OK);
  CHECK_STATUS(exitnet_live_handles(&handles1), EXITNET_OK);
  CHECK(bytes1 == bytes0 && handles1 == handles0, "leak: %lld bytes, %lld handles", (long long)(bytes1 - bytes0),
        (long long)(handles1 - handles0));
  return test_summary();
}
