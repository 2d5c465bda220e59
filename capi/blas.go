package main

/*
#include "shim.h"
*/
import "C"

import (
	"os"
	"sync"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/xerr"
)

// openblas is gonum's float32 BLAS with Sgemm and Sgemv routed to an OpenBLAS
// loaded at run time (blas_shim.c). golib calls blas32.Gemm/Gemv and never knows.
// Everything else (level 1, rarely hot) stays on gonum's implementation.
type openblas struct{ gonum.Implementation }

func trans(t blas.Transpose) C.int {
	if t == blas.NoTrans {
		return 0
	}
	return 1
}

func (o openblas) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 || k == 0 || len(a) == 0 || len(b) == 0 || len(c) == 0 {
		// Degenerate shapes: gonum's checks and scaling rules apply.
		o.Implementation.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	C.xnet_sgemm(trans(tA), trans(tB), C.int(m), C.int(n), C.int(k), C.float(alpha),
		(*C.float)(unsafe.Pointer(&a[0])), C.int(lda), (*C.float)(unsafe.Pointer(&b[0])), C.int(ldb),
		C.float(beta), (*C.float)(unsafe.Pointer(&c[0])), C.int(ldc))
}

func (o openblas) Sgemv(tA blas.Transpose, m, n int, alpha float32, a []float32, lda int,
	x []float32, incX int, beta float32, y []float32, incY int) {
	if m == 0 || n == 0 || len(a) == 0 || len(x) == 0 || len(y) == 0 || incX <= 0 || incY <= 0 {
		o.Implementation.Sgemv(tA, m, n, alpha, a, lda, x, incX, beta, y, incY)
		return
	}
	C.xnet_sgemv(trans(tA), C.int(m), C.int(n), C.float(alpha), (*C.float)(unsafe.Pointer(&a[0])),
		C.int(lda), (*C.float)(unsafe.Pointer(&x[0])), C.int(incX), C.float(beta),
		(*C.float)(unsafe.Pointer(&y[0])), C.int(incY))
}

var (
	blasMu   sync.Mutex
	blasDesc = "gonum (pure Go)"
)

func loadBLAS(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var errbuf [512]C.char
	if C.xnet_blas_open(cpath, &errbuf[0], C.size_t(len(errbuf))) != 0 {
		return xerr.IO("path: cannot load OpenBLAS from %q: %s", path, C.GoString(&errbuf[0]))
	}
	// OpenBLAS threads follow exitnet's thread count.
	C.xnet_blas_set_threads(C.int(par.Threads()))
	blas32.Use(openblas{})
	blasMu.Lock()
	blasDesc = "openblas " + path
	blasMu.Unlock()
	return nil
}

func init() {
	// $EXITNET_BLAS first (a path), then the system library. Failure is silent here:
	// gonum serves, and exitnet_blas_backend tells which is in use.
	for _, p := range []string{os.Getenv("EXITNET_BLAS"), "libopenblas.so.0"} {
		if p != "" && loadBLAS(p) == nil {
			return
		}
	}
}

//export exitnet_blas_load
func exitnet_blas_load(path *C.char) C.int {
	return run("exitnet_blas_load", func() error {
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		return loadBLAS(p)
	})
}

//export exitnet_blas_backend
func exitnet_blas_backend(buf *C.char, buflen C.size_t) C.int {
	return run("exitnet_blas_backend", func() error {
		if buf == nil || buflen == 0 {
			return xerr.Invalid("buf: NULL or zero-length buffer")
		}
		blasMu.Lock()
		d := blasDesc
		blasMu.Unlock()
		out := cBytes(buf, buflen)
		n := copy(out[:len(out)-1], d)
		out[n] = 0
		return nil
	})
}
