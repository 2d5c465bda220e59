/* Panic recovery and poisoning, against the test-only library (make builds
 * build/debug/libexitnet.so with the exitnet_debug tag; tests/c/exitnet_debug.h). */
#include <string.h>

#include "check.h"
#include "exitnet_debug.h"

int main(void) {
  CHECK_STATUS(exitnet_set_num_threads(2), EXITNET_OK);
  CHECK_STATUS(exitnet_debug_panic(), EXITNET_ERR_INTERNAL);
  CHECK(strstr(exitnet_last_error(), "unknown state") != NULL, "poison message: %.80s", exitnet_last_error());
  CHECK(strstr(exitnet_last_error(), "exitnet_debug_panic") != NULL, "names the function");
  CHECK_STATUS(exitnet_set_num_threads(2), EXITNET_ERR_INTERNAL);
  CHECK(strstr(exitnet_last_error(), "earlier internal error") != NULL, "refuses after poison");
  CHECK(strcmp(exitnet_version(), EXITNET_VERSION_STRING) == 0, "C-only functions still answer");
  return test_summary();
}
