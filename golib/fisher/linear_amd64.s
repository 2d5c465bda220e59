//go:build amd64 && !purego

#include "textflag.h"

// func sqScaleMaxAVX2(dst, src *float32, n int, w float32) (m float32, bad int)
// dst[i] = w·(src[i]·src[i]) for i < n (n % 16 == 0); m = max dst[i];
// bad != 0 when some dst[i] is NaN or +Inf (vcmpps NLT_UQ against +Inf).
TEXT ·sqScaleMaxAVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS w+24(FP), Y15
	MOVL $0x7f800000, AX
	MOVL AX, X14
	VBROADCASTSS X14, Y14 // +Inf
	VXORPS Y13, Y13, Y13  // max (squares are >= 0)
	VXORPS Y12, Y12, Y12  // bad mask
	VXORPS Y11, Y11, Y11

loop:
	SUBQ $16, CX
	JLT  done
	VMOVUPS 0(SI), Y0
	VMOVUPS 32(SI), Y1
	VMULPS Y0, Y0, Y0
	VMULPS Y1, Y1, Y1
	VMULPS Y15, Y0, Y0
	VMULPS Y15, Y1, Y1
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	VMAXPS Y0, Y13, Y13
	VMAXPS Y1, Y11, Y11
	VCMPPS $5, Y14, Y0, Y2 // !(x < +Inf): NaN or +Inf
	VCMPPS $5, Y14, Y1, Y3
	VORPS  Y2, Y12, Y12
	VORPS  Y3, Y12, Y12
	ADDQ $64, SI
	ADDQ $64, DI
	JMP  loop

done:
	VMAXPS Y11, Y13, Y13
	VEXTRACTF128 $1, Y13, X1
	VMAXPS X1, X13, X13
	VPERMILPS $0x4e, X13, X1
	VMAXPS X1, X13, X13
	VPERMILPS $0xb1, X13, X1
	VMAXPS X1, X13, X13
	VMOVSS X13, m+32(FP)
	XORQ AX, AX
	VPTEST Y12, Y12
	SETNE AX
	MOVQ AX, bad+40(FP)
	VZEROUPPER
	RET

// func addF32AVX2(dst *float64, src *float32, n int)
// dst[i] += float64(src[i]) for i < n (n % 16 == 0).
TEXT ·addF32AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

loop16:
	SUBQ $16, CX
	JLT  end
	VCVTPS2PD 0(SI), Y0
	VCVTPS2PD 16(SI), Y1
	VCVTPS2PD 32(SI), Y2
	VCVTPS2PD 48(SI), Y3
	VADDPD 0(DI), Y0, Y0
	VADDPD 32(DI), Y1, Y1
	VADDPD 64(DI), Y2, Y2
	VADDPD 96(DI), Y3, Y3
	VMOVUPD Y0, 0(DI)
	VMOVUPD Y1, 32(DI)
	VMOVUPD Y2, 64(DI)
	VMOVUPD Y3, 96(DI)
	ADDQ $64, SI
	ADDQ $128, DI
	JMP  loop16

end:
	VZEROUPPER
	RET
