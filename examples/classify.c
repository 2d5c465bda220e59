/* classify: run an exitnet early-exit model over test images given as raw float32.
 *
 *     classify MODEL.exitnet IMAGES.f32 LABELS.i32 [THRESHOLD]
 *
 * IMAGES.f32 holds N images as little-endian float32, row-major [N][C][H][W] with the
 * model's C, H, W (numpy: x.astype(np.float32).tofile(path)); LABELS.i32 holds N int32
 * labels. tests/c/run_classify.sh writes both from Fashion-MNIST.
 *
 * What it shows: load a model, ask its input shape and exit costs, run batches with one
 * global confidence threshold through exitnet_model_predict_raw (plain C arrays, no
 * Arrow), and read back per image the prediction and the exit taken, and per batch the
 * MACs actually executed. Prints accuracy, mean cost (MACs per image, and as a fraction
 * of the full network) and the exit histogram. Every failing call prints
 * exitnet_last_error(), which names the function and the argument.
 *
 * Build:  gcc -std=c99 -O2 classify.c $(pkg-config --cflags --libs exitnet) -o classify
 *   (from the pip wheel: $(python -m exitnet config --cflags --libs) instead of pkg-config)
 */
#define _POSIX_C_SOURCE 200809L
#include <exitnet.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BATCH 512

#define TRY(call)                                                      \
  do {                                                                 \
    if ((call) != EXITNET_OK) {                                        \
      fprintf(stderr, "%s failed: %s\n", #call, exitnet_last_error()); \
      return 1;                                                        \
    }                                                                  \
  } while (0)

/* Reads a whole file into malloc'd memory; its size must be a multiple of `unit`. */
static void* read_file(const char* path, size_t unit, size_t* count) {
  FILE* f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    return NULL;
  }
  void* buf = NULL;
  long size = -1;
  if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
  if (size < 0 || fseek(f, 0, SEEK_SET) != 0 || (size_t)size % unit != 0) {
    fprintf(stderr, "%s: cannot read, or its size is not a multiple of %zu bytes\n", path, unit);
  } else if ((buf = malloc((size_t)size + 1)) == NULL || fread(buf, 1, (size_t)size, f) != (size_t)size) {
    fprintf(stderr, "%s: read failed\n", path);
    free(buf);
    buf = NULL;
  } else {
    *count = (size_t)size / unit;
  }
  fclose(f);
  return buf;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    fprintf(stderr, "usage: %s MODEL.exitnet IMAGES.f32 LABELS.i32 [THRESHOLD]\n", argv[0]);
    return 2;
  }
  float tau = argc == 5 ? (float)atof(argv[4]) : 0.9f;

  exitnet_model* model = NULL;
  TRY(exitnet_model_load(&model, argv[1]));
  int k = 0;
  int64_t shape[3];
  TRY(exitnet_model_num_exits(&k, model));
  TRY(exitnet_model_input_shape(shape, model));
  int64_t* costs = malloc((size_t)k * sizeof *costs);
  int64_t* hist = calloc((size_t)k, sizeof *hist);
  if (costs == NULL || hist == NULL) return 1;
  TRY(exitnet_model_exit_costs(costs, k, model));

  size_t width = (size_t)(shape[0] * shape[1] * shape[2]), nvalues = 0, nlabels = 0;
  float* images = read_file(argv[2], sizeof(float), &nvalues);
  int32_t* labels = read_file(argv[3], sizeof(int32_t), &nlabels);
  if (images == NULL || labels == NULL) return 1;
  if (nvalues != nlabels * width) {
    fprintf(stderr, "%s: %zu values, expected %zu labels x %zu (C*H*W of the model)\n", argv[2], nvalues,
            nlabels, width);
    return 1;
  }

  exitnet_predict_params params;
  TRY(exitnet_model_predict_default_params(&params));
  params.thresholds = &tau;
  params.n_thresholds = 1; /* one global threshold for every exit */

  int32_t pred[BATCH], ex[BATCH];
  float conf[BATCH];
  int64_t n = (int64_t)nlabels, correct = 0, macs = 0;
  double t0 = now();
  for (int64_t start = 0; start < n; start += BATCH) {
    int64_t rows = n - start < BATCH ? n - start : BATCH, m = 0;
    TRY(exitnet_model_predict_raw(pred, ex, conf, NULL, &m, model, images + (size_t)start * width, rows,
                                  &params));
    for (int64_t i = 0; i < rows; i++) {
      correct += pred[i] == labels[start + i];
      hist[ex[i]]++;
    }
    macs += m;
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

  free(images);
  free(labels);
  free(hist);
  free(costs);
  return exitnet_model_free(&model) == EXITNET_OK ? 0 : 1;
}
