/*
 * exitnet.h — the C contract of libexitnet (early-exit networks: LwF targets,
 * EWC Fisher accumulation, exit policies and budget curves, an inference runtime).
 *
 * This hand-written header is the only C contract; the header cgo generates is
 * deleted at build time. Build a program with:
 *
 *     gcc app.c $(pkg-config --cflags --libs exitnet)
 *
 * CONVENTIONS (docs/conventions.md has the long form)
 *
 *  Status.     Every function that can fail returns an int status: EXITNET_OK (0) or
 *              one of the EXITNET_ERR_* codes below. Results go through out-params,
 *              which come first. On failure, scalar and handle out-params are left
 *              untouched; caller-allocated Arrow output structs may have been
 *              zeroed (release == NULL: nothing to release).
 *  Errors.     exitnet_last_error() returns the calling thread's message for the
 *              last failing call (names the function and the argument). It is
 *              kept in C behind a pthread key: reading it never enters Go.
 *  Handles.    Opaque pointers exitnet_<thing>*, created by exitnet_<thing>_new (or
 *              _open/_load) and destroyed by exitnet_<thing>_free(&handle), which
 *              accepts NULL and a pointer to NULL, and sets *handle to NULL. A freed,
 *              foreign or wrong-type handle is never dereferenced: the call returns
 *              EXITNET_ERR_INVALID_STATE.
 *  Arrow in.   Inputs are (struct ArrowArray*, struct ArrowSchema*) pairs of the
 *              Arrow C Data Interface. They are MOVED IN, whatever the status: on
 *              return both structs have release == NULL and the caller must not
 *              release them again (the PyCapsule protocol's convention); this
 *              holds after a recovered panic and in a poisoned library too. The one
 *              exception: an array of K structs whose count K is itself invalid
 *              (outside the documented range) cannot be counted, so it is left as
 *              it is and the caller releases it. Matrices
 *              are fixed_size_list<float32>[C] or the canonical extension
 *              arrow.fixed_shape_tensor over that storage; labels and sample ids are
 *              int32 or int64. Nulls are refused; sliced arrays (non-zero offsets)
 *              are honoured. The data is read in place, never copied.
 *  Arrow out.  Outputs are caller-allocated structs that exitnet zeroes and fills;
 *              the caller owns them afterwards and must call their release
 *              callbacks. Their buffers live on the C heap (malloc).
 *  Panics.     A Go panic is recovered at the boundary and returned as
 *              EXITNET_ERR_INTERNAL. After one, the library is POISONED: every later
 *              call returns EXITNET_ERR_INTERNAL saying so (restart the process).
 *  Threads.    Unless stated otherwise functions are thread-safe; a handle may be
 *              used from several threads at once when its section says so.
 *  fork().     After the library is loaded, a forked child must not call into it
 *              (the Go runtime hangs in a forked child). Use spawn/exec.
 */
#ifndef EXITNET_H
#define EXITNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Arrow C Data Interface (canonical definitions, guards unchanged) ---- */
#ifndef ARROW_C_DATA_INTERFACE
#  define ARROW_C_DATA_INTERFACE

#  define ARROW_FLAG_DICTIONARY_ORDERED 1
#  define ARROW_FLAG_NULLABLE 2
#  define ARROW_FLAG_MAP_KEYS_SORTED 4

struct ArrowSchema {
  /* Array type description */
  const char* format;
  const char* name;
  const char* metadata;
  int64_t flags;
  int64_t n_children;
  struct ArrowSchema** children;
  struct ArrowSchema* dictionary;

  /* Release callback */
  void (*release)(struct ArrowSchema*);
  /* Opaque producer-specific data */
  void* private_data;
};

struct ArrowArray {
  /* Array data description */
  int64_t length;
  int64_t null_count;
  int64_t offset;
  int64_t n_buffers;
  int64_t n_children;
  const void** buffers;
  struct ArrowArray** children;
  struct ArrowArray* dictionary;

  /* Release callback */
  void (*release)(struct ArrowArray*);
  /* Opaque producer-specific data */
  void* private_data;
};

#endif  /* ARROW_C_DATA_INTERFACE */

/* ======================================================================== */
/* ==== core: version, status, errors, threads, memory, BLAS ============== */
/* ======================================================================== */

/** Library version (semantic versioning) at compile time. */
#define EXITNET_VERSION_MAJOR 0
#define EXITNET_VERSION_MINOR 1
#define EXITNET_VERSION_PATCH 0
#define EXITNET_VERSION_STRING "0.1.0"
/** ABI version: bumped on any incompatible change of this header. Bindings compare
 *  it with exitnet_abi_version() at load time and refuse a mismatch. */
#define EXITNET_ABI_VERSION 2

/** Status codes. Values are stable: never renumbered, only appended. */
enum exitnet_status {
  EXITNET_OK = 0,
  EXITNET_ERR_INVALID_ARGUMENT = 1, /**< bad dtype, shape, value, NULL pointer, released struct */
  EXITNET_ERR_INVALID_STATE = 2,    /**< freed, foreign or wrong-type handle; wrong call order */
  EXITNET_ERR_IO = 3,               /**< file missing, unreadable, truncated, corrupted; failed write */
  EXITNET_ERR_OUT_OF_MEMORY = 4,    /**< allocation refused, or a size over a declared bound */
  EXITNET_ERR_NOT_SUPPORTED = 5,    /**< a valid request this build cannot serve */
  EXITNET_ERR_CANCELLED = 6,        /**< stopped through a cancellation flag */
  EXITNET_ERR_INTERNAL = 7,         /**< a recovered panic; the library is now poisoned */
  EXITNET_ERR_NOT_FOUND = 8         /**< a key (sample id, parameter name) is absent */
};

/** Run-time version string, e.g. "0.1.0". Static storage; never fails. Thread-safe. */
const char* exitnet_version(void);

/** Run-time ABI version; compare with EXITNET_ABI_VERSION. Never fails. Thread-safe. */
int exitnet_abi_version(void);

/** The calling thread's message for its last failing call ("" after a success or
 *  before any call). Valid until the thread's next exitnet call. Never NULL, never
 *  enters Go, thread-safe (per-thread storage). */
const char* exitnet_last_error(void);

/** Short name of a status code ("OK", "INVALID_ARGUMENT", ...; "UNKNOWN" otherwise).
 *  Static storage. Thread-safe. */
const char* exitnet_status_name(int status);

/** Sets the number of worker threads used by every parallel kernel (and by the
 *  OpenBLAS backend when one is loaded). Takes effect for calls that start after
 *  it returns. Go reads GOMAXPROCS only at process start: this is the way to set
 *  it from a notebook.
 *  @param n [in] threads, >= 1.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT if n < 1 or n > 4096;
 *          EXITNET_ERR_INTERNAL if poisoned. Thread-safe. */
int exitnet_set_num_threads(int n);

/** @param out [out] current worker thread count. @return EXITNET_OK;
 *  EXITNET_ERR_INVALID_ARGUMENT if out is NULL; EXITNET_ERR_INTERNAL if poisoned. */
int exitnet_get_num_threads(int* out);

/** Sets the memory limit in bytes; <= 0 removes it. It is the Go runtime's soft
 *  limit (GOMEMLIMIT) and the bound every allocation sized by an input (a layout,
 *  N x P, model shapes, a file's decoded buffers) is checked against before it is
 *  made: such a call then fails with EXITNET_ERR_OUT_OF_MEMORY naming the argument,
 *  and the library stays usable. Without a limit the bound is the physical memory.
 *  @return EXITNET_OK; EXITNET_ERR_INTERNAL if poisoned. Thread-safe. */
int exitnet_set_memory_limit(int64_t bytes);

/** Loads an OpenBLAS shared library (system libopenblas or the PyPI scipy-openblas32
 *  wheel's libscipy_openblas.so) by path and routes every float32 GEMM through it.
 *  At load time the library already tries $EXITNET_BLAS and then libopenblas.so.0;
 *  without any, GEMM runs on gonum's pure-Go code (correct, about 10x slower).
 *  @param path [in] NUL-terminated file path; borrowed for the call.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT if path is NULL;
 *          EXITNET_ERR_IO if it cannot be loaded or lacks cblas_sgemm (the previous
 *          backend stays in use). Thread-safe, but call it before heavy work. */
int exitnet_blas_load(const char* path);

/** Writes the GEMM backend's description ("openblas <path>" or "gonum (pure Go)")
 *  into buf, NUL-terminated and truncated to buflen bytes.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT if buf is NULL or buflen is 0. */
int exitnet_blas_backend(char* buf, size_t buflen);

/** Bytes currently allocated on the C heap for Arrow results that callers have not
 *  released yet (a leak check for tests). @return EXITNET_OK;
 *  EXITNET_ERR_INVALID_ARGUMENT if out is NULL. */
int exitnet_allocated_bytes(int64_t* out);

/** Number of live handles of every type (a leak check for tests).
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT if out is NULL. */
int exitnet_live_handles(int64_t* out);

/** TEST HOOK: imports a matrix (moved in, whatever the status) and writes the
 *  address of its first value as exitnet sees it (0 for an empty matrix), so
 *  bindings can prove that their inputs cross the ABI without a copy.
 *  @param out    [out] address of element (0, 0) after honouring offsets.
 *  @param array  [in]  moved in. @param schema [in] moved in.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL, released, wrong type,
 *          nulls). Thread-safe. */
int exitnet_debug_data_address(uintptr_t* out, struct ArrowArray* array,
                               struct ArrowSchema* schema);

/* ======================================================================== */
/* ==== distill: LwF soft targets, KD loss, recorded target store ========= */
/* ======================================================================== */
/* (section: distill) */
/*
 * Learning without Forgetting (LwF). N rows (samples), C classes, temperature T.
 *
 *   soft targets   p_ij = softmax(z_i / T)_j, row-wise, max-subtracted (stable)
 *   KD loss        L = T^2 * (1/N) * sum_i KL(softmax(t_i/T) || softmax(s_i/T))
 *   gradient       dL/ds_ij = (T/N) * (softmax(s_i/T)_j - softmax(t_i/T)_j)
 *
 * L equals torch's F.kl_div(F.log_softmax(s/T, 1), F.log_softmax(t/T, 1),
 * reduction="batchmean", log_target=True) * T^2. Matrices are float32,
 * fixed_size_list<float32>[C] or arrow.fixed_shape_tensor (any per-row shape,
 * flattened). Validation: T finite and > 0 (and 1/T representable as float32);
 * logits finite (the message names the argument, row and column); student and
 * teacher of equal shape. EMPTY BATCH: N == 0 is EXITNET_ERR_INVALID_ARGUMENT for
 * the KD loss (a mean over no rows is undefined) and gives an empty result for soft
 * targets. Accuracy: float32 throughout; exp to about 3 ulp plus the rounding of its
 * float32 argument (probabilities below ~1e-38 are 0); the loss's absolute error is
 * about 1e-7 * T^2 * (1 + max|logit|/T), the same order as torch in float32.
 * Results do not depend on the thread count. All functions in this section are
 * thread-safe, including concurrent calls on one exitnet_targets handle; calls on
 * one exitnet_targets_writer handle are serialised internally.
 *
 * RECORDED TARGETS. exitnet_targets_writer collects raw (temperature-free) logits
 * of E exits keyed by int64 sample ids, in chunks, any order; _save writes one
 * Arrow IPC file: column sample_id int64 (sorted, unique) and one column exit_<j>
 * fixed_size_list<float32>[C] per exit, schema metadata exitnet.kind=lwf_targets,
 * exitnet.format_version=1, exitnet.num_exits, exitnet.num_classes,
 * exitnet.logits=raw. Any Arrow reader can read it (pyarrow:
 * pyarrow.ipc.open_file(pyarrow.memory_map(path))). exitnet_targets opens such a
 * file memory-mapped after validating all of it.
 */

/** Opaque writer of recorded LwF targets. Created by exitnet_targets_writer_new,
 *  destroyed by exitnet_targets_writer_free. */
typedef struct exitnet_targets_writer exitnet_targets_writer;

/** Opaque read-only view of a recorded target file. Created by exitnet_targets_open,
 *  destroyed by exitnet_targets_free. */
typedef struct exitnet_targets exitnet_targets;

/** Soft targets softmax(logits / T), row-wise.
 *  @param out, out_schema [out] caller-allocated; filled with an N-row
 *         fixed_size_list<float32>[C] (C heap). The caller releases both.
 *         Untouched (zeroed) on failure.
 *  @param logits, logits_schema [in] N x C matrix; MOVED IN whatever the status.
 *  @param temperature [in] T, finite and > 0.
 *  @return EXITNET_OK (N == 0 gives an empty result); EXITNET_ERR_INVALID_ARGUMENT
 *          for NULL pointers, a released struct, wrong type, nulls, non-finite
 *          logits or a bad temperature; EXITNET_ERR_OUT_OF_MEMORY for results over
 *          2^31 values; EXITNET_ERR_INTERNAL if poisoned. Thread-safe. */
int exitnet_distill_soft_targets(struct ArrowArray* out, struct ArrowSchema* out_schema,
                                 struct ArrowArray* logits, struct ArrowSchema* logits_schema,
                                 double temperature);

/** KD loss and (optionally) its gradient with respect to the student logits, in one pass.
 *  @param out_loss [out] L (see above). Written only on success.
 *  @param out_grad, out_grad_schema [out] both NULL: loss only. Otherwise
 *         caller-allocated; filled with the N x C gradient as fixed_size_list<float32>[C]
 *         (C heap); the caller releases both. Zeroed on failure.
 *  @param student, student_schema [in] N x C student logits; MOVED IN whatever the status.
 *  @param teacher, teacher_schema [in] N x C teacher logits; MOVED IN whatever the status.
 *  @param temperature [in] T, finite and > 0.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT for NULL pointers (out_loss, or one
 *          of out_grad/out_grad_schema only), released structs, wrong types, nulls,
 *          different shapes, N == 0, non-finite logits (message names student or
 *          teacher, row and column), a bad temperature; EXITNET_ERR_OUT_OF_MEMORY;
 *          EXITNET_ERR_INTERNAL if poisoned. Thread-safe. */
int exitnet_distill_kd_loss(double* out_loss, struct ArrowArray* out_grad,
                            struct ArrowSchema* out_grad_schema, struct ArrowArray* student,
                            struct ArrowSchema* student_schema, struct ArrowArray* teacher,
                            struct ArrowSchema* teacher_schema, double temperature);

/** The KD loss on plain row-major float buffers (no Arrow; for C callers with their
 *  own memory and for measuring the call overhead).
 *  @param out_loss [out] L. @param out_grad [out] NULL (loss only) or rows*cols floats
 *         the gradient is written into; must not overlap student or teacher.
 *  @param student, teacher [in] rows*cols floats each, row-major; borrowed for the call.
 *  @param rows [in] N >= 1. @param cols [in] C >= 1 (rows*cols < 2^40).
 *  @param temperature [in] T, finite and > 0.
 *  @return as exitnet_distill_kd_loss. Thread-safe. */
int exitnet_distill_kd_loss_raw(double* out_loss, float* out_grad, const float* student,
                                const float* teacher, int64_t rows, int64_t cols,
                                double temperature);

/** Soft targets on plain row-major float buffers (no Arrow).
 *  @param out [out] rows*cols floats; may be the same buffer as logits (in place),
 *         must not partially overlap it.
 *  @param logits [in] rows*cols floats, row-major; borrowed for the call.
 *  @param rows [in] >= 0 (0: nothing to do). @param cols [in] >= 1 (rows*cols < 2^40).
 *  @param temperature [in] T, finite and > 0.
 *  @return as exitnet_distill_soft_targets (EXITNET_ERR_INVALID_ARGUMENT also for NULL
 *          buffers when rows*cols > 0). Thread-safe. */
int exitnet_distill_soft_targets_raw(float* out, const float* logits, int64_t rows, int64_t cols,
                                     double temperature);

/** Creates a writer for num_exits exits of num_classes classes each.
 *  @param out [out] the new handle; release with exitnet_targets_writer_free.
 *  @param num_exits [in] E in [1, 65536]. @param num_classes [in] C >= 1.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL out, bad counts);
 *          EXITNET_ERR_INTERNAL if poisoned. Thread-safe. */
int exitnet_targets_writer_new(exitnet_targets_writer** out, int num_exits, int num_classes);

/** Records a chunk for one exit: ids[i] is the sample id of row i of logits. The data
 *  is copied; the chunk is recorded entirely or (on any error) not at all.
 *  @param writer [in] a live writer.
 *  @param exit [in] in [0, E).
 *  @param ids, ids_schema [in] n sample ids, int64 (or int32); MOVED IN whatever the status.
 *  @param logits, logits_schema [in] n x C raw logits; MOVED IN whatever the status.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (exit out of range, wrong types,
 *          nulls, row count differs from the id count, C differs from the writer's,
 *          non-finite logits, an id already recorded for this exit or repeated in the
 *          chunk: the message names it); EXITNET_ERR_INVALID_STATE for a freed or
 *          foreign writer; EXITNET_ERR_INTERNAL if poisoned. Thread-safe (serialised). */
int exitnet_targets_writer_add(exitnet_targets_writer* writer, int exit, struct ArrowArray* ids,
                               struct ArrowSchema* ids_schema, struct ArrowArray* logits,
                               struct ArrowSchema* logits_schema);

/** @param out [out] number of samples recorded so far for exit.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL out, exit out of range);
 *          EXITNET_ERR_INVALID_STATE (freed or foreign writer). Thread-safe. */
int exitnet_targets_writer_num_rows(int64_t* out, exitnet_targets_writer* writer, int exit);

/** Writes the recorded targets to path ATOMICALLY: a temporary file in the same
 *  directory is written, fsynced and renamed over path. On failure no partial file
 *  is left and a previous file at path is untouched. The writer stays usable.
 *  @param writer [in] a live writer. @param path [in] NUL-terminated; borrowed.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL or empty path);
 *          EXITNET_ERR_INVALID_STATE (freed or foreign writer, or the exits do not
 *          cover the same sample ids: the message names the exit and a missing id);
 *          EXITNET_ERR_IO (directory missing or not writable, disk full);
 *          EXITNET_ERR_INTERNAL if poisoned. Thread-safe (serialised). */
int exitnet_targets_writer_save(exitnet_targets_writer* writer, const char* path);

/** Destroys a writer and sets *writer to NULL. Accepts NULL and a pointer to NULL.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_STATE for a freed (double free) or foreign
 *          handle (then *writer is left unchanged). Thread-safe. */
int exitnet_targets_writer_free(exitnet_targets_writer** writer);

/** Opens a target file: memory-maps it and validates everything (Arrow magic and
 *  structure, schema and metadata, one record batch, no nulls, lengths, strictly
 *  increasing ids, finite logits) before use. The file must not be truncated in
 *  place while open (writers replace it by rename, which is safe).
 *  @param out [out] the new handle; release with exitnet_targets_free.
 *  @param path [in] NUL-terminated; borrowed.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL out or path);
 *          EXITNET_ERR_IO (missing, unreadable, not an Arrow file, truncated,
 *          corrupted, another schema); EXITNET_ERR_INTERNAL if poisoned. Thread-safe. */
int exitnet_targets_open(exitnet_targets** out, const char* path);

/** The file's shape. Each out pointer may be NULL (not written).
 *  @param out_rows [out] N samples. @param out_exits [out] E. @param out_classes [out] C.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL handle);
 *          EXITNET_ERR_INVALID_STATE (freed or foreign handle). Thread-safe. */
int exitnet_targets_shape(int64_t* out_rows, int* out_exits, int* out_classes,
                          exitnet_targets* targets);

/** Gathers the recorded logits of one exit for a batch of sample ids.
 *  @param out, out_schema [out] caller-allocated; filled with an n-row
 *         fixed_size_list<float32>[C] (C heap, row i = sample ids[i]); the caller
 *         releases both. Zeroed on failure.
 *  @param targets [in] a live handle.
 *  @param ids, ids_schema [in] n sample ids, int64 (or int32); MOVED IN whatever the status.
 *  @param exit [in] in [0, E).
 *  @return EXITNET_OK; EXITNET_ERR_NOT_FOUND (an id absent from the file: the message
 *          names it and its position); EXITNET_ERR_INVALID_ARGUMENT (NULL pointers,
 *          released structs, wrong type, nulls, exit out of range);
 *          EXITNET_ERR_INVALID_STATE (freed or foreign handle); EXITNET_ERR_IO (the
 *          file was truncated under the mapping); EXITNET_ERR_INTERNAL if poisoned.
 *          Thread-safe, also on one handle. */
int exitnet_targets_gather(struct ArrowArray* out, struct ArrowSchema* out_schema,
                           exitnet_targets* targets, struct ArrowArray* ids,
                           struct ArrowSchema* ids_schema, int exit);

/** exitnet_targets_gather into a caller buffer (no Arrow).
 *  @param out [out] out_len floats, written row-major (partially on NOT_FOUND).
 *  @param out_len [in] must equal n_ids * C.
 *  @param targets [in] a live handle. @param ids [in] n_ids sample ids; borrowed.
 *  @param n_ids [in] >= 0. @param exit [in] in [0, E).
 *  @return as exitnet_targets_gather (EXITNET_ERR_INVALID_ARGUMENT also for a wrong
 *          out_len). Thread-safe, also on one handle. */
int exitnet_targets_gather_raw(float* out, int64_t out_len, exitnet_targets* targets,
                               const int64_t* ids, int64_t n_ids, int exit);

/** Closes (unmaps) a target file and sets *targets to NULL; waits for gathers running
 *  on other threads. Accepts NULL and a pointer to NULL.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_STATE for a freed (double free) or foreign
 *          handle (then *targets is left unchanged); EXITNET_ERR_IO if unmapping
 *          fails. Thread-safe. */
int exitnet_targets_free(exitnet_targets** targets);

/* ======================================================================== */
/* ==== fisher: EWC diagonal Fisher, consolidation, penalty =============== */
/* ======================================================================== */
/* (section: fisher) */
/*
 * Diagonal Fisher information for EWC, exact per sample, over a parameter LAYOUT:
 * an ordered list of named tensors (PyTorch shapes: Linear weight out x in, Conv2d
 * weight Cout x Cin/groups x kh x kw) laid out back to back in flat float32 buffers
 * of P = sum of the tensors' sizes. Every flat buffer below (Fishers, anchors,
 * parameters, gradients) is in layout order.
 *
 * A LAYOUT crosses the ABI as parallel arrays: names[i] (NUL-terminated, unique,
 * non-empty) has ndims[i] dimensions, taken in order from the concatenation dims
 * (so dims holds sum_i ndims[i] values). All are borrowed for the call.
 *
 * ACCUMULATOR. Sums S (float64) and a sample count N (int64):
 *     S_i += sum_n w_n g_{n,i}^2      (updates; w_n = per-row weights, 1 when NULL)
 *     F_i  = S_i / N                  (compute; normalisation "mean_over_samples")
 * Counting is explicit: updates never count; exitnet_fisher_add_samples(n) adds n,
 * once per batch however many layers of that batch were fed. Gradients must be
 * per-sample gradients of a SUM-reduced loss (a mean-reduced loss scales them by 1/B).
 * Label modes (stored, chosen by the caller): "empirical", "sampled", "argmax",
 * "exact" (one row per (sample, class), weighted by p(c|x) from
 * exitnet_fisher_class_probs), and "batched", which selects the batched granularity:
 * exitnet_fisher_update_squared(sq = m_b^2, n = B), with m_b the minibatch gradient
 * of the mean-reduced loss, stores S += B * m_b^2, so F = sum_b B_b m_b^2 / sum_b B_b
 * (= the mean over minibatches of m_b^2 for equal batch sizes, what several
 * continual-learning libraries compute; about F/B). Other updates are refused then.
 * Optional per-row WEIGHTS are a float32 array of N values >= 0, or a NULL pair.
 * Any NaN or Inf input is EXITNET_ERR_INVALID_ARGUMENT naming the parameter; a
 * failed update adds nothing, except update_rows, which detects non-finite values
 * after its single pass: the handle then returns EXITNET_ERR_INVALID_STATE until
 * exitnet_fisher_reset.
 *
 * THREADS. A handle serialises its own calls (an internal mutex): it may be shared
 * between threads, but updates from several threads do not run in parallel; each
 * call is itself parallel over exitnet_set_num_threads workers. Free functions
 * (sample_labels, class_probs, consolidate, ewc_penalty, state_save/load) are
 * thread-safe and keep no state.
 *
 * Every function may also return EXITNET_ERR_INTERNAL if the library is poisoned.
 * Handle arguments: NULL -> EXITNET_ERR_INVALID_ARGUMENT; freed, foreign or of
 * another type -> EXITNET_ERR_INVALID_STATE. Arrow inputs are moved in whatever
 * the status (see the conventions at the top), except structs counted by an
 * out-of-range count argument (n_pairs, n_fishers, n_anchors < 0 or > 65536) or
 * passed through a NULL array pointer: those cannot be known and stay untouched.
 */

/** Opaque Fisher accumulator. Created by exitnet_fisher_new, destroyed by
 *  exitnet_fisher_free. */
typedef struct exitnet_fisher exitnet_fisher;

/** Conv2d geometry (index 0: height, 1: width), as nn.Conv2d. The kernel size
 *  comes from the weight's 4-D shape in the layout. */
typedef struct exitnet_conv2d_geometry {
  int32_t stride[2];   /**< >= 1 */
  int32_t padding[2];  /**< >= 0, zero padding */
  int32_t dilation[2]; /**< >= 1 */
  int32_t groups;      /**< >= 1, divides Cin and Cout (groups == Cin: depthwise) */
} exitnet_conv2d_geometry;

/** Creates an empty accumulator.
 *  @param out        [out] the new handle; free with exitnet_fisher_free.
 *  @param names, ndims, dims, n_params [in] the layout (see above); borrowed.
 *  @param label_mode [in] "empirical", "sampled", "argmax", "exact" or "batched".
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT for NULL pointers, duplicate or
 *          empty names, negative dimensions, more than 16 dimensions, an unknown
 *          label mode. */
int exitnet_fisher_new(exitnet_fisher** out, const char* const* names, const int64_t* ndims,
                       const int64_t* dims, int64_t n_params, const char* label_mode);

/** Frees *fisher and sets it to NULL. NULL and a pointer to NULL are accepted.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_STATE for a freed or foreign handle. */
int exitnet_fisher_free(exitnet_fisher** fisher);

/** Adds sum_n w_n g_n^2 from per-sample gradient rows (N x P' matrix).
 *  @param param [in] NULL: rows span the whole layout (P' = P); else the name of
 *         one parameter (P' = its size).
 *  @param rows, rows_schema [in] moved in. @param weights, weights_schema [in] moved
 *         in, or both NULL.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (column count != P', weights,
 *          NaN/Inf: the handle is then unusable until reset); EXITNET_ERR_NOT_FOUND
 *          (unknown param); EXITNET_ERR_INVALID_STATE (batched accumulator, or a
 *          previous non-finite rows update). */
int exitnet_fisher_update_rows(exitnet_fisher* fisher, const char* param, struct ArrowArray* rows,
                               struct ArrowSchema* rows_schema, struct ArrowArray* weights,
                               struct ArrowSchema* weights_schema);

/** Linear layer y = W a + b from its factors, exactly, as one GEMM:
 *      S_W += (w o G o G)^T (A o A),   S_b += sum_n w_n G_n o G_n
 *  @param weight [in] name of W (out*in elements; shape [out, in] if 2-D).
 *  @param bias   [in] name of b (out elements) or NULL.
 *  @param inputs, inputs_schema [in] A, N x in matrix; moved in.
 *  @param grad_outputs, grad_outputs_schema [in] G, N x out matrix; moved in.
 *  @param weights, weights_schema [in] N row weights or both NULL; moved in.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (shapes disagree with each other
 *          or with the layout, NaN/Inf, bad weights); EXITNET_ERR_NOT_FOUND (name);
 *          EXITNET_ERR_INVALID_STATE (batched accumulator). */
int exitnet_fisher_update_linear(exitnet_fisher* fisher, const char* weight, const char* bias,
                                 struct ArrowArray* inputs, struct ArrowSchema* inputs_schema,
                                 struct ArrowArray* grad_outputs,
                                 struct ArrowSchema* grad_outputs_schema, struct ArrowArray* weights,
                                 struct ArrowSchema* weights_schema);

/** exitnet_fisher_update_rows on a plain C array (no Arrow structs: the lowest
 *  per-call overhead; exactly the same sums).
 *  @param param [in] as in exitnet_fisher_update_rows.
 *  @param rows [in] n_rows x n_cols floats, row-major and contiguous; borrowed for
 *         the call; may be NULL only when n_rows is 0.
 *  @param n_rows [in] N >= 0. @param n_cols [in] P' >= 1.
 *  @param weights [in] N row weights (finite, >= 0) or NULL; borrowed; may alias rows.
 *  @return as exitnet_fisher_update_rows, and EXITNET_ERR_INVALID_ARGUMENT for a NULL
 *          rows with n_rows > 0, negative sizes, n_cols < 1 or n_rows * n_cols beyond
 *          2^46 values (the message names the argument). */
int exitnet_fisher_update_rows_raw(exitnet_fisher* fisher, const char* param, const float* rows,
                                   int64_t n_rows, int64_t n_cols, const float* weights);

/** exitnet_fisher_update_linear on plain C arrays (no Arrow structs; the same sums).
 *  @param inputs [in] A, n_rows x n_in floats, row-major and contiguous; borrowed.
 *  @param grad_outputs [in] G, n_rows x n_out floats, row-major and contiguous; borrowed.
 *  @param n_rows [in] N >= 0. @param n_in, n_out [in] >= 1.
 *  @param weights [in] N row weights or NULL; borrowed. The inputs are only read, so
 *         they may overlap one another.
 *  @return as exitnet_fisher_update_linear, and EXITNET_ERR_INVALID_ARGUMENT for NULL
 *          arrays with n_rows > 0, negative sizes, sizes < 1 or a product beyond 2^46
 *          values (the message names the argument). */
int exitnet_fisher_update_linear_raw(exitnet_fisher* fisher, const char* weight, const char* bias,
                                     const float* inputs, const float* grad_outputs, int64_t n_rows,
                                     int64_t n_in, int64_t n_out, const float* weights);

/** Conv2d layer from its factors: exact per-sample squared weight gradients
 *  (im2col + one GEMM per sample and group, memory bounded by one sample per worker)
 *  and bias gradients (sum over positions of G_n, squared).
 *  @param inputs [in] arrow.fixed_shape_tensor, N rows of shape [Cin, H, W]; moved in.
 *  @param grad_outputs [in] arrow.fixed_shape_tensor, N rows of [Cout, Ho, Wo]; moved in.
 *  @param geometry [in] borrowed. The weight must be 4-D [Cout, Cin/groups, kh, kw].
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (Ho, Wo disagree with H, W and
 *          the geometry; groups; weight shape; NaN/Inf; weights);
 *          EXITNET_ERR_NOT_FOUND (name); EXITNET_ERR_INVALID_STATE (batched). */
int exitnet_fisher_update_conv2d(exitnet_fisher* fisher, const char* weight, const char* bias,
                                 struct ArrowArray* inputs, struct ArrowSchema* inputs_schema,
                                 struct ArrowArray* grad_outputs,
                                 struct ArrowSchema* grad_outputs_schema,
                                 const exitnet_conv2d_geometry* geometry,
                                 struct ArrowArray* weights, struct ArrowSchema* weights_schema);

/** Adds already-squared gradients of one parameter (float32 array of its size).
 *  Per-sample granularity: sq = sum over n samples of g_n^2, S += sq (n >= 1 is
 *  only checked). Batched: sq = m_b^2 over a batch of n, S += n * sq.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (size, negative or non-finite
 *          values, n < 1); EXITNET_ERR_NOT_FOUND (param). */
int exitnet_fisher_update_squared(exitnet_fisher* fisher, const char* param,
                                  struct ArrowArray* sq_sum, struct ArrowSchema* sq_sum_schema,
                                  int64_t n);

/** exitnet_fisher_update_squared with the squares as a plain C array (no Arrow struct:
 *  Python takes it for numpy arrays and CPU tensors).
 *  @param sq_sum [in] n_values floats, the parameter's size; borrowed.
 *  @param n_values [in] >= 0 (<= 2^46; sq_sum may be NULL only when it is 0).
 *  @param n [in] as exitnet_fisher_update_squared.
 *  @return as exitnet_fisher_update_squared, and EXITNET_ERR_INVALID_ARGUMENT for a
 *          NULL array or a size out of range (the message names the argument). */
int exitnet_fisher_update_squared_raw(exitnet_fisher* fisher, const char* param, const float* sq_sum,
                                      int64_t n_values, int64_t n);

/** Adds n >= 0 samples to the count. @return EXITNET_OK;
 *  EXITNET_ERR_INVALID_ARGUMENT if n < 0 or the count overflows. */
int exitnet_fisher_add_samples(exitnet_fisher* fisher, int64_t n);

/** @param out [out] the sample count N. @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT. */
int exitnet_fisher_num_samples(int64_t* out, exitnet_fisher* fisher);

/** @param out [out] the number of parameters of the accumulator's layout (so a
 *  caller of exitnet_fisher_load learns the layout from the validated file
 *  without reading it again). @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT. */
int exitnet_fisher_num_params(int64_t* out, exitnet_fisher* fisher);

/** Parameter i of the layout: its name and shape.
 *  @param name [out] receives the NUL-terminated name when it fits in name_len bytes.
 *  @param name_needed [out] strlen(name) + 1, always set (also when name is too small).
 *  @param ndim [out] the number of dimensions (0..16).
 *  @param dims [out] at least 16 int64 values; the first *ndim are the shape.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT for a NULL pointer, i out of
 *          range, or name_len < *name_needed (call again with a larger buffer). */
int exitnet_fisher_param(exitnet_fisher* fisher, int64_t i, char* name, size_t name_len,
                         size_t* name_needed, int64_t* ndim, int64_t* dims);

/** Writes the accumulator's label mode ("empirical", "sampled", "argmax", "exact"
 *  or "batched") NUL-terminated into buf. @return EXITNET_OK;
 *  EXITNET_ERR_INVALID_ARGUMENT if buf is NULL or buflen < 16. */
int exitnet_fisher_label_mode(char* buf, size_t buflen, exitnet_fisher* fisher);

/** F = S / N as a float32 array of P values (layout order).
 *  @param out, out_schema [out] caller releases.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_STATE if no samples were counted. */
int exitnet_fisher_compute(struct ArrowArray* out, struct ArrowSchema* out_schema,
                           exitnet_fisher* fisher);

/** The raw state, for all-reduce across data-parallel ranks: S as a float64 array
 *  of P values and the count. @param out, out_schema [out] caller releases.
 *  @param out_count [out] N. @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT. */
int exitnet_fisher_state(struct ArrowArray* out, struct ArrowSchema* out_schema,
                         int64_t* out_count, exitnet_fisher* fisher);

/** Replaces S (float64 array of P finite values >= 0; moved in) and N (>= 0).
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT. */
int exitnet_fisher_set_state(exitnet_fisher* fisher, struct ArrowArray* sums,
                             struct ArrowSchema* sums_schema, int64_t count);

/** fisher += other (sums and counts): chunks or ranks combine into the one-pass
 *  result. @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT if the layouts or label
 *  modes differ, or other is fisher. */
int exitnet_fisher_merge(exitnet_fisher* fisher, exitnet_fisher* other);

/** Zeroes S and N (and clears a failed rows update). @return EXITNET_OK. */
int exitnet_fisher_reset(exitnet_fisher* fisher);

/** Checkpoints the accumulator to path (atomic; the state-file format of
 *  exitnet_fisher_state_save plus a float64 column "sums" with S, "fisher/0" = F
 *  when N > 0, and meta n_samples, label_mode, granularity, normalisation as JSON
 *  texts). @param path [in] borrowed.
 *  @return EXITNET_OK; EXITNET_ERR_IO (cannot write); EXITNET_ERR_INVALID_STATE
 *          (after a failed rows update). */
int exitnet_fisher_save(exitnet_fisher* fisher, const char* path);

/** Restores an accumulator saved by exitnet_fisher_save, exactly (layout, label
 *  mode, sums, count). @param out [out] new handle; free with exitnet_fisher_free.
 *  @return EXITNET_OK; EXITNET_ERR_IO (missing, truncated, corrupted, or a state
 *          file without accumulator sums); EXITNET_ERR_INVALID_ARGUMENT (NULL). */
int exitnet_fisher_load(exitnet_fisher** out, const char* path);

/** One label per row drawn from softmax(logits) (label mode "sampled"). Row r uses
 *  u = splitmix64(splitmix64(seed) ^ (r + row_offset)) / 2^64 and the inverse CDF,
 *  so results depend only on (seed, global row, logits), not on threads or batching.
 *  @param out, out_schema [out] int32 array of N labels; caller releases.
 *  @param logits, logits_schema [in] N x C matrix; moved in.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NaN/Inf logits, bad type). */
int exitnet_fisher_sample_labels(struct ArrowArray* out, struct ArrowSchema* out_schema,
                                 struct ArrowArray* logits, struct ArrowSchema* logits_schema,
                                 uint64_t seed, uint64_t row_offset);

/** p(c|x) = softmax(logits) per row, computed in float64 (weights of label mode
 *  "exact"). @param out, out_schema [out] N x C matrix; caller releases.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT. */
int exitnet_fisher_class_probs(struct ArrowArray* out, struct ArrowSchema* out_schema,
                               struct ArrowArray* logits, struct ArrowSchema* logits_schema);

/** Combines K Fishers (float32 arrays of equal length, oldest first):
 *      "sum": sum_k F_k;  "weighted": sum_k weights[k] F_k;
 *      "online": F <- F_0, then F <- gamma F + F_k for k = 1..K-1, gamma in (0, 1].
 *  Computed in float64, rounded once.
 *  @param out, out_schema [out] float32 array; caller releases.
 *  @param fishers, fishers_schemas [in] K contiguous struct pairs; all moved in.
 *  @param weights [in] K doubles for "weighted", else NULL. gamma: read by "online".
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (unknown mode, gamma outside
 *          (0, 1], lengths differ, K < 1, weights count). */
int exitnet_fisher_consolidate(struct ArrowArray* out, struct ArrowSchema* out_schema,
                               struct ArrowArray* fishers, struct ArrowSchema* fishers_schemas,
                               int n_fishers, const char* mode, const double* weights,
                               double gamma);

/** EWC penalty with the 1/2 convention, and its gradient, over K (anchor, Fisher)
 *  pairs of flat float32 buffers of P values, in one fused SIMD pass:
 *      value  = lambda/2 * sum_k sum_i F_k,i (theta_i - anchor_k,i)^2
 *      grad_i = lambda * sum_k F_k,i (theta_i - anchor_k,i)
 *  @param out_value [out] the value (accumulated in float64).
 *  @param out_grad, out_grad_schema [out] float32 array of P, or both NULL to skip.
 *  @param params, params_schema [in] theta; moved in.
 *  @param anchors, anchors_schemas, fishers, fishers_schemas [in] n_pairs contiguous
 *         struct pairs each; all moved in. @param lambda [in] finite, >= 0.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (lambda < 0, lengths differ,
 *          NaN/Inf making the value non-finite). */
int exitnet_ewc_penalty(double* out_value, struct ArrowArray* out_grad,
                        struct ArrowSchema* out_grad_schema, struct ArrowArray* params,
                        struct ArrowSchema* params_schema, struct ArrowArray* anchors,
                        struct ArrowSchema* anchors_schemas, struct ArrowArray* fishers,
                        struct ArrowSchema* fishers_schemas, int n_pairs, double lambda);

/** exitnet_ewc_penalty writing the gradient into a caller buffer (no allocation:
 *  the fast path for repeated calls, e.g. from numpy).
 *  @param out_value [out] the value. @param out_grad [out] n floats written (or NULL
 *         to skip the gradient); borrowed for the call, must not alias the inputs.
 *  @param n [in] length of out_grad; must equal the length of params.
 *  Other parameters and statuses as exitnet_ewc_penalty (plus
 *  EXITNET_ERR_INVALID_ARGUMENT if n differs from the length of params). */
int exitnet_ewc_penalty_into(double* out_value, float* out_grad, int64_t n,
                             struct ArrowArray* params, struct ArrowSchema* params_schema,
                             struct ArrowArray* anchors, struct ArrowSchema* anchors_schemas,
                             struct ArrowArray* fishers, struct ArrowSchema* fishers_schemas,
                             int n_pairs, double lambda);

/** exitnet_ewc_penalty_into with plain C arrays (no Arrow structs on the way in):
 *  the fast path for a training step (Python takes it for numpy arrays and CPU tensors).
 *  @param out_value [out] the value (accumulated in float64).
 *  @param out_grad [out] n floats written, or NULL to skip the gradient; must not
 *         overlap any input (refused, not computed, when it does).
 *  @param params [in] n floats (theta); borrowed.
 *  @param anchors, fishers [in] n_pairs pointers each, to n floats; borrowed.
 *  @param n [in] P >= 0 (<= 2^46; the arrays may be NULL when n == 0).
 *  @param n_pairs [in] K in 1..65536. @param lambda [in] finite, >= 0.
 *  @return as exitnet_ewc_penalty_into, and EXITNET_ERR_INVALID_ARGUMENT for NULL
 *          arrays, sizes out of range or an overlapping out_grad (the message names
 *          the argument). */
int exitnet_ewc_penalty_raw(double* out_value, float* out_grad, const float* params,
                            const float* const* anchors, const float* const* fishers,
                            int64_t n, int n_pairs, double lambda);

/** Saves an EWC state atomically (temporary file in the same directory, fsync,
 *  rename): one Arrow IPC file, one record batch of P rows, float32 columns
 *  "fisher/0".."fisher/K-1" then "anchor/0".."anchor/M-1"; schema metadata
 *  "exitnet.layout" (JSON [{"name":..., "shape":[...]}]), "exitnet.meta" (JSON
 *  object of the given strings), "exitnet.format" = "fisher_state",
 *  "exitnet.format_version" = "1" and a whole-file CRC-32C. Readable by any Arrow
 *  library. A failed save leaves an existing file at path untouched.
 *  @param path [in] borrowed. @param names, ndims, dims, n_params [in] the layout.
 *  @param fishers, fishers_schemas [in] n_fishers struct pairs (float32, P values,
 *         finite, >= 0); moved in. @param anchors, anchors_schemas [in] n_anchors
 *         pairs (float32, P finite values); moved in.
 *  @param meta_keys, meta_values [in] n_meta strings each (e.g. "n_samples",
 *         "label_mode", "granularity", "normalisation"); borrowed.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (lengths, values, layout);
 *          EXITNET_ERR_IO (cannot write). */
int exitnet_fisher_state_save(const char* path, const char* const* names, const int64_t* ndims,
                              const int64_t* dims, int64_t n_params, struct ArrowArray* fishers,
                              struct ArrowSchema* fishers_schemas, int n_fishers,
                              struct ArrowArray* anchors, struct ArrowSchema* anchors_schemas,
                              int n_anchors, const char* const* meta_keys,
                              const char* const* meta_values, int n_meta);

/** Loads and fully validates a state file (checksum, structure, types, lengths,
 *  values) before returning it as a record batch (struct array) with the columns
 *  and schema metadata described at exitnet_fisher_state_save (and the float64
 *  "sums" column of a file written by exitnet_fisher_save).
 *  @param out, out_schema [out] caller releases. @param path [in] borrowed.
 *  @return EXITNET_OK; EXITNET_ERR_IO (missing, truncated, corrupted, not a state
 *          file); EXITNET_ERR_INVALID_ARGUMENT (NULL pointers). */
int exitnet_fisher_state_load(struct ArrowArray* out, struct ArrowSchema* out_schema,
                              const char* path);

/* ======================================================================== */
/* ==== policy: confidences, exit assignment, exact budget curves ========= */
/* ======================================================================== */
/* (section: policy) */
/*
 * Exit policies on logits recorded from any framework. K exits, N samples, C classes.
 *
 * SCORES. Per-exit confidences and predictions cross the ABI exit-major, as two arrays:
 *   confidences  fixed_size_list<float32>[N] with K rows (row k = exit k), and
 *   predictions  int32 (or int64) with K*N values (values k*N .. k*N+N-1 = exit k).
 * exitnet_policy_confidences produces them from logits; callers with their own
 * confidence measure may build them directly (higher = more confident; NaN refused;
 * predictions in [0, C)).
 *
 * POLICY. Sample i leaves at the first exit k < K-1 with conf[k][i] >= tau_k; the last
 * exit always accepts. A global threshold is tau_k = tau for every k.
 *
 * COSTS. `costs` is always the cumulative cost of leaving at each exit (K doubles,
 * finite, >= 0, non-decreasing, last > 0): costs[k] = sum_{j<=k} stage_j + head_j
 * (exitnet_policy_cost_cumulative computes it from per-stage and per-head MACs).
 * Mean cost = sum_k hist_k * costs[k] / N; speed-up = costs[K-1] / mean cost.
 *
 * All functions are thread-safe and keep no state. Arrow inputs are moved in whatever
 * the status (see the header's conventions), except where a function says the count
 * of structs could not be known. Arrow out-structs must not hold live data on entry:
 * they may be zeroed (release == NULL, nothing to release) when a call fails.
 */

/** Confidence measures. Every measure is "higher = more confident". */
enum exitnet_policy_measure {
  EXITNET_POLICY_MAX_SOFTMAX = 0, /**< max_c p_c, in [1/C, 1] */
  EXITNET_POLICY_ENTROPY = 1,     /**< 1 - H(p)/log C, in [0, 1] (1 when C == 1); the
                                       normalised negative entropy shifted by one */
  EXITNET_POLICY_MARGIN = 2,      /**< p_(1) - p_(2), top-1 minus top-2 probability */
  EXITNET_POLICY_PATIENCE = 3     /**< number of consecutive exits, ending at k, that
                                       predict the same class (1 at exit 0) */
};

/** Calibration methods. */
enum exitnet_policy_method {
  EXITNET_POLICY_GLOBAL = 0,   /**< one tau, the best point of the validation exact curve */
  EXITNET_POLICY_MSDNET = 1,   /**< per-exit thresholds for geometric exit proportions
                                    p_k ~ q^k (MSDNet), q searched for the target */
  EXITNET_POLICY_PER_EXIT = 2  /**< coordinate descent over tau_0..tau_{K-2}, each swept
                                    exactly, started from the MSDNet and global points;
                                    never worse than either on validation */
};

/** One operating point. tau is the global threshold (+Inf: everyone at the last
 *  exit), or NaN for per-exit thresholds. accuracy = correct / n. */
typedef struct exitnet_policy_point {
  float tau;
  int64_t correct;
  int64_t n;
  double accuracy;
  double mean_cost;
  double speedup;
} exitnet_policy_point;

/** Cumulative costs from per-stage and per-head costs (MACs).
 *  @param out_costs  [out] K doubles: out_costs[k] = sum_{j<=k} stage_macs[j] + head_macs[j].
 *  @param stage_macs [in]  K doubles. @param head_macs [in] K doubles (borrowed).
 *  @param n_exits    [in]  K >= 1.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT for NULL pointers, K < 1, a negative
 *          or non-finite cost, or a total of 0. */
int exitnet_policy_cost_cumulative(double* out_costs, const double* stage_macs,
                                   const double* head_macs, int n_exits);

/** Confidences and predictions of every sample at every exit.
 *  @param out_conf, out_conf_schema [out] confidences, fixed_size_list<float32>[N] x K rows.
 *  @param out_pred, out_pred_schema [out] predictions (argmax, first index on ties),
 *         int32, K*N values. Caller releases all four structs.
 *  @param logits, logits_schemas [in] two arrays of K contiguous structs (logits[k] is
 *         exit k): each a fixed_size_list<float32>[C] or arrow.fixed_shape_tensor with N
 *         rows; every exit needs the same N and C. All 2K structs are moved in, except
 *         when n_exits is out of range or a pointer is NULL (then nothing is touched).
 *  @param n_exits [in] K, 1..65536.
 *  @param measure [in] an exitnet_policy_measure.
 *  @param temperatures [in] NULL (none) or K floats > 0 dividing exit k's logits.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL, different N or C across
 *          exits, N == 0, NaN/Inf logits (message names exit and row), bad measure or
 *          temperature). */
int exitnet_policy_confidences(struct ArrowArray* out_conf, struct ArrowSchema* out_conf_schema,
                               struct ArrowArray* out_pred, struct ArrowSchema* out_pred_schema,
                               struct ArrowArray* logits, struct ArrowSchema* logits_schemas,
                               int n_exits, int measure, const float* temperatures);

/** Exit assignment for given thresholds.
 *  @param out, out_schema [out] record batch of N rows: exit int32, prediction int32,
 *         confidence float32 (at the exit taken). Caller releases.
 *  @param conf, conf_schema, pred, pred_schema [in] scores (see SCORES), moved in.
 *  @param n_classes [in] C (predictions must lie in [0, C)).
 *  @param thresholds [in] 1 value (global tau) or K values (tau_{K-1} is ignored);
 *         NaN refused, +-Inf allowed. Borrowed.
 *  @param n_thresholds [in] 1 or K.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (shapes, NaN, wrong threshold count). */
int exitnet_policy_assign(struct ArrowArray* out, struct ArrowSchema* out_schema,
                          struct ArrowArray* conf, struct ArrowSchema* conf_schema,
                          struct ArrowArray* pred, struct ArrowSchema* pred_schema,
                          int n_classes, const float* thresholds, int64_t n_thresholds);

/** The exact accuracy-vs-cost curve for a global threshold: every distinct operating
 *  point (at most N*(K-1)+1), found by sorting the <= N*(K-1) breakpoints where tau
 *  crosses a running maximum of a sample's confidences, in O(NK log NK). Point 0 is
 *  tau = +Inf (everyone at the last exit); tau then decreases; the point with
 *  threshold v holds for every tau in (previous v, v]. Ties are exact.
 *  @param out, out_schema [out] record batch, one row per point: tau float32,
 *         correct int64, accuracy float64, mean_cost float64, normalized_cost float64
 *         (mean_cost / costs[K-1]), speedup float64, exit_histogram
 *         fixed_size_list<int64>[K]. Caller releases.
 *  @param conf.. pred.. [in] scores, moved in. @param labels [in] int32/int64, N values
 *         in [0, C), moved in. @param n_classes [in] C. @param costs [in] K cumulative costs.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (shapes, labels out of range,
 *          NaN confidences, bad costs, more than 32768 exits: an event names its two
 *          exits in 15 bits each). */
int exitnet_policy_curve(struct ArrowArray* out, struct ArrowSchema* out_schema,
                         struct ArrowArray* conf, struct ArrowSchema* conf_schema,
                         struct ArrowArray* pred, struct ArrowSchema* pred_schema,
                         struct ArrowArray* labels, struct ArrowSchema* labels_schema,
                         int n_classes, const double* costs);

/** exitnet_policy_curve with the scores and labels as plain C arrays (no Arrow
 *  structs on the way in; the same curve, exported the same way).
 *  @param out, out_schema [out] as in exitnet_policy_curve. Caller releases.
 *  @param conf [in] n_exits x n_samples floats, exit-major ([K][N]); borrowed.
 *  @param pred [in] n_exits x n_samples int32 predictions in [0, C), exit-major; borrowed.
 *  @param labels [in] n_samples int64 labels in [0, C); borrowed.
 *  @param n_exits [in] K in 1..65536 (the curve itself takes at most 32768).
 *         @param n_samples [in] N >= 1 (K*N <= 2^46).
 *  @param n_classes [in] C. @param costs [in] K cumulative costs.
 *  @return as exitnet_policy_curve, and EXITNET_ERR_INVALID_ARGUMENT for NULL arrays
 *          or sizes out of range (the message names the argument). */
int exitnet_policy_curve_raw(struct ArrowArray* out, struct ArrowSchema* out_schema,
                             const float* conf, const int32_t* pred, const int64_t* labels,
                             int64_t n_exits, int64_t n_samples, int n_classes,
                             const double* costs);

/** Chooses thresholds on the validation split and evaluates them on the test split.
 *  Target: by_accuracy == 0: maximise validation accuracy with mean cost <= target
 *  (target in [costs[0], costs[K-1]]; outside is an error, not a clamp); by_accuracy
 *  != 0: minimise mean cost with accuracy >= target (in [0, 1]; unreachable is an error).
 *  @param out_thresholds [out] K floats (the last is -Inf).
 *  @param out_q [out] MSDNet's q, NaN for other methods; may be NULL.
 *  @param out_val, out_val_hist [out] validation point and K-value exit histogram; may be NULL.
 *  @param out_test, out_test_hist [out] the same on test; may be NULL; untouched without test.
 *  @param val_* [in] validation scores and labels, moved in.
 *  @param test_* [in] test scores and labels, moved in; all three NULL for none.
 *  @param n_classes [in] C. @param costs [in] K cumulative costs.
 *  @param method [in] an exitnet_policy_method.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (shapes, labels, costs, a target
 *          below the first exit's cost or above the full cost, an unreachable accuracy,
 *          unknown method). */
int exitnet_policy_calibrate(float* out_thresholds, double* out_q,
                             exitnet_policy_point* out_val, int64_t* out_val_hist,
                             exitnet_policy_point* out_test, int64_t* out_test_hist,
                             struct ArrowArray* val_conf, struct ArrowSchema* val_conf_schema,
                             struct ArrowArray* val_pred, struct ArrowSchema* val_pred_schema,
                             struct ArrowArray* val_labels, struct ArrowSchema* val_labels_schema,
                             struct ArrowArray* test_conf, struct ArrowSchema* test_conf_schema,
                             struct ArrowArray* test_pred, struct ArrowSchema* test_pred_schema,
                             struct ArrowArray* test_labels, struct ArrowSchema* test_labels_schema,
                             int n_classes, const double* costs, int method, int by_accuracy,
                             double target);

/** Summaries of the exact curve.
 *  accuracy at budget b (fraction of costs[K-1], costs[0]/costs[K-1] <= b <= 1, else an
 *  error): the best accuracy over points with mean cost <= b * costs[K-1].
 *  speed-up at iso-accuracy: costs[K-1] / mean cost of the cheapest point with accuracy
 *  >= (accuracy of the last exit) - delta.
 *  AUC: trapezoid area under accuracy vs normalised cost, over [costs[0]/costs[K-1], 1].
 *  @param out_accuracy [out] n_budgets doubles (may be NULL when n_budgets == 0).
 *  @param out_speedup [out] may be NULL (not computed). @param out_auc [out] may be NULL.
 *  @param conf.. pred.. labels [in] moved in. @param n_classes, costs [in] as above.
 *  @param budgets [in] n_budgets fractions. @param delta [in] accuracy drop >= 0.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (as exitnet_policy_curve, budgets
 *          out of range or NaN, delta < 0). */
int exitnet_policy_summary(double* out_accuracy, double* out_speedup, double* out_auc,
                           struct ArrowArray* conf, struct ArrowSchema* conf_schema,
                           struct ArrowArray* pred, struct ArrowSchema* pred_schema,
                           struct ArrowArray* labels, struct ArrowSchema* labels_schema,
                           int n_classes, const double* costs, const double* budgets,
                           int64_t n_budgets, double delta);

/* ======================================================================== */
/* ==== runtime: early-exit inference engine ============================== */
/* ======================================================================== */
/* (section: runtime) */
/*
 * The early-exit inference engine. A model file (written by exitnet.torch.export)
 * is an Arrow IPC file: a JSON graph in the schema metadata (exitnet.kind = "model",
 * exitnet.format_version = "2", exitnet.graph) and one row per weight tensor
 * (name utf8, shape list<int32>, data list<float32>). No code is executed on load:
 * a file from a stranger is safe; everything is validated before use.
 *
 * VERSIONS: format 2 (exitnet >= 0.2) is a graph of named nodes; format 1 files
 * (exitnet 0.1, nested op lists) still load (converted at load). Any other version
 * is refused with a message naming it (EXITNET_ERR_NOT_SUPPORTED for a newer one,
 * naming the exitnet that wrote it).
 *
 * GRAPH: K stages and K exit heads. Stage k reads the model input (k = 0) or stage
 * k-1's output; head k reads stage k's output and gives exit k's logits. Each is a
 * list of nodes in topological order, each node {name, op, inputs[], attributes};
 * "input" names the stage's (head's) input. Samples are [C, H, W] or flat [F].
 * Ops (torch eval semantics; pairs are [h, w]):
 *   conv2d       weight [Cout, Cin/groups, kh, kw], bias, stride, padding, dilation,
 *                groups (depthwise included); BatchNorm folded in by the exporter
 *   linear       weight [out, in], bias; input [F]
 *   scale_shift  y[c] = x[c]*scale[c] + shift[c] (a BatchNorm nothing precedes)
 *   relu relu6 sigmoid silu hardswish hardsigmoid gelu (approximate none|tanh)
 *   identity     (dropout, stochastic depth in eval)
 *   maxpool2d    kernel, stride, padding, ceil_mode;  avgpool2d: + count_include_pad
 *   adaptive_avgpool2d output_size [oh, ow] (torch's bins);  mean over H, W (keepdim)
 *   add, mul     equal shapes, or [C,1,1] broadcast over [C,H,W] (squeeze-excitation)
 *   add_scalar, mul_scalar (value);  cat (channels, >= 2 inputs);  flatten
 * An unknown op or attribute is refused (EXITNET_ERR_NOT_SUPPORTED / _IO, naming the
 * stage or head and the node); so are cycles, unknown names, unused nodes, shapes
 * that do not fit and weights of the wrong shape.
 *
 * COSTS are multiply-accumulates (MACs) of conv2d and linear nodes per sample;
 * exit k costs the stages and heads 0..k. A file's declared costs must equal the
 * graph's. WORK per sample (MACs plus pooling window reads and elementwise ops) is
 * bounded at load (exitnet_model_set_max_work_per_sample; default 1e11, enough for every
 * common ImageNet network at 224x224), so a forged file cannot run for minutes per
 * sample.
 *
 * PREPROCESSING: a model may store the input normalisation x' = (x - mean[c]) / std[c]
 * (exitnet_model_preprocess); with exitnet_predict_params.raw_input the runtime
 * applies it (float32), so a C program needs no hard-coded constants.
 *
 * NaN/Inf inputs are refused (EXITNET_ERR_INVALID_ARGUMENT naming the sample).
 *
 * Threads: a model handle is immutable; any number of threads may call predict on
 * it at once (each call uses its own workspace; the model keeps one idle workspace
 * per concurrent caller it has seen, freed with the model). Work inside one call
 * uses exitnet_set_num_threads threads.
 */

/** An early-exit model. Created by exitnet_model_load, destroyed by exitnet_model_free. */
typedef struct exitnet_model exitnet_model;

/** Parameters of exitnet_model_predict. Get defaults from
 *  exitnet_model_predict_default_params, then change fields. */
typedef struct exitnet_predict_params {
  int measure;              /**< an exitnet_policy_measure (default MAX_SOFTMAX) */
  const float* thresholds;  /**< tau values, borrowed for the call; NULL = no early exit */
  int64_t n_thresholds;     /**< 0 (no early exit), 1 (global tau), K-1 (per exit; the
                                 last exit always accepts) or K (the last is ignored) */
  float temperature;        /**< finite and > 0, divides the logits before the softmax
                                 (default 1); 0 is refused (it is also what a positive
                                 double below ~1.4e-45 becomes as a float) */
  int return_logits;        /**< nonzero: add columns logits_0 .. logits_{K-1} */
  int raw_input;            /**< nonzero: inputs are raw; the model's stored
                                 preprocessing is applied first (refused with
                                 EXITNET_ERR_INVALID_ARGUMENT when it stores none) */
} exitnet_predict_params;

/** Loads and validates a model file.
 *  @param out  [out] the new model; free with exitnet_model_free.
 *  @param path [in] file path (borrowed).
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL); EXITNET_ERR_IO (missing,
 *          unreadable, truncated or corrupted file, inconsistent shapes, missing
 *          weights, a bad graph, declared sizes or costs wrong or over the bounds,
 *          work per sample over exitnet_model_set_max_work_per_sample);
 *          EXITNET_ERR_NOT_SUPPORTED (an unknown op, named in the message, or a newer
 *          format_version). */
int exitnet_model_load(exitnet_model** out, const char* path);

/** Frees a model and sets *model to NULL. Accepts NULL and *model == NULL.
 *  Must not race with a predict call on the same model.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_STATE (not a live model handle). */
int exitnet_model_free(exitnet_model** model);

/** Number of exits K. @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL out);
 *  EXITNET_ERR_INVALID_STATE (bad handle). */
int exitnet_model_num_exits(int* out, const exitnet_model* model);

/** Number of classes C (logits per exit). Statuses as exitnet_model_num_exits. */
int exitnet_model_num_classes(int* out, const exitnet_model* model);

/** Input shape: out[0..2] = C, H, W. Statuses as exitnet_model_num_exits. */
int exitnet_model_input_shape(int64_t out[3], const exitnet_model* model);

/** Cumulative cost of leaving at each exit, in MACs per sample.
 *  @param out [out] n values. @param n [in] must equal K.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL, n != K);
 *          EXITNET_ERR_INVALID_STATE (bad handle). */
int exitnet_model_exit_costs(int64_t* out, int n, const exitnet_model* model);

/** The stored input normalisation x' = (x - mean[c]) / std[c].
 *  @param out_present [out] 1 when the model stores one, else 0 (mean, std untouched).
 *  @param out_mean, out_std [out] n floats each. @param n [in] must equal C.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL, n != C);
 *          EXITNET_ERR_INVALID_STATE (bad handle). */
int exitnet_model_preprocess(int* out_present, float* out_mean, float* out_std, int n,
                             const exitnet_model* model);

/** Number of layers with a kernel choice (conv2d and linear nodes) in all stages and
 *  heads, for exitnet_model_layer_kernel.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL out or model);
 *          EXITNET_ERR_INVALID_STATE (bad handle). */
int exitnet_model_num_layers(int64_t* out, const exitnet_model* model);

/** Which kernel layer i runs, as chosen at load from its shape (debugging, profiles).
 *  Layers are listed stage by stage, then head by head, in graph order.
 *  @param i [in] 0 <= i < exitnet_model_num_layers.
 *  @param out_block [out] 2 int32: 0 (a stage) or 1 (a head), then its index.
 *  @param out_shape [out] 6 int64: the per-sample input C, H, W, then the output C, H, W
 *         (linear: features, 1, 1; the output is after a fused 2x2 max-pool).
 *  @param node, op, kernel [out] NUL-terminated: the node's name, "conv2d" or "linear",
 *         and the kernel with its parameters (e.g. "direct 3x3/s1,1/... avx2+fma ...",
 *         "im2col+gemm", "depthwise ..."), each written when it fits in its *_len bytes.
 *  @param out_needed [out] 3 size_t, always set: strlen + 1 of node, op and kernel.
 *         Passing node, op and kernel all NULL (lengths 0) only sets out_needed.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL model, out_block, out_shape
 *          or out_needed, i out of range, a buffer NULL or shorter than needed while
 *          another is not NULL); EXITNET_ERR_INVALID_STATE (bad handle). */
int exitnet_model_layer_kernel(const exitnet_model* model, int64_t i, int32_t out_block[2],
                               int64_t out_shape[6], char* node, size_t node_len, char* op,
                               size_t op_len, char* kernel, size_t kernel_len,
                               size_t out_needed[3]);

/** Sets the largest work per sample (MACs plus pooling and elementwise operations,
 *  computed from the graph) a model file may need; later loads above it fail with
 *  EXITNET_ERR_IO. Process-wide. Default 1e11.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (n < 1). */
int exitnet_model_set_max_work_per_sample(int64_t n);

/** The current bound of exitnet_model_set_max_work_per_sample.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL). */
int exitnet_model_max_work_per_sample(int64_t* out);

/** Fills *out with the defaults: MAX_SOFTMAX, no thresholds, temperature 1, no logits,
 *  normalised (not raw) input.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL). */
int exitnet_model_predict_default_params(exitnet_predict_params* out);

/** Runs a batch with early exits.
 *  @param out, out_schema [out] record batch of N rows: prediction int32, exit int32
 *         (0-based exit taken), confidence float32 (at the exit taken), and with
 *         return_logits the columns logits_k, fixed_size_list<float32>[C], NaN rows
 *         for samples that left before exit k. Caller releases.
 *  @param out_macs [out] MACs actually executed for the batch; may be NULL.
 *  @param model [in] the model.
 *  @param input, input_schema [in] N samples: arrow.fixed_shape_tensor with shape
 *         [C, H, W] equal to the model's, or fixed_size_list<float32>[C*H*W]; moved in
 *         whatever the status.
 *  @param params [in] NULL for the defaults; borrowed.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL pointers, wrong type, shape
 *          or channel count, nulls, NaN/Inf values, threshold count or NaN threshold,
 *          bad measure or temperature, raw_input without stored preprocessing);
 *          EXITNET_ERR_INVALID_STATE (bad handle). */
int exitnet_model_predict(struct ArrowArray* out, struct ArrowSchema* out_schema,
                          int64_t* out_macs, const exitnet_model* model,
                          struct ArrowArray* input, struct ArrowSchema* input_schema,
                          const exitnet_predict_params* params);

/** exitnet_model_predict on plain C arrays (no Arrow structs: the lowest per-call
 *  overhead, for small batches and latency-bound callers).
 *  @param out_prediction, out_exit [out] n int32 each (caller-allocated).
 *  @param out_confidence [out] n floats.
 *  @param out_logits [out] K*n*C floats, exit-major ([K][n][C]; NaN rows for samples
 *         that left earlier); may be NULL unless params->return_logits is set.
 *  @param out_macs [out] MACs executed; may be NULL.
 *  @param model [in] the model. @param x [in] n*C*H*W floats, row-major [n][C][H][W];
 *         borrowed for the call. @param n [in] samples (0 is allowed).
 *  @param params [in] NULL for the defaults; borrowed.
 *  @return EXITNET_OK; EXITNET_ERR_INVALID_ARGUMENT (NULL pointers, n < 0, NaN/Inf
 *          inputs, bad thresholds, measure or temperature, raw_input without stored
 *          preprocessing); EXITNET_ERR_INVALID_STATE (bad handle). Outputs may be partly
 *          written on failure. */
int exitnet_model_predict_raw(int32_t* out_prediction, int32_t* out_exit, float* out_confidence,
                              float* out_logits, int64_t* out_macs, const exitnet_model* model,
                              const float* x, int64_t n, const exitnet_predict_params* params);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* EXITNET_H */
