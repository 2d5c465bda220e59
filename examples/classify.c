/* classify: run an exitnet early-exit model over test images from an Arrow IPC file.
 *
 *     classify MODEL.exitnet IMAGES.arrow [THRESHOLD]
 *
 * IMAGES.arrow is an Arrow IPC *file* (what pyarrow.ipc.new_file writes), uncompressed,
 * with two columns:
 *     image  fixed_size_list<float32>[C*H*W]  (or arrow.fixed_shape_tensor over it)
 *     label  int32
 * tests/c/run_classify.sh writes one from Fashion-MNIST with pyarrow.
 *
 * Plain C99 and libexitnet only: the file is mapped into memory, the few flatbuffer
 * fields needed are read by hand (footer -> record batch blocks -> each batch's buffer
 * list), and the image column is handed to exitnet_model_predict as an Arrow C Data
 * struct built here, pointing into the file's bytes (no copy). Prints accuracy, mean
 * cost (MACs per image, and as a fraction of the full network) and the exit histogram.
 *
 * Build:  gcc -std=c99 -O2 classify.c $(pkg-config --cflags --libs exitnet) -o classify
 */
#define _XOPEN_SOURCE 700
#include <exitnet.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- minimal flatbuffers reading (little-endian, bounds-checked) ---------------- */

typedef struct {
  const uint8_t* buf;
  size_t len;
} fb;

static int fb_ok(fb b, size_t off, size_t n) { return off <= b.len && n <= b.len - off; }
static uint32_t rd_u32(fb b, size_t off) {
  uint32_t v = 0;
  if (fb_ok(b, off, 4)) memcpy(&v, b.buf + off, 4);
  return v;
}
static int64_t rd_i64(fb b, size_t off) {
  int64_t v = 0;
  if (fb_ok(b, off, 8)) memcpy(&v, b.buf + off, 8);
  return v;
}
static uint16_t rd_u16(fb b, size_t off) {
  uint16_t v = 0;
  if (fb_ok(b, off, 2)) memcpy(&v, b.buf + off, 2);
  return v;
}
/* Position of field `slot` (0-based) of the table at `table`, or 0 if absent. */
static size_t fb_field(fb b, size_t table, int slot) {
  int32_t soff = (int32_t)rd_u32(b, table);
  size_t vt = (size_t)((int64_t)table - soff);
  if (!fb_ok(b, vt, 4)) return 0;
  uint16_t vtlen = rd_u16(b, vt);
  size_t at = 4 + 2 * (size_t)slot;
  if (at + 2 > vtlen) return 0;
  uint16_t o = rd_u16(b, vt + at);
  return o ? table + o : 0;
}
/* Follows the offset stored at `pos` (a table, vector or string). */
static size_t fb_deref(fb b, size_t pos) { return pos ? pos + rd_u32(b, pos) : 0; }

/* ---- the Arrow IPC file ----------------------------------------------------------- */

typedef struct {
  int64_t rows;
  const float* images; /* rows * width floats, inside the mapping */
  const int32_t* labels;
} batch;

static int read_ipc(const uint8_t* data, size_t size, int width, batch** out, int* nbatches) {
  fb f = {data, size};
  if (size < 16 || memcmp(data, "ARROW1", 6) != 0 || memcmp(data + size - 6, "ARROW1", 6) != 0) {
    fprintf(stderr, "not an Arrow IPC file (missing ARROW1 magic)\n");
    return -1;
  }
  uint32_t flen = rd_u32(f, size - 10);
  if (flen == 0 || flen > size - 16) return -1;
  fb ft = {data + size - 10 - flen, flen};
  size_t footer = rd_u32(ft, 0); /* root table */
  size_t blocks = fb_deref(ft, fb_field(ft, footer, 3)); /* Footer.recordBatches */
  if (!blocks) return -1;
  uint32_t nb = rd_u32(ft, blocks);
  if (!fb_ok(ft, blocks + 4, (size_t)nb * 24)) return -1;
  *out = (batch*)calloc(nb ? nb : 1, sizeof(batch));
  *nbatches = (int)nb;
  for (uint32_t i = 0; i < nb; i++) {
    size_t blk = blocks + 4 + 24 * (size_t)i; /* struct Block { int64 offset; int32 metaLen; pad; int64 bodyLen } */
    int64_t off = rd_i64(ft, blk), body_len = rd_i64(ft, blk + 16);
    int32_t meta_len = (int32_t)rd_u32(ft, blk + 8);
    if (off < 0 || meta_len < 8 || body_len < 0 || !fb_ok(f, (size_t)off, (size_t)meta_len) ||
        !fb_ok(f, (size_t)off + (size_t)meta_len, (size_t)body_len))
      return -1;
    /* message: 0xFFFFFFFF continuation, int32 flatbuffer size, Message flatbuffer */
    size_t mstart = (size_t)off + (rd_u32(f, (size_t)off) == 0xFFFFFFFFu ? 8 : 4);
    fb m = {data + mstart, (size_t)off + (size_t)meta_len - mstart};
    size_t msg = rd_u32(m, 0);
    size_t ht = fb_field(m, msg, 1);
    if (!ht || !fb_ok(m, ht, 1) || m.buf[ht] != 3) return -1; /* Message.header_type == RecordBatch */
    size_t rb = fb_deref(m, fb_field(m, msg, 2));
    if (fb_field(m, rb, 3)) {
      fprintf(stderr, "compressed IPC files are not supported by this example\n");
      return -1;
    }
    int64_t rows = rd_i64(m, fb_field(m, rb, 0));
    size_t bufs = fb_deref(m, fb_field(m, rb, 2)); /* [Buffer { int64 offset; int64 length }] */
    uint32_t nbuf = rd_u32(m, bufs);
    /* image: list validity, child validity, child values; label: validity, values */
    if (nbuf != 5 || rows < 0) {
      fprintf(stderr, "expected columns image (fixed_size_list<float32>) and label (int32)\n");
      return -1;
    }
    const uint8_t* bodyp = data + off + meta_len;
    int64_t v_off = rd_i64(m, bufs + 4 + 2 * 16), v_len = rd_i64(m, bufs + 4 + 2 * 16 + 8);
    int64_t l_off = rd_i64(m, bufs + 4 + 4 * 16), l_len = rd_i64(m, bufs + 4 + 4 * 16 + 8);
    if (v_off < 0 || l_off < 0 || v_len < rows * width * 4 || l_len < rows * 4 || v_off + v_len > body_len ||
        l_off + l_len > body_len) {
      fprintf(stderr, "batch %u: buffers do not match %lld rows of %d floats\n", i, (long long)rows, width);
      return -1;
    }
    (*out)[i].rows = rows;
    (*out)[i].images = (const float*)(const void*)(bodyp + v_off);
    (*out)[i].labels = (const int32_t*)(const void*)(bodyp + l_off);
  }
  return 0;
}

/* ---- Arrow C Data structs over borrowed memory -------------------------------------- */

/* The images stay owned by the mapping; release only frees the small structs. */
typedef struct {
  struct ArrowArray child;
  struct ArrowArray* children[1];
  const void* bufs[1];
  const void* child_bufs[2];
} input_private;

static void release_child(struct ArrowArray* a) { a->release = NULL; }
static void release_input(struct ArrowArray* a) {
  input_private* p = (input_private*)a->private_data;
  if (p->child.release) p->child.release(&p->child);
  free(p);
  a->release = NULL;
}

typedef struct {
  struct ArrowSchema child;
  struct ArrowSchema* children[1];
  char format[32];
  char* metadata;
} schema_private;

static void release_child_schema(struct ArrowSchema* s) { s->release = NULL; }
static void release_schema(struct ArrowSchema* s) {
  schema_private* p = (schema_private*)s->private_data;
  if (p->child.release) p->child.release(&p->child);
  free(p->metadata);
  free(p);
  s->release = NULL;
}

/* Appends an (int32 length, bytes) pair of Arrow's metadata encoding. */
static size_t put(char* dst, size_t off, const char* s) {
  int32_t n = (int32_t)strlen(s);
  memcpy(dst + off, &n, 4);
  memcpy(dst + off + 4, s, (size_t)n);
  return off + 4 + (size_t)n;
}

/* rows images of shape [c,h,w] as an arrow.fixed_shape_tensor array (no copy). */
static void make_input(struct ArrowArray* a, struct ArrowSchema* s, const float* images, int64_t rows,
                       const int64_t shape[3]) {
  input_private* p = (input_private*)calloc(1, sizeof *p);
  p->child_bufs[0] = NULL;
  p->child_bufs[1] = images;
  p->child.length = rows * shape[0] * shape[1] * shape[2];
  p->child.n_buffers = 2;
  p->child.buffers = p->child_bufs;
  p->child.release = release_child;
  p->children[0] = &p->child;
  p->bufs[0] = NULL;
  memset(a, 0, sizeof *a);
  a->length = rows;
  a->n_buffers = 1;
  a->buffers = p->bufs;
  a->n_children = 1;
  a->children = p->children;
  a->release = release_input;
  a->private_data = p;

  schema_private* q = (schema_private*)calloc(1, sizeof *q);
  q->child.format = "f";
  q->child.name = "item";
  q->child.release = release_child_schema;
  q->children[0] = &q->child;
  snprintf(q->format, sizeof q->format, "+w:%lld", (long long)(shape[0] * shape[1] * shape[2]));
  char json[96];
  snprintf(json, sizeof json, "{\"shape\":[%lld,%lld,%lld]}", (long long)shape[0], (long long)shape[1],
           (long long)shape[2]);
  q->metadata = (char*)malloc(256);
  int32_t two = 2;
  memcpy(q->metadata, &two, 4);
  size_t off = put(q->metadata, 4, "ARROW:extension:name");
  off = put(q->metadata, off, "arrow.fixed_shape_tensor");
  off = put(q->metadata, off, "ARROW:extension:metadata");
  put(q->metadata, off, json);
  memset(s, 0, sizeof *s);
  s->format = q->format;
  s->name = "image";
  s->metadata = q->metadata;
  s->n_children = 1;
  s->children = q->children;
  s->release = release_schema;
  s->private_data = q;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define TRY(call)                                                             \
  do {                                                                        \
    if ((call) != EXITNET_OK) {                                               \
      fprintf(stderr, "%s failed: %s\n", #call, exitnet_last_error());        \
      return 1;                                                               \
    }                                                                         \
  } while (0)

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: %s MODEL.exitnet IMAGES.arrow [THRESHOLD]\n", argv[0]);
    return 2;
  }
  float tau = argc == 4 ? (float)atof(argv[3]) : 0.9f;

  exitnet_model* model = NULL;
  TRY(exitnet_model_load(&model, argv[1]));
  int k = 0;
  int64_t shape[3];
  TRY(exitnet_model_num_exits(&k, model));
  TRY(exitnet_model_input_shape(shape, model));
  int64_t* costs = (int64_t*)malloc((size_t)k * sizeof *costs);
  TRY(exitnet_model_exit_costs(costs, k, model));

  int fd = open(argv[2], O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    perror(argv[2]);
    return 1;
  }
  const uint8_t* data = (const uint8_t*)mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (data == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  batch* batches = NULL;
  int nb = 0;
  int width = (int)(shape[0] * shape[1] * shape[2]);
  if (read_ipc(data, (size_t)st.st_size, width, &batches, &nb) != 0) {
    fprintf(stderr, "%s: cannot read the image batches\n", argv[2]);
    return 1;
  }

  exitnet_predict_params params;
  TRY(exitnet_model_predict_default_params(&params));
  params.thresholds = &tau;
  params.n_thresholds = 1; /* one global threshold */

  int64_t n = 0, correct = 0, macs = 0;
  int64_t* hist = (int64_t*)calloc((size_t)k, sizeof *hist);
  double t0 = now();
  for (int b = 0; b < nb; b++) {
    struct ArrowArray in, out;
    struct ArrowSchema in_schema, out_schema;
    make_input(&in, &in_schema, batches[b].images, batches[b].rows, shape);
    int64_t m = 0;
    TRY(exitnet_model_predict(&out, &out_schema, &m, model, &in, &in_schema, &params));
    /* out: prediction int32, exit int32, confidence float32 */
    const int32_t* pred = (const int32_t*)out.children[0]->buffers[1] + out.children[0]->offset;
    const int32_t* ex = (const int32_t*)out.children[1]->buffers[1] + out.children[1]->offset;
    for (int64_t i = 0; i < out.length; i++) {
      correct += pred[i] == batches[b].labels[i];
      if (ex[i] >= 0 && ex[i] < k) hist[ex[i]]++;
    }
    n += out.length;
    macs += m;
    out.release(&out);
    out_schema.release(&out_schema);
  }
  double dt = now() - t0;

  printf("images %lld  threshold %.3f  exits %d\n", (long long)n, (double)tau, k);
  printf("accuracy %.2f%%\n", n ? 100.0 * (double)correct / (double)n : 0.0);
  printf("mean cost %.0f MACs per image (%.1f%% of the full network, %.2fx fewer)\n",
         n ? (double)macs / (double)n : 0.0, n ? 100.0 * (double)macs / (double)n / (double)costs[k - 1] : 0.0,
         macs ? (double)costs[k - 1] * (double)n / (double)macs : 0.0);
  printf("exit histogram");
  for (int i = 0; i < k; i++) printf(" %lld", (long long)hist[i]);
  printf("\n%.1f ms (%.0f images/s)\n", 1e3 * dt, dt > 0 ? (double)n / dt : 0.0);

  free(hist);
  free(batches);
  free(costs);
  munmap((void*)data, (size_t)st.st_size);
  close(fd);
  exitnet_model_free(&model);
  return 0;
}
