//go:build !amd64 || purego

package convk

const useAsm = false

func tileAVX2(a *tileArgs) { tileGo(a) }

func fmaPeak(n int) {}
