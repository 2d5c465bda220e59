/* The Fisher and distill entry points the other C tests do not reach:
 * exitnet_fisher_update_squared, _state / _set_state (the all-reduce round trip),
 * _class_probs, and exitnet_distill_soft_targets_raw. Expected values come from C
 * double loops written here; bad input from each. */
#include "check.h"

static double softmax_ref(const float* z, int c, int j, double T) {
  double m = z[0];
  for (int k = 1; k < c; k++) if (z[k] > m) m = z[k];
  double s = 0;
  for (int k = 0; k < c; k++) s += exp((z[k] - m) / T);
  return exp((z[j] - m) / T) / s;
}

int main(void) {
  /* layout: w (2x3), b (3) */
  const char* names[] = {"w", "b"};
  int64_t ndims[] = {2, 1};
  int64_t dims[] = {2, 3, 3};
  exitnet_fisher* f = NULL;
  CHECK_STATUS(exitnet_fisher_new(&f, names, ndims, dims, 2, "exact"), EXITNET_OK);

  /* update_squared: S_b += sq (per-sample), twice, then F = S / N */
  float sq1[3] = {1.0f, 4.0f, 9.0f}, sq2[3] = {0.5f, 0.0f, 2.5f};
  struct ArrowArray a;
  struct ArrowSchema s;
  make_f32(&a, &s, sq1, 3);
  CHECK_STATUS(exitnet_fisher_update_squared(f, "b", &a, &s, 2), EXITNET_OK);
  make_f32(&a, &s, sq2, 3);
  CHECK_STATUS(exitnet_fisher_update_squared(f, "b", &a, &s, 2), EXITNET_OK);
  CHECK_STATUS(exitnet_fisher_add_samples(f, 4), EXITNET_OK);
  struct ArrowArray out;
  struct ArrowSchema outs;
  CHECK_STATUS(exitnet_fisher_compute(&out, &outs, f), EXITNET_OK);
  const float* F = matrix_values(&out);
  CHECK(out.length == 9, "P = %lld", (long long)out.length);
  for (int j = 0; j < 3; j++) {
    double want = ((double)sq1[j] + sq2[j]) / 4.0;
    CHECK(fabs(F[6 + j] - want) < 1e-7, "F_b[%d] = %g, want %g", j, F[6 + j], want);
    CHECK(F[j] == 0.0f, "F_w untouched");
  }
  out.release(&out);
  outs.release(&outs);

  /* bad update_squared: unknown parameter, wrong size, negative value, n < 1, NULL */
  make_f32(&a, &s, sq1, 3);
  CHECK_STATUS(exitnet_fisher_update_squared(f, "nope", &a, &s, 1), EXITNET_ERR_NOT_FOUND);
  CHECK(a.release == NULL && s.release == NULL, "moved in on error");
  make_f32(&a, &s, sq1, 2);
  CHECK_STATUS(exitnet_fisher_update_squared(f, "b", &a, &s, 1), EXITNET_ERR_INVALID_ARGUMENT);
  float neg[3] = {1.0f, -1.0f, 0.0f};
  make_f32(&a, &s, neg, 3);
  CHECK_STATUS(exitnet_fisher_update_squared(f, "b", &a, &s, 1), EXITNET_ERR_INVALID_ARGUMENT);
  float nan3[3] = {1.0f, NAN, 0.0f};
  make_f32(&a, &s, nan3, 3);
  CHECK_STATUS(exitnet_fisher_update_squared(f, "b", &a, &s, 1), EXITNET_ERR_INVALID_ARGUMENT);
  make_f32(&a, &s, sq1, 3);
  CHECK_STATUS(exitnet_fisher_update_squared(f, "b", &a, &s, 0), EXITNET_ERR_INVALID_ARGUMENT);
  make_f32(&a, &s, sq1, 3);
  CHECK_STATUS(exitnet_fisher_update_squared(NULL, "b", &a, &s, 1), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(a.release == NULL, "moved in with a NULL handle");

  /* state round trip: what a data-parallel all-reduce does */
  int64_t count = -1;
  CHECK_STATUS(exitnet_fisher_state(&out, &outs, &count, f), EXITNET_OK);
  CHECK(count == 4, "count %lld", (long long)count);
  CHECK(out.length == 9 && strcmp(outs.format, "g") == 0, "float64 sums (%s)", outs.format);
  double sums[9];
  memcpy(sums, (const double*)out.buffers[1] + out.offset, sizeof sums);
  out.release(&out);
  outs.release(&outs);
  CHECK(fabs(sums[8] - 11.5) < 1e-12, "S_b[2] = %g", sums[8]);
  for (int i = 0; i < 9; i++) sums[i] *= 2; /* two identical ranks, summed */
  exitnet_fisher* g = NULL;
  CHECK_STATUS(exitnet_fisher_new(&g, names, ndims, dims, 2, "exact"), EXITNET_OK);
  make_f64(&a, &s, sums, 9);
  CHECK_STATUS(exitnet_fisher_set_state(g, &a, &s, 8), EXITNET_OK);
  CHECK_STATUS(exitnet_fisher_compute(&out, &outs, g), EXITNET_OK);
  F = matrix_values(&out);
  CHECK(fabs(F[8] - 11.5 / 4) < 1e-6, "merged F_b[2] = %g", F[8]);
  out.release(&out);
  outs.release(&outs);
  make_f64(&a, &s, sums, 8);
  CHECK_STATUS(exitnet_fisher_set_state(g, &a, &s, 8), EXITNET_ERR_INVALID_ARGUMENT);
  sums[0] = -1;
  make_f64(&a, &s, sums, 9);
  CHECK_STATUS(exitnet_fisher_set_state(g, &a, &s, 8), EXITNET_ERR_INVALID_ARGUMENT);
  make_f32(&a, &s, sq1, 3);
  CHECK_STATUS(exitnet_fisher_set_state(g, &a, &s, 8), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_fisher_state(&out, &outs, NULL, f), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_fisher_free(&g), EXITNET_OK);
  CHECK_STATUS(exitnet_fisher_free(&f), EXITNET_OK);

  /* class_probs vs a C double softmax */
  float z[6] = {1.0f, 2.0f, 3.0f, -50.0f, 0.0f, 50.0f};
  make_matrix(&a, &s, z, 2, 3);
  CHECK_STATUS(exitnet_fisher_class_probs(&out, &outs, &a, &s), EXITNET_OK);
  const float* P = matrix_values(&out);
  for (int r = 0; r < 2; r++)
    for (int j = 0; j < 3; j++) {
      double want = softmax_ref(z + 3 * r, 3, j, 1.0);
      CHECK(fabs(P[3 * r + j] - want) <= 1e-6 * want + 1e-30, "p[%d][%d] = %g, want %g", r, j,
            P[3 * r + j], want);
    }
  out.release(&out);
  outs.release(&outs);
  float bad[6] = {1.0f, NAN, 3.0f, 0.0f, 0.0f, 0.0f};
  make_matrix(&a, &s, bad, 2, 3);
  CHECK_STATUS(exitnet_fisher_class_probs(&out, &outs, &a, &s), EXITNET_ERR_INVALID_ARGUMENT);
  make_matrix(&a, &s, z, 2, 3);
  CHECK_STATUS(exitnet_fisher_class_probs(NULL, &outs, &a, &s), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(a.release == NULL, "moved in when out is NULL");

  /* soft_targets_raw vs a C double softmax(z/T), also in place. Tolerance: the
   * vectorised exp's documented bound, 2.8 ulp plus |z - max|/T * 1.2e-7 relative
   * from rounding its float32 argument (golib/internal/vexp). */
  float st[6];
  CHECK_STATUS(exitnet_distill_soft_targets_raw(st, z, 2, 3, 2.0), EXITNET_OK);
  for (int r = 0; r < 2; r++)
    for (int j = 0; j < 3; j++) {
      double want = softmax_ref(z + 3 * r, 3, j, 2.0);
      /* column 2 holds each row's maximum */
      double tol = (4e-7 + fabs(z[3 * r + j] - z[3 * r + 2]) / 2.0 * 1.3e-7) * want;
      CHECK(fabs(st[3 * r + j] - want) <= tol + 1e-30, "q[%d][%d] = %g, want %g", r, j,
            st[3 * r + j], want);
    }
  float inplace[6];
  memcpy(inplace, z, sizeof z);
  CHECK_STATUS(exitnet_distill_soft_targets_raw(inplace, inplace, 2, 3, 2.0), EXITNET_OK);
  CHECK(memcmp(inplace, st, sizeof st) == 0, "in place equals out of place");
  CHECK_STATUS(exitnet_distill_soft_targets_raw(st, z, 2, 3, 0.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_distill_soft_targets_raw(st, z, 2, 3, NAN), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_distill_soft_targets_raw(st, bad, 2, 3, 1.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_distill_soft_targets_raw(NULL, z, 2, 3, 1.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_distill_soft_targets_raw(st, z, 2, 0, 1.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_distill_soft_targets_raw(st, z, 0, 3, 1.0), EXITNET_OK);

  int64_t bytes = -1, live = -1;
  exitnet_allocated_bytes(&bytes);
  exitnet_live_handles(&live);
  CHECK(bytes == 0 && live == 0, "no leaks: %lld bytes, %lld handles", (long long)bytes, (long long)live);
  return test_summary();
}
