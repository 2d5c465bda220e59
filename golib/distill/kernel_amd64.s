//go:build amd64 && !purego

#include "textflag.h"

// AVX2+FMA row kernels; see kernel.go for the math and kernel_generic.go for
// the scalar reference. Tails (len % 8) use one masked load/store.

// EXPZ computes Z = exp(Z) lane-wise (Cephes expf, see kernel.go).
// Clobbers T1, T2.
#define EXPZ(Z, T1, T2) \
	VMAXPS ·vexpLo<>(SB), Z, Z \
	VMINPS ·vexpHi<>(SB), Z, Z \
	VMULPS ·vexpLog2e<>(SB), Z, T1 \
	VROUNDPS $0, T1, T1 \
	VFNMADD231PS ·vexpC1<>(SB), T1, Z \
	VFNMADD231PS ·vexpC2<>(SB), T1, Z \
	VMOVUPS ·vexpP0<>(SB), T2 \
	VFMADD213PS ·vexpP1<>(SB), Z, T2 \
	VFMADD213PS ·vexpP2<>(SB), Z, T2 \
	VFMADD213PS ·vexpP3<>(SB), Z, T2 \
	VFMADD213PS ·vexpP4<>(SB), Z, T2 \
	VFMADD213PS ·vexpP5<>(SB), Z, T2 \
	VCVTPS2DQ T1, T1 \
	VPADDD ·vbias<>(SB), T1, T1 \
	VPSLLD $23, T1, T1 \
	VMULPS Z, Z, Y15 \
	VFMADD213PS Z, Y15, T2 \
	VADDPS ·vone<>(SB), T2, T2 \
	VMULPS T1, T2, Z

// TAILMASK sets M to the mask of the first CX lanes (0 < CX < 8).
#define TAILMASK(M, XM) \
	MOVL CX, AX \
	VMOVD AX, XM \
	VPBROADCASTD XM, M \
	VPCMPGTD ·viota<>(SB), M, M

// HSUM reduces the 8 lanes of Y (with low half X) into X[0]; clobbers X14.
#define HSUM(Y, X) \
	VEXTRACTF128 $1, Y, X14 \
	VADDPS X14, X, X \
	VHADDPS X, X, X \
	VHADDPS X, X, X

// func maxCheckAVX2(x []float32) (m, bad float32)
TEXT ·maxCheckAVX2(SB), NOSPLIT, $0-32
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	VMOVUPS ·vneginf<>(SB), Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	MOVQ CX, BX
	SHRQ $3, BX
	JZ   maxtail
maxloop:
	VMOVUPS (SI), Y3
	VMAXPS Y3, Y0, Y0
	VMULPS Y2, Y3, Y4
	VADDPS Y4, Y1, Y1
	ADDQ $32, SI
	DECQ BX
	JNZ  maxloop
maxtail:
	ANDQ $7, CX
	JZ   maxdone
	TAILMASK(Y5, X5)
	VMASKMOVPS (SI), Y5, Y3
	VMULPS Y2, Y3, Y4
	VADDPS Y4, Y1, Y1
	VMOVUPS ·vneginf<>(SB), Y6
	VBLENDVPS Y5, Y3, Y6, Y3
	VMAXPS Y3, Y0, Y0
maxdone:
	VEXTRACTF128 $1, Y0, X3
	VMAXPS X3, X0, X0
	VMOVHLPS X0, X0, X3
	VMAXPS X3, X0, X0
	VMOVSHDUP X0, X3
	VMAXPS X3, X0, X0
	HSUM(Y1, X1)
	VMOVSS X0, m+24(FP)
	VMOVSS X1, bad+28(FP)
	VZEROUPPER
	RET

// func expSumAVX2(dst, x []float32, m, scale float32) float32
TEXT ·expSumAVX2(SB), NOSPLIT, $0-60
	MOVQ dst_base+0(FP), DI
	MOVQ x_base+24(FP), SI
	MOVQ x_len+32(FP), CX
	VBROADCASTSS m+48(FP), Y1
	VBROADCASTSS scale+52(FP), Y2
	VXORPS Y6, Y6, Y6
	MOVQ CX, BX
	SHRQ $3, BX
	JZ   estail
esloop:
	VMOVUPS (SI), Y0
	VSUBPS Y1, Y0, Y0
	VMULPS Y2, Y0, Y0
	EXPZ(Y0, Y3, Y4)
	VMOVUPS Y0, (DI)
	VADDPS Y0, Y6, Y6
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ BX
	JNZ  esloop
estail:
	ANDQ $7, CX
	JZ   esdone
	TAILMASK(Y7, X7)
	VMASKMOVPS (SI), Y7, Y0
	VSUBPS Y1, Y0, Y0
	VMULPS Y2, Y0, Y0
	EXPZ(Y0, Y3, Y4)
	VANDPS Y7, Y0, Y0
	VMASKMOVPS Y0, Y7, (DI)
	VADDPS Y0, Y6, Y6
esdone:
	HSUM(Y6, X6)
	VMOVSS X6, ret+56(FP)
	VZEROUPPER
	RET

// func expSumDotAVX2(dst, x, y []float32, m, scale float32) (sum, dot float32)
TEXT ·expSumDotAVX2(SB), NOSPLIT, $0-88
	MOVQ dst_base+0(FP), DI
	MOVQ x_base+24(FP), SI
	MOVQ x_len+32(FP), CX
	MOVQ y_base+48(FP), DX
	VBROADCASTSS m+72(FP), Y1
	VBROADCASTSS scale+76(FP), Y2
	VXORPS Y6, Y6, Y6
	VXORPS Y8, Y8, Y8
	MOVQ CX, BX
	SHRQ $3, BX
	JZ   edtail
edloop:
	VMOVUPS (SI), Y0
	VSUBPS (DX), Y0, Y9
	VSUBPS Y1, Y0, Y0
	VMULPS Y2, Y0, Y0
	EXPZ(Y0, Y3, Y4)
	VMOVUPS Y0, (DI)
	VADDPS Y0, Y6, Y6
	VFMADD231PS Y9, Y0, Y8
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, DX
	DECQ BX
	JNZ  edloop
edtail:
	ANDQ $7, CX
	JZ   eddone
	TAILMASK(Y7, X7)
	VMASKMOVPS (SI), Y7, Y0
	VMASKMOVPS (DX), Y7, Y9
	VSUBPS Y9, Y0, Y9
	VSUBPS Y1, Y0, Y0
	VMULPS Y2, Y0, Y0
	EXPZ(Y0, Y3, Y4)
	VANDPS Y7, Y0, Y0
	VMASKMOVPS Y0, Y7, (DI)
	VADDPS Y0, Y6, Y6
	VFMADD231PS Y9, Y0, Y8
eddone:
	HSUM(Y6, X6)
	HSUM(Y8, X8)
	VMOVSS X6, sum+80(FP)
	VMOVSS X8, dot+84(FP)
	VZEROUPPER
	RET

// func axpbyAVX2(dst, e []float32, a, b float32)
TEXT ·axpbyAVX2(SB), NOSPLIT, $0-56
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ e_base+24(FP), SI
	VBROADCASTSS a+48(FP), Y1
	VBROADCASTSS b+52(FP), Y2
	MOVQ CX, BX
	SHRQ $3, BX
	JZ   abtail
abloop:
	VMULPS (DI), Y1, Y0
	VFNMADD231PS (SI), Y2, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ BX
	JNZ  abloop
abtail:
	ANDQ $7, CX
	JZ   abdone
	TAILMASK(Y7, X7)
	VMASKMOVPS (DI), Y7, Y0
	VMASKMOVPS (SI), Y7, Y3
	VMULPS Y0, Y1, Y0
	VFNMADD231PS Y3, Y2, Y0
	VMASKMOVPS Y0, Y7, (DI)
abdone:
	VZEROUPPER
	RET

// func scaleAVX2(dst []float32, a float32)
TEXT ·scaleAVX2(SB), NOSPLIT, $0-28
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	VBROADCASTSS a+24(FP), Y1
	MOVQ CX, BX
	SHRQ $3, BX
	JZ   sctail
scloop:
	VMULPS (DI), Y1, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	DECQ BX
	JNZ  scloop
sctail:
	ANDQ $7, CX
	JZ   scdone
	TAILMASK(Y7, X7)
	VMASKMOVPS (DI), Y7, Y0
	VMULPS Y0, Y1, Y0
	VMASKMOVPS Y0, Y7, (DI)
scdone:
	VZEROUPPER
	RET

DATA ·vexpLo<>+0(SB)/4, $0xc2b00000
DATA ·vexpLo<>+4(SB)/4, $0xc2b00000
DATA ·vexpLo<>+8(SB)/4, $0xc2b00000
DATA ·vexpLo<>+12(SB)/4, $0xc2b00000
DATA ·vexpLo<>+16(SB)/4, $0xc2b00000
DATA ·vexpLo<>+20(SB)/4, $0xc2b00000
DATA ·vexpLo<>+24(SB)/4, $0xc2b00000
DATA ·vexpLo<>+28(SB)/4, $0xc2b00000
GLOBL ·vexpLo<>(SB), RODATA|NOPTR, $32
DATA ·vexpHi<>+0(SB)/4, $0x42b00000
DATA ·vexpHi<>+4(SB)/4, $0x42b00000
DATA ·vexpHi<>+8(SB)/4, $0x42b00000
DATA ·vexpHi<>+12(SB)/4, $0x42b00000
DATA ·vexpHi<>+16(SB)/4, $0x42b00000
DATA ·vexpHi<>+20(SB)/4, $0x42b00000
DATA ·vexpHi<>+24(SB)/4, $0x42b00000
DATA ·vexpHi<>+28(SB)/4, $0x42b00000
GLOBL ·vexpHi<>(SB), RODATA|NOPTR, $32
DATA ·vexpLog2e<>+0(SB)/4, $0x3fb8aa3b
DATA ·vexpLog2e<>+4(SB)/4, $0x3fb8aa3b
DATA ·vexpLog2e<>+8(SB)/4, $0x3fb8aa3b
DATA ·vexpLog2e<>+12(SB)/4, $0x3fb8aa3b
DATA ·vexpLog2e<>+16(SB)/4, $0x3fb8aa3b
DATA ·vexpLog2e<>+20(SB)/4, $0x3fb8aa3b
DATA ·vexpLog2e<>+24(SB)/4, $0x3fb8aa3b
DATA ·vexpLog2e<>+28(SB)/4, $0x3fb8aa3b
GLOBL ·vexpLog2e<>(SB), RODATA|NOPTR, $32
DATA ·vexpC1<>+0(SB)/4, $0x3f318000
DATA ·vexpC1<>+4(SB)/4, $0x3f318000
DATA ·vexpC1<>+8(SB)/4, $0x3f318000
DATA ·vexpC1<>+12(SB)/4, $0x3f318000
DATA ·vexpC1<>+16(SB)/4, $0x3f318000
DATA ·vexpC1<>+20(SB)/4, $0x3f318000
DATA ·vexpC1<>+24(SB)/4, $0x3f318000
DATA ·vexpC1<>+28(SB)/4, $0x3f318000
GLOBL ·vexpC1<>(SB), RODATA|NOPTR, $32
DATA ·vexpC2<>+0(SB)/4, $0xb95e8083
DATA ·vexpC2<>+4(SB)/4, $0xb95e8083
DATA ·vexpC2<>+8(SB)/4, $0xb95e8083
DATA ·vexpC2<>+12(SB)/4, $0xb95e8083
DATA ·vexpC2<>+16(SB)/4, $0xb95e8083
DATA ·vexpC2<>+20(SB)/4, $0xb95e8083
DATA ·vexpC2<>+24(SB)/4, $0xb95e8083
DATA ·vexpC2<>+28(SB)/4, $0xb95e8083
GLOBL ·vexpC2<>(SB), RODATA|NOPTR, $32
DATA ·vexpP0<>+0(SB)/4, $0x39506967
DATA ·vexpP0<>+4(SB)/4, $0x39506967
DATA ·vexpP0<>+8(SB)/4, $0x39506967
DATA ·vexpP0<>+12(SB)/4, $0x39506967
DATA ·vexpP0<>+16(SB)/4, $0x39506967
DATA ·vexpP0<>+20(SB)/4, $0x39506967
DATA ·vexpP0<>+24(SB)/4, $0x39506967
DATA ·vexpP0<>+28(SB)/4, $0x39506967
GLOBL ·vexpP0<>(SB), RODATA|NOPTR, $32
DATA ·vexpP1<>+0(SB)/4, $0x3ab743ce
DATA ·vexpP1<>+4(SB)/4, $0x3ab743ce
DATA ·vexpP1<>+8(SB)/4, $0x3ab743ce
DATA ·vexpP1<>+12(SB)/4, $0x3ab743ce
DATA ·vexpP1<>+16(SB)/4, $0x3ab743ce
DATA ·vexpP1<>+20(SB)/4, $0x3ab743ce
DATA ·vexpP1<>+24(SB)/4, $0x3ab743ce
DATA ·vexpP1<>+28(SB)/4, $0x3ab743ce
GLOBL ·vexpP1<>(SB), RODATA|NOPTR, $32
DATA ·vexpP2<>+0(SB)/4, $0x3c088908
DATA ·vexpP2<>+4(SB)/4, $0x3c088908
DATA ·vexpP2<>+8(SB)/4, $0x3c088908
DATA ·vexpP2<>+12(SB)/4, $0x3c088908
DATA ·vexpP2<>+16(SB)/4, $0x3c088908
DATA ·vexpP2<>+20(SB)/4, $0x3c088908
DATA ·vexpP2<>+24(SB)/4, $0x3c088908
DATA ·vexpP2<>+28(SB)/4, $0x3c088908
GLOBL ·vexpP2<>(SB), RODATA|NOPTR, $32
DATA ·vexpP3<>+0(SB)/4, $0x3d2aa9c1
DATA ·vexpP3<>+4(SB)/4, $0x3d2aa9c1
DATA ·vexpP3<>+8(SB)/4, $0x3d2aa9c1
DATA ·vexpP3<>+12(SB)/4, $0x3d2aa9c1
DATA ·vexpP3<>+16(SB)/4, $0x3d2aa9c1
DATA ·vexpP3<>+20(SB)/4, $0x3d2aa9c1
DATA ·vexpP3<>+24(SB)/4, $0x3d2aa9c1
DATA ·vexpP3<>+28(SB)/4, $0x3d2aa9c1
GLOBL ·vexpP3<>(SB), RODATA|NOPTR, $32
DATA ·vexpP4<>+0(SB)/4, $0x3e2aaaaa
DATA ·vexpP4<>+4(SB)/4, $0x3e2aaaaa
DATA ·vexpP4<>+8(SB)/4, $0x3e2aaaaa
DATA ·vexpP4<>+12(SB)/4, $0x3e2aaaaa
DATA ·vexpP4<>+16(SB)/4, $0x3e2aaaaa
DATA ·vexpP4<>+20(SB)/4, $0x3e2aaaaa
DATA ·vexpP4<>+24(SB)/4, $0x3e2aaaaa
DATA ·vexpP4<>+28(SB)/4, $0x3e2aaaaa
GLOBL ·vexpP4<>(SB), RODATA|NOPTR, $32
DATA ·vexpP5<>+0(SB)/4, $0x3f000000
DATA ·vexpP5<>+4(SB)/4, $0x3f000000
DATA ·vexpP5<>+8(SB)/4, $0x3f000000
DATA ·vexpP5<>+12(SB)/4, $0x3f000000
DATA ·vexpP5<>+16(SB)/4, $0x3f000000
DATA ·vexpP5<>+20(SB)/4, $0x3f000000
DATA ·vexpP5<>+24(SB)/4, $0x3f000000
DATA ·vexpP5<>+28(SB)/4, $0x3f000000
GLOBL ·vexpP5<>(SB), RODATA|NOPTR, $32
DATA ·vone<>+0(SB)/4, $0x3f800000
DATA ·vone<>+4(SB)/4, $0x3f800000
DATA ·vone<>+8(SB)/4, $0x3f800000
DATA ·vone<>+12(SB)/4, $0x3f800000
DATA ·vone<>+16(SB)/4, $0x3f800000
DATA ·vone<>+20(SB)/4, $0x3f800000
DATA ·vone<>+24(SB)/4, $0x3f800000
DATA ·vone<>+28(SB)/4, $0x3f800000
GLOBL ·vone<>(SB), RODATA|NOPTR, $32
DATA ·vbias<>+0(SB)/4, $0x0000007f
DATA ·vbias<>+4(SB)/4, $0x0000007f
DATA ·vbias<>+8(SB)/4, $0x0000007f
DATA ·vbias<>+12(SB)/4, $0x0000007f
DATA ·vbias<>+16(SB)/4, $0x0000007f
DATA ·vbias<>+20(SB)/4, $0x0000007f
DATA ·vbias<>+24(SB)/4, $0x0000007f
DATA ·vbias<>+28(SB)/4, $0x0000007f
GLOBL ·vbias<>(SB), RODATA|NOPTR, $32
DATA ·viota<>+0(SB)/4, $0x00000000
DATA ·viota<>+4(SB)/4, $0x00000001
DATA ·viota<>+8(SB)/4, $0x00000002
DATA ·viota<>+12(SB)/4, $0x00000003
DATA ·viota<>+16(SB)/4, $0x00000004
DATA ·viota<>+20(SB)/4, $0x00000005
DATA ·viota<>+24(SB)/4, $0x00000006
DATA ·viota<>+28(SB)/4, $0x00000007
GLOBL ·viota<>(SB), RODATA|NOPTR, $32
DATA ·vneginf<>+0(SB)/4, $0xff800000
DATA ·vneginf<>+4(SB)/4, $0xff800000
DATA ·vneginf<>+8(SB)/4, $0xff800000
DATA ·vneginf<>+12(SB)/4, $0xff800000
DATA ·vneginf<>+16(SB)/4, $0xff800000
DATA ·vneginf<>+20(SB)/4, $0xff800000
DATA ·vneginf<>+24(SB)/4, $0xff800000
DATA ·vneginf<>+28(SB)/4, $0xff800000
GLOBL ·vneginf<>(SB), RODATA|NOPTR, $32
