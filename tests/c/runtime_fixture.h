/* Shared by the runtime C tests (test_runtime*.c): the tiny model's input and its
 * expected outputs from torch in float64, Arrow fixed_shape_tensor inputs, model
 * files in /tmp and typed views of the result columns. Header-only; the including
 * file defines _XOPEN_SOURCE 700 first (mkstemp, write, unlink). The model bytes
 * are in runtime_model_v1.h and runtime_model_v2.h. */
#ifndef EXITNET_TEST_RUNTIME_FIXTURE_H
#define EXITNET_TEST_RUNTIME_FIXTURE_H

#include <stdint.h>
#include <unistd.h>

#include "check.h"

/* Input and expected logits of the tiny model (runtime_model_v1.h): seeds 3 and 4. */
static const float tiny_x[6 * 25] = {
  -0.941416502f, 1.26324677f, -0.18376939f, 0.150505453f, 0.10750223f,
  -0.278032333f, -2.60213518f, 0.624457479f, -0.868362904f, -0.205055282f,
  0.397560775f, 0.669925988f, -0.0537069812f, 0.0466952436f, -1.76711369f,
  -2.12045956f, 1.51909697f, -0.668198049f, 0.00307770935f, -0.153547809f,
  1.13961565f, -0.230187446f, 1.18773258f, 0.767735481f, -0.758832514f,
  -0.185343206f, -0.855790973f, -0.2346396f, -0.421529353f, 0.848836482f,
  -0.677575886f, -0.944541216f, -0.481538892f, 1.24344778f, 2.36933231f,
  0.282944113f, -0.234539524f, 1.68924356f, 0.271639168f, -0.136545062f,
  -0.694786489f, -1.31858552f, -0.969386041f, 0.640253723f, 0.820123434f,
  -0.915110648f, -2.14373302f, 1.40717816f, -0.0263164435f, 2.7204206f,
  -0.595539808f, 0.987147689f, 1.08605182f, 0.0609808452f, 0.0416611955f,
  0.678264797f, -0.895153999f, -1.014341f, -0.24286361f, -1.57272494f,
  1.39395213f, -0.194058612f, 0.00481835194f, -1.31647158f, 0.0204011966f,
  -0.165192187f, 0.210927755f, 0.516711116f, 0.242987275f, -0.352241516f,
  -0.766355753f, 0.29732424f, 1.27097952f, 1.81166446f, 1.53196073f,
  -0.260209233f, -1.16108978f, -1.23801661f, 1.05328035f, 0.200207084f,
  0.820638835f, 2.5163815f, -0.953661561f, -0.0167081989f, 0.252566665f,
  0.676208794f, 1.72279191f, -0.404313505f, 1.09151113f, 0.455002218f,
  -1.28630614f, -0.449769348f, -1.07359946f, -1.00596476f, -0.657290936f,
  1.52339709f, 0.0365792923f, -1.38620555f, 2.83451843f, -0.175027207f,
  -0.69394809f, -1.6808598f, -0.573819876f, -1.09466922f, 0.161780566f,
  -0.900177419f, 0.183345392f, 0.511158705f, 0.298772573f, 1.56197619f,
  -2.02354479f, -0.0728773475f, -0.391807854f, 0.126925766f, -0.830089986f,
  -1.64805639f, 0.234753877f, -0.580259323f, -1.50854456f, 0.110818639f,
  -0.265923619f, 1.08766937f, -0.944592357f, -0.794313788f, -1.20295119f,
  0.671800077f, 0.312153637f, -1.61533678f, 0.86357677f, -1.53003633f,
  0.537511706f, -1.62736428f, -1.12658238f, -0.525266111f, -0.742303967f,
  -1.50557268f, -0.343705148f, -0.320624441f, 0.674680293f, -0.68492204f,
  0.343402028f, -0.474565566f, -0.22102356f, -0.330443144f, 0.175834939f,
  1.16777325f, 0.583147168f, -0.467008889f, 0.283880085f, 2.06041241f,
};
static const double tiny_logits0[6 * 3] = {
  -0.37551882393, -0.935309755483, 7.78552253545,
  -3.6845584027, 2.68427326851, 6.29286578966,
  -3.38134858693, -2.3048321948, 5.72861124068,
  -2.6942536263, 2.4623778186, 6.86419125705,
  1.38361753703, 0.0800688661807, 8.87351290759,
  2.32952103233, -1.36140299433, 8.46670926471,
};
static const double tiny_logits1[6 * 3] = {
  2.30459606887, -2.83407485935, 1.48057188924,
  3.40469014057, -3.95832512452, 1.88362993962,
  3.37820338981, -3.93125676979, 1.87392558942,
  0.522916853428, -1.01327300072, 0.827791213989,
  0.522916853428, -1.01327300072, 0.827791213989,
  0.734746077419, -1.22975363394, 0.905402280379,
};
static const double tiny_conf0[6] = {0.999551485047, 0.973580543444, 0.999565200844, 0.987824374699, 0.999290078411, 0.997789989239};

/* Arrow metadata blob: int32 count, then (int32 len, bytes) per key and value. */
static inline char* tensor_metadata(const char* shape_json) {
  const char* k1 = "ARROW:extension:name";
  const char* v1 = "arrow.fixed_shape_tensor";
  const char* k2 = "ARROW:extension:metadata";
  char v2[128];
  snprintf(v2, sizeof v2, "{\"shape\":%s}", shape_json);
  const char* parts[4] = {k1, v1, k2, v2};
  size_t total = 4;
  for (int i = 0; i < 4; i++) total += 4 + strlen(parts[i]);
  char* buf = (char*)malloc(total);
  int32_t n = 2;
  memcpy(buf, &n, 4);
  size_t off = 4;
  for (int i = 0; i < 4; i++) {
    int32_t len = (int32_t)strlen(parts[i]);
    memcpy(buf + off, &len, 4);
    memcpy(buf + off + 4, parts[i], (size_t)len);
    off += 4 + (size_t)len;
  }
  return buf;
}

static inline void release_tensor_schema(struct ArrowSchema* s) {
  free((void*)s->metadata);
  s->metadata = NULL;
  xt_release_schema(s);
}

/* rows samples of shape [c,h,w] as arrow.fixed_shape_tensor (values copied). */
static inline void make_tensor(struct ArrowArray* a, struct ArrowSchema* s, const float* v, int64_t rows, int c,
                        int h, int w) {
  make_matrix(a, s, v, rows, c * h * w);
  char shape[64];
  snprintf(shape, sizeof shape, "[%d,%d,%d]", c, h, w);
  s->metadata = tensor_metadata(shape);
  s->release = release_tensor_schema;
}

static inline const char* write_model(const unsigned char* bytes, size_t n, char* path) {
  strcpy(path, "/tmp/exitnet_test_model_XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0) return NULL;
  if (write(fd, bytes, n) != (ssize_t)n) {
    close(fd);
    return NULL;
  }
  close(fd);
  return path;
}

/* column i of a record batch as a typed pointer (offset honoured) */
static inline const int32_t* col_i32(const struct ArrowArray* rb, int i) {
  const struct ArrowArray* c = rb->children[i];
  return (const int32_t*)c->buffers[1] + c->offset;
}
static inline const float* col_f32(const struct ArrowArray* rb, int i) {
  const struct ArrowArray* c = rb->children[i];
  return (const float*)c->buffers[1] + c->offset;
}
static inline const float* col_logits(const struct ArrowArray* rb, int i) {
  const struct ArrowArray* c = rb->children[i];
  const struct ArrowArray* v = c->children[0];
  return (const float*)v->buffers[1] + v->offset + c->offset * 3;
}

/* Setup of the programs that test one part on a loaded model: bytes written to a
 * temporary file (path) and loaded; NULL, with the reason printed, if that fails.
 * Not a check: loading is checked in test_runtime.c. */
static inline exitnet_model* setup_model(const unsigned char* bytes, size_t n, char* path) {
  exitnet_model* m = NULL;
  if (write_model(bytes, n, path) == NULL || exitnet_model_load(&m, path) != EXITNET_OK) {
    fprintf(stderr, "setup: cannot write and load a temporary model file (%s)\n", exitnet_last_error());
    return NULL;
  }
  return m;
}

#endif
