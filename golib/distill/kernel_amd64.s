//go:build amd64 && !purego

#include "textflag.h"

// AVX2+FMA fused KD kernel (see kernels.kdRows in kernel.go, and
// kdRowsGeneric in kernel_generic.go for the scalar reference). Its exponential
// is vexp's (golib/internal/vexp: exp.go has the math and the error bound,
// exp_amd64.s the same EXPCORE and constants, inlined here; change both
// together, TestKDRowsExpMatchesVexp checks them bit for bit). Tails (cols % 8)
// use one masked load/store.

// EXPZN computes Z = 2^Z lane-wise for Z = (x − m)·scale·log2 e ≤ 0
// (max-subtracted inputs: no upper clamp). Rounding trick: T1 = u + M with
// M = 1.5·2^23 + 127 leaves n + 127 in the low mantissa bits of T1 (n = round(u)),
// so T1 − M is n as a float and T1 << 23 is the bit pattern of 2^n (0 for
// n = −127: u ≤ −126.5 flushes to 0). Clobbers T1 and T2.
#define EXPZN(Z, T1, T2) \
	VMAXPS ·vexp2Lo<>(SB), Z, Z \
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

// func kdRowsAVX2(g, et, s, t []float32, rows, cols, gstride int, scale, gscale float32, stats []float32)
// KD rows (see kernels.kdRows in kernel.go): `rows` consecutive rows of `cols`
// values; row r reads s and t at r·cols, writes its gradient (or exponentials) at
// g + r·gstride (gstride is cols, or 0 for a scratch row), uses et as scratch, and
// stores ms, mt, zs, zt, dot at stats[5r:5r+5]. Three passes per row: maxima;
// both exponentials with their sums and Σ et·(t−s); the gradient (if gscale != 0).
// A non-finite input makes that row's dot non-finite (the caller checks).
// The caller checks every length.
TEXT ·kdRowsAVX2(SB), NOSPLIT, $0-152
	MOVQ cols+104(FP), CX
	MOVQ CX, AX
	ANDQ $7, AX
	JZ   kmask
	MOVQ AX, CX
	TAILMASK(Y5, X5)
kmask:
	MOVQ g_base+0(FP), R12
	MOVQ s_base+48(FP), R13
	MOVQ t_base+72(FP), R9
	MOVQ stats_base+128(FP), R11
	XORQ R10, R10
krow:
	CMPQ R10, rows+96(FP)
	JGE  kend
	MOVQ cols+104(FP), CX
	// ---- pass 1: maxima
	MOVQ R13, SI
	MOVQ R9, DX
	VMOVUPS ·vneginf<>(SB), Y0
	VMOVUPS Y0, Y8
	XORQ AX, AX
	MOVQ CX, BX
	SHRQ $3, BX
	JZ   k1tail
k1loop:
	VMOVUPS (SI)(AX*1), Y3
	VMOVUPS (DX)(AX*1), Y9
	VMAXPS Y3, Y0, Y0
	VMAXPS Y9, Y8, Y8
	ADDQ $32, AX
	DECQ BX
	JNZ  k1loop
k1tail:
	MOVQ CX, BX
	ANDQ $7, BX
	JZ   k1done
	VMASKMOVPS (SI)(AX*1), Y5, Y3
	VMASKMOVPS (DX)(AX*1), Y5, Y9
	VMOVUPS ·vneginf<>(SB), Y6
	VBLENDVPS Y5, Y3, Y6, Y3
	VBLENDVPS Y5, Y9, Y6, Y9
	VMAXPS Y3, Y0, Y0
	VMAXPS Y9, Y8, Y8
k1done:
	VEXTRACTF128 $1, Y0, X3
	VMAXPS X3, X0, X0
	VMOVHLPS X0, X0, X3
	VMAXPS X3, X0, X0
	VMOVSHDUP X0, X3
	VMAXPS X3, X0, X0
	VEXTRACTF128 $1, Y8, X3
	VMAXPS X3, X8, X8
	VMOVHLPS X8, X8, X3
	VMAXPS X3, X8, X8
	VMOVSHDUP X8, X3
	VMAXPS X3, X8, X8
	VMOVSS X0, 0(R11)
	VMOVSS X8, 4(R11)
	// ---- pass 2: both exponentials, sums and the dot product
	VBROADCASTSS X0, Y1
	VBROADCASTSS X8, Y2
	VBROADCASTSS scale+120(FP), Y10
	MOVQ R12, DI
	MOVQ et_base+24(FP), R8
	MOVQ R13, SI
	MOVQ R9, DX
	VXORPS Y6, Y6, Y6
	VXORPS Y8, Y8, Y8
	VXORPS Y11, Y11, Y11
	XORQ AX, AX
	MOVQ CX, BX
	SHRQ $3, BX
	JZ   k2tail
k2loop:
	VMOVUPS (SI)(AX*1), Y0
	VMOVUPS (DX)(AX*1), Y7
	VSUBPS Y0, Y7, Y9
	VSUBPS Y1, Y0, Y0
	VSUBPS Y2, Y7, Y7
	VMULPS Y10, Y0, Y0
	VMULPS Y10, Y7, Y7
	EXPZN(Y0, Y3, Y4)
	EXPZN(Y7, Y12, Y13)
	VMOVUPS Y0, (DI)(AX*1)
	VMOVUPS Y7, (R8)(AX*1)
	VADDPS Y0, Y6, Y6
	VADDPS Y7, Y8, Y8
	VFMADD231PS Y9, Y7, Y11
	ADDQ $32, AX
	DECQ BX
	JNZ  k2loop
k2tail:
	MOVQ CX, BX
	ANDQ $7, BX
	JZ   k2done
	VMASKMOVPS (SI)(AX*1), Y5, Y0
	VMASKMOVPS (DX)(AX*1), Y5, Y7
	VSUBPS Y0, Y7, Y9
	VSUBPS Y1, Y0, Y0
	VSUBPS Y2, Y7, Y7
	VMULPS Y10, Y0, Y0
	VMULPS Y10, Y7, Y7
	EXPZN(Y0, Y3, Y4)
	EXPZN(Y7, Y12, Y13)
	VANDPS Y5, Y0, Y0
	VANDPS Y5, Y7, Y7
	VMASKMOVPS Y0, Y5, (DI)(AX*1)
	VMASKMOVPS Y7, Y5, (R8)(AX*1)
	VADDPS Y0, Y6, Y6
	VADDPS Y7, Y8, Y8
	VFMADD231PS Y9, Y7, Y11
k2done:
	HSUM(Y6, X6)
	HSUM(Y8, X8)
	HSUM(Y11, X11)
	VMOVSS X6, 8(R11)
	VMOVSS X8, 12(R11)
	VMOVSS X11, 16(R11)
	// ---- pass 3: g = (gscale/zs)·g − (gscale/zt)·et
	VMOVSS gscale+124(FP), X2
	VXORPS X3, X3, X3
	VUCOMISS X3, X2
	JEQ  knext
	VDIVSS X6, X2, X0
	VDIVSS X8, X2, X4
	VBROADCASTSS X0, Y1
	VBROADCASTSS X4, Y2
	MOVQ R12, DI
	MOVQ et_base+24(FP), R8
	XORQ AX, AX
	MOVQ CX, BX
	SHRQ $3, BX
	JZ   k3tail
k3loop:
	VMULPS (DI)(AX*1), Y1, Y0
	VFNMADD231PS (R8)(AX*1), Y2, Y0
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ $32, AX
	DECQ BX
	JNZ  k3loop
k3tail:
	MOVQ CX, BX
	ANDQ $7, BX
	JZ   knext
	VMASKMOVPS (DI)(AX*1), Y5, Y0
	VMASKMOVPS (R8)(AX*1), Y5, Y3
	VMULPS Y0, Y1, Y0
	VFNMADD231PS Y3, Y2, Y0
	VMASKMOVPS Y0, Y5, (DI)(AX*1)
knext:
	// next row: s, t += cols; g += gstride; stats += 5
	MOVQ CX, AX
	SHLQ $2, AX
	ADDQ AX, R13
	ADDQ AX, R9
	MOVQ gstride+112(FP), AX
	SHLQ $2, AX
	ADDQ AX, R12
	ADDQ $20, R11
	INCQ R10
	JMP  krow
kend:
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
