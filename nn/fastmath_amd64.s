//go:build !purego && amd64

#include "textflag.h"

// AVX-512F versions of the kernels in fastmath.go, sixteen float32 lanes
// at a time, with masked loads and stores for the tails. They compute the
// same formulas as the Go versions (exp32, gelu32).

// Float32 bit patterns of the constants of fastmath.go.
#define C_EXPLO   $0xc2aeac4f // -87.33654
#define C_LOG2E   $0x3fb8aa3b
#define C_C1      $0x3f318000 // 0.693359375
#define C_C2      $0xb95e8083 // -2.12194440e-4
#define C_P0      $0x39506967
#define C_P1      $0x3ab743ce
#define C_P2      $0x3c088908
#define C_P3      $0x3d2aa9c1
#define C_P4      $0x3e2aaaaa
#define C_P5      $0x3f000000
#define C_ONE     $0x3f800000
#define C_HALF    $0x3f000000
#define C_NRSQRT2 $0xbf3504f3 // -sqrt(2)/2
#define C_ABS     $0x7fffffff
#define C_NEGINF  $0xff800000

// BCAST broadcasts a 32-bit constant into every lane of zmm register z.
#define BCAST(c, z) MOVL c, AX; VPBROADCASTD AX, z

// EXP sets x = e^x lanewise (Cephes expf), using n, r, p as scratch.
// Constants: lo Z31, log2e Z30, C1 Z29, C2 Z28, P0..P5 Z27..Z22, one Z21.
// Only the low clamp is needed: VSCALEFPS saturates to +Inf for x above
// 88.7 (where exp32 clamps to e^88), and both callers pass x <= 0. NaN
// stays NaN.
#define EXP(x, n, r, p) \
	VMAXPS x, Z31, x; \
	VMULPS Z30, x, n; \
	VRNDSCALEPS $8, n, n; \
	VFNMADD231PS Z29, n, x; \
	VFNMADD231PS Z28, n, x; \
	VMOVAPS Z27, p; \
	VFMADD213PS Z26, x, p; \
	VFMADD213PS Z25, x, p; \
	VFMADD213PS Z24, x, p; \
	VFMADD213PS Z23, x, p; \
	VFMADD213PS Z22, x, p; \
	VMULPS x, x, r; \
	VFMADD213PS x, r, p; \
	VADDPS Z21, p, p; \
	VSCALEFPS n, p, x

#define EXP_CONSTS \
	BCAST(C_EXPLO, Z31); \
	BCAST(C_LOG2E, Z30); \
	BCAST(C_C1, Z29); \
	BCAST(C_C2, Z28); \
	BCAST(C_P0, Z27); \
	BCAST(C_P1, Z26); \
	BCAST(C_P2, Z25); \
	BCAST(C_P3, Z24); \
	BCAST(C_P4, Z23); \
	BCAST(C_P5, Z22); \
	BCAST(C_ONE, Z21)

// TAILMASK sets mask register k to the low cnt (0..15, in register CX) bits.
#define TAILMASK(k) MOVL $1, AX; SHLL CX, AX; SUBL $1, AX; KMOVW AX, k

// func expShiftSumAVX512(x []float32, mx float32) float32
TEXT ·expShiftSumAVX512(SB), NOSPLIT, $0-36
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	VBROADCASTSS mx+24(FP), Z17
	EXP_CONSTS
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1

es_loop32:
	CMPQ CX, $32
	JB   es_loop16
	VMOVUPS (SI), Z2
	VMOVUPS 64(SI), Z3
	VSUBPS  Z17, Z2, Z2
	VSUBPS  Z17, Z3, Z3
	EXP(Z2, Z4, Z5, Z6)
	EXP(Z3, Z7, Z8, Z9)
	VMOVUPS Z2, (SI)
	VMOVUPS Z3, 64(SI)
	VADDPS  Z2, Z0, Z0
	VADDPS  Z3, Z1, Z1
	ADDQ    $128, SI
	SUBQ    $32, CX
	JMP     es_loop32

es_loop16:
	CMPQ CX, $16
	JB   es_tail
	VMOVUPS (SI), Z2
	VSUBPS  Z17, Z2, Z2
	EXP(Z2, Z4, Z5, Z6)
	VMOVUPS Z2, (SI)
	VADDPS  Z2, Z0, Z0
	ADDQ    $64, SI
	SUBQ    $16, CX

es_tail:
	TESTQ CX, CX
	JZ    es_done
	TAILMASK(K1)
	VMOVUPS.Z (SI), K1, Z2
	VSUBPS    Z17, Z2, Z2
	EXP(Z2, Z4, Z5, Z6)
	VMOVUPS   Z2, K1, (SI)
	VADDPS    Z2, Z1, K1, Z1

es_done:
	VADDPS        Z1, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS        Y1, Y0, Y0
	VEXTRACTF128  $1, Y0, X1
	VADDPS        X1, X0, X0
	VPERMILPS     $0x4e, X0, X1
	VADDPS        X1, X0, X0
	VPERMILPS     $0xb1, X0, X1
	VADDSS        X1, X0, X0
	VZEROUPPER
	MOVSS         X0, ret+32(FP)
	RET

// func relAddMaxAVX512(row, relh, relw []float32) float32
TEXT ·relAddMaxAVX512(SB), NOSPLIT, $0-76
	MOVQ row_base+0(FP), SI
	MOVQ relh_base+24(FP), DX
	MOVQ relh_len+32(FP), BX
	MOVQ relw_base+48(FP), DI
	MOVQ relw_len+56(FP), CX
	MOVQ CX, R9
	SHRQ $4, R9    // full 16-lane chunks per key row
	ANDQ $15, CX   // tail lanes
	MOVQ CX, R12
	SHLQ $2, R12   // tail bytes
	TAILMASK(K1)
	BCAST(C_NEGINF, Z31)
	VMOVAPS Z31, Z30
	TESTQ BX, BX
	JZ    ra_done

ra_row:
	VBROADCASTSS (DX), Z29
	ADDQ         $4, DX
	MOVQ         R9, R10
	MOVQ         DI, R11

ra_chunk:
	TESTQ   R10, R10
	JZ      ra_tail
	VMOVUPS (SI), Z0
	VADDPS  Z29, Z0, Z0
	VADDPS  (R11), Z0, Z0
	VMOVUPS Z0, (SI)
	VMAXPS  Z0, Z31, Z31
	ADDQ    $64, SI
	ADDQ    $64, R11
	DECQ    R10
	JMP     ra_chunk

ra_tail:
	TESTQ     R12, R12
	JZ        ra_next
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (R11), K1, Z1
	VADDPS    Z29, Z0, Z0
	VADDPS    Z1, Z0, Z0
	VMOVUPS   Z0, K1, (SI)
	VMAXPS    Z0, Z30, K1, Z30
	ADDQ      R12, SI

ra_next:
	DECQ BX
	JNZ  ra_row

ra_done:
	VMAXPS        Z30, Z31, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VMAXPS        Y1, Y0, Y0
	VEXTRACTF128  $1, Y0, X1
	VMAXPS        X1, X0, X0
	VPERMILPS     $0x4e, X0, X1
	VMAXPS        X1, X0, X0
	VPERMILPS     $0xb1, X0, X1
	VMAXSS        X1, X0, X0
	VZEROUPPER
	MOVSS         X0, ret+72(FP)
	RET

// erfc fit coefficients a0..a9 of gelu32, as float32 for embedded
// broadcasts.
DATA erfcA<>+0(SB)/4, $0xbfa1fc4e
DATA erfcA<>+4(SB)/4, $0x3f8000c7
DATA erfcA<>+8(SB)/4, $0x3ebf88fb
DATA erfcA<>+12(SB)/4, $0x3dc636c9
DATA erfcA<>+16(SB)/4, $0xbe3ec24c
DATA erfcA<>+20(SB)/4, $0x3e8ec7cc
DATA erfcA<>+24(SB)/4, $0xbf914e5d
DATA erfcA<>+28(SB)/4, $0x3fbe87b0
DATA erfcA<>+32(SB)/4, $0xbf527892
DATA erfcA<>+36(SB)/4, $0x3e2ef945
GLOBL erfcA<>(SB), RODATA|NOPTR, $40

// GELU1 sets x = GELU(x) lanewise (gelu32), with u, z, t, p, n, r as
// scratch. Constants: the EXP ones, -sqrt(2)/2 Z20, abs mask Z19, half
// Z18; the erfc fit from erfcA<>.
#define GELU1(x, u, z, t, p, n, r) \
	VMULPS       Z20, x, u; \
	VPANDD       Z19, u, z; \
	VMOVAPS      Z21, t; \
	VFMADD231PS  Z18, z, t; \
	VDIVPS       t, Z21, t; \
	VBROADCASTSS erfcA<>+36(SB), p; \
	VFMADD213PS.BCST erfcA<>+32(SB), t, p; \
	VFMADD213PS.BCST erfcA<>+28(SB), t, p; \
	VFMADD213PS.BCST erfcA<>+24(SB), t, p; \
	VFMADD213PS.BCST erfcA<>+20(SB), t, p; \
	VFMADD213PS.BCST erfcA<>+16(SB), t, p; \
	VFMADD213PS.BCST erfcA<>+12(SB), t, p; \
	VFMADD213PS.BCST erfcA<>+8(SB), t, p; \
	VFMADD213PS.BCST erfcA<>+4(SB), t, p; \
	VFMADD213PS.BCST erfcA<>+0(SB), t, p; \
	VFNMADD231PS z, z, p; \
	EXP(p, n, r, z); \
	VMULPS       t, p, p; \
	VMULPS       Z18, p, p; \
	VPXORD       n, n, n; \
	VCMPPS       $1, n, u, K2; \
	VSUBPS       p, Z21, K2, p; \
	VMULPS       p, x, x

// func geluBiasAVX512(x, bias []float32)
TEXT ·geluBiasAVX512(SB), NOSPLIT, $0-48
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	MOVQ bias_base+24(FP), DI
	MOVQ bias_len+32(FP), R8
	EXP_CONSTS
	BCAST(C_NRSQRT2, Z20)
	BCAST(C_ABS, Z19)
	BCAST(C_HALF, Z18)

gb_loop32:
	CMPQ    CX, $32
	JB      gb_loop16
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z7
	TESTQ   R8, R8
	JZ      gb_nobias32
	VADDPS  (DI), Z0, Z0
	VADDPS  64(DI), Z7, Z7
	ADDQ    $128, DI

gb_nobias32:
	GELU1(Z0, Z1, Z2, Z3, Z4, Z5, Z6)
	GELU1(Z7, Z8, Z9, Z10, Z11, Z12, Z13)
	VMOVUPS Z0, (SI)
	VMOVUPS Z7, 64(SI)
	ADDQ    $128, SI
	SUBQ    $32, CX
	JMP     gb_loop32

gb_loop16:
	CMPQ    CX, $16
	JB      gb_tail
	VMOVUPS (SI), Z0
	TESTQ   R8, R8
	JZ      gb_nobias16
	VADDPS  (DI), Z0, Z0
	ADDQ    $64, DI

gb_nobias16:
	GELU1(Z0, Z1, Z2, Z3, Z4, Z5, Z6)
	VMOVUPS Z0, (SI)
	ADDQ    $64, SI
	SUBQ    $16, CX

gb_tail:
	TESTQ     CX, CX
	JZ        gb_done
	TAILMASK(K1)
	VMOVUPS.Z (SI), K1, Z0
	TESTQ     R8, R8
	JZ        gb_tailnobias
	VMOVUPS.Z (DI), K1, Z1
	VADDPS    Z1, Z0, Z0

gb_tailnobias:
	GELU1(Z0, Z1, Z2, Z3, Z4, Z5, Z6)
	VMOVUPS Z0, K1, (SI)

gb_done:
	VZEROUPPER
	RET

// func addRowsAVX512(dst, a, b []float32)
// dst[i] = a[i] + b[i%len(b)] over whole rows of len(b) (b not empty).
TEXT ·addRowsAVX512(SB), NOSPLIT, $0-72
	MOVQ dst_base+0(FP), DI
	MOVQ a_base+24(FP), SI
	MOVQ a_len+32(FP), BX
	MOVQ b_base+48(FP), DX
	MOVQ b_len+56(FP), CX
	MOVQ CX, R13   // row length
	MOVQ CX, R9
	SHRQ $4, R9    // full chunks per row
	ANDQ $15, CX
	MOVQ CX, R12
	SHLQ $2, R12   // tail bytes
	TAILMASK(K1)

ar_row:
	CMPQ BX, R13
	JB   ar_done
	MOVQ R9, R10
	MOVQ DX, R11

ar_chunk:
	TESTQ   R10, R10
	JZ      ar_tail
	VMOVUPS (SI), Z0
	VADDPS  (R11), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	ADDQ    $64, R11
	DECQ    R10
	JMP     ar_chunk

ar_tail:
	TESTQ     R12, R12
	JZ        ar_next
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (R11), K1, Z1
	VADDPS    Z1, Z0, Z0
	VMOVUPS   Z0, K1, (DI)
	ADDQ      R12, SI
	ADDQ      R12, DI

ar_next:
	SUBQ R13, BX
	JMP  ar_row

ar_done:
	VZEROUPPER
	RET

// func scaleIntoAVX512(dst, src []float32, f float32)
TEXT ·scaleIntoAVX512(SB), NOSPLIT, $0-52
	MOVQ         dst_base+0(FP), DI
	MOVQ         src_base+24(FP), SI
	MOVQ         src_len+32(FP), CX
	VBROADCASTSS f+48(FP), Z1

si_loop:
	CMPQ    CX, $16
	JB      si_tail
	VMULPS  (SI), Z1, Z0
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     si_loop

si_tail:
	TESTQ     CX, CX
	JZ        si_done
	TAILMASK(K1)
	VMOVUPS.Z (SI), K1, Z0
	VMULPS    Z0, Z1, Z0
	VMOVUPS   Z0, K1, (DI)

si_done:
	VZEROUPPER
	RET

// HSUM0 sums the lanes of Z0 into X0 (lane 0), using Y1/X1.
#define HSUM0 \
	VEXTRACTF64X4 $1, Z0, Y1; \
	VADDPS        Y1, Y0, Y0; \
	VEXTRACTF128  $1, Y0, X1; \
	VADDPS        X1, X0, X0; \
	VPERMILPS     $0x4e, X0, X1; \
	VADDPS        X1, X0, X0; \
	VPERMILPS     $0xb1, X0, X1; \
	VADDSS        X1, X0, X0

// func layerNormAVX512(dst, x, w, b []float32, eps float32)
// One row: dst = (x - mean) / sqrt(var + eps) * w + b, len(x) > 0.
TEXT ·layerNormAVX512(SB), NOSPLIT, $0-100
	MOVQ dst_base+0(FP), DI
	MOVQ x_base+24(FP), SI
	MOVQ x_len+32(FP), R8
	MOVQ w_base+48(FP), R9
	MOVQ b_base+72(FP), R10
	MOVQ R8, CX
	ANDQ $15, CX
	TAILMASK(K1)
	MOVQ R8, R11
	SHRQ $4, R11   // full chunks

	// mean
	VPXORD Z0, Z0, Z0
	MOVQ   SI, AX
	MOVQ   R11, BX

ln_sum:
	TESTQ  BX, BX
	JZ     ln_sumtail
	VADDPS (AX), Z0, Z0
	ADDQ   $64, AX
	DECQ   BX
	JMP    ln_sum

ln_sumtail:
	VMOVUPS.Z (AX), K1, Z2
	VADDPS    Z2, Z0, Z0
	HSUM0
	VCVTSI2SSQ R8, X3, X3       // d
	VDIVSS    X3, X0, X0        // mean
	VBROADCASTSS X0, Z4         // mean in every lane

	// variance
	VPXORD Z0, Z0, Z0
	MOVQ   SI, AX
	MOVQ   R11, BX

ln_var:
	TESTQ       BX, BX
	JZ          ln_vartail
	VSUBPS      (AX), Z4, Z2    // mean - x
	VFMADD231PS Z2, Z2, Z0
	ADDQ        $64, AX
	DECQ        BX
	JMP         ln_var

ln_vartail:
	VMOVUPS.Z   (AX), K1, Z2
	VSUBPS      Z2, Z4, K1, Z2  // tail lanes only; the rest stay 0
	VFMADD231PS Z2, Z2, Z0
	HSUM0
	VDIVSS       X3, X0, X0     // var
	VADDSS       eps+96(FP), X0, X0
	VSQRTSS      X0, X0, X0
	MOVL         $0x3f800000, AX
	VMOVD        AX, X5
	VDIVSS       X0, X5, X0     // 1/sqrt(var+eps)
	VBROADCASTSS X0, Z5

	// normalise
	MOVQ R11, BX

ln_out:
	TESTQ       BX, BX
	JZ          ln_outtail
	VMOVUPS     (SI), Z2
	VSUBPS      Z4, Z2, Z2
	VMULPS      Z5, Z2, Z2
	VMOVUPS     (R10), Z3
	VFMADD231PS (R9), Z2, Z3
	VMOVUPS     Z3, (DI)
	ADDQ        $64, SI
	ADDQ        $64, DI
	ADDQ        $64, R9
	ADDQ        $64, R10
	DECQ        BX
	JMP         ln_out

ln_outtail:
	TESTQ       CX, CX
	JZ          ln_done
	VMOVUPS.Z   (SI), K1, Z2
	VSUBPS      Z4, Z2, Z2
	VMULPS      Z5, Z2, Z2
	VMOVUPS.Z   (R10), K1, Z3
	VMOVUPS.Z   (R9), K1, Z6
	VFMADD231PS Z6, Z2, Z3
	VMOVUPS     Z3, K1, (DI)

ln_done:
	VZEROUPPER
	RET

// func tanhUnitAVX512(dst, src []float32)
// dst = 1 / (1 + e^(-2 src)) = (tanh(src) + 1) / 2, as tanhUnitRowGo;
// e^(-2 src) saturates to +Inf (giving 0) for src below -44.
TEXT ·tanhUnitAVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	EXP_CONSTS
	MOVL         $0xc0000000, AX // -2
	VPBROADCASTD AX, Z20

tu_loop32:
	CMPQ    CX, $32
	JB      tu_loop16
	VMULPS  (SI), Z20, Z2
	VMULPS  64(SI), Z20, Z3
	EXP(Z2, Z4, Z5, Z6)
	EXP(Z3, Z7, Z8, Z9)
	VADDPS  Z21, Z2, Z2
	VADDPS  Z21, Z3, Z3
	VDIVPS  Z2, Z21, Z2
	VDIVPS  Z3, Z21, Z3
	VMOVUPS Z2, (DI)
	VMOVUPS Z3, 64(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	SUBQ    $32, CX
	JMP     tu_loop32

tu_loop16:
	CMPQ    CX, $16
	JB      tu_tail
	VMULPS  (SI), Z20, Z2
	EXP(Z2, Z4, Z5, Z6)
	VADDPS  Z21, Z2, Z2
	VDIVPS  Z2, Z21, Z2
	VMOVUPS Z2, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX

tu_tail:
	TESTQ     CX, CX
	JZ        tu_done
	TAILMASK(K1)
	VMOVUPS.Z (SI), K1, Z2
	VMULPS    Z2, Z20, Z2
	EXP(Z2, Z4, Z5, Z6)
	VADDPS    Z21, Z2, Z2
	VDIVPS    Z2, Z21, Z2
	VMOVUPS   Z2, K1, (DI)

tu_done:
	VZEROUPPER
	RET
