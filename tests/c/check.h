/* Minimal test harness for the C tests, plus builders of Arrow C Data structs
 * (C has no Arrow library here: these build fixed_size_list<float32>, float32,
 * int32 and int64 arrays on the heap, with release callbacks that free them).
 * Header-only; every test file includes it once. */
#ifndef EXITNET_TEST_CHECK_H
#define EXITNET_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <exitnet.h>

static int g_passed = 0, g_failed = 0;

#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    if (cond) {                                                            \
      g_passed++;                                                          \
    } else {                                                               \
      g_failed++;                                                          \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);      \
      fprintf(stderr, __VA_ARGS__);                                        \
      fprintf(stderr, " (last error: %s)\n", exitnet_last_error());        \
    }                                                                      \
  } while (0)

/* status equality, printing the message on mismatch */
#define CHECK_STATUS(expr, want)                                                  \
  do {                                                                            \
    int st_ = (expr);                                                             \
    CHECK(st_ == (want), "%s returned %s, want %s", #expr, exitnet_status_name(st_), \
          exitnet_status_name(want));                                             \
  } while (0)

static inline int contains(const char* hay, const char* needle) { return strstr(hay, needle) != NULL; }

static inline int test_summary(void) {
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}

/* ---- Arrow builders -------------------------------------------------------- */

typedef struct {
  void* buffers[2];      /* validity (NULL), values */
  struct ArrowArray* child;
  struct ArrowArray* children[1];
  const void* bufptrs[2];
} xt_array_private;

static inline void xt_release_array(struct ArrowArray* a) {
  xt_array_private* p = (xt_array_private*)a->private_data;
  if (p->child != NULL) {
    if (p->child->release != NULL) p->child->release(p->child);
    free(p->child);
  }
  free(p->buffers[1]);
  free(p);
  a->release = NULL;
}

static inline void xt_release_schema(struct ArrowSchema* s) {
  if (s->n_children > 0) {
    struct ArrowSchema* c = s->children[0];
    if (c->release != NULL) c->release(c);
    free(c);
    free(s->children);
  }
  free((void*)s->format);
  s->release = NULL;
}

static inline void xt_leaf(struct ArrowArray* a, void* values, int64_t n) {
  xt_array_private* p = (xt_array_private*)calloc(1, sizeof *p);
  p->buffers[1] = values;
  p->bufptrs[0] = NULL;
  p->bufptrs[1] = values;
  memset(a, 0, sizeof *a);
  a->length = n;
  a->n_buffers = 2;
  a->buffers = p->bufptrs;
  a->release = xt_release_array;
  a->private_data = p;
}

static inline char* xt_strdup(const char* s) {
  char* d = (char*)malloc(strlen(s) + 1);
  strcpy(d, s);
  return d;
}

static inline void xt_leaf_schema(struct ArrowSchema* s, const char* fmt) {
  memset(s, 0, sizeof *s);
  s->format = xt_strdup(fmt);
  s->name = "";
  s->flags = ARROW_FLAG_NULLABLE;
  s->release = xt_release_schema;
}

/* A float32 array of n values (copied). */
static inline void make_f32(struct ArrowArray* a, struct ArrowSchema* s, const float* v, int64_t n) {
  float* buf = (float*)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  if (n > 0) memcpy(buf, v, (size_t)n * sizeof(float));
  xt_leaf(a, buf, n);
  xt_leaf_schema(s, "f");
}

static inline void make_f64(struct ArrowArray* a, struct ArrowSchema* s, const double* v, int64_t n) {
  double* buf = (double*)malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
  if (n > 0) memcpy(buf, v, (size_t)n * sizeof(double));
  xt_leaf(a, buf, n);
  xt_leaf_schema(s, "g");
}

static inline void make_i64(struct ArrowArray* a, struct ArrowSchema* s, const int64_t* v, int64_t n) {
  int64_t* buf = (int64_t*)malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
  if (n > 0) memcpy(buf, v, (size_t)n * sizeof(int64_t));
  xt_leaf(a, buf, n);
  xt_leaf_schema(s, "l");
}

static inline void make_i32(struct ArrowArray* a, struct ArrowSchema* s, const int32_t* v, int64_t n) {
  int32_t* buf = (int32_t*)malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
  if (n > 0) memcpy(buf, v, (size_t)n * sizeof(int32_t));
  xt_leaf(a, buf, n);
  xt_leaf_schema(s, "i");
}

/* A rows×cols matrix as fixed_size_list<float32>[cols] (values copied). */
static inline void make_matrix(struct ArrowArray* a, struct ArrowSchema* s, const float* v, int64_t rows,
                        int cols) {
  struct ArrowArray* child = (struct ArrowArray*)malloc(sizeof *child);
  struct ArrowSchema* cs = (struct ArrowSchema*)malloc(sizeof *cs);
  make_f32(child, cs, v, rows * cols);
  xt_array_private* p = (xt_array_private*)calloc(1, sizeof *p);
  p->child = child;
  p->children[0] = child;
  p->bufptrs[0] = NULL;
  memset(a, 0, sizeof *a);
  a->length = rows;
  a->n_buffers = 1;
  a->buffers = p->bufptrs;
  a->n_children = 1;
  a->children = p->children;
  a->release = xt_release_array;
  a->private_data = p;

  char fmt[32];
  snprintf(fmt, sizeof fmt, "+w:%d", cols);
  xt_leaf_schema(s, fmt);
  s->n_children = 1;
  s->children = (struct ArrowSchema**)malloc(sizeof(struct ArrowSchema*));
  s->children[0] = cs;
}

/* Reads the float32 values of an exported fixed_size_list<float32> or float32 array. */
static inline const float* matrix_values(const struct ArrowArray* a) {
  if (a->n_children == 1) {
    const struct ArrowArray* c = a->children[0];
    return (const float*)c->buffers[1] + c->offset + a->offset * 0;
  }
  return (const float*)a->buffers[1] + a->offset;
}

#endif
