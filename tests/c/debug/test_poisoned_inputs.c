/* Arrow inputs are moved in whatever the status (include/exitnet.h, "Arrow in"),
 * also on the two paths where the export's body never imports them: a panic before
 * the import, and every call after the library is poisoned. Against the test-only
 * library (tests/c/exitnet_debug.h). A struct is released when its release is NULL
 * (check.h's callbacks set it and free the buffers, so a leak shows in ASan/valgrind). */
#include <string.h>

#include "check.h"
#include "exitnet_debug.h"

static int released(const struct ArrowArray* a, const struct ArrowSchema* s) {
  return a->release == NULL && s->release == NULL;
}

int main(void) {
  float v[6] = {0.1f, 0.9f, 0.3f, 0.7f, 0.5f, 0.5f};
  struct ArrowArray a, a2[2], out;
  struct ArrowSchema s, s2[2], out_s;

  /* 1. a panic before the body imports its input releases the input */
  make_matrix(&a, &s, v, 3, 2);
  CHECK_STATUS(exitnet_debug_panic_with_input(&a, &s), EXITNET_ERR_INTERNAL);
  CHECK(released(&a, &s), "panic path: the input was released");

  /* 2. the library is now poisoned: every Arrow-taking export still moves its inputs in */
  make_matrix(&a, &s, v, 3, 2);
  CHECK_STATUS(exitnet_distill_soft_targets(&out, &out_s, &a, &s, 2.0), EXITNET_ERR_INTERNAL);
  CHECK(strstr(exitnet_last_error(), "earlier internal error") != NULL, "poisoned: %.80s", exitnet_last_error());
  CHECK(released(&a, &s), "soft_targets: the input was released");

  make_matrix(&a, &s, v, 3, 2);
  int32_t pred[3] = {1, 1, 0};
  make_i32(&a2[0], &s2[0], pred, 3);
  float tau = 0.5f;
  CHECK_STATUS(exitnet_policy_assign(&out, &out_s, &a, &s, &a2[0], &s2[0], 2, &tau, 1), EXITNET_ERR_INTERNAL);
  CHECK(released(&a, &s) && released(&a2[0], &s2[0]), "policy_assign: both inputs were released");

  /* an array of K structs with a valid count: all K released */
  make_f32(&a2[0], &s2[0], v, 6);
  make_f32(&a2[1], &s2[1], v, 6);
  CHECK_STATUS(exitnet_fisher_consolidate(&out, &out_s, a2, s2, 2, "mean", NULL, 1.0), EXITNET_ERR_INTERNAL);
  CHECK(released(&a2[0], &s2[0]) && released(&a2[1], &s2[1]), "consolidate: both structs were released");

  /* the optional weights input of update_rows (NULL here) and a NULL handle: still released */
  make_matrix(&a, &s, v, 3, 2);
  CHECK_STATUS(exitnet_fisher_update_rows(NULL, "w", &a, &s, NULL, NULL), EXITNET_ERR_INTERNAL);
  CHECK(released(&a, &s), "update_rows: the input was released");
  return test_summary();
}
