//go:build amd64 && !purego

#include "textflag.h"

// tileAVX2(a *tileArgs): see tileArgs (kernel.go) for the field offsets and
// tileGo for the same computation in Go. Registers: R8–R11 the 4 pixel input
// pointers, SI the step offsets, DI the packed weights, CX the step count,
// Y0–Y11 acc[p][b] = Y(3p+b), Y12–Y14 the step's weight vectors, Y15 the
// broadcast input. The 384-byte frame holds the tile for the scatter stores.

#define STEP3(SO, W0, W1, W2) \
	MOVLQSX SO(SI), DX \
	VMOVUPS W0(DI), Y12 \
	VMOVUPS W1(DI), Y13 \
	VMOVUPS W2(DI), Y14 \
	VBROADCASTSS (R8)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y0 \
	VFMADD231PS Y13, Y15, Y1 \
	VFMADD231PS Y14, Y15, Y2 \
	VBROADCASTSS (R9)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y3 \
	VFMADD231PS Y13, Y15, Y4 \
	VFMADD231PS Y14, Y15, Y5 \
	VBROADCASTSS (R10)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y6 \
	VFMADD231PS Y13, Y15, Y7 \
	VFMADD231PS Y14, Y15, Y8 \
	VBROADCASTSS (R11)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y9 \
	VFMADD231PS Y13, Y15, Y10 \
	VFMADD231PS Y14, Y15, Y11

#define STEP2 \
	MOVLQSX (SI), DX \
	VMOVUPS (DI), Y12 \
	VMOVUPS 32(DI), Y13 \
	VBROADCASTSS (R8)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y0 \
	VFMADD231PS Y13, Y15, Y1 \
	VBROADCASTSS (R9)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y3 \
	VFMADD231PS Y13, Y15, Y4 \
	VBROADCASTSS (R10)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y6 \
	VFMADD231PS Y13, Y15, Y7 \
	VBROADCASTSS (R11)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y9 \
	VFMADD231PS Y13, Y15, Y10

#define STEP1 \
	MOVLQSX (SI), DX \
	VMOVUPS (DI), Y12 \
	VBROADCASTSS (R8)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y0 \
	VBROADCASTSS (R9)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y3 \
	VBROADCASTSS (R10)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y6 \
	VBROADCASTSS (R11)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y9

// STEP3D/STEP2D: one step whose input offset is DX + D (the 8 channels of a
// block are contiguous, so one offset load serves 8 steps).
#define STEP3D(D, W0, W1, W2) \
	VMOVUPS W0(DI), Y12 \
	VMOVUPS W1(DI), Y13 \
	VMOVUPS W2(DI), Y14 \
	VBROADCASTSS D(R8)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y0 \
	VFMADD231PS Y13, Y15, Y1 \
	VFMADD231PS Y14, Y15, Y2 \
	VBROADCASTSS D(R9)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y3 \
	VFMADD231PS Y13, Y15, Y4 \
	VFMADD231PS Y14, Y15, Y5 \
	VBROADCASTSS D(R10)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y6 \
	VFMADD231PS Y13, Y15, Y7 \
	VFMADD231PS Y14, Y15, Y8 \
	VBROADCASTSS D(R11)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y9 \
	VFMADD231PS Y13, Y15, Y10 \
	VFMADD231PS Y14, Y15, Y11

#define STEP2D(D, W0, W1, W2) \
	VMOVUPS W0(DI), Y12 \
	VMOVUPS W1(DI), Y13 \
	VBROADCASTSS D(R8)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y0 \
	VFMADD231PS Y13, Y15, Y1 \
	VBROADCASTSS D(R9)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y3 \
	VFMADD231PS Y13, Y15, Y4 \
	VBROADCASTSS D(R10)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y6 \
	VFMADD231PS Y13, Y15, Y7 \
	VBROADCASTSS D(R11)(DX*1), Y15 \
	VFMADD231PS Y12, Y15, Y9 \
	VFMADD231PS Y13, Y15, Y10

// SCATTER8 stores the 8 lanes of Y (low half X) at DI, DI+DX, …, DI+7·DX and
// leaves DI past them (straight from the register: a 32-byte spill reloaded
// as 4-byte words would stall on store forwarding). Each channel plane is its
// own output stream, more than the hardware prefetcher tracks, so each store
// prefetches the line two ahead in its plane (measured: conv1 of the small CNN
// at batch 256 went from 43 to 26 µs per sample). Clobbers X15.
#define SCATTER8(Y, X) \
	PREFETCHT0 128(DI) \
	VMOVSS X, (DI) \
	ADDQ DX, DI \
	PREFETCHT0 128(DI) \
	VEXTRACTPS $1, X, (DI) \
	ADDQ DX, DI \
	PREFETCHT0 128(DI) \
	VEXTRACTPS $2, X, (DI) \
	ADDQ DX, DI \
	PREFETCHT0 128(DI) \
	VEXTRACTPS $3, X, (DI) \
	ADDQ DX, DI \
	VEXTRACTF128 $1, Y, X15 \
	PREFETCHT0 128(DI) \
	VMOVSS X15, (DI) \
	ADDQ DX, DI \
	PREFETCHT0 128(DI) \
	VEXTRACTPS $1, X15, (DI) \
	ADDQ DX, DI \
	PREFETCHT0 128(DI) \
	VEXTRACTPS $2, X15, (DI) \
	ADDQ DX, DI \
	PREFETCHT0 128(DI) \
	VEXTRACTPS $3, X15, (DI) \
	ADDQ DX, DI

// MAX4NAN sets A = max(A, B, C, D) lane-wise, NaN if any of the four is NaN
// (torch's max-pool): VMAXPS alone drops a NaN first operand, so the unordered
// mask is ORed in (all-ones bits are a NaN). Clobbers B, C, T.
#define MAX4NAN(A, B, C, D, T) \
	VCMPPS $3, B, A, T \
	VMAXPS B, A, A \
	VCMPPS $3, D, C, B \
	VMAXPS D, C, C \
	VORPS B, T, T \
	VMAXPS C, A, A \
	VORPS T, A, A

TEXT ·tileAVX2(SB), NOSPLIT, $400-8
	MOVQ $0, 384(SP) // tile index t

tileloop:
	MOVQ a+0(FP), AX
	MOVQ 384(SP), R12
	SHLQ $5, R12      // t·32: byte offset of tile t in inOff and outOff
	MOVQ 16(AX), R13
	ADDQ R12, R13
	MOVQ 0(AX), R8
	MOVQ R8, R9
	MOVQ R8, R10
	MOVQ R8, R11
	ADDQ 0(R13), R8
	ADDQ 8(R13), R9
	ADDQ 16(R13), R10
	ADDQ 24(R13), R11
	MOVQ 40(AX), SI
	MOVQ 48(AX), CX
	MOVQ 56(AX), DI
	MOVQ 72(AX), BX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	TESTQ CX, CX
	JLE   epilogue
	MOVQ 112(AX), DX
	TESTQ DX, DX
	JNZ   blocked8
	CMPQ BX, $3
	JEQ  pre3
	CMPQ BX, $2
	JEQ  loop2

loop1:
	STEP1
	ADDQ $4, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  loop1
	JMP  epilogue

loop2:
	STEP2
	ADDQ $4, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop2
	JMP  epilogue

pre3:
	// two steps per iteration, then the odd one
	MOVQ CX, DX
	SHRQ $1, CX
	JZ   odd3
	MOVQ DX, 392(SP)

loop3:
	STEP3(0, 0, 32, 64)
	STEP3(4, 96, 128, 160)
	ADDQ $8, SI
	ADDQ $192, DI
	DECQ CX
	JNZ  loop3
	MOVQ 392(SP), DX

odd3:
	TESTQ $1, DX
	JZ    epilogue
	STEP3(0, 0, 32, 64)

	JMP epilogue

blocked8:
	// k is a multiple of 8 and steps 8j..8j+7 read consecutive floats
	SHRQ $3, CX
	CMPQ BX, $3
	JEQ  loop3x8
	CMPQ BX, $2
	JEQ  loop2x8
	SHLQ $3, CX
	JMP  loop1

loop3x8:
	MOVLQSX (SI), DX
	STEP3D(0, 0, 32, 64)
	STEP3D(4, 96, 128, 160)
	STEP3D(8, 192, 224, 256)
	STEP3D(12, 288, 320, 352)
	STEP3D(16, 384, 416, 448)
	STEP3D(20, 480, 512, 544)
	STEP3D(24, 576, 608, 640)
	STEP3D(28, 672, 704, 736)
	ADDQ $32, SI
	ADDQ $768, DI
	DECQ CX
	JNZ  loop3x8
	JMP  epilogue

loop2x8:
	MOVLQSX (SI), DX
	STEP2D(0, 0, 32, 64)
	STEP2D(4, 64, 96, 128)
	STEP2D(8, 128, 160, 192)
	STEP2D(12, 192, 224, 256)
	STEP2D(16, 256, 288, 320)
	STEP2D(20, 320, 352, 384)
	STEP2D(24, 384, 416, 448)
	STEP2D(28, 448, 480, 512)
	ADDQ $32, SI
	ADDQ $512, DI
	DECQ CX
	JNZ  loop2x8

epilogue:
	MOVQ 104(AX), BX // flags
	MOVQ 80(AX), CX  // npix
	TESTQ $4, BX
	JZ    nopool
	MAX4NAN(Y0, Y3, Y6, Y9, Y12)
	MAX4NAN(Y1, Y4, Y7, Y10, Y12)
	MAX4NAN(Y2, Y5, Y8, Y11, Y12)
	MOVQ $1, CX

nopool:
	MOVQ 64(AX), DX // bias
	VMOVUPS (DX), Y12
	VMOVUPS 32(DX), Y13
	VMOVUPS 64(DX), Y14
	VADDPS Y12, Y0, Y0
	VADDPS Y13, Y1, Y1
	VADDPS Y14, Y2, Y2
	VADDPS Y12, Y3, Y3
	VADDPS Y13, Y4, Y4
	VADDPS Y14, Y5, Y5
	VADDPS Y12, Y6, Y6
	VADDPS Y13, Y7, Y7
	VADDPS Y14, Y8, Y8
	VADDPS Y12, Y9, Y9
	VADDPS Y13, Y10, Y10
	VADDPS Y14, Y11, Y11
	TESTQ $3, BX
	JZ    store
	VXORPS Y13, Y13, Y13
	VMAXPS Y0, Y13, Y0
	VMAXPS Y1, Y13, Y1
	VMAXPS Y2, Y13, Y2
	VMAXPS Y3, Y13, Y3
	VMAXPS Y4, Y13, Y4
	VMAXPS Y5, Y13, Y5
	VMAXPS Y6, Y13, Y6
	VMAXPS Y7, Y13, Y7
	VMAXPS Y8, Y13, Y8
	VMAXPS Y9, Y13, Y9
	VMAXPS Y10, Y13, Y10
	VMAXPS Y11, Y13, Y11
	TESTQ $2, BX
	JZ    store
	MOVL $0x40c00000, DX // 6.0
	VMOVD DX, X14
	VBROADCASTSS X14, Y14
	VMINPS Y0, Y14, Y0
	VMINPS Y1, Y14, Y1
	VMINPS Y2, Y14, Y2
	VMINPS Y3, Y14, Y3
	VMINPS Y4, Y14, Y4
	VMINPS Y5, Y14, Y5
	VMINPS Y6, Y14, Y6
	VMINPS Y7, Y14, Y7
	VMINPS Y8, Y14, Y8
	VMINPS Y9, Y14, Y9
	VMINPS Y10, Y14, Y10
	VMINPS Y11, Y14, Y11

store:
	MOVQ 88(AX), BX  // nch
	MOVQ 72(AX), R9  // nb
	MOVQ R9, R8
	SHLQ $3, R8
	CMPQ R8, BX
	JNE  spill       // a partial block: through the frame
	MOVQ 96(AX), DX  // cs
	MOVQ 8(AX), R10  // outBase
	MOVQ 24(AX), R13
	ADDQ R12, R13    // &outOff[t][0]
	CMPQ DX, $4
	JEQ  contig
	MOVQ 0(R13), DI
	ADDQ R10, DI
	SCATTER8(Y0, X0)
	CMPQ R9, $1
	JEQ  px0done
	SCATTER8(Y1, X1)
	CMPQ R9, $2
	JEQ  px0done
	SCATTER8(Y2, X2)

px0done:
	CMPQ CX, $1
	JEQ  nexttile
	MOVQ 8(R13), DI
	ADDQ R10, DI
	SCATTER8(Y3, X3)
	CMPQ R9, $1
	JEQ  px1done
	SCATTER8(Y4, X4)
	CMPQ R9, $2
	JEQ  px1done
	SCATTER8(Y5, X5)

px1done:
	CMPQ CX, $2
	JEQ  nexttile
	MOVQ 16(R13), DI
	ADDQ R10, DI
	SCATTER8(Y6, X6)
	CMPQ R9, $1
	JEQ  px2done
	SCATTER8(Y7, X7)
	CMPQ R9, $2
	JEQ  px2done
	SCATTER8(Y8, X8)

px2done:
	CMPQ CX, $3
	JEQ  nexttile
	MOVQ 24(R13), DI
	ADDQ R10, DI
	SCATTER8(Y9, X9)
	CMPQ R9, $1
	JEQ  px3done
	SCATTER8(Y10, X10)
	CMPQ R9, $2
	JEQ  px3done
	SCATTER8(Y11, X11)

px3done:
	JMP  nexttile

contig:
	// channels are contiguous (dense rows): one vector store per block
	MOVQ 0(R13), DI
	ADDQ R10, DI
	VMOVUPS Y0, 0(DI)
	CMPQ R9, $1
	JEQ  c0done
	VMOVUPS Y1, 32(DI)
	CMPQ R9, $2
	JEQ  c0done
	VMOVUPS Y2, 64(DI)

c0done:
	CMPQ CX, $1
	JEQ  nexttile
	MOVQ 8(R13), DI
	ADDQ R10, DI
	VMOVUPS Y3, 0(DI)
	CMPQ R9, $1
	JEQ  c1done
	VMOVUPS Y4, 32(DI)
	CMPQ R9, $2
	JEQ  c1done
	VMOVUPS Y5, 64(DI)

c1done:
	CMPQ CX, $2
	JEQ  nexttile
	MOVQ 16(R13), DI
	ADDQ R10, DI
	VMOVUPS Y6, 0(DI)
	CMPQ R9, $1
	JEQ  c2done
	VMOVUPS Y7, 32(DI)
	CMPQ R9, $2
	JEQ  c2done
	VMOVUPS Y8, 64(DI)

c2done:
	CMPQ CX, $3
	JEQ  nexttile
	MOVQ 24(R13), DI
	ADDQ R10, DI
	VMOVUPS Y9, 0(DI)
	CMPQ R9, $1
	JEQ  nexttile
	VMOVUPS Y10, 32(DI)
	CMPQ R9, $2
	JEQ  nexttile
	VMOVUPS Y11, 64(DI)
	JMP  nexttile

spill:
	VMOVUPS Y0, 0(SP)
	VMOVUPS Y1, 32(SP)
	VMOVUPS Y2, 64(SP)
	VMOVUPS Y3, 96(SP)
	VMOVUPS Y4, 128(SP)
	VMOVUPS Y5, 160(SP)
	VMOVUPS Y6, 192(SP)
	VMOVUPS Y7, 224(SP)
	VMOVUPS Y8, 256(SP)
	VMOVUPS Y9, 288(SP)
	VMOVUPS Y10, 320(SP)
	VMOVUPS Y11, 352(SP)
	MOVQ 88(AX), BX  // nch
	MOVQ 96(AX), DX  // cs
	MOVQ 8(AX), R10  // outBase
	MOVQ 24(AX), R13
	ADDQ R12, R13    // &outOff[t][0]
	LEAQ 0(SP), SI   // tile row of pixel p

pixloop:
	MOVQ (R13), DI
	ADDQ R10, DI
	XORQ R8, R8

chloop:
	MOVL (SI)(R8*4), R9
	MOVL R9, (DI)
	ADDQ DX, DI
	INCQ R8
	CMPQ R8, BX
	JLT  chloop
	ADDQ $96, SI
	ADDQ $8, R13
	DECQ CX
	JNZ  pixloop

nexttile:
	INCQ 384(SP)
	MOVQ 384(SP), R12
	CMPQ R12, 32(AX)
	JLT  tileloop
	VZEROUPPER
	RET

// fmaPeak(n) runs n rounds of 12 independent 8-wide FMAs (192 flops each):
// the machine's FMA ceiling, for the benchmarks' percent-of-peak.
TEXT ·fmaPeak(SB), NOSPLIT, $0-8
	MOVQ n+0(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13

peak:
	VFMADD231PS Y12, Y13, Y0
	VFMADD231PS Y12, Y13, Y1
	VFMADD231PS Y12, Y13, Y2
	VFMADD231PS Y12, Y13, Y3
	VFMADD231PS Y12, Y13, Y4
	VFMADD231PS Y12, Y13, Y5
	VFMADD231PS Y12, Y13, Y6
	VFMADD231PS Y12, Y13, Y7
	VFMADD231PS Y12, Y13, Y8
	VFMADD231PS Y12, Y13, Y9
	VFMADD231PS Y12, Y13, Y10
	VFMADD231PS Y12, Y13, Y11
	DECQ CX
	JNZ  peak
	VZEROUPPER
	RET
