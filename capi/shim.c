/* Thread-local last-error storage and the C-only parts of the core ABI.
 *
 * The message lives behind a pthread key rather than a _Thread_local array: a
 * static TLS block in a dlopen'ed library eats glibc's static-TLS surplus and can
 * make a second Go library in the process fail to load (abi.md). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The public header first: its prototypes check these definitions, and the
 * generated exitnet_types.h (through shim.h) then skips what it already defined. */
#include "../include/exitnet.h"
#include "shim.h"

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
  const char* name = xnet_exitnet_status_name(status);
  return name != NULL ? name : "UNKNOWN";
}
