//go:build amd64 && !purego

#include "textflag.h"

// func cpuidAVX2FMA() bool
TEXT ·cpuidAVX2FMA(SB), NOSPLIT, $0-1
	// leaf 1: ECX bit 12 FMA, bit 27 OSXSAVE, bit 28 AVX
	MOVL $1, AX
	XORL CX, CX
	CPUID
	MOVL CX, R8
	ANDL $0x18001000, R8
	CMPL R8, $0x18001000
	JNE  no
	// XCR0: XMM and YMM state enabled by the OS
	XORL CX, CX
	XGETBV
	ANDL $6, AX
	CMPL AX, $6
	JNE  no
	// leaf 7: EBX bit 5 AVX2
	MOVL $7, AX
	XORL CX, CX
	CPUID
	BTL  $5, BX
	JCC  no
	MOVB $1, ret+0(FP)
	RET
no:
	MOVB $0, ret+0(FP)
	RET
