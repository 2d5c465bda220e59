/* Internal declarations shared by the cgo files of package main (capi).
 * Nothing here is part of the public contract (include/exitnet.h); the linker
 * version script hides every symbol not named exitnet_*. Internal C helpers are
 * prefixed xnet_. */
#ifndef EXITNET_CAPI_SHIM_H
#define EXITNET_CAPI_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* The public header's types, enums and version without its prototypes, generated from
 * include/exitnet.h by scripts/abi.py: the cgo preamble must not see the public
 * prototypes, whose const-qualified parameters conflict with the declarations cgo
 * generates for the //export functions (docs/design.md). */
#include "exitnet_types.h"

/* Thread-local last error (shim.c). Takes ownership of msg (malloc'd). */
void xnet_set_error(char* msg);
void xnet_clear_error(void);

/* Handle ids <-> opaque pointers, converted in C so Go never forges a pointer. */
static inline void* xnet_id_to_ptr(uintptr_t id) { return (void*)id; }

/* Releases an Arrow struct if it is live (release != NULL). */
static inline void xnet_release_array(struct ArrowArray* a) {
  if (a != NULL && a->release != NULL) a->release(a);
}
static inline void xnet_release_schema(struct ArrowSchema* s) {
  if (s != NULL && s->release != NULL) s->release(s);
}

/* OpenBLAS loaded at run time with dlopen (blas_shim.c). */
int xnet_blas_open(const char* path, char* err, size_t errlen);
void xnet_blas_set_threads(int n);
void xnet_sgemm(int transA, int transB, int m, int n, int k, float alpha,
                const float* a, int lda, const float* b, int ldb, float beta,
                float* c, int ldc);
void xnet_sgemv(int trans, int m, int n, float alpha, const float* a, int lda,
                const float* x, int incx, float beta, float* y, int incy);

#endif
