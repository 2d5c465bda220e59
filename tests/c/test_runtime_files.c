/* The runtime ABI from C: bad model files (missing, NULL paths, truncated at several
 * lengths, randomly corrupted bytes) are refused with an IO or not-supported error and
 * leave no model. The model: runtime_model_v1.h. */
#define _XOPEN_SOURCE 700 /* mkstemp, write, unlink */
#include "runtime_fixture.h"
#include "runtime_model_v1.h"

int main(void) {
  char path[64], badpath[64];
  if (write_model(tiny_model, sizeof tiny_model, path) == NULL) {
    fprintf(stderr, "cannot write a temporary model file\n");
    return 1;
  }

  /* bad files */
  exitnet_model* m2 = NULL;
  CHECK_STATUS(exitnet_model_load(&m2, "/nonexistent/model.exitnet"), EXITNET_ERR_IO);
  CHECK_STATUS(exitnet_model_load(&m2, NULL), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_model_load(NULL, path), EXITNET_ERR_INVALID_ARGUMENT);
  size_t cuts[4] = {0, 8, sizeof tiny_model / 2, sizeof tiny_model - 1};
  for (int i = 0; i < 4; i++) {
    write_model(tiny_model, cuts[i], badpath);
    CHECK_STATUS(exitnet_model_load(&m2, badpath), EXITNET_ERR_IO);
    unlink(badpath);
  }
  unsigned char corrupt[sizeof tiny_model];
  unsigned int seed = 7;
  for (int it = 0; it < 50; it++) {
    memcpy(corrupt, tiny_model, sizeof corrupt);
    for (int j = 0; j < 6; j++) {
      seed = seed * 1103515245u + 12345u;
      corrupt[(seed >> 8) % sizeof corrupt] ^= (unsigned char)(1 + (seed >> 3) % 255);
    }
    write_model(corrupt, sizeof corrupt, badpath);
    int st = exitnet_model_load(&m2, badpath);
    CHECK(st == EXITNET_OK || st == EXITNET_ERR_IO || st == EXITNET_ERR_NOT_SUPPORTED, "corrupted: status %s",
          exitnet_status_name(st));
    if (st == EXITNET_OK) exitnet_model_free(&m2);
    unlink(badpath);
  }
  CHECK(m2 == NULL, "no model on failure");
  unlink(path);
  return test_summary();
}
