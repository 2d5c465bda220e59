//go:build amd64 && !purego

package convk

import "golang.org/x/sys/cpu"

//go:noescape
func tileAVX2(a *tileArgs)

//go:noescape
func dwAVX2(a *dwArgs)

//go:noescape
func pack8AVX2(dst, src *float32, stride, n int)

var useAsm = cpu.X86.HasAVX2 && cpu.X86.HasFMA

func init() {
	if useAsm {
		tile = tileAVX2
		dwTile = dwAVX2
		pack8 = pack8AVX2
	}
}

//go:noescape
func fmaPeak(n int)
