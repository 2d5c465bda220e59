/* The runtime ABI from C: load a model file, predict on an Arrow batch
 * (fixed_shape_tensor [C, H, W] or fixed_size_list), read the record batch back,
 * getters, 8 threads sharing one model, bad input (wrong shapes and channel
 * counts, NaN, bad thresholds), freed handles. The kernel chosen per layer:
 * test_runtime_layers.c; a format-2 file with stored preprocessing (raw_input),
 * temperatures and the work bound: test_runtime_v2.c; missing, truncated and
 * corrupted files: test_runtime_files.c.
 *
 * The model file is embedded (runtime_model_v1.h, written by exitnet.torch.export)
 * with its expected logits from torch in float64 (runtime_fixture.h), so the test
 * needs nothing else. */
#define _XOPEN_SOURCE 700 /* mkstemp, write, unlink */
#include <pthread.h>

#include "runtime_fixture.h"
#include "runtime_model_v1.h"

typedef struct {
  exitnet_model* model;
  int32_t pred[6], exit[6];
  float conf[6];
  int status;
} thread_job;

static void* predict_thread(void* arg) {
  thread_job* j = (thread_job*)arg;
  exitnet_predict_params p;
  exitnet_model_predict_default_params(&p);
  float tau = 0.99f;
  p.thresholds = &tau;
  p.n_thresholds = 1;
  for (int rep = 0; rep < 20 && j->status == 0; rep++) {
    struct ArrowArray in, out;
    struct ArrowSchema ins, outs;
    make_tensor(&in, &ins, tiny_x, 6, 1, 5, 5);
    j->status = exitnet_model_predict(&out, &outs, NULL, j->model, &in, &ins, &p);
    if (j->status != 0) break;
    memcpy(j->pred, col_i32(&out, 0), sizeof j->pred);
    memcpy(j->exit, col_i32(&out, 1), sizeof j->exit);
    memcpy(j->conf, col_f32(&out, 2), sizeof j->conf);
    out.release(&out);
    outs.release(&outs);
  }
  return NULL;
}

int main(void) {
  char path[64];
  if (write_model(tiny_model, sizeof tiny_model, path) == NULL) {
    fprintf(stderr, "cannot write a temporary model file\n");
    return 1;
  }

  /* load, getters */
  exitnet_model* m = NULL;
  CHECK_STATUS(exitnet_model_load(&m, path), EXITNET_OK);
  int k = 0, c = 0;
  CHECK_STATUS(exitnet_model_num_exits(&k, m), EXITNET_OK);
  CHECK_STATUS(exitnet_model_num_classes(&c, m), EXITNET_OK);
  CHECK(k == 2 && c == 3, "exits %d classes %d", k, c);
  int64_t shape[3] = {0, 0, 0};
  CHECK_STATUS(exitnet_model_input_shape(shape, m), EXITNET_OK);
  CHECK(shape[0] == 1 && shape[1] == 5 && shape[2] == 5, "shape %lld %lld %lld", (long long)shape[0],
        (long long)shape[1], (long long)shape[2]);
  int64_t costs[2];
  CHECK_STATUS(exitnet_model_exit_costs(costs, 2, m), EXITNET_OK);
  /* hand count: conv 2*25*9 = 450, head0 8*3 = 24, conv 4*1*8 = 32, head1 4*3 = 12 */
  CHECK(costs[0] == 474 && costs[1] == 518, "costs %lld %lld", (long long)costs[0], (long long)costs[1]);
  CHECK_STATUS(exitnet_model_exit_costs(costs, 3, m), EXITNET_ERR_INVALID_ARGUMENT);


  /* predict with logits, no early exit: logits equal torch (float64) */
  exitnet_predict_params p;
  CHECK_STATUS(exitnet_model_predict_default_params(&p), EXITNET_OK);
  p.return_logits = 1;
  struct ArrowArray in, out;
  struct ArrowSchema ins, outs;
  int64_t macs = 0;
  make_tensor(&in, &ins, tiny_x, 6, 1, 5, 5);
  CHECK_STATUS(exitnet_model_predict(&out, &outs, &macs, m, &in, &ins, &p), EXITNET_OK);
  CHECK(in.release == NULL && ins.release == NULL, "input moved in");
  CHECK(out.length == 6 && out.n_children == 5, "rows %lld cols %lld", (long long)out.length,
        (long long)out.n_children);
  CHECK(strcmp(outs.children[0]->name, "prediction") == 0 && strcmp(outs.children[1]->name, "exit") == 0 &&
            strcmp(outs.children[2]->name, "confidence") == 0 && strcmp(outs.children[3]->name, "logits_0") == 0,
        "column names");
  CHECK(macs == 6 * costs[1], "macs %lld", (long long)macs);
  const double* want[2] = {tiny_logits0, tiny_logits1};
  for (int e = 0; e < 2; e++) {
    const float* z = col_logits(&out, 3 + e);
    for (int i = 0; i < 18; i++) {
      CHECK(fabs(z[i] - want[e][i]) <= 1e-5 + 1e-4 * fabs(want[e][i]), "exit %d logit %d: %g vs %g", e, i,
            (double)z[i], want[e][i]);
    }
  }
  for (int i = 0; i < 6; i++) CHECK(col_i32(&out, 1)[i] == 1, "sample %d exit %d", i, col_i32(&out, 1)[i]);
  out.release(&out);
  outs.release(&outs);

  /* early exit at tau = 0.99 (global): exits equal the rule applied to torch's confidences */
  exitnet_model_predict_default_params(&p);
  float tau = 0.99f;
  p.thresholds = &tau;
  p.n_thresholds = 1;
  make_matrix(&in, &ins, tiny_x, 6, 25); /* plain fixed_size_list<float32>[25] */
  CHECK_STATUS(exitnet_model_predict(&out, &outs, &macs, m, &in, &ins, &p), EXITNET_OK);
  int64_t want_macs = 0;
  for (int i = 0; i < 6; i++) {
    int want_exit = tiny_conf0[i] >= 0.99 ? 0 : 1;
    const double* z = want_exit == 0 ? tiny_logits0 + 3 * i : tiny_logits1 + 3 * i;
    int arg = 0;
    for (int j = 1; j < 3; j++)
      if (z[j] > z[arg]) arg = j;
    CHECK(col_i32(&out, 1)[i] == want_exit, "sample %d exit %d want %d", i, col_i32(&out, 1)[i], want_exit);
    CHECK(col_i32(&out, 0)[i] == arg, "sample %d prediction %d want %d", i, col_i32(&out, 0)[i], arg);
    want_macs += costs[want_exit];
  }
  CHECK(macs == want_macs, "macs %lld want %lld", (long long)macs, (long long)want_macs);
  out.release(&out);
  outs.release(&outs);

  /* the raw-pointer entry point gives the same results */
  {
    int32_t rp[6], re[6];
    float rc[6], rl[2 * 6 * 3];
    int64_t rmacs = 0;
    exitnet_predict_params rparams;
    exitnet_model_predict_default_params(&rparams);
    rparams.thresholds = &tau;
    rparams.n_thresholds = 1;
    rparams.return_logits = 1;
    CHECK_STATUS(exitnet_model_predict_raw(rp, re, rc, rl, &rmacs, m, tiny_x, 6, &rparams), EXITNET_OK);
    CHECK(rmacs == want_macs, "raw macs %lld want %lld", (long long)rmacs, (long long)want_macs);
    for (int i = 0; i < 6; i++) {
      int want_exit = tiny_conf0[i] >= 0.99 ? 0 : 1;
      CHECK(re[i] == want_exit, "raw sample %d exit %d", i, re[i]);
      for (int j = 0; j < 3; j++) {
        float z0 = rl[i * 3 + j];
        CHECK(fabs(z0 - tiny_logits0[i * 3 + j]) <= 1e-5 + 1e-4 * fabs(tiny_logits0[i * 3 + j]), "raw logit");
        float z1 = rl[18 + i * 3 + j];
        CHECK(want_exit == 0 ? isnan(z1) : fabs(z1 - tiny_logits1[i * 3 + j]) <= 1e-5 + 1e-4 * fabs(tiny_logits1[i * 3 + j]),
              "raw exit-1 logit of sample %d: %g", i, (double)z1);
      }
    }
    CHECK_STATUS(exitnet_model_predict_raw(rp, re, rc, NULL, NULL, m, tiny_x, 6, &rparams), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(exitnet_model_predict_raw(NULL, re, rc, NULL, NULL, m, tiny_x, 6, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(exitnet_model_predict_raw(rp, re, rc, NULL, NULL, m, tiny_x, -1, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(exitnet_model_predict_raw(rp, re, rc, NULL, NULL, m, NULL, 0, NULL), EXITNET_OK);
    float nanx1[25];
    memcpy(nanx1, tiny_x, sizeof nanx1);
    nanx1[3] = NAN;
    CHECK_STATUS(exitnet_model_predict_raw(rp, re, rc, NULL, NULL, m, nanx1, 1, NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "sample 0") != NULL, "raw: names the NaN sample");
  }

  /* 8 threads share the model and get the single-thread results */
  thread_job jobs[8];
  pthread_t th[8];
  for (int t = 0; t < 8; t++) {
    memset(&jobs[t], 0, sizeof jobs[t]);
    jobs[t].model = m;
    pthread_create(&th[t], NULL, predict_thread, &jobs[t]);
  }
  for (int t = 0; t < 8; t++) pthread_join(th[t], NULL);
  for (int t = 1; t < 8; t++) {
    CHECK(jobs[t].status == 0 && memcmp(jobs[t].pred, jobs[0].pred, sizeof jobs[0].pred) == 0 &&
              memcmp(jobs[t].exit, jobs[0].exit, sizeof jobs[0].exit) == 0 &&
              memcmp(jobs[t].conf, jobs[0].conf, sizeof jobs[0].conf) == 0,
          "thread %d differs (status %d)", t, jobs[t].status);
  }

  /* bad input: every case moves the input in and names the problem */
  make_tensor(&in, &ins, tiny_x, 3, 2, 5, 5); /* 2 channels instead of 1 (150 = 3*50 values) */
  CHECK_STATUS(exitnet_model_predict(&out, &outs, NULL, m, &in, &ins, NULL), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(exitnet_last_error(), "channels") != NULL, "names channels");
  CHECK(in.release == NULL && ins.release == NULL, "moved in on error");
  make_matrix(&in, &ins, tiny_x, 5, 30); /* 30 values per row */
  CHECK_STATUS(exitnet_model_predict(&out, &outs, NULL, m, &in, &ins, NULL), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(exitnet_last_error(), "input") != NULL, "names input");
  float nanx[25 * 2];
  memcpy(nanx, tiny_x, sizeof nanx);
  nanx[25 + 7] = NAN;
  make_tensor(&in, &ins, nanx, 2, 1, 5, 5);
  CHECK_STATUS(exitnet_model_predict(&out, &outs, NULL, m, &in, &ins, NULL), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(exitnet_last_error(), "sample 1") != NULL, "names the NaN sample");
  float taus[3] = {0.5f, 0.5f, 0.5f};
  p.thresholds = taus;
  p.n_thresholds = 3;
  make_tensor(&in, &ins, tiny_x, 6, 1, 5, 5);
  CHECK_STATUS(exitnet_model_predict(&out, &outs, NULL, m, &in, &ins, &p), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(exitnet_last_error(), "thresholds") != NULL, "names thresholds");
  p.thresholds = NULL;
  p.n_thresholds = 1;
  make_tensor(&in, &ins, tiny_x, 6, 1, 5, 5);
  CHECK_STATUS(exitnet_model_predict(&out, &outs, NULL, m, &in, &ins, &p), EXITNET_ERR_INVALID_ARGUMENT);
  make_tensor(&in, &ins, tiny_x, 6, 1, 5, 5);
  CHECK_STATUS(exitnet_model_predict(NULL, NULL, NULL, m, &in, &ins, NULL), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(in.release == NULL, "moved in when out is NULL");
  make_tensor(&in, &ins, tiny_x, 6, 1, 5, 5);
  CHECK_STATUS(exitnet_model_predict(&out, &outs, NULL, NULL, &in, &ins, NULL), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(in.release == NULL, "moved in when the model is NULL");

  /* handles */
  exitnet_model* stale = m;
  CHECK_STATUS(exitnet_model_free(&m), EXITNET_OK);
  CHECK(m == NULL, "free nulls the handle");
  CHECK_STATUS(exitnet_model_free(&m), EXITNET_OK);
  CHECK_STATUS(exitnet_model_free(NULL), EXITNET_OK);
  CHECK_STATUS(exitnet_model_num_exits(&k, stale), EXITNET_ERR_INVALID_STATE);
  CHECK_STATUS(exitnet_model_free(&stale), EXITNET_ERR_INVALID_STATE);
  make_tensor(&in, &ins, tiny_x, 6, 1, 5, 5);
  stale = (exitnet_model*)(uintptr_t)0x1234560;
  CHECK_STATUS(exitnet_model_predict(&out, &outs, NULL, stale, &in, &ins, NULL), EXITNET_ERR_INVALID_STATE);
  CHECK(in.release == NULL, "moved in with a stale handle");

  int64_t live = -1;
  CHECK_STATUS(exitnet_live_handles(&live), EXITNET_OK);
  CHECK(live == 0, "live handles %lld", (long long)live);
  unlink(path);

  return test_summary();
}
