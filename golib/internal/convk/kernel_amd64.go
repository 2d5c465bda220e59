//go:build amd64 && !purego

package convk

import "golang.org/x/sys/cpu"

//go:noescape
func tileAVX2(a *tileArgs)

var useAsm = cpu.X86.HasAVX2 && cpu.X86.HasFMA

func init() {
	if useAsm {
		tile = tileAVX2
	}
}

//go:noescape
func fmaPeak(n int)
