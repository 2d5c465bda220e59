/* Thread-local last-error storage and the C-only parts of the core ABI.
 *
 * The message lives behind a pthread key rather than a _Thread_local array: a
 * static TLS block in a dlopen'ed library eats glibc's static-TLS surplus and can
 * make a second Go library in the process fail to load (abi.md). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"
#include "../include/exitnet.h"

static pthread_key_t err_key;
static pthread_once_t err_once = PTHREAD_ONCE_INIT;

static void make_key(void) { pthread_key_create(&err_key, free); }

void xnet_set_error(char* msg) {
  pthread_once(&err_once, make_key);
  char* old = (char*)pthread_getspecific(err_key);
  pthread_setspecific(err_key, msg);
  free(old);
}

void xnet_clear_error(void) {
  pthread_once(&err_once, make_key);
  char* old = (char*)pthread_getspecific(err_key);
  if (old != NULL) {
    pthread_setspecific(err_key, NULL);
    free(old);
  }
}

const char* exitnet_last_error(void) {
  pthread_once(&err_once, make_key);
  const char* s = (const char*)pthread_getspecific(err_key);
  return s != NULL ? s : "";
}

const char* exitnet_version(void) { return EXITNET_VERSION_STRING; }

int exitnet_abi_version(void) { return EXITNET_ABI_VERSION; }

const char* exitnet_status_name(int status) {
  switch (status) {
    case EXITNET_OK: return "OK";
    case EXITNET_ERR_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case EXITNET_ERR_INVALID_STATE: return "INVALID_STATE";
    case EXITNET_ERR_IO: return "IO";
    case EXITNET_ERR_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    case EXITNET_ERR_NOT_SUPPORTED: return "NOT_SUPPORTED";
    case EXITNET_ERR_CANCELLED: return "CANCELLED";
    case EXITNET_ERR_INTERNAL: return "INTERNAL";
    case EXITNET_ERR_NOT_FOUND: return "NOT_FOUND";
    default: return "UNKNOWN";
  }
}
