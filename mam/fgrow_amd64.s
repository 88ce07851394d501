//go:build amd64 && !purego

#include "textflag.h"

// The pixel update of the foreground estimation (fgRowGo in foreground.go),
// with a pixel's three channels in the lanes of SSE2 registers. Every
// operation is the one fgRowGo does, in its order (float32 products and
// sums, float64 solve), so the results are the same bit for bit.

DATA fgAbsMask<>+0(SB)/4, $0x7fffffff
DATA fgAbsMask<>+4(SB)/4, $0x7fffffff
DATA fgAbsMask<>+8(SB)/4, $0x7fffffff
DATA fgAbsMask<>+12(SB)/4, $0x7fffffff
GLOBL fgAbsMask<>(SB), RODATA|NOPTR, $16

DATA fgOne<>+0(SB)/8, $1.0
DATA fgOne<>+8(SB)/8, $1.0
GLOBL fgOne<>(SB), RODATA|NOPTR, $16

DATA fgSign<>+0(SB)/8, $0x8000000000000000
DATA fgSign<>+8(SB)/8, $0x8000000000000000
GLOBL fgSign<>(SB), RODATA|NOPTR, $16

// func fgRowSSE2(fb, fbu, fbd, img, a, au, ad *float32, x0, x1, w int, reg, gw float32)
TEXT ·fgRowSSE2(SB), NOSPLIT, $0-88
	MOVQ fb+0(FP), SI
	MOVQ fbu+8(FP), DI
	MOVQ fbd+16(FP), R8
	MOVQ img+24(FP), R9
	MOVQ a+32(FP), R10
	MOVQ au+40(FP), R11
	MOVQ ad+48(FP), R12
	MOVQ x0+56(FP), CX
	MOVQ x1+64(FP), DX
	MOVQ w+72(FP), R13
	DECQ R13 // the last column

	// The left neighbour (the pixel itself at column 0): alpha in X9,
	// F in X11, B in X10, carried from pixel to pixel.
	MOVQ CX, AX
	DECQ AX
	XORQ BX, BX
	CMPQ AX, BX
	CMOVQLT BX, AX
	MOVSS (R10)(AX*4), X9
	SHLQ $4, AX
	MOVUPS (SI)(AX*2), X11
	MOVUPS 16(SI)(AX*2), X10

loop:
	CMPQ CX, DX
	JGE  done

	// BX = the right neighbour's column, AX = x*16.
	LEAQ 1(CX), BX
	CMPQ CX, R13
	CMOVQEQ CX, BX
	MOVQ CX, AX
	SHLQ $4, AX

	MOVUPS fgAbsMask<>(SB), X12
	MOVSS  gw+84(FP), X13
	MOVSS  reg+80(FP), X14

	// d = reg + gw*|a0 - neighbour|: left X1, right X2, up X3, down X4.
	MOVSS  (R10)(CX*4), X0
	MOVAPS X0, X1
	SUBSS  X9, X1
	ANDPS  X12, X1
	MULSS  X13, X1
	ADDSS  X14, X1
	MOVAPS X0, X2
	SUBSS  (R10)(BX*4), X2
	ANDPS  X12, X2
	MULSS  X13, X2
	ADDSS  X14, X2
	MOVAPS X0, X3
	SUBSS  (R11)(CX*4), X3
	ANDPS  X12, X3
	MULSS  X13, X3
	ADDSS  X14, X3
	MOVAPS X0, X4
	SUBSS  (R12)(CX*4), X4
	ANDPS  X12, X4
	MULSS  X13, X4
	ADDSS  X14, X4
	SHLQ   $4, BX

	// a00 = a0*a0 + dl + dr + du + dd (float32): X5.
	MOVAPS X0, X5
	MULSS  X0, X5
	ADDSS  X1, X5
	ADDSS  X2, X5
	ADDSS  X3, X5
	ADDSS  X4, X5

	// a1 = 1 - a0 (X7), a01 = a0*a1 (X6), a11 = a1*a1 + dl + ... (X8),
	// in float64.
	CVTSS2SD X0, X6
	MOVSD    fgOne<>(SB), X7
	SUBSD    X6, X7
	MULSD    X7, X6
	MOVAPS   X7, X8
	MULSD    X7, X8
	CVTSS2SD X1, X15
	ADDSD    X15, X8
	CVTSS2SD X2, X15
	ADDSD    X15, X8
	CVTSS2SD X3, X15
	ADDSD    X15, X8
	CVTSS2SD X4, X15
	ADDSD    X15, X8

	// inv = 1 / (a00*a11 - a01*a01) (X9); b00 = inv*a11 (X8),
	// b01 = inv*-a01 (X6), b11 = inv*a00 (X5).
	CVTSS2SD X5, X5
	MOVAPS   X5, X15
	MULSD    X8, X15
	MOVAPS   X6, X9
	MULSD    X6, X9
	SUBSD    X9, X15
	MOVSD    fgOne<>(SB), X9
	DIVSD    X15, X9
	MULSD    X9, X8
	MOVUPS   fgSign<>(SB), X15
	XORPS    X15, X6
	MULSD    X9, X6
	MULSD    X9, X5

	// Broadcast: a1, b00, b01, b11 to both float64 lanes; a0 and the d's
	// to the four float32 lanes.
	UNPCKLPD X7, X7
	UNPCKLPD X8, X8
	UNPCKLPD X6, X6
	UNPCKLPD X5, X5
	SHUFPS   $0, X0, X0
	SHUFPS   $0, X1, X1
	SHUFPS   $0, X2, X2
	SHUFPS   $0, X3, X3
	SHUFPS   $0, X4, X4

	// b1 = float32(a1 * float64(v)) (X12), b0 = a0*v (X9).
	MOVUPS   (R9)(AX*1), X9
	CVTPS2PD X9, X12
	MOVHLPS  X9, X13
	CVTPS2PD X13, X13
	MULPD    X7, X12
	MULPD    X7, X13
	CVTPD2PS X12, X12
	CVTPD2PS X13, X13
	MOVLHPS  X13, X12
	MULPS    X0, X9

	// b0 += d*F, b1 += d*B: left, right, up, down.
	MOVAPS X1, X13
	MULPS  X11, X13
	ADDPS  X13, X9
	MOVAPS X1, X13
	MULPS  X10, X13
	ADDPS  X13, X12
	MOVUPS (SI)(BX*2), X13
	MULPS  X2, X13
	ADDPS  X13, X9
	MOVUPS 16(SI)(BX*2), X13
	MULPS  X2, X13
	ADDPS  X13, X12
	MOVUPS (DI)(AX*2), X13
	MULPS  X3, X13
	ADDPS  X13, X9
	MOVUPS 16(DI)(AX*2), X13
	MULPS  X3, X13
	ADDPS  X13, X12
	MOVUPS (R8)(AX*2), X13
	MULPS  X4, X13
	ADDPS  X13, X9
	MOVUPS 16(R8)(AX*2), X13
	MULPS  X4, X13
	ADDPS  X13, X12

	// To float64: b0 in X13 (lanes 0, 1) and X14 (2, 3), b1 in X9, X15.
	CVTPS2PD X9, X13
	MOVHLPS  X9, X14
	CVTPS2PD X14, X14
	CVTPS2PD X12, X9
	MOVHLPS  X12, X15
	CVTPS2PD X15, X15

	// F = b00*b0 + b01*b1 (X12, X2), B = b01*b0 + b11*b1 (X13, X14).
	MOVAPS X8, X12
	MULPD  X13, X12
	MOVAPS X6, X1
	MULPD  X9, X1
	ADDPD  X1, X12
	MOVAPS X8, X2
	MULPD  X14, X2
	MOVAPS X6, X1
	MULPD  X15, X1
	ADDPD  X1, X2
	MULPD  X6, X13
	MULPD  X5, X9
	ADDPD  X9, X13
	MULPD  X6, X14
	MULPD  X5, X15
	ADDPD  X15, X14

	// Clamp to [0, 1] (NaN gives 0: MAXPD returns its source operand
	// then), back to float32, store, and carry to the next pixel.
	XORPS    X3, X3
	MOVUPS   fgOne<>(SB), X4
	MAXPD    X3, X12
	MINPD    X4, X12
	MAXPD    X3, X2
	MINPD    X4, X2
	MAXPD    X3, X13
	MINPD    X4, X13
	MAXPD    X3, X14
	MINPD    X4, X14
	CVTPD2PS X12, X12
	CVTPD2PS X2, X2
	MOVLHPS  X2, X12
	CVTPD2PS X13, X13
	CVTPD2PS X14, X14
	MOVLHPS  X14, X13
	MOVUPS   X12, (SI)(AX*2)
	MOVUPS   X13, 16(SI)(AX*2)
	MOVAPS   X12, X11
	MOVAPS   X13, X10
	MOVAPS   X0, X9

	INCQ CX
	JMP  loop

done:
	RET
