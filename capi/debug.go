//go:build exitnet_debug

// Test-only exports (tests/c/exitnet_debug.h), compiled in only with the
// exitnet_debug build tag: the library users get has no way to poison itself.

package main

/*
#include "shim.h"
*/
import "C"

//export exitnet_debug_panic
func exitnet_debug_panic() C.int {
	return run("exitnet_debug_panic", func() error {
		var m map[string]int
		m["deliberate"] = 1 // a real runtime panic (nil map write), not a panic() call
		return nil
	})
}

//export exitnet_debug_panic_with_input
func exitnet_debug_panic_with_input(a *C.struct_ArrowArray, s *C.struct_ArrowSchema) C.int {
	return run("exitnet_debug_panic_with_input", func() error {
		var m map[string]int
		m["deliberate"] = 1 // panics before the input is imported: run must release it
		return nil
	}, arg(a, s, "input"))
}
