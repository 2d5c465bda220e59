/* The policy ABI from C: confidences against a double-precision reference, the
 * exact curve against a brute force over every distinct threshold, assignment,
 * calibration, summaries, every bad input, moved-in inputs and no leaks. */
#include <math.h>
#include <stdint.h>

#include "check.h"

#define K 3
#define N 40
#define C 3

static float logits[K][N * C];
static int32_t labels[N];

static void release_out(struct ArrowArray* a, struct ArrowSchema* s) {
  if (a->release) a->release(a);
  if (s->release) s->release(s);
}

/* double-precision max softmax of a row */
static double ref_maxsoftmax(const float* z, int c, int* arg) {
  double mx = z[0];
  *arg = 0;
  for (int j = 1; j < c; j++)
    if (z[j] > mx) { mx = z[j]; *arg = j; }
  double s = 0;
  for (int j = 0; j < c; j++) s += exp((double)z[j] - mx);
  return 1.0 / s;
}

static int confidences(struct ArrowArray* oc, struct ArrowSchema* ocs, struct ArrowArray* op,
                       struct ArrowSchema* ops, int measure) {
  struct ArrowArray in[K];
  struct ArrowSchema ins[K];
  for (int k = 0; k < K; k++) make_matrix(&in[k], &ins[k], logits[k], N, C);
  int st = exitnet_policy_confidences(oc, ocs, op, ops, in, ins, K, measure, NULL);
  int moved = 1;
  for (int k = 0; k < K; k++) moved &= in[k].release == NULL && ins[k].release == NULL;
  CHECK(moved, "logits moved in (status %d)", st);
  return st;
}

/* re-export the scores we got back as inputs (copies) */
static void scores_in(struct ArrowArray* ca, struct ArrowSchema* cs, struct ArrowArray* pa,
                      struct ArrowSchema* ps, const float* conf, const int32_t* pred) {
  make_matrix(ca, cs, conf, K, N);
  make_i32(pa, ps, pred, K * N);
}

static int brute_exit(const float* conf, int i, const float* tau) {
  for (int k = 0; k < K - 1; k++)
    if (conf[k * N + i] >= tau[k]) return k;
  return K - 1;
}

int main(void) {
  /* rounded logits: many ties */
  uint32_t r = 12345;
  for (int k = 0; k < K; k++)
    for (int i = 0; i < N * C; i++) {
      r = r * 1664525u + 1013904223u;
      logits[k][i] = (float)((r >> 24) % 5) * 0.5f;
    }
  for (int i = 0; i < N; i++) {
    r = r * 1664525u + 1013904223u;
    labels[i] = (int32_t)((r >> 24) % C);
  }
  int64_t bytes0 = 0;
  exitnet_allocated_bytes(&bytes0);

  /* ---- confidences vs double reference ---- */
  struct ArrowArray oc, op;
  struct ArrowSchema ocs, ops;
  CHECK_STATUS(confidences(&oc, &ocs, &op, &ops, EXITNET_POLICY_MAX_SOFTMAX), EXITNET_OK);
  CHECK(oc.length == K && op.length == K * N, "lengths %lld %lld", (long long)oc.length, (long long)op.length);
  const float* conf = matrix_values(&oc);
  const int32_t* pred = (const int32_t*)op.buffers[1] + op.offset;
  int bad = 0;
  for (int k = 0; k < K; k++)
    for (int i = 0; i < N; i++) {
      int arg;
      double want = ref_maxsoftmax(&logits[k][i * C], C, &arg);
      if (fabs(conf[k * N + i] - want) > 1e-6 || pred[k * N + i] != arg) bad++;
    }
  CHECK(bad == 0, "%d confidences differ from the double reference", bad);

  /* ---- exact curve vs brute force over every distinct tau ---- */
  double stage[K] = {10, 20, 30}, head[K] = {1, 2, 3}, costs[K];
  CHECK_STATUS(exitnet_policy_cost_cumulative(costs, stage, head, K), EXITNET_OK);
  CHECK(costs[0] == 11 && costs[1] == 33 && costs[2] == 66, "cumulative %g %g %g", costs[0], costs[1], costs[2]);
  struct ArrowArray ca, pa, la, cv;
  struct ArrowSchema cs, ps, ls, cvs;
  scores_in(&ca, &cs, &pa, &ps, conf, pred);
  make_i32(&la, &ls, labels, N);
  CHECK_STATUS(exitnet_policy_curve(&cv, &cvs, &ca, &cs, &pa, &ps, &la, &ls, C, costs), EXITNET_OK);
  CHECK(ca.release == NULL && pa.release == NULL && la.release == NULL, "curve inputs moved in");
  CHECK(cv.n_children == 7, "curve has %lld columns", (long long)cv.n_children);
  int64_t P = cv.length;
  const float* tau = (const float*)cv.children[0]->buffers[1];
  const int64_t* correct = (const int64_t*)cv.children[1]->buffers[1];
  const double* mean = (const double*)cv.children[3]->buffers[1];
  const int64_t* hist = (const int64_t*)cv.children[6]->children[0]->buffers[1];
  CHECK(P > 1 && isinf(tau[0]) && tau[0] > 0, "point 0 is tau=+inf (%lld points)", (long long)P);
  int mismatches = 0;
  for (int t = 0; t < (K - 1) * N + 1; t++) {
    float probe = t == (K - 1) * N ? INFINITY : conf[t];
    float tv[K] = {probe, probe, probe};
    int64_t c = 0, h[K] = {0, 0, 0};
    for (int i = 0; i < N; i++) {
      int e = brute_exit(conf, i, tv);
      h[e]++;
      c += pred[e * N + i] == labels[i];
    }
    double m = (h[0] * costs[0] + h[1] * costs[1] + h[2] * costs[2]) / N;
    int64_t p = 0;
    for (int64_t q = 0; q < P; q++)
      if (tau[q] >= probe) p = q;
    if (correct[p] != c || fabs(mean[p] - m) > 1e-12 || hist[p * K] != h[0] || hist[p * K + 1] != h[1])
      mismatches++;
  }
  CHECK(mismatches == 0, "%d brute-force mismatches", mismatches);
  release_out(&cv, &cvs);

  /* ---- assign ---- */
  float thr[K] = {0.6f, 0.5f, 0.0f};
  struct ArrowArray asg;
  struct ArrowSchema asgs;
  scores_in(&ca, &cs, &pa, &ps, conf, pred);
  CHECK_STATUS(exitnet_policy_assign(&asg, &asgs, &ca, &cs, &pa, &ps, C, thr, K), EXITNET_OK);
  const int32_t* ex = (const int32_t*)asg.children[0]->buffers[1];
  bad = 0;
  for (int i = 0; i < N; i++) bad += ex[i] != brute_exit(conf, i, thr);
  CHECK(bad == 0 && asg.length == N, "%d assignments differ", bad);
  release_out(&asg, &asgs);

  /* ---- calibrate: target met on validation ---- */
  for (int method = 0; method < 3; method++) {
    float th[K];
    double q;
    exitnet_policy_point pv, pt;
    int64_t hv[K], ht[K];
    struct ArrowArray tca, tpa, tla;
    struct ArrowSchema tcs, tps, tls;
    scores_in(&ca, &cs, &pa, &ps, conf, pred);
    make_i32(&la, &ls, labels, N);
    scores_in(&tca, &tcs, &tpa, &tps, conf, pred);
    make_i32(&tla, &tls, labels, N);
    double target = 0.6 * costs[K - 1];
    CHECK_STATUS(exitnet_policy_calibrate(th, &q, &pv, hv, &pt, ht, &ca, &cs, &pa, &ps, &la, &ls, &tca, &tcs, &tpa,
                                          &tps, &tla, &tls, C, costs, method, 0, target),
                 EXITNET_OK);
    int64_t h[K] = {0, 0, 0}, c = 0;
    for (int i = 0; i < N; i++) {
      int e = brute_exit(conf, i, th);
      h[e]++;
      c += pred[e * N + i] == labels[i];
    }
    double m = (h[0] * costs[0] + h[1] * costs[1] + h[2] * costs[2]) / N;
    CHECK(m <= target && pv.correct == c && pv.n == N && fabs(pv.mean_cost - m) < 1e-12 && pt.correct == c,
          "method %d: cost %g target %g correct %lld/%lld", method, m, target, (long long)pv.correct, (long long)c);
    CHECK(isinf(th[K - 1]) && th[K - 1] < 0, "last threshold is -inf");
    CHECK((method == EXITNET_POLICY_MSDNET) == !isnan(q), "q only for msdnet");
  }

  /* ---- summary ---- */
  double budgets[2] = {0.5, 1.0}, acc[2], sp, area;
  scores_in(&ca, &cs, &pa, &ps, conf, pred);
  make_i32(&la, &ls, labels, N);
  CHECK_STATUS(exitnet_policy_summary(acc, &sp, &area, &ca, &cs, &pa, &ps, &la, &ls, C, costs, budgets, 2, 0.0),
               EXITNET_OK);
  CHECK(acc[0] <= acc[1] && sp >= 1.0 && area > 0 && area <= 1 - costs[0] / costs[K - 1], "summary %g %g %g %g",
        acc[0], acc[1], sp, area);

  /* ---- bad input: clear errors, inputs still moved in ---- */
  /* separate outputs: a failing call zeroes its out-structs */
  struct ArrowArray xc, xp;
  struct ArrowSchema xcs, xps;
  {
    struct ArrowArray in[2];
    struct ArrowSchema ins[2];
    make_matrix(&in[0], &ins[0], logits[0], N, C);
    make_matrix(&in[1], &ins[1], logits[1], N - 1, C);
    CHECK_STATUS(exitnet_policy_confidences(&xc, &xcs, &xp, &xps, in, ins, 2, 0, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "exit 1 is 39") != NULL, "different N: %s", exitnet_last_error());
    CHECK(in[0].release == NULL && in[1].release == NULL, "moved in on error");
    make_matrix(&in[0], &ins[0], logits[0], N, C);
    make_matrix(&in[1], &ins[1], logits[1], 30, 4);
    CHECK_STATUS(exitnet_policy_confidences(&xc, &xcs, &xp, &xps, in, ins, 2, 0, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "every exit needs the same N and C") != NULL, "different C");
    float nan_logits[N * C];
    memcpy(nan_logits, logits[0], sizeof nan_logits);
    nan_logits[5 * C + 1] = NAN;
    make_matrix(&in[0], &ins[0], logits[0], N, C);
    make_matrix(&in[1], &ins[1], nan_logits, N, C);
    CHECK_STATUS(exitnet_policy_confidences(&xc, &xcs, &xp, &xps, in, ins, 2, 0, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "exit 1: logits: row 5") != NULL, "NaN: %s", exitnet_last_error());
    make_matrix(&in[0], &ins[0], logits[0], 0, C);
    CHECK_STATUS(exitnet_policy_confidences(&xc, &xcs, &xp, &xps, in, ins, 1, 0, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "no samples") != NULL, "empty: %s", exitnet_last_error());
    make_matrix(&in[0], &ins[0], logits[0], N, C);
    CHECK_STATUS(exitnet_policy_confidences(&xc, &xcs, &xp, &xps, in, ins, 1, 7, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "measure") != NULL, "measure: %s", exitnet_last_error());
    float temps[1] = {-1.0f};
    make_matrix(&in[0], &ins[0], logits[0], N, C);
    CHECK_STATUS(exitnet_policy_confidences(&xc, &xcs, &xp, &xps, in, ins, 1, 0, temps), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "temperature") != NULL, "temperature: %s", exitnet_last_error());
    CHECK_STATUS(exitnet_policy_confidences(&xc, &xcs, &xp, &xps, NULL, NULL, 1, 0, NULL),
                 EXITNET_ERR_INVALID_ARGUMENT);
  }
  {
    int32_t bad_labels[N];
    memcpy(bad_labels, labels, sizeof bad_labels);
    bad_labels[9] = C;
    scores_in(&ca, &cs, &pa, &ps, conf, pred);
    make_i32(&la, &ls, bad_labels, N);
    CHECK_STATUS(exitnet_policy_curve(&cv, &cvs, &ca, &cs, &pa, &ps, &la, &ls, C, costs), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "labels: 3 at row 9") != NULL, "labels: %s", exitnet_last_error());
    CHECK(ca.release == NULL && pa.release == NULL && la.release == NULL, "moved in on error");

    float nan_conf[K * N];
    memcpy(nan_conf, conf, sizeof nan_conf);
    nan_conf[N + 2] = NAN;
    scores_in(&ca, &cs, &pa, &ps, nan_conf, pred);
    make_i32(&la, &ls, labels, N);
    CHECK_STATUS(exitnet_policy_curve(&cv, &cvs, &ca, &cs, &pa, &ps, &la, &ls, C, costs), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "NaN at exit 1, row 2") != NULL, "NaN conf: %s", exitnet_last_error());

    double neg[K] = {1, -1, 1}, zero[K] = {0, 0, 0}, dec[K] = {1, 3, 2}, out[K];
    CHECK_STATUS(exitnet_policy_cost_cumulative(out, neg, zero, K), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "stage_macs: exit 1") != NULL, "negative: %s", exitnet_last_error());
    scores_in(&ca, &cs, &pa, &ps, conf, pred);
    make_i32(&la, &ls, labels, N);
    CHECK_STATUS(exitnet_policy_curve(&cv, &cvs, &ca, &cs, &pa, &ps, &la, &ls, C, dec), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "cannot decrease") != NULL, "decreasing: %s", exitnet_last_error());

    float two[2] = {0.5f, 0.5f};
    scores_in(&ca, &cs, &pa, &ps, conf, pred);
    CHECK_STATUS(exitnet_policy_assign(&asg, &asgs, &ca, &cs, &pa, &ps, C, two, 2), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "thresholds: 2 values") != NULL, "thresholds: %s", exitnet_last_error());

    float th[K];
    double targets[2] = {costs[0] - 1, costs[K - 1] + 1};
    const char* want[2] = {"below the cost of the first exit", "above the full cost"};
    for (int j = 0; j < 2; j++) {
      scores_in(&ca, &cs, &pa, &ps, conf, pred);
      make_i32(&la, &ls, labels, N);
      CHECK_STATUS(exitnet_policy_calibrate(th, NULL, NULL, NULL, NULL, NULL, &ca, &cs, &pa, &ps, &la, &ls, NULL, NULL,
                                            NULL, NULL, NULL, NULL, C, costs, EXITNET_POLICY_GLOBAL, 0, targets[j]),
                   EXITNET_ERR_INVALID_ARGUMENT);
      CHECK(strstr(exitnet_last_error(), want[j]) != NULL, "target: %s", exitnet_last_error());
    }
    double b[1] = {0.1};
    scores_in(&ca, &cs, &pa, &ps, conf, pred);
    make_i32(&la, &ls, labels, N);
    CHECK_STATUS(exitnet_policy_summary(acc, NULL, NULL, &ca, &cs, &pa, &ps, &la, &ls, C, costs, b, 1, 0.0),
                 EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "budgets: 0.1") != NULL, "budget: %s", exitnet_last_error());
  }

  release_out(&oc, &ocs);
  release_out(&op, &ops);
  int64_t bytes1 = -1;
  exitnet_allocated_bytes(&bytes1);
  CHECK(bytes1 == bytes0, "C-heap bytes %lld -> %lld (leak)", (long long)bytes0, (long long)bytes1);
  return test_summary();
}
