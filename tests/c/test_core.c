/* The core ABI from C: versions, statuses, last error, threads, BLAS, moved-in
 * Arrow inputs (released whatever the status), zero-copy and sliced inputs. */
#include <pthread.h>
#include <stdint.h>

#include "check.h"

static void* thread_error(void* arg) {
  (void)arg;
  /* A failure on this thread must not touch the main thread's message. */
  int st = exitnet_set_num_threads(-1);
  return (void*)(intptr_t)(st == EXITNET_ERR_INVALID_ARGUMENT && strstr(exitnet_last_error(), "n:") != NULL);
}

int main(void) {
  CHECK(strcmp(exitnet_version(), EXITNET_VERSION_STRING) == 0, "version %s", exitnet_version());
  CHECK(exitnet_abi_version() == EXITNET_ABI_VERSION, "abi %d", exitnet_abi_version());
  CHECK(strcmp(exitnet_status_name(EXITNET_ERR_IO), "IO") == 0, "status name");
  CHECK(strcmp(exitnet_status_name(99), "UNKNOWN") == 0, "unknown status name");
  CHECK(strcmp(exitnet_last_error(), "") == 0, "no error before any call");

  /* threads */
  CHECK_STATUS(exitnet_set_num_threads(0), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(exitnet_last_error(), "exitnet_set_num_threads") != NULL, "message names the function");
  CHECK_STATUS(exitnet_set_num_threads(3), EXITNET_OK);
  CHECK(strcmp(exitnet_last_error(), "") == 0, "success clears the message");
  int n = 0;
  CHECK_STATUS(exitnet_get_num_threads(&n), EXITNET_OK);
  CHECK(n == 3, "threads %d", n);
  CHECK_STATUS(exitnet_get_num_threads(NULL), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_set_memory_limit(1 << 30), EXITNET_OK);
  CHECK_STATUS(exitnet_set_memory_limit(0), EXITNET_OK);

  /* the last error is per thread */
  CHECK_STATUS(exitnet_get_num_threads(NULL), EXITNET_ERR_INVALID_ARGUMENT);
  char mine[256];
  snprintf(mine, sizeof mine, "%s", exitnet_last_error());
  pthread_t th;
  void* ok = NULL;
  pthread_create(&th, NULL, thread_error, NULL);
  pthread_join(th, &ok);
  CHECK(ok != NULL, "error message seen on the other thread");
  CHECK(strcmp(mine, exitnet_last_error()) == 0, "main thread's message unchanged: %s", exitnet_last_error());

  /* BLAS backend description */
  char buf[256];
  CHECK_STATUS(exitnet_blas_backend(buf, sizeof buf), EXITNET_OK);
  CHECK(strlen(buf) > 0, "backend '%s'", buf);
  CHECK_STATUS(exitnet_blas_backend(NULL, 10), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(exitnet_blas_load("/nonexistent/libopenblas.so"), EXITNET_ERR_IO);
  CHECK_STATUS(exitnet_blas_load(NULL), EXITNET_ERR_INVALID_ARGUMENT);

  /* Arrow inputs: zero copy, moved in whatever the status */
  float v[12];
  for (int i = 0; i < 12; i++) v[i] = (float)i;
  struct ArrowArray a;
  struct ArrowSchema s;
  make_matrix(&a, &s, v, 3, 4);
  const float* data = (const float*)a.children[0]->buffers[1];
  uintptr_t addr = 0;
  CHECK_STATUS(exitnet_debug_data_address(&addr, &a, &s), EXITNET_OK);
  CHECK(addr == (uintptr_t)data, "library saw %p, buffer at %p", (void*)addr, (const void*)data);
  CHECK(a.release == NULL && s.release == NULL, "input moved in");

  /* sliced: offset 1 row on the list → element (0,0) is row 1 */
  make_matrix(&a, &s, v, 3, 4);
  data = (const float*)a.children[0]->buffers[1];
  a.offset = 1;
  a.length = 2;
  CHECK_STATUS(exitnet_debug_data_address(&addr, &a, &s), EXITNET_OK);
  CHECK(addr == (uintptr_t)(data + 4), "offset honoured");

  /* wrong type: float32 leaf instead of a list → error, still released */
  make_f32(&a, &s, v, 12);
  CHECK_STATUS(exitnet_debug_data_address(&addr, &a, &s), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(exitnet_last_error(), "matrix") != NULL, "names the argument");
  CHECK(a.release == NULL && s.release == NULL, "moved in on error");

  /* released array → error, schema still released */
  make_matrix(&a, &s, v, 3, 4);
  a.release(&a);
  CHECK_STATUS(exitnet_debug_data_address(&addr, &a, &s), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(s.release == NULL, "schema released");
  CHECK(strstr(exitnet_last_error(), "released") != NULL, "says released");

  /* NULL pointers */
  make_matrix(&a, &s, v, 3, 4);
  CHECK_STATUS(exitnet_debug_data_address(&addr, &a, NULL), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(a.release == NULL, "array released when schema is NULL");
  make_matrix(&a, &s, v, 3, 4);
  CHECK_STATUS(exitnet_debug_data_address(NULL, &a, &s), EXITNET_ERR_INVALID_ARGUMENT);
  CHECK(a.release == NULL && s.release == NULL, "moved in when out is NULL");

  int64_t live = -1, bytes = -1;
  CHECK_STATUS(exitnet_live_handles(&live), EXITNET_OK);
  CHECK(live == 0, "no live handles: %lld", (long long)live);
  CHECK_STATUS(exitnet_allocated_bytes(&bytes), EXITNET_OK);
  CHECK(bytes == 0, "no outstanding C allocations: %lld", (long long)bytes);

  /* panic recovery and poisoning: tests/c/debug/test_panic.c (test-only library) */

  return test_summary();
}
