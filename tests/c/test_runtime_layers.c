/* The runtime ABI from C: which kernel each conv2d/linear layer of a loaded model
 * runs (exitnet_model_num_layers, exitnet_model_layer_kernel), buffer sizes and bad
 * indices. The model: runtime_model_v1.h. */
#define _XOPEN_SOURCE 700 /* mkstemp, write, unlink */
#include "runtime_fixture.h"
#include "runtime_model_v1.h"

int main(void) {
  char path[64];
  exitnet_model* m = setup_model(tiny_model, sizeof tiny_model, path);
  if (m == NULL) return 1;

  /* which kernel each conv2d/linear layer runs: 2 convolutions (the first with its
   * relu and 2x2 max-pool fused, so its output is 2x2x2), then the 2 heads' linears */
  {
    int64_t nl = 0;
    CHECK_STATUS(exitnet_model_num_layers(&nl, m), EXITNET_OK);
    CHECK(nl == 4, "layers %lld", (long long)nl);
    static const int32_t want_block[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    static const int64_t want_shape[4][6] = {
        {1, 5, 5, 2, 2, 2}, {2, 2, 2, 4, 1, 1}, {8, 1, 1, 3, 1, 1}, {4, 1, 1, 3, 1, 1}};
    static const char* const want_op[4] = {"conv2d", "conv2d", "linear", "linear"};
    for (int64_t i = 0; i < nl; i++) {
      int32_t block[2] = {-1, -1};
      int64_t lshape[6] = {0};
      size_t needed[3] = {0, 0, 0};
      char node[64], op[16], kernel[512];
      CHECK_STATUS(exitnet_model_layer_kernel(m, i, block, lshape, NULL, 0, NULL, 0, NULL, 0, needed), EXITNET_OK);
      CHECK(needed[1] == strlen(want_op[i]) + 1 && needed[0] > 1 && needed[2] > 1 && needed[2] <= sizeof kernel,
            "layer %lld needs %zu %zu %zu", (long long)i, needed[0], needed[1], needed[2]);
      CHECK_STATUS(exitnet_model_layer_kernel(m, i, block, lshape, node, sizeof node, op, sizeof op, kernel,
                                              sizeof kernel, needed),
                   EXITNET_OK);
      CHECK(block[0] == want_block[i][0] && block[1] == want_block[i][1], "layer %lld block %d %d", (long long)i,
            block[0], block[1]);
      CHECK(memcmp(lshape, want_shape[i], sizeof lshape) == 0, "layer %lld shape", (long long)i);
      CHECK(strcmp(op, want_op[i]) == 0 && strlen(node) + 1 == needed[0] && strlen(kernel) + 1 == needed[2],
            "layer %lld: %s %s %s", (long long)i, node, op, kernel);
      if (i == 0)
        CHECK(strstr(kernel, "direct 3x3") != NULL && strstr(kernel, "+relu +maxpool2x2") != NULL, "kernel %s",
              kernel);
      if (i >= 2) CHECK(strncmp(kernel, "dense ", 6) == 0, "kernel %s", kernel);
      /* a buffer one byte short is refused, naming it */
      CHECK_STATUS(exitnet_model_layer_kernel(m, i, block, lshape, node, sizeof node, op, sizeof op, kernel,
                                              needed[2] - 1, needed),
                   EXITNET_ERR_INVALID_ARGUMENT);
      CHECK(strstr(exitnet_last_error(), "kernel") != NULL, "message %s", exitnet_last_error());
    }
    int32_t block[2];
    int64_t lshape[6];
    size_t needed[3];
    CHECK_STATUS(exitnet_model_layer_kernel(m, nl, block, lshape, NULL, 0, NULL, 0, NULL, 0, needed),
                 EXITNET_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(exitnet_model_layer_kernel(m, -1, block, lshape, NULL, 0, NULL, 0, NULL, 0, needed),
                 EXITNET_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(exitnet_model_layer_kernel(m, 0, block, lshape, NULL, 0, NULL, 0, NULL, 0, NULL),
                 EXITNET_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(exitnet_model_layer_kernel(NULL, 0, block, lshape, NULL, 0, NULL, 0, NULL, 0, needed),
                 EXITNET_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(exitnet_model_num_layers(NULL, m), EXITNET_ERR_INVALID_ARGUMENT);
  }

  exitnet_model_free(&m);
  unlink(path);
  return test_summary();
}
