/* The runtime ABI from C: a format-2 model file with stored preprocessing: the
 * getter, raw_input on raw samples (x*std + mean) against torch's logits, raw_input
 * without stored preprocessing, bad temperatures and the work bound. The models:
 * runtime_model_v1.h (no preprocessing) and runtime_model_v2.h. */
#define _XOPEN_SOURCE 700 /* mkstemp, write, unlink */
#include "runtime_fixture.h"
#include "runtime_model_v1.h"
#include "runtime_model_v2.h"

int main(void) {
  char path[64];
  exitnet_model* m = setup_model(tiny_model, sizeof tiny_model, path);
  if (m == NULL) return 1;
  struct ArrowArray in, out;
  struct ArrowSchema ins, outs;

  /* format 2 with stored preprocessing: the getter; raw_input on raw samples
   * (x*std + mean) gives torch's logits; raw_input without stored preprocessing,
   * bad temperatures and the work bound */
  {
    char path2[64];
    CHECK(write_model(tiny_model_v2, sizeof tiny_model_v2, path2) != NULL, "write v2 model");
    exitnet_model* mv2 = NULL;
    CHECK_STATUS(exitnet_model_load(&mv2, path2), EXITNET_OK);
    int present = -1;
    float mean = 0, sd = 0;
    CHECK_STATUS(exitnet_model_preprocess(&present, &mean, &sd, 1, mv2), EXITNET_OK);
    CHECK(present == 1 && mean == 0.25f && sd == 2.0f, "preprocess %d %g %g", present, (double)mean, (double)sd);
    CHECK_STATUS(exitnet_model_preprocess(&present, &mean, &sd, 2, mv2), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(exitnet_model_preprocess(NULL, &mean, &sd, 1, mv2), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(exitnet_model_preprocess(&present, &mean, &sd, 1, m), EXITNET_OK);
    CHECK(present == 0, "the format-1 model stores no preprocessing");
    float rawx[6 * 25];
    for (int i = 0; i < 6 * 25; i++) rawx[i] = tiny_x[i] * 2.0f + 0.25f;
    exitnet_predict_params rp;
    exitnet_model_predict_default_params(&rp);
    CHECK(rp.raw_input == 0, "default raw_input");
    rp.return_logits = 1;
    rp.raw_input = 1;
    int32_t pr[6], ex[6];
    float cf[6], lg[2 * 6 * 3];
    int64_t macs2 = 0;
    CHECK_STATUS(exitnet_model_predict_raw(pr, ex, cf, lg, &macs2, mv2, rawx, 6, &rp), EXITNET_OK);
    CHECK(macs2 == 6 * 518, "v2 macs %lld", (long long)macs2);
    for (int i = 0; i < 18; i++) {
      CHECK(fabs(lg[i] - tiny_logits0[i]) <= 1e-5 + 1e-4 * fabs(tiny_logits0[i]), "raw v2 exit 0 logit %d", i);
      CHECK(fabs(lg[18 + i] - tiny_logits1[i]) <= 1e-5 + 1e-4 * fabs(tiny_logits1[i]), "raw v2 exit 1 logit %d", i);
    }
    make_tensor(&in, &ins, rawx, 6, 1, 5, 5);
    CHECK_STATUS(exitnet_model_predict(&out, &outs, NULL, mv2, &in, &ins, &rp), EXITNET_OK);
    const float* z = col_logits(&out, 4);
    for (int i = 0; i < 18; i++)
      CHECK(fabs(z[i] - tiny_logits1[i]) <= 1e-5 + 1e-4 * fabs(tiny_logits1[i]), "arrow raw v2 logit %d", i);
    out.release(&out);
    outs.release(&outs);
    CHECK_STATUS(exitnet_model_predict_raw(pr, ex, cf, lg, NULL, m, rawx, 6, &rp), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK(strstr(exitnet_last_error(), "raw") != NULL, "names raw: %s", exitnet_last_error());

    /* temperature: 0, what 1e-50 becomes as a float, negative and infinite values */
    exitnet_model_predict_default_params(&rp);
    volatile double tiny = 1e-50;
    float temps[4] = {0.0f, (float)tiny, -1.0f, INFINITY};
    for (int t = 0; t < 4; t++) {
      rp.temperature = temps[t];
      CHECK_STATUS(exitnet_model_predict_raw(pr, ex, cf, NULL, NULL, mv2, tiny_x, 6, &rp), EXITNET_ERR_INVALID_ARGUMENT);
      CHECK(strstr(exitnet_last_error(), "temperature") != NULL, "names temperature: %s", exitnet_last_error());
    }
    CHECK(strstr(exitnet_last_error(), "overflows") != NULL, "explains +Inf: %s", exitnet_last_error());
    rp.temperature = (float)tiny;
    exitnet_model_predict_raw(pr, ex, cf, NULL, NULL, mv2, tiny_x, 6, &rp);
    CHECK(strstr(exitnet_last_error(), "underflows") != NULL, "explains 1e-50: %s", exitnet_last_error());

    /* the work bound: this model does 518 MACs + pooling and activations per sample */
    int64_t lim = 0;
    CHECK_STATUS(exitnet_model_max_work_per_sample(&lim), EXITNET_OK);
    CHECK(lim == 100000000000LL, "default work bound %lld", (long long)lim);
    CHECK_STATUS(exitnet_model_set_max_work_per_sample(500), EXITNET_OK);
    exitnet_model* m3 = NULL;
    CHECK_STATUS(exitnet_model_load(&m3, path2), EXITNET_ERR_IO);
    CHECK(strstr(exitnet_last_error(), "operations per sample") != NULL, "names the work: %s", exitnet_last_error());
    CHECK_STATUS(exitnet_model_set_max_work_per_sample(0), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(exitnet_model_max_work_per_sample(NULL), EXITNET_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(exitnet_model_set_max_work_per_sample(lim), EXITNET_OK);
    CHECK_STATUS(exitnet_model_load(&m3, path2), EXITNET_OK);
    CHECK_STATUS(exitnet_model_free(&m3), EXITNET_OK);
    CHECK_STATUS(exitnet_model_free(&mv2), EXITNET_OK);
    unlink(path2);
  }

  exitnet_model_free(&m);
  unlink(path);
  return test_summary();
}
