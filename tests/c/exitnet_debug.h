/* Test-only entry points. They are not in include/exitnet.h and not in the library
 * users get: only `go build -tags exitnet_debug` (make's build/debug/libexitnet.so)
 * compiles them in (capi/debug.go). scripts/abi.py checks these prototypes against
 * the Go exports like the public ones. */
#ifndef EXITNET_DEBUG_H
#define EXITNET_DEBUG_H

#include "exitnet.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Panics inside Go on purpose so tests can check that the panic is recovered.
 *  Returns EXITNET_ERR_INTERNAL and POISONS the library for the rest of the process. */
int exitnet_debug_panic(void);

/** Like exitnet_debug_panic, with one Arrow input that the body never imports:
 *  the input must still be released (moved in whatever the status). POISONS the library. */
int exitnet_debug_panic_with_input(struct ArrowArray* input, struct ArrowSchema* input_schema);

#ifdef __cplusplus
}
#endif

#endif
