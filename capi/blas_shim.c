/* OpenBLAS, loaded at run time.
 *
 * Why dlopen and not -lopenblas: the wheel must load on machines without a system
 * OpenBLAS, and the PyPI wheel scipy-openblas32 prefixes its symbols (scipy_cblas_sgemm).
 * Resolving at run time lets one libexitnet.so use either, or neither (gonum's pure
 * Go GEMM then serves, slower but correct). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "shim.h"

typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha,
                         const float* a, int lda, const float* b, int ldb, float beta,
                         float* c, int ldc);
typedef void (*sgemv_fn)(int order, int trans, int m, int n, float alpha, const float* a,
                         int lda, const float* x, int incx, float beta, float* y, int incy);
typedef void (*threads_fn)(int n);

static sgemm_fn p_sgemm = NULL;
static sgemv_fn p_sgemv = NULL;
static threads_fn p_threads = NULL;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

enum { CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 };

int xnet_blas_open(const char* path, char* err, size_t errlen) {
  void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    const char* e = dlerror();
    snprintf(err, errlen, "%s", e ? e : "dlopen failed");
    return -1;
  }
  static const char* prefixes[] = {"", "scipy_"};
  for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
    char name[64];
    snprintf(name, sizeof name, "%scblas_sgemm", prefixes[i]);
    sgemm_fn g = (sgemm_fn)dlsym(h, name);
    if (g == NULL) continue;
    snprintf(name, sizeof name, "%scblas_sgemv", prefixes[i]);
    sgemv_fn v = (sgemv_fn)dlsym(h, name);
    snprintf(name, sizeof name, "%sopenblas_set_num_threads", prefixes[i]);
    threads_fn t = (threads_fn)dlsym(h, name);
    if (v == NULL) continue;
    pthread_mutex_lock(&mu);
    p_sgemm = g;
    p_sgemv = v;
    p_threads = t;
    pthread_mutex_unlock(&mu);
    return 0; /* the handle stays open for the life of the process */
  }
  snprintf(err, errlen, "%s has no cblas_sgemm/cblas_sgemv symbols", path);
  dlclose(h);
  return -1;
}

void xnet_blas_set_threads(int n) {
  if (p_threads != NULL) p_threads(n);
}

void xnet_sgemm(int transA, int transB, int m, int n, int k, float alpha, const float* a,
                int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  p_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
          m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void xnet_sgemv(int trans, int m, int n, float alpha, const float* a, int lda, const float* x,
                int incx, float beta, float* y, int incy) {
  p_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, m, n, alpha, a, lda, x, incx, beta,
          y, incy);
}
