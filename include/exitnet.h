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
 *              which come first. On failure out-params are left untouched unless a
 *              function says otherwise.
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
 *              release them again (the PyCapsule protocol's convention). Matrices
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
#define EXITNET_ABI_VERSION 1

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

/** Sets the Go runtime's soft memory limit (GOMEMLIMIT) in bytes; <= 0 removes it.
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

/** TEST HOOK: panics inside Go on purpose so tests can check that the panic is
 *  recovered. Returns EXITNET_ERR_INTERNAL and POISONS the library for the rest
 *  of the process. Never call it outside a test process. */
int exitnet_debug_panic(void);

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

/* ======================================================================== */
/* ==== fisher: EWC diagonal Fisher, consolidation, penalty =============== */
/* ======================================================================== */
/* (section: fisher) */

/* ======================================================================== */
/* ==== policy: confidences, exit assignment, exact budget curves ========= */
/* ======================================================================== */
/* (section: policy) */

/* ======================================================================== */
/* ==== runtime: early-exit inference engine ============================== */
/* ======================================================================== */
/* (section: runtime) */

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* EXITNET_H */
