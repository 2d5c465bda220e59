//go:build amd64 && !purego

#include "textflag.h"

// AVX2+FMA row primitives; see exp.go for the math and exp_generic.go for
// the scalar reference. Tails (len % 8) use one masked load/store.
// distill/kernel_amd64.s inlines the same exponential (EXPCORE and its
// constants) in its fused KD kernel: change both together.

// EXPZ computes Z = 2^Z lane-wise (Z = (x − m)·scale·log2 e; see exp.go).
// Rounding trick: T1 = u + M with M = 1.5·2^23 + 127 leaves n + 127 in the low
// mantissa bits of T1 (n = round(u)), so T1 − M is n as a float and T1 << 23 is
// the bit pattern of 2^n (0 for n = −127: u ≤ −126.5 flushes to 0).
// Clobbers T1 and T2.
#define EXPZ(Z, T1, T2) \
	VMAXPS ·vexp2Lo<>(SB), Z, Z \
	VMINPS ·vexp2Hi<>(SB), Z, Z \
	EXPCORE(Z, T1, T2)

#define EXPCORE(Z, T1, T2) \
	VADDPS ·vmagic<>(SB), Z, T1 \
	VSUBPS ·vmagic<>(SB), T1, T2 \
	VSUBPS T2, Z, Z \
	VMOVUPS ·vexpC5<>(SB), T2 \
	VFMADD213PS ·vexpC4<>(SB), Z, T2 \
	VFMADD213PS ·vexpC3<>(SB), Z, T2 \
	VFMADD213PS ·vexpC2<>(SB), Z, T2 \
	VFMADD213PS ·vexpC1<>(SB), Z, T2 \
	VFMADD213PS ·vone<>(SB), Z, T2 \
	VPSLLD $23, T1, T1 \
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

// func dotShiftAVX2(e, x []float32, m float32) float64
// Σ e[i]·(x[i] − m) in float64 over len(x) (a multiple of 8; the caller checks
// lengths and adds the tail): 4 floats at a time widened to doubles, two
// accumulators.
TEXT ·dotShiftAVX2(SB), NOSPLIT, $0-64
	MOVQ e_base+0(FP), DI
	MOVQ x_base+24(FP), SI
	MOVQ x_len+32(FP), BX
	VBROADCASTSS m+48(FP), X0
	VCVTPS2PD X0, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	SHRQ $3, BX
	JZ   dsdone
dsloop:
	VCVTPS2PD (SI), Y4
	VCVTPS2PD 16(SI), Y5
	VCVTPS2PD (DI), Y6
	VCVTPS2PD 16(DI), Y7
	VSUBPD Y1, Y4, Y4
	VSUBPD Y1, Y5, Y5
	VFMADD231PD Y6, Y4, Y2
	VFMADD231PD Y7, Y5, Y3
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ BX
	JNZ  dsloop
dsdone:
	VADDPD Y3, Y2, Y2
	VEXTRACTF128 $1, Y2, X3
	VADDPD X3, X2, X2
	VUNPCKHPD X2, X2, X3
	VADDSD X3, X2, X2
	VMOVSD X2, ret+56(FP)
	VZEROUPPER
	RET

DATA ·vexp2Lo<>+0(SB)/4, $0xc2fe0000
DATA ·vexp2Lo<>+4(SB)/4, $0xc2fe0000
DATA ·vexp2Lo<>+8(SB)/4, $0xc2fe0000
DATA ·vexp2Lo<>+12(SB)/4, $0xc2fe0000
DATA ·vexp2Lo<>+16(SB)/4, $0xc2fe0000
DATA ·vexp2Lo<>+20(SB)/4, $0xc2fe0000
DATA ·vexp2Lo<>+24(SB)/4, $0xc2fe0000
DATA ·vexp2Lo<>+28(SB)/4, $0xc2fe0000
GLOBL ·vexp2Lo<>(SB), RODATA|NOPTR, $32
DATA ·vexp2Hi<>+0(SB)/4, $0x42fe0000
DATA ·vexp2Hi<>+4(SB)/4, $0x42fe0000
DATA ·vexp2Hi<>+8(SB)/4, $0x42fe0000
DATA ·vexp2Hi<>+12(SB)/4, $0x42fe0000
DATA ·vexp2Hi<>+16(SB)/4, $0x42fe0000
DATA ·vexp2Hi<>+20(SB)/4, $0x42fe0000
DATA ·vexp2Hi<>+24(SB)/4, $0x42fe0000
DATA ·vexp2Hi<>+28(SB)/4, $0x42fe0000
GLOBL ·vexp2Hi<>(SB), RODATA|NOPTR, $32
DATA ·vmagic<>+0(SB)/4, $0x4b40007f
DATA ·vmagic<>+4(SB)/4, $0x4b40007f
DATA ·vmagic<>+8(SB)/4, $0x4b40007f
DATA ·vmagic<>+12(SB)/4, $0x4b40007f
DATA ·vmagic<>+16(SB)/4, $0x4b40007f
DATA ·vmagic<>+20(SB)/4, $0x4b40007f
DATA ·vmagic<>+24(SB)/4, $0x4b40007f
DATA ·vmagic<>+28(SB)/4, $0x4b40007f
GLOBL ·vmagic<>(SB), RODATA|NOPTR, $32
DATA ·vone<>+0(SB)/4, $0x3f800000
DATA ·vone<>+4(SB)/4, $0x3f800000
DATA ·vone<>+8(SB)/4, $0x3f800000
DATA ·vone<>+12(SB)/4, $0x3f800000
DATA ·vone<>+16(SB)/4, $0x3f800000
DATA ·vone<>+20(SB)/4, $0x3f800000
DATA ·vone<>+24(SB)/4, $0x3f800000
DATA ·vone<>+28(SB)/4, $0x3f800000
GLOBL ·vone<>(SB), RODATA|NOPTR, $32
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
DATA ·vexpC1<>+0(SB)/4, $0x3f317215
DATA ·vexpC1<>+4(SB)/4, $0x3f317215
DATA ·vexpC1<>+8(SB)/4, $0x3f317215
DATA ·vexpC1<>+12(SB)/4, $0x3f317215
DATA ·vexpC1<>+16(SB)/4, $0x3f317215
DATA ·vexpC1<>+20(SB)/4, $0x3f317215
DATA ·vexpC1<>+24(SB)/4, $0x3f317215
DATA ·vexpC1<>+28(SB)/4, $0x3f317215
GLOBL ·vexpC1<>(SB), RODATA|NOPTR, $32
DATA ·vexpC2<>+0(SB)/4, $0x3e75fcde
DATA ·vexpC2<>+4(SB)/4, $0x3e75fcde
DATA ·vexpC2<>+8(SB)/4, $0x3e75fcde
DATA ·vexpC2<>+12(SB)/4, $0x3e75fcde
DATA ·vexpC2<>+16(SB)/4, $0x3e75fcde
DATA ·vexpC2<>+20(SB)/4, $0x3e75fcde
DATA ·vexpC2<>+24(SB)/4, $0x3e75fcde
DATA ·vexpC2<>+28(SB)/4, $0x3e75fcde
GLOBL ·vexpC2<>(SB), RODATA|NOPTR, $32
DATA ·vexpC3<>+0(SB)/4, $0x3d635baf
DATA ·vexpC3<>+4(SB)/4, $0x3d635baf
DATA ·vexpC3<>+8(SB)/4, $0x3d635baf
DATA ·vexpC3<>+12(SB)/4, $0x3d635baf
DATA ·vexpC3<>+16(SB)/4, $0x3d635baf
DATA ·vexpC3<>+20(SB)/4, $0x3d635baf
DATA ·vexpC3<>+24(SB)/4, $0x3d635baf
DATA ·vexpC3<>+28(SB)/4, $0x3d635baf
GLOBL ·vexpC3<>(SB), RODATA|NOPTR, $32
DATA ·vexpC4<>+0(SB)/4, $0x3c1e7543
DATA ·vexpC4<>+4(SB)/4, $0x3c1e7543
DATA ·vexpC4<>+8(SB)/4, $0x3c1e7543
DATA ·vexpC4<>+12(SB)/4, $0x3c1e7543
DATA ·vexpC4<>+16(SB)/4, $0x3c1e7543
DATA ·vexpC4<>+20(SB)/4, $0x3c1e7543
DATA ·vexpC4<>+24(SB)/4, $0x3c1e7543
DATA ·vexpC4<>+28(SB)/4, $0x3c1e7543
GLOBL ·vexpC4<>(SB), RODATA|NOPTR, $32
DATA ·vexpC5<>+0(SB)/4, $0x3aaddb1b
DATA ·vexpC5<>+4(SB)/4, $0x3aaddb1b
DATA ·vexpC5<>+8(SB)/4, $0x3aaddb1b
DATA ·vexpC5<>+12(SB)/4, $0x3aaddb1b
DATA ·vexpC5<>+16(SB)/4, $0x3aaddb1b
DATA ·vexpC5<>+20(SB)/4, $0x3aaddb1b
DATA ·vexpC5<>+24(SB)/4, $0x3aaddb1b
DATA ·vexpC5<>+28(SB)/4, $0x3aaddb1b
GLOBL ·vexpC5<>(SB), RODATA|NOPTR, $32
