//go:build amd64 && !purego

#include "textflag.h"

// func penaltyAVX2(grad, theta, anchor, fisher *float32, n int, lam float32, acc int) float64
// d = θ−a; q = F·d; grad = λ·q (+ grad if acc != 0); value += float64(q·d); n % 8 == 0.
TEXT ·penaltyAVX2(SB), NOSPLIT, $0-64
	MOVQ grad+0(FP), DI
	MOVQ theta+8(FP), R9
	MOVQ anchor+16(FP), R10
	MOVQ fisher+24(FP), R11
	MOVQ n+32(FP), CX
	VBROADCASTSS lam+40(FP), Y15
	MOVQ acc+48(FP), DX
	VXORPD Y8, Y8, Y8
	VXORPD Y9, Y9, Y9
	XORQ SI, SI
	SHLQ $2, CX           // bytes
	TESTQ DX, DX
	JNE  accloop

setloop:
	CMPQ SI, CX
	JGE  done
	VMOVUPS 0(R9)(SI*1), Y0
	VSUBPS 0(R10)(SI*1), Y0, Y0
	VMULPS 0(R11)(SI*1), Y0, Y1
	VMULPS Y1, Y0, Y2
	VMULPS Y15, Y1, Y3
	VMOVUPS Y3, 0(DI)(SI*1)
	VCVTPS2PD X2, Y4
	VEXTRACTF128 $1, Y2, X5
	VCVTPS2PD X5, Y5
	VADDPD Y4, Y8, Y8
	VADDPD Y5, Y9, Y9
	ADDQ $32, SI
	JMP  setloop

accloop:
	CMPQ SI, CX
	JGE  done
	VMOVUPS 0(R9)(SI*1), Y0
	VSUBPS 0(R10)(SI*1), Y0, Y0
	VMULPS 0(R11)(SI*1), Y0, Y1
	VMULPS Y1, Y0, Y2
	VMULPS Y15, Y1, Y3
	VADDPS 0(DI)(SI*1), Y3, Y3
	VMOVUPS Y3, 0(DI)(SI*1)
	VCVTPS2PD X2, Y4
	VEXTRACTF128 $1, Y2, X5
	VCVTPS2PD X5, Y5
	VADDPD Y4, Y8, Y8
	VADDPD Y5, Y9, Y9
	ADDQ $32, SI
	JMP  accloop

done:
	VADDPD Y9, Y8, Y8
	VEXTRACTF128 $1, Y8, X9
	VADDPD X9, X8, X8
	VHADDPD X8, X8, X8
	VMOVSD X8, ret+56(FP)
	VZEROUPPER
	RET
