#define _POSIX_C_SOURCE 200809L
/* The fisher ABI from C: Fisher from per-sample rows and from Linear factors checked
 * against C double loops, the EWC penalty, consolidation, labels, the state file,
 * and bad input (statuses, messages naming the argument, inputs moved in). */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "check.h"

static uint64_t g_seed = 12345;
static float frand(void) { /* deterministic LCG in [-1, 1) */
  g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)((double)(g_seed >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

#define P 20 /* fc.weight 3x4 (12) + fc.bias 3 + v 5 */
static const char* NAMES[] = {"fc.weight", "fc.bias", "v"};
static const int64_t NDIMS[] = {2, 1, 1};
static const int64_t DIMS[] = {3, 4, 3, 5};

static int close_rel(double got, double want, double tol) {
  double d = fabs(got - want), m = fabs(want) > 1e-6 ? fabs(want) : 1e-6;
  return d <= tol * m;
}

int main(void) {
  int64_t bytes0 = 0, handles0 = 0;
  CHECK_STATUS(exitnet_allocated_bytes(&bytes0), EXITNET_OK);
  CHECK_STATUS(exitnet_live_handles(&handles0), EXITNET_OK);

  /* ---- Fisher from rows, against a double loop ---- */
  enum { N = 6 };
  float rows[N * P], w[N];
  for (int i = 0; i < N * P; i++) rows[i] = frand();
  for (int i = 0; i < N; i++) w[i] = 0.5f + 0.25f * (float)i;
  exitnet_fisher* acc = NULL;
  CHECK_STATUS(exitnet_fisher_new(&acc, NAMES, NDIMS, DIMS, 3, "empirical"), EXITNET_OK);
  struct ArrowArray a, wa;
  struct ArrowSchema s, ws;
  make_matrix(&a, &s, rows, N, P);
  make_f32(&wa, &ws, w, N);
  CHECK_STATUS(exitnet_fisher_update_rows(acc, NULL, &a, &s, &wa, &ws), EXITNET_OK);
  CHECK(a.release == NULL && wa.release == NULL, "inputs moved in");
  CHECK_STATUS(exitnet_fisher_add_samples(acc, N), EXITNET_OK);
  int64_t count = 0;
  CHECK_STATUS(exitnet_fisher_num_samples(&count, acc), EXITNET_OK);
  CHECK(count == N, "count %lld", (long long)count);
  struct ArrowArray out;
  struct ArrowSchema outs;
  CHECK_STATUS(exitnet_fisher_compute(&out, &outs, acc), EXITNET_OK);
  CHECK(out.length == P, "length %lld", (long long)out.length);
  const float* f = matrix_values(&out);
  int bad = 0;
  for (int j = 0; j < P; j++) {
    double ref = 0;
    for (int n = 0; n < N; n++) ref += (double)w[n] * (double)rows[n * P + j] * (double)rows[n * P + j];
    if (!close_rel(f[j], ref / N, 1e-6)) bad++;
  }
  CHECK(bad == 0, "%d of %d rows-Fisher values differ from the double loop", bad, P);
  out.release(&out);
  outs.release(&outs);

  /* NaN in a row: error naming the parameter, then unusable until reset */
  rows[2 * P + 17] = NAN;
  make_matrix(&a, &s, rows, N, P);
  CHECK_STATUS(exitnet_fisher_update_rows(acc, NULL, &a, &s, NULL, NULL), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(exitnet_last_error(), "\"v\"") != NULL, "names the parameter: %s", exitnet_last_error());
  CHECK(a.release == NULL, "moved in on error");
  CHECK_STATUS(exitnet_fisher_add_samples(acc, 1), EXITNET_ERR_INVALID_STATE);
  CHECK_STATUS(exitnet_fisher_reset(acc), EXITNET_OK);
  CHECK_STATUS(exitnet_fisher_compute(&out, &outs, acc), EXITNET_ERR_INVALID_STATE);
  CHECK(strstr(exitnet_last_error(), "no samples") != NULL, "%s", exitnet_last_error());

  /* wrong column count, unknown parameter */
  make_matrix(&a, &s, rows, N, 7);
  CHECK_STATUS(exitnet_fisher_update_rows(acc, NULL, &a, &s, NULL, NULL), EXITNET_ERR_INVALID_ARGUMENT);
  make_matrix(&a, &s, rows, 2, 5);
  CHECK_STATUS(exitnet_fisher_update_rows(acc, "nope", &a, &s, NULL, NULL), EXITNET_ERR_NOT_FOUND);
  make_matrix(&a, &s, rows, 2, 5);
  CHECK_STATUS(exitnet_fisher_update_rows(acc, "v", &a, &s, NULL, NULL), EXITNET_OK);

  /* ---- Fisher from Linear factors, against a double loop ---- */
  enum { NL = 9, IN = 4, OUT = 3 };
  float A[NL * IN], G[NL * OUT], wl[NL];
  for (int i = 0; i < NL * IN; i++) A[i] = frand();
  for (int i = 0; i < NL * OUT; i++) G[i] = frand();
  for (int i = 0; i < NL; i++) wl[i] = (float)(i % 3) * 0.5f;
  exitnet_fisher* lin = NULL;
  CHECK_STATUS(exitnet_fisher_new(&lin, NAMES, NDIMS, DIMS, 3, "exact"), EXITNET_OK);
  struct ArrowArray ga;
  struct ArrowSchema gs;
  make_matrix(&a, &s, A, NL, IN);
  make_matrix(&ga, &gs, G, NL, OUT);
  make_f32(&wa, &ws, wl, NL);
  CHECK_STATUS(exitnet_fisher_update_linear(lin, "fc.weight", "fc.bias", &a, &s, &ga, &gs, &wa, &ws), EXITNET_OK);
  CHECK_STATUS(exitnet_fisher_add_samples(lin, NL), EXITNET_OK);
  CHECK_STATUS(exitnet_fisher_compute(&out, &outs, lin), EXITNET_OK);
  f = matrix_values(&out);
  bad = 0;
  for (int o = 0; o < OUT; o++) {
    double rb = 0;
    for (int i = 0; i < IN; i++) {
      double r = 0;
      for (int n = 0; n < NL; n++) {
        double d = (double)G[n * OUT + o] * (double)A[n * IN + i];
        r += (double)wl[n] * d * d;
      }
      if (!close_rel(f[o * IN + i], r / NL, 1e-5)) bad++;
    }
    for (int n = 0; n < NL; n++) rb += (double)wl[n] * (double)G[n * OUT + o] * (double)G[n * OUT + o];
    if (!close_rel(f[12 + o], rb / NL, 1e-5)) bad++;
  }
  for (int j = 15; j < P; j++)
    if (f[j] != 0) bad++;
  CHECK(bad == 0, "%d Linear-Fisher values differ from the double loop", bad);
  out.release(&out);
  outs.release(&outs);

  /* Linear shape disagreeing with the layout; merge of different label modes */
  make_matrix(&a, &s, A, NL, 3);
  make_matrix(&ga, &gs, G, NL, OUT);
  CHECK_STATUS(exitnet_fisher_update_linear(lin, "fc.weight", NULL, &a, &s, &ga, &gs, NULL, NULL),
               EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(exitnet_last_error(), "weight") != NULL, "%s", exitnet_last_error());
  CHECK(a.release == NULL && ga.release == NULL, "moved in on error");
  CHECK_STATUS(exitnet_fisher_merge(lin, acc), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(exitnet_last_error(), "label mode") != NULL, "%s", exitnet_last_error());
  CHECK_STATUS(exitnet_fisher_new(&acc, NAMES, NDIMS, DIMS, 3, "bogus") , EXITNET_ERR_INVALID_ARGUMENT);

  /* ---- conv2d geometry check ---- */
  {
    static const char* cn[] = {"c.weight"};
    static const int64_t cnd[] = {4};
    static const int64_t cd[] = {2, 1, 3, 3};
    exitnet_fisher* conv = NULL;
    CHECK_STATUS(exitnet_fisher_new(&conv, cn, cnd, cd, 1, "empirical"), EXITNET_OK);
    exitnet_conv2d_geometry geo = {{1, 1}, {0, 0}, {1, 1}, 1};
    float x[1 * 5 * 5] = {0};
    make_matrix(&a, &s, x, 1, 25); /* a plain matrix, not a fixed_shape_tensor */
    make_matrix(&ga, &gs, x, 1, 18);
    CHECK_STATUS(exitnet_fisher_update_conv2d(conv, "c.weight", NULL, &a, &s, &ga, &gs, &geo, NULL, NULL),
                 EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "fixed_shape_tensor") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_free(&conv), EXITNET_OK);
  }

  /* ---- penalty: value and gradient against a double loop ---- */
  enum { PP = 37 };
  float th[PP], an[2][PP], fi[2][PP];
  for (int i = 0; i < PP; i++) {
    th[i] = frand();
    for (int k = 0; k < 2; k++) {
      an[k][i] = frand();
      fi[k][i] = fabsf(frand());
    }
  }
  struct ArrowArray pa_, aa[2], fa[2], grad;
  struct ArrowSchema ps, as[2], fs[2], grads;
  make_f32(&pa_, &ps, th, PP);
  for (int k = 0; k < 2; k++) {
    make_f32(&aa[k], &as[k], an[k], PP);
    make_f32(&fa[k], &fs[k], fi[k], PP);
  }
  double value = 0;
  CHECK_STATUS(exitnet_ewc_penalty(&value, &grad, &grads, &pa_, &ps, aa, as, fa, fs, 2, 3.0), EXITNET_OK);
  double vref = 0;
  bad = 0;
  const float* gv = matrix_values(&grad);
  for (int i = 0; i < PP; i++) {
    double g = 0;
    for (int k = 0; k < 2; k++) {
      double d = (double)th[i] - (double)an[k][i];
      vref += (double)fi[k][i] * d * d;
      g += 3.0 * (double)fi[k][i] * d;
    }
    if (!close_rel(gv[i], g, 1e-5)) bad++;
  }
  CHECK(close_rel(value, 1.5 * vref, 1e-6), "penalty %g, want %g", value, 1.5 * vref);
  CHECK(bad == 0, "%d gradient values differ", bad);
  /* the same into a caller buffer */
  float gbuf[PP];
  double value2 = 0;
  make_f32(&pa_, &ps, th, PP);
  for (int k = 0; k < 2; k++) {
    make_f32(&aa[k], &as[k], an[k], PP);
    make_f32(&fa[k], &fs[k], fi[k], PP);
  }
  CHECK_STATUS(exitnet_ewc_penalty_into(&value2, gbuf, PP, &pa_, &ps, aa, as, fa, fs, 2, 3.0), EXITNET_OK);
  CHECK(value2 == value && memcmp(gbuf, gv, sizeof gbuf) == 0, "into == arrow output");
  make_f32(&pa_, &ps, th, PP);
  make_f32(&aa[0], &as[0], an[0], PP);
  make_f32(&fa[0], &fs[0], fi[0], PP);
  CHECK_STATUS(exitnet_ewc_penalty_into(&value2, gbuf, PP - 1, &pa_, &ps, aa, as, fa, fs, 1, 3.0),
               EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(exitnet_last_error(), "out_grad") != NULL, "%s", exitnet_last_error());
  grad.release(&grad);
  grads.release(&grads);
  make_f32(&pa_, &ps, th, PP);
  make_f32(&aa[0], &as[0], an[0], PP);
  make_f32(&fa[0], &fs[0], fi[0], PP);
  CHECK_STATUS(exitnet_ewc_penalty(&value, NULL, NULL, &pa_, &ps, aa, as, fa, fs, 1, -1.0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(exitnet_last_error(), "lambda") != NULL, "%s", exitnet_last_error());
  CHECK(pa_.release == NULL && aa[0].release == NULL && fa[0].release == NULL, "moved in on error");

  /* ---- consolidation ---- */
  make_f32(&fa[0], &fs[0], fi[0], PP);
  make_f32(&fa[1], &fs[1], fi[1], PP);
  CHECK_STATUS(exitnet_fisher_consolidate(&out, &outs, fa, fs, 2, "online", NULL, 0.5), EXITNET_OK);
  f = matrix_values(&out);
  bad = 0;
  for (int i = 0; i < PP; i++)
    if (!close_rel(f[i], 0.5 * fi[0][i] + fi[1][i], 1e-6)) bad++;
  CHECK(bad == 0, "online consolidation");
  out.release(&out);
  outs.release(&outs);
  make_f32(&fa[0], &fs[0], fi[0], PP);
  make_f32(&fa[1], &fs[1], fi[1], PP);
  CHECK_STATUS(exitnet_fisher_consolidate(&out, &outs, fa, fs, 2, "online", NULL, 1.5), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(exitnet_last_error(), "gamma") != NULL, "%s", exitnet_last_error());

  /* ---- labels ---- */
  float logits[4 * 3] = {0, 0, 0, 50, 0, 0, 0, 0, 50, 1, 2, 3};
  make_matrix(&a, &s, logits, 4, 3);
  CHECK_STATUS(exitnet_fisher_sample_labels(&out, &outs, &a, &s, 7, 0), EXITNET_OK);
  const int32_t* lab = (const int32_t*)out.buffers[1];
  CHECK(out.length == 4 && lab[1] == 0 && lab[2] == 2 && lab[0] >= 0 && lab[0] < 3, "labels");
  out.release(&out);
  outs.release(&outs);

  /* ---- state file: save, load, corruption ---- */
  char path[] = "/tmp/exitnet_test_fisher_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  float fis[P], anc[P];
  for (int i = 0; i < P; i++) {
    fis[i] = fabsf(frand());
    anc[i] = frand();
  }
  const char* mk[] = {"label_mode", "n_samples"};
  const char* mv[] = {"\"exact\"", "9"};
  make_f32(&fa[0], &fs[0], fis, P);
  make_f32(&aa[0], &as[0], anc, P);
  CHECK_STATUS(exitnet_fisher_state_save(path, NAMES, NDIMS, DIMS, 3, fa, fs, 1, aa, as, 1, mk, mv, 2), EXITNET_OK);
  CHECK_STATUS(exitnet_fisher_state_load(&out, &outs, path), EXITNET_OK);
  CHECK(out.n_children == 2 && out.length == P, "loaded %lld columns", (long long)out.n_children);
  if (out.n_children == 2) {
    const float* lf = (const float*)out.children[0]->buffers[1];
    const float* la = (const float*)out.children[1]->buffers[1];
    CHECK(memcmp(lf, fis, sizeof fis) == 0 && memcmp(la, anc, sizeof anc) == 0, "values round trip");
  }
  out.release(&out);
  outs.release(&outs);
  /* a failed save (NaN Fisher) leaves the previous file intact */
  {
    FILE* f0 = fopen(path, "rb");
    fseek(f0, 0, SEEK_END);
    long size0 = ftell(f0);
    fclose(f0);
    float nanf_[P];
    memcpy(nanf_, fis, sizeof nanf_);
    nanf_[3] = NAN;
    make_f32(&fa[0], &fs[0], nanf_, P);
    CHECK_STATUS(exitnet_fisher_state_save(path, NAMES, NDIMS, DIMS, 3, fa, fs, 1, NULL, NULL, 0, NULL, NULL, 0),
                 EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(fa[0].release == NULL, "moved in on error");
    CHECK_STATUS(exitnet_fisher_state_load(&out, &outs, path), EXITNET_OK);
    CHECK(out.n_children == 2, "previous file still loads");
    out.release(&out);
    outs.release(&outs);
    f0 = fopen(path, "rb");
    fseek(f0, 0, SEEK_END);
    CHECK(ftell(f0) == size0, "size unchanged");
    fclose(f0);
  }
  /* merge of different layouts */
  {
    static const char* on[] = {"other"};
    static const int64_t ond[] = {1};
    static const int64_t od[] = {20};
    exitnet_fisher* o = NULL;
    CHECK_STATUS(exitnet_fisher_new(&o, on, ond, od, 1, "exact"), EXITNET_OK);
    CHECK_STATUS(exitnet_fisher_merge(lin, o), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "layout") != NULL, "%s", exitnet_last_error());
    CHECK_STATUS(exitnet_fisher_merge(lin, lin), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(exitnet_fisher_free(&o), EXITNET_OK);
  }
  FILE* fp = fopen(path, "r+b");
  fseek(fp, 100, SEEK_SET);
  fputc(0x42, fp);
  fclose(fp);
  CHECK_STATUS(exitnet_fisher_state_load(&out, &outs, path), EXITNET_ERR_IO);
  CHECK(truncate(path, 50) == 0, "truncate");
  CHECK_STATUS(exitnet_fisher_state_load(&out, &outs, path), EXITNET_ERR_IO);
  remove(path);

  /* ---- accumulator checkpoint: save, load, same Fisher ---- */
  {
    char cp[] = "/tmp/exitnet_test_fisher_acc_XXXXXX";
    int cfd = mkstemp(cp);
    close(cfd);
    CHECK_STATUS(exitnet_fisher_save(lin, cp), EXITNET_OK);
    exitnet_fisher* back = NULL;
    CHECK_STATUS(exitnet_fisher_load(&back, cp), EXITNET_OK);
    int64_t nb = 0;
    CHECK_STATUS(exitnet_fisher_num_samples(&nb, back), EXITNET_OK);
    CHECK(nb == NL, "restored count %lld", (long long)nb);
    struct ArrowArray o1, o2;
    struct ArrowSchema s1, s2;
    CHECK_STATUS(exitnet_fisher_compute(&o1, &s1, lin), EXITNET_OK);
    CHECK_STATUS(exitnet_fisher_compute(&o2, &s2, back), EXITNET_OK);
    CHECK(memcmp(matrix_values(&o1), matrix_values(&o2), P * sizeof(float)) == 0, "restored Fisher");
    o1.release(&o1);
    s1.release(&s1);
    o2.release(&o2);
    s2.release(&s2);
    CHECK_STATUS(exitnet_fisher_merge(back, lin), EXITNET_OK);
    CHECK_STATUS(exitnet_fisher_free(&back), EXITNET_OK);
    CHECK(truncate(cp, 64) == 0, "truncate");
    CHECK_STATUS(exitnet_fisher_load(&back, cp), EXITNET_ERR_IO);
    CHECK(back == NULL, "no handle on failure");
    remove(cp);
  }

  /* ---- handles ---- */
  CHECK_STATUS(exitnet_fisher_free(&acc), EXITNET_OK);
  CHECK(acc == NULL, "free nulls the handle");
  CHECK_STATUS(exitnet_fisher_free(&acc), EXITNET_OK);
  CHECK_STATUS(exitnet_fisher_free(NULL), EXITNET_OK);
  exitnet_fisher* stale = lin;
  CHECK_STATUS(exitnet_fisher_free(&lin), EXITNET_OK);
  CHECK_STATUS(exitnet_fisher_add_samples(stale, 1), EXITNET_ERR_INVALID_STATE);
  CHECK_STATUS(exitnet_fisher_reset(NULL), EXITNET_ERR_INVALID_ARGUMENT);

  int64_t bytes1 = 0, handles1 = 0;
  CHECK_STATUS(exitnet_allocated_bytes(&bytes1), EXITNET_OK);
  CHECK_STATUS(exitnet_live_handles(&handles1), EXITNET_OK);
  CHECK(bytes1 == bytes0, "C-heap bytes %lld -> %lld", (long long)bytes0, (long long)bytes1);
  CHECK(handles1 == handles0, "handles %lld -> %lld", (long long)handles0, (long long)handles1);
  return test_summary();
}
