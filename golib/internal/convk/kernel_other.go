//go:build !amd64 || purego

package convk

const useAsm = false

func tileAVX2(a *tileArgs) { tileGo(a) }

func dwAVX2(a *dwArgs) { dwGo(a) }

func fmaPeak(n int) {}

func pack8AVX2(dst, src *float32, stride, n int) { pack8Go(dst, src, stride, n) }
