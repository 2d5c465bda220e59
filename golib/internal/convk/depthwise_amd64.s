//go:build amd64 && !purego

#include "textflag.h"

// TRANSPOSE8 transposes the 8×8 block in Y0–Y7 (row i in Yi) into Y8–Y15
// (column j in Y(8+j)): unpack pairs, shuffle quads, swap 128-bit halves.
// Clobbers Y0–Y7.
#define TRANSPOSE8 \
	VUNPCKLPS Y1, Y0, Y8 \
	VUNPCKHPS Y1, Y0, Y9 \
	VUNPCKLPS Y3, Y2, Y10 \
	VUNPCKHPS Y3, Y2, Y11 \
	VUNPCKLPS Y5, Y4, Y12 \
	VUNPCKHPS Y5, Y4, Y13 \
	VUNPCKLPS Y7, Y6, Y14 \
	VUNPCKHPS Y7, Y6, Y15 \
	VSHUFPS $0x44, Y10, Y8, Y0 \
	VSHUFPS $0xEE, Y10, Y8, Y1 \
	VSHUFPS $0x44, Y11, Y9, Y2 \
	VSHUFPS $0xEE, Y11, Y9, Y3 \
	VSHUFPS $0x44, Y14, Y12, Y4 \
	VSHUFPS $0xEE, Y14, Y12, Y5 \
	VSHUFPS $0x44, Y15, Y13, Y6 \
	VSHUFPS $0xEE, Y15, Y13, Y7 \
	VPERM2F128 $0x20, Y4, Y0, Y8 \
	VPERM2F128 $0x20, Y5, Y1, Y9 \
	VPERM2F128 $0x20, Y6, Y2, Y10 \
	VPERM2F128 $0x20, Y7, Y3, Y11 \
	VPERM2F128 $0x31, Y4, Y0, Y12 \
	VPERM2F128 $0x31, Y5, Y1, Y13 \
	VPERM2F128 $0x31, Y6, Y2, Y14 \
	VPERM2F128 $0x31, Y7, Y3, Y15

// dwAVX2(a *dwArgs): see dwArgs (depthwise.go) for the field offsets and dwGo
// for the same computation in Go. Per tile: R8–R13, BX, AX point at the 8
// positions' packed inputs, SI walks the tap offsets, DI the packed weights,
// Y0–Y7 are the positions' accumulators (8 channels each), Y8 the tap's
// weights. The epilogue transposes Y0–Y7 ([position][channel]) into Y8–Y15
// ([channel][position]): each channel's 8 positions are one NCHW store.
// Frame: 256 bytes for a partial tile's spill, then the tile index.
TEXT ·dwAVX2(SB), NOSPLIT, $264-8
	MOVQ $0, 256(SP)

dwtile:
	MOVQ a+0(FP), AX
	MOVQ 256(SP), SI
	SHLQ $6, SI
	ADDQ 16(AX), SI // &inOff[t][0]
	MOVQ 0(AX), DX  // in
	MOVQ 0(SI), R8
	ADDQ DX, R8
	MOVQ 8(SI), R9
	ADDQ DX, R9
	MOVQ 16(SI), R10
	ADDQ DX, R10
	MOVQ 24(SI), R11
	ADDQ DX, R11
	MOVQ 32(SI), R12
	ADDQ DX, R12
	MOVQ 40(SI), R13
	ADDQ DX, R13
	MOVQ 48(SI), BX
	ADDQ DX, BX
	MOVQ 56(SI), SI
	ADDQ DX, SI
	MOVQ 40(AX), CX // ntap
	MOVQ 48(AX), DI // w
	MOVQ 32(AX), DX // offs
	MOVQ SI, AX     // position 7
	MOVQ DX, SI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

dwtap:
	MOVLQSX (SI), DX
	VMOVUPS (DI), Y8
	VFMADD231PS (R8)(DX*1), Y8, Y0
	VFMADD231PS (R9)(DX*1), Y8, Y1
	VFMADD231PS (R10)(DX*1), Y8, Y2
	VFMADD231PS (R11)(DX*1), Y8, Y3
	VFMADD231PS (R12)(DX*1), Y8, Y4
	VFMADD231PS (R13)(DX*1), Y8, Y5
	VFMADD231PS (BX)(DX*1), Y8, Y6
	VFMADD231PS (AX)(DX*1), Y8, Y7
	ADDQ $4, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  dwtap

	MOVQ a+0(FP), AX
	MOVQ 56(AX), DX // bias
	VMOVUPS (DX), Y8
	VADDPS Y8, Y0, Y0
	VADDPS Y8, Y1, Y1
	VADDPS Y8, Y2, Y2
	VADDPS Y8, Y3, Y3
	VADDPS Y8, Y4, Y4
	VADDPS Y8, Y5, Y5
	VADDPS Y8, Y6, Y6
	VADDPS Y8, Y7, Y7
	MOVQ 80(AX), DX // flags
	TESTQ $3, DX
	JZ    dwtrans
	VXORPS Y8, Y8, Y8
	VMAXPS Y0, Y8, Y0
	VMAXPS Y1, Y8, Y1
	VMAXPS Y2, Y8, Y2
	VMAXPS Y3, Y8, Y3
	VMAXPS Y4, Y8, Y4
	VMAXPS Y5, Y8, Y5
	VMAXPS Y6, Y8, Y6
	VMAXPS Y7, Y8, Y7
	TESTQ $2, DX
	JZ    dwtrans
	MOVL $0x40c00000, CX // 6.0
	VMOVD CX, X8
	VBROADCASTSS X8, Y8
	VMINPS Y0, Y8, Y0
	VMINPS Y1, Y8, Y1
	VMINPS Y2, Y8, Y2
	VMINPS Y3, Y8, Y3
	VMINPS Y4, Y8, Y4
	VMINPS Y5, Y8, Y5
	VMINPS Y6, Y8, Y6
	VMINPS Y7, Y8, Y7

dwtrans:
	TRANSPOSE8

	MOVQ 256(SP), R8
	MOVQ R8, DI
	SHLQ $5, DI
	ADDQ 8(AX), DI  // out + 32t
	MOVQ 64(AX), DX // cs
	MOVQ 72(AX), CX // nch
	MOVQ $8, R9     // positions stored
	INCQ R8
	CMPQ R8, 24(AX)
	JLT  dwfull
	MOVQ 88(AX), R9 // the last tile: npos

dwfull:
	CMPQ R9, $8
	JNE  dwpartial
	CMPQ CX, $8
	JNE  dwpartial
	VMOVUPS Y8, (DI)
	ADDQ DX, DI
	VMOVUPS Y9, (DI)
	ADDQ DX, DI
	VMOVUPS Y10, (DI)
	ADDQ DX, DI
	VMOVUPS Y11, (DI)
	ADDQ DX, DI
	VMOVUPS Y12, (DI)
	ADDQ DX, DI
	VMOVUPS Y13, (DI)
	ADDQ DX, DI
	VMOVUPS Y14, (DI)
	ADDQ DX, DI
	VMOVUPS Y15, (DI)
	JMP  dwnext

dwpartial:
	VMOVUPS Y8, 0(SP)
	VMOVUPS Y9, 32(SP)
	VMOVUPS Y10, 64(SP)
	VMOVUPS Y11, 96(SP)
	VMOVUPS Y12, 128(SP)
	VMOVUPS Y13, 160(SP)
	VMOVUPS Y14, 192(SP)
	VMOVUPS Y15, 224(SP)
	LEAQ 0(SP), SI

dwch:
	XORQ R10, R10

dwpos:
	MOVL (SI)(R10*4), R11
	MOVL R11, (DI)(R10*4)
	INCQ R10
	CMPQ R10, R9
	JLT  dwpos
	ADDQ $32, SI
	ADDQ DX, DI
	DECQ CX
	JNZ  dwch

dwnext:
	INCQ 256(SP)
	MOVQ 256(SP), R8
	CMPQ R8, 24(AX)
	JLT  dwtile
	VZEROUPPER
	RET

// pack8AVX2(dst, src *float32, stride, n int): for i < n, the 8 floats at
// src + 32i + r·stride (bytes; r < 8, one row of 8 channel planes) go to
// dst[64i + 8x + r]: 8 positions × 8 channels per transpose, the
// [..][8]-blocked layout of Conv and Depthwise.
TEXT ·pack8AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ stride+16(FP), DX
	MOVQ n+24(FP), CX
	TESTQ CX, CX
	JLE   packdone
	LEAQ (DX)(DX*2), BX // 3·stride
	LEAQ (SI)(DX*4), R8 // channel 4's row

packloop:
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(DX*1), Y1
	VMOVUPS (SI)(DX*2), Y2
	VMOVUPS (SI)(BX*1), Y3
	VMOVUPS (R8), Y4
	VMOVUPS (R8)(DX*1), Y5
	VMOVUPS (R8)(DX*2), Y6
	VMOVUPS (R8)(BX*1), Y7
	TRANSPOSE8
	VMOVUPS Y8, 0(DI)
	VMOVUPS Y9, 32(DI)
	VMOVUPS Y10, 64(DI)
	VMOVUPS Y11, 96(DI)
	VMOVUPS Y12, 128(DI)
	VMOVUPS Y13, 160(DI)
	VMOVUPS Y14, 192(DI)
	VMOVUPS Y15, 224(DI)
	ADDQ $32, SI
	ADDQ $32, R8
	ADDQ $256, DI
	DECQ CX
	JNZ  packloop

packdone:
	VZEROUPPER
	RET
