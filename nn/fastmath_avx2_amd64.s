//go:build !purego && amd64

#include "textflag.h"

// AVX2+FMA versions of the kernels in fastmath.go, eight float32 lanes at a
// time, for CPUs without AVX-512. Constants are 8-lane vectors in fm8<>;
// tails use VMASKMOVPS with a mask read from the table at K_MASKTAB.

#define K_LO fm8<>+0(SB)
#define K_HI fm8<>+32(SB)
#define K_LOG2E fm8<>+64(SB)
#define K_C1 fm8<>+96(SB)
#define K_C2 fm8<>+128(SB)
#define K_P0 fm8<>+160(SB)
#define K_P1 fm8<>+192(SB)
#define K_P2 fm8<>+224(SB)
#define K_P3 fm8<>+256(SB)
#define K_P4 fm8<>+288(SB)
#define K_P5 fm8<>+320(SB)
#define K_ONE fm8<>+352(SB)
#define K_HALF fm8<>+384(SB)
#define K_NRSQRT2 fm8<>+416(SB)
#define K_ABS fm8<>+448(SB)
#define K_B127 fm8<>+480(SB)
#define K_NEGINF fm8<>+512(SB)
#define K_A0 fm8<>+544(SB)
#define K_A1 fm8<>+576(SB)
#define K_A2 fm8<>+608(SB)
#define K_A3 fm8<>+640(SB)
#define K_A4 fm8<>+672(SB)
#define K_A5 fm8<>+704(SB)
#define K_A6 fm8<>+736(SB)
#define K_A7 fm8<>+768(SB)
#define K_A8 fm8<>+800(SB)
#define K_A9 fm8<>+832(SB)
#define K_MASKTAB 864 // offset of 8 x -1 then 8 x 0

DATA fm8<>+0(SB)/4, $0xc2aeac4f
DATA fm8<>+4(SB)/4, $0xc2aeac4f
DATA fm8<>+8(SB)/4, $0xc2aeac4f
DATA fm8<>+12(SB)/4, $0xc2aeac4f
DATA fm8<>+16(SB)/4, $0xc2aeac4f
DATA fm8<>+20(SB)/4, $0xc2aeac4f
DATA fm8<>+24(SB)/4, $0xc2aeac4f
DATA fm8<>+28(SB)/4, $0xc2aeac4f
DATA fm8<>+32(SB)/4, $0x42b00000
DATA fm8<>+36(SB)/4, $0x42b00000
DATA fm8<>+40(SB)/4, $0x42b00000
DATA fm8<>+44(SB)/4, $0x42b00000
DATA fm8<>+48(SB)/4, $0x42b00000
DATA fm8<>+52(SB)/4, $0x42b00000
DATA fm8<>+56(SB)/4, $0x42b00000
DATA fm8<>+60(SB)/4, $0x42b00000
DATA fm8<>+64(SB)/4, $0x3fb8aa3b
DATA fm8<>+68(SB)/4, $0x3fb8aa3b
DATA fm8<>+72(SB)/4, $0x3fb8aa3b
DATA fm8<>+76(SB)/4, $0x3fb8aa3b
DATA fm8<>+80(SB)/4, $0x3fb8aa3b
DATA fm8<>+84(SB)/4, $0x3fb8aa3b
DATA fm8<>+88(SB)/4, $0x3fb8aa3b
DATA fm8<>+92(SB)/4, $0x3fb8aa3b
DATA fm8<>+96(SB)/4, $0x3f318000
DATA fm8<>+100(SB)/4, $0x3f318000
DATA fm8<>+104(SB)/4, $0x3f318000
DATA fm8<>+108(SB)/4, $0x3f318000
DATA fm8<>+112(SB)/4, $0x3f318000
DATA fm8<>+116(SB)/4, $0x3f318000
DATA fm8<>+120(SB)/4, $0x3f318000
DATA fm8<>+124(SB)/4, $0x3f318000
DATA fm8<>+128(SB)/4, $0xb95e8083
DATA fm8<>+132(SB)/4, $0xb95e8083
DATA fm8<>+136(SB)/4, $0xb95e8083
DATA fm8<>+140(SB)/4, $0xb95e8083
DATA fm8<>+144(SB)/4, $0xb95e8083
DATA fm8<>+148(SB)/4, $0xb95e8083
DATA fm8<>+152(SB)/4, $0xb95e8083
DATA fm8<>+156(SB)/4, $0xb95e8083
DATA fm8<>+160(SB)/4, $0x39506967
DATA fm8<>+164(SB)/4, $0x39506967
DATA fm8<>+168(SB)/4, $0x39506967
DATA fm8<>+172(SB)/4, $0x39506967
DATA fm8<>+176(SB)/4, $0x39506967
DATA fm8<>+180(SB)/4, $0x39506967
DATA fm8<>+184(SB)/4, $0x39506967
DATA fm8<>+188(SB)/4, $0x39506967
DATA fm8<>+192(SB)/4, $0x3ab743ce
DATA fm8<>+196(SB)/4, $0x3ab743ce
DATA fm8<>+200(SB)/4, $0x3ab743ce
DATA fm8<>+204(SB)/4, $0x3ab743ce
DATA fm8<>+208(SB)/4, $0x3ab743ce
DATA fm8<>+212(SB)/4, $0x3ab743ce
DATA fm8<>+216(SB)/4, $0x3ab743ce
DATA fm8<>+220(SB)/4, $0x3ab743ce
DATA fm8<>+224(SB)/4, $0x3c088908
DATA fm8<>+228(SB)/4, $0x3c088908
DATA fm8<>+232(SB)/4, $0x3c088908
DATA fm8<>+236(SB)/4, $0x3c088908
DATA fm8<>+240(SB)/4, $0x3c088908
DATA fm8<>+244(SB)/4, $0x3c088908
DATA fm8<>+248(SB)/4, $0x3c088908
DATA fm8<>+252(SB)/4, $0x3c088908
DATA fm8<>+256(SB)/4, $0x3d2aa9c1
DATA fm8<>+260(SB)/4, $0x3d2aa9c1
DATA fm8<>+264(SB)/4, $0x3d2aa9c1
DATA fm8<>+268(SB)/4, $0x3d2aa9c1
DATA fm8<>+272(SB)/4, $0x3d2aa9c1
DATA fm8<>+276(SB)/4, $0x3d2aa9c1
DATA fm8<>+280(SB)/4, $0x3d2aa9c1
DATA fm8<>+284(SB)/4, $0x3d2aa9c1
DATA fm8<>+288(SB)/4, $0x3e2aaaaa
DATA fm8<>+292(SB)/4, $0x3e2aaaaa
DATA fm8<>+296(SB)/4, $0x3e2aaaaa
DATA fm8<>+300(SB)/4, $0x3e2aaaaa
DATA fm8<>+304(SB)/4, $0x3e2aaaaa
DATA fm8<>+308(SB)/4, $0x3e2aaaaa
DATA fm8<>+312(SB)/4, $0x3e2aaaaa
DATA fm8<>+316(SB)/4, $0x3e2aaaaa
DATA fm8<>+320(SB)/4, $0x3f000000
DATA fm8<>+324(SB)/4, $0x3f000000
DATA fm8<>+328(SB)/4, $0x3f000000
DATA fm8<>+332(SB)/4, $0x3f000000
DATA fm8<>+336(SB)/4, $0x3f000000
DATA fm8<>+340(SB)/4, $0x3f000000
DATA fm8<>+344(SB)/4, $0x3f000000
DATA fm8<>+348(SB)/4, $0x3f000000
DATA fm8<>+352(SB)/4, $0x3f800000
DATA fm8<>+356(SB)/4, $0x3f800000
DATA fm8<>+360(SB)/4, $0x3f800000
DATA fm8<>+364(SB)/4, $0x3f800000
DATA fm8<>+368(SB)/4, $0x3f800000
DATA fm8<>+372(SB)/4, $0x3f800000
DATA fm8<>+376(SB)/4, $0x3f800000
DATA fm8<>+380(SB)/4, $0x3f800000
DATA fm8<>+384(SB)/4, $0x3f000000
DATA fm8<>+388(SB)/4, $0x3f000000
DATA fm8<>+392(SB)/4, $0x3f000000
DATA fm8<>+396(SB)/4, $0x3f000000
DATA fm8<>+400(SB)/4, $0x3f000000
DATA fm8<>+404(SB)/4, $0x3f000000
DATA fm8<>+408(SB)/4, $0x3f000000
DATA fm8<>+412(SB)/4, $0x3f000000
DATA fm8<>+416(SB)/4, $0xbf3504f3
DATA fm8<>+420(SB)/4, $0xbf3504f3
DATA fm8<>+424(SB)/4, $0xbf3504f3
DATA fm8<>+428(SB)/4, $0xbf3504f3
DATA fm8<>+432(SB)/4, $0xbf3504f3
DATA fm8<>+436(SB)/4, $0xbf3504f3
DATA fm8<>+440(SB)/4, $0xbf3504f3
DATA fm8<>+444(SB)/4, $0xbf3504f3
DATA fm8<>+448(SB)/4, $0x7fffffff
DATA fm8<>+452(SB)/4, $0x7fffffff
DATA fm8<>+456(SB)/4, $0x7fffffff
DATA fm8<>+460(SB)/4, $0x7fffffff
DATA fm8<>+464(SB)/4, $0x7fffffff
DATA fm8<>+468(SB)/4, $0x7fffffff
DATA fm8<>+472(SB)/4, $0x7fffffff
DATA fm8<>+476(SB)/4, $0x7fffffff
DATA fm8<>+480(SB)/4, $0x0000007f
DATA fm8<>+484(SB)/4, $0x0000007f
DATA fm8<>+488(SB)/4, $0x0000007f
DATA fm8<>+492(SB)/4, $0x0000007f
DATA fm8<>+496(SB)/4, $0x0000007f
DATA fm8<>+500(SB)/4, $0x0000007f
DATA fm8<>+504(SB)/4, $0x0000007f
DATA fm8<>+508(SB)/4, $0x0000007f
DATA fm8<>+512(SB)/4, $0xff800000
DATA fm8<>+516(SB)/4, $0xff800000
DATA fm8<>+520(SB)/4, $0xff800000
DATA fm8<>+524(SB)/4, $0xff800000
DATA fm8<>+528(SB)/4, $0xff800000
DATA fm8<>+532(SB)/4, $0xff800000
DATA fm8<>+536(SB)/4, $0xff800000
DATA fm8<>+540(SB)/4, $0xff800000
DATA fm8<>+544(SB)/4, $0xbfa1fc4e
DATA fm8<>+548(SB)/4, $0xbfa1fc4e
DATA fm8<>+552(SB)/4, $0xbfa1fc4e
DATA fm8<>+556(SB)/4, $0xbfa1fc4e
DATA fm8<>+560(SB)/4, $0xbfa1fc4e
DATA fm8<>+564(SB)/4, $0xbfa1fc4e
DATA fm8<>+568(SB)/4, $0xbfa1fc4e
DATA fm8<>+572(SB)/4, $0xbfa1fc4e
DATA fm8<>+576(SB)/4, $0x3f8000c7
DATA fm8<>+580(SB)/4, $0x3f8000c7
DATA fm8<>+584(SB)/4, $0x3f8000c7
DATA fm8<>+588(SB)/4, $0x3f8000c7
DATA fm8<>+592(SB)/4, $0x3f8000c7
DATA fm8<>+596(SB)/4, $0x3f8000c7
DATA fm8<>+600(SB)/4, $0x3f8000c7
DATA fm8<>+604(SB)/4, $0x3f8000c7
DATA fm8<>+608(SB)/4, $0x3ebf88fb
DATA fm8<>+612(SB)/4, $0x3ebf88fb
DATA fm8<>+616(SB)/4, $0x3ebf88fb
DATA fm8<>+620(SB)/4, $0x3ebf88fb
DATA fm8<>+624(SB)/4, $0x3ebf88fb
DATA fm8<>+628(SB)/4, $0x3ebf88fb
DATA fm8<>+632(SB)/4, $0x3ebf88fb
DATA fm8<>+636(SB)/4, $0x3ebf88fb
DATA fm8<>+640(SB)/4, $0x3dc636c9
DATA fm8<>+644(SB)/4, $0x3dc636c9
DATA fm8<>+648(SB)/4, $0x3dc636c9
DATA fm8<>+652(SB)/4, $0x3dc636c9
DATA fm8<>+656(SB)/4, $0x3dc636c9
DATA fm8<>+660(SB)/4, $0x3dc636c9
DATA fm8<>+664(SB)/4, $0x3dc636c9
DATA fm8<>+668(SB)/4, $0x3dc636c9
DATA fm8<>+672(SB)/4, $0xbe3ec24c
DATA fm8<>+676(SB)/4, $0xbe3ec24c
DATA fm8<>+680(SB)/4, $0xbe3ec24c
DATA fm8<>+684(SB)/4, $0xbe3ec24c
DATA fm8<>+688(SB)/4, $0xbe3ec24c
DATA fm8<>+692(SB)/4, $0xbe3ec24c
DATA fm8<>+696(SB)/4, $0xbe3ec24c
DATA fm8<>+700(SB)/4, $0xbe3ec24c
DATA fm8<>+704(SB)/4, $0x3e8ec7cc
DATA fm8<>+708(SB)/4, $0x3e8ec7cc
DATA fm8<>+712(SB)/4, $0x3e8ec7cc
DATA fm8<>+716(SB)/4, $0x3e8ec7cc
DATA fm8<>+720(SB)/4, $0x3e8ec7cc
DATA fm8<>+724(SB)/4, $0x3e8ec7cc
DATA fm8<>+728(SB)/4, $0x3e8ec7cc
DATA fm8<>+732(SB)/4, $0x3e8ec7cc
DATA fm8<>+736(SB)/4, $0xbf914e5d
DATA fm8<>+740(SB)/4, $0xbf914e5d
DATA fm8<>+744(SB)/4, $0xbf914e5d
DATA fm8<>+748(SB)/4, $0xbf914e5d
DATA fm8<>+752(SB)/4, $0xbf914e5d
DATA fm8<>+756(SB)/4, $0xbf914e5d
DATA fm8<>+760(SB)/4, $0xbf914e5d
DATA fm8<>+764(SB)/4, $0xbf914e5d
DATA fm8<>+768(SB)/4, $0x3fbe87b0
DATA fm8<>+772(SB)/4, $0x3fbe87b0
DATA fm8<>+776(SB)/4, $0x3fbe87b0
DATA fm8<>+780(SB)/4, $0x3fbe87b0
DATA fm8<>+784(SB)/4, $0x3fbe87b0
DATA fm8<>+788(SB)/4, $0x3fbe87b0
DATA fm8<>+792(SB)/4, $0x3fbe87b0
DATA fm8<>+796(SB)/4, $0x3fbe87b0
DATA fm8<>+800(SB)/4, $0xbf527892
DATA fm8<>+804(SB)/4, $0xbf527892
DATA fm8<>+808(SB)/4, $0xbf527892
DATA fm8<>+812(SB)/4, $0xbf527892
DATA fm8<>+816(SB)/4, $0xbf527892
DATA fm8<>+820(SB)/4, $0xbf527892
DATA fm8<>+824(SB)/4, $0xbf527892
DATA fm8<>+828(SB)/4, $0xbf527892
DATA fm8<>+832(SB)/4, $0x3e2ef945
DATA fm8<>+836(SB)/4, $0x3e2ef945
DATA fm8<>+840(SB)/4, $0x3e2ef945
DATA fm8<>+844(SB)/4, $0x3e2ef945
DATA fm8<>+848(SB)/4, $0x3e2ef945
DATA fm8<>+852(SB)/4, $0x3e2ef945
DATA fm8<>+856(SB)/4, $0x3e2ef945
DATA fm8<>+860(SB)/4, $0x3e2ef945
DATA fm8<>+864(SB)/4, $0xffffffff
DATA fm8<>+868(SB)/4, $0xffffffff
DATA fm8<>+872(SB)/4, $0xffffffff
DATA fm8<>+876(SB)/4, $0xffffffff
DATA fm8<>+880(SB)/4, $0xffffffff
DATA fm8<>+884(SB)/4, $0xffffffff
DATA fm8<>+888(SB)/4, $0xffffffff
DATA fm8<>+892(SB)/4, $0xffffffff
DATA fm8<>+896(SB)/4, $0x00000000
DATA fm8<>+900(SB)/4, $0x00000000
DATA fm8<>+904(SB)/4, $0x00000000
DATA fm8<>+908(SB)/4, $0x00000000
DATA fm8<>+912(SB)/4, $0x00000000
DATA fm8<>+916(SB)/4, $0x00000000
DATA fm8<>+920(SB)/4, $0x00000000
DATA fm8<>+924(SB)/4, $0x00000000
GLOBL fm8<>(SB), RODATA|NOPTR, $928

// EXP8 sets x = e^x lanewise (exp32), using n, p, r as scratch. NaN stays
// NaN (the clamps return their register operand for NaN).
#define EXP8(x, n, p, r) \
	VMOVUPS      K_LO, n; \
	VMAXPS       x, n, x; \
	VMOVUPS      K_HI, n; \
	VMINPS       x, n, x; \
	VMULPS       K_LOG2E, x, n; \
	VROUNDPS     $0, n, n; \
	VFNMADD231PS K_C1, n, x; \
	VFNMADD231PS K_C2, n, x; \
	VMOVUPS      K_P0, p; \
	VFMADD213PS  K_P1, x, p; \
	VFMADD213PS  K_P2, x, p; \
	VFMADD213PS  K_P3, x, p; \
	VFMADD213PS  K_P4, x, p; \
	VFMADD213PS  K_P5, x, p; \
	VMULPS       x, x, r; \
	VFMADD213PS  x, r, p; \
	VADDPS       K_ONE, p, p; \
	VCVTPS2DQ    n, n; \
	VPADDD       K_B127, n, n; \
	VPSLLD       $23, n, n; \
	VMULPS       n, p, x

// TAILMASK8 loads into m the mask of the low CX (1..7) lanes.
#define TAILMASK8(m) \
	LEAQ    fm8<>+K_MASKTAB(SB), AX; \
	MOVQ    $8, DX; \
	SUBQ    CX, DX; \
	VMOVUPS (AX)(DX*4), m

// HSUM8 sums the lanes of Y0 into X0 (lane 0), using X1.
#define HSUM8 \
	VEXTRACTF128 $1, Y0, X1; \
	VADDPS       X1, X0, X0; \
	VPERMILPS    $0x4e, X0, X1; \
	VADDPS       X1, X0, X0; \
	VPERMILPS    $0xb1, X0, X1; \
	VADDSS       X1, X0, X0

// func expShiftSumAVX2(x []float32, mx float32) float32
TEXT ·expShiftSumAVX2(SB), NOSPLIT, $0-36
	MOVQ         x_base+0(FP), SI
	MOVQ         x_len+8(FP), CX
	VBROADCASTSS mx+24(FP), Y15
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1

e8_loop16:
	CMPQ    CX, $16
	JB      e8_loop8
	VMOVUPS (SI), Y2
	VMOVUPS 32(SI), Y3
	VSUBPS  Y15, Y2, Y2
	VSUBPS  Y15, Y3, Y3
	EXP8(Y2, Y4, Y5, Y6)
	EXP8(Y3, Y7, Y8, Y9)
	VMOVUPS Y2, (SI)
	VMOVUPS Y3, 32(SI)
	VADDPS  Y2, Y0, Y0
	VADDPS  Y3, Y1, Y1
	ADDQ    $64, SI
	SUBQ    $16, CX
	JMP     e8_loop16

e8_loop8:
	CMPQ    CX, $8
	JB      e8_tail
	VMOVUPS (SI), Y2
	VSUBPS  Y15, Y2, Y2
	EXP8(Y2, Y4, Y5, Y6)
	VMOVUPS Y2, (SI)
	VADDPS  Y2, Y0, Y0
	ADDQ    $32, SI
	SUBQ    $8, CX

e8_tail:
	TESTQ      CX, CX
	JZ         e8_done
	TAILMASK8(Y14)
	VMASKMOVPS (SI), Y14, Y2
	VSUBPS     Y15, Y2, Y2
	EXP8(Y2, Y4, Y5, Y6)
	VMASKMOVPS Y2, Y14, (SI)
	VANDPS     Y14, Y2, Y2
	VADDPS     Y2, Y1, Y1

e8_done:
	VADDPS Y1, Y0, Y0
	HSUM8
	VZEROUPPER
	MOVSS  X0, ret+32(FP)
	RET

// func relAddMaxAVX2(row, relh, relw []float32) float32
TEXT ·relAddMaxAVX2(SB), NOSPLIT, $0-76
	MOVQ    row_base+0(FP), SI
	MOVQ    relh_base+24(FP), R13
	MOVQ    relh_len+32(FP), BX
	MOVQ    relw_base+48(FP), DI
	MOVQ    relw_len+56(FP), CX
	MOVQ    CX, R9
	SHRQ    $3, R9  // full 8-lane chunks per key row
	ANDQ    $7, CX  // tail lanes
	MOVQ    CX, R12
	SHLQ    $2, R12 // tail bytes
	VMOVUPS K_NEGINF, Y13
	VMOVUPS Y13, Y15
	TESTQ   CX, CX
	JZ      r8_nomask
	TAILMASK8(Y14)

r8_nomask:
	TESTQ BX, BX
	JZ    r8_done

r8_row:
	VBROADCASTSS (R13), Y12
	ADDQ         $4, R13
	MOVQ         R9, R10
	MOVQ         DI, R11

r8_chunk:
	TESTQ   R10, R10
	JZ      r8_tail
	VMOVUPS (SI), Y0
	VADDPS  Y12, Y0, Y0
	VADDPS  (R11), Y0, Y0
	VMOVUPS Y0, (SI)
	VMAXPS  Y0, Y15, Y15
	ADDQ    $32, SI
	ADDQ    $32, R11
	DECQ    R10
	JMP     r8_chunk

r8_tail:
	TESTQ      R12, R12
	JZ         r8_next
	VMASKMOVPS (SI), Y14, Y0
	VMASKMOVPS (R11), Y14, Y1
	VADDPS     Y12, Y0, Y0
	VADDPS     Y1, Y0, Y0
	VMASKMOVPS Y0, Y14, (SI)
	VBLENDVPS  Y14, Y0, Y13, Y2
	VMAXPS     Y2, Y15, Y15
	ADDQ       R12, SI

r8_next:
	DECQ BX
	JNZ  r8_row

r8_done:
	VMOVAPS      Y15, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXSS       X1, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+72(FP)
	RET

// GELU8 sets x = GELU(x) lanewise (gelu32), with Y1..Y7 as scratch; Y14
// holds 1 and Y15 holds 0 in every lane.
#define GELU8(x) \
	VMULPS       K_NRSQRT2, x, Y1; \
	VANDPS       K_ABS, Y1, Y2; \
	VMOVAPS      Y14, Y3; \
	VFMADD231PS  K_HALF, Y2, Y3; \
	VDIVPS       Y3, Y14, Y3; \
	VMOVUPS      K_A9, Y4; \
	VFMADD213PS  K_A8, Y3, Y4; \
	VFMADD213PS  K_A7, Y3, Y4; \
	VFMADD213PS  K_A6, Y3, Y4; \
	VFMADD213PS  K_A5, Y3, Y4; \
	VFMADD213PS  K_A4, Y3, Y4; \
	VFMADD213PS  K_A3, Y3, Y4; \
	VFMADD213PS  K_A2, Y3, Y4; \
	VFMADD213PS  K_A1, Y3, Y4; \
	VFMADD213PS  K_A0, Y3, Y4; \
	VFNMADD231PS Y2, Y2, Y4; \
	EXP8(Y4, Y5, Y6, Y7); \
	VMULPS       Y3, Y4, Y4; \
	VMULPS       K_HALF, Y4, Y4; \
	VSUBPS       Y4, Y14, Y5; \
	VCMPPS       $1, Y15, Y1, Y6; \
	VBLENDVPS    Y6, Y5, Y4, Y4; \
	VMULPS       Y4, x, x

// func geluBiasAVX2(x, bias []float32)
TEXT ·geluBiasAVX2(SB), NOSPLIT, $0-48
	MOVQ    x_base+0(FP), SI
	MOVQ    x_len+8(FP), CX
	MOVQ    bias_base+24(FP), DI
	MOVQ    bias_len+32(FP), R8
	VMOVUPS K_ONE, Y14
	VXORPS  Y15, Y15, Y15

g8_loop:
	CMPQ    CX, $8
	JB      g8_tail
	VMOVUPS (SI), Y0
	TESTQ   R8, R8
	JZ      g8_nobias
	VADDPS  (DI), Y0, Y0
	ADDQ    $32, DI

g8_nobias:
	GELU8(Y0)
	VMOVUPS Y0, (SI)
	ADDQ    $32, SI
	SUBQ    $8, CX
	JMP     g8_loop

g8_tail:
	TESTQ      CX, CX
	JZ         g8_done
	TAILMASK8(Y13)
	VMASKMOVPS (SI), Y13, Y0
	TESTQ      R8, R8
	JZ         g8_tailnobias
	VMASKMOVPS (DI), Y13, Y8
	VADDPS     Y8, Y0, Y0

g8_tailnobias:
	GELU8(Y0)
	VMASKMOVPS Y0, Y13, (SI)

g8_done:
	VZEROUPPER
	RET

// func addRowsAVX2(dst, a, b []float32)
// dst[i] = a[i] + b[i%len(b)] over whole rows of len(b) (b not empty).
TEXT ·addRowsAVX2(SB), NOSPLIT, $0-72
	MOVQ dst_base+0(FP), DI
	MOVQ a_base+24(FP), SI
	MOVQ a_len+32(FP), BX
	MOVQ b_base+48(FP), R8
	MOVQ b_len+56(FP), CX
	MOVQ CX, R13  // row length
	MOVQ CX, R9
	SHRQ $3, R9   // full chunks per row
	ANDQ $7, CX
	MOVQ CX, R12
	SHLQ $2, R12  // tail bytes
	TESTQ CX, CX
	JZ   a8_row
	TAILMASK8(Y15)

a8_row:
	CMPQ BX, R13
	JB   a8_done
	MOVQ R9, R10
	MOVQ R8, R11

a8_chunk:
	TESTQ   R10, R10
	JZ      a8_tail
	VMOVUPS (SI), Y0
	VADDPS  (R11), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	ADDQ    $32, R11
	DECQ    R10
	JMP     a8_chunk

a8_tail:
	TESTQ      R12, R12
	JZ         a8_next
	VMASKMOVPS (SI), Y15, Y0
	VMASKMOVPS (R11), Y15, Y1
	VADDPS     Y1, Y0, Y0
	VMASKMOVPS Y0, Y15, (DI)
	ADDQ       R12, SI
	ADDQ       R12, DI

a8_next:
	SUBQ R13, BX
	JMP  a8_row

a8_done:
	VZEROUPPER
	RET

// func scaleIntoAVX2(dst, src []float32, f float32)
TEXT ·scaleIntoAVX2(SB), NOSPLIT, $0-52
	MOVQ         dst_base+0(FP), DI
	MOVQ         src_base+24(FP), SI
	MOVQ         src_len+32(FP), CX
	VBROADCASTSS f+48(FP), Y1

s8_loop:
	CMPQ    CX, $8
	JB      s8_tail
	VMULPS  (SI), Y1, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     s8_loop

s8_tail:
	TESTQ      CX, CX
	JZ         s8_done
	TAILMASK8(Y15)
	VMASKMOVPS (SI), Y15, Y0
	VMULPS     Y0, Y1, Y0
	VMASKMOVPS Y0, Y15, (DI)

s8_done:
	VZEROUPPER
	RET

// func reluAVX2(dst, src []float32)
// dst[i] = max(0, src[i]) as `if v < 0 { v = 0 }`: NaN and -0 stay (VMAXPS
// returns its second source operand, src, when either is NaN or both are
// zeros).
TEXT ·reluAVX2(SB), NOSPLIT, $0-48
	MOVQ   dst_base+0(FP), DI
	MOVQ   src_base+24(FP), SI
	MOVQ   src_len+32(FP), CX
	VXORPS Y2, Y2, Y2

r8_loop32:
	CMPQ    CX, $32
	JB      r8_loop8
	VMAXPS  (SI), Y2, Y0
	VMAXPS  32(SI), Y2, Y1
	VMAXPS  64(SI), Y2, Y3
	VMAXPS  96(SI), Y2, Y4
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y3, 64(DI)
	VMOVUPS Y4, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	SUBQ    $32, CX
	JMP     r8_loop32

r8_loop8:
	CMPQ    CX, $8
	JB      r8_tail
	VMAXPS  (SI), Y2, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     r8_loop8

r8_tail:
	TESTQ      CX, CX
	JZ         r8_done
	TAILMASK8(Y15)
	VMASKMOVPS (SI), Y15, Y0
	VMAXPS     Y0, Y2, Y0
	VMASKMOVPS Y0, Y15, (DI)

r8_done:
	VZEROUPPER
	RET

// func layerNormAVX2(dst, x, w, b []float32, eps float32)
// One row: dst = (x - mean) / sqrt(var + eps) * w + b, len(x) > 0, as
// layerNormAVX512 (float32 sums over eight lanes, two-pass variance).
TEXT ·layerNormAVX2(SB), NOSPLIT, $0-100
	MOVQ   dst_base+0(FP), DI
	MOVQ   x_base+24(FP), SI
	MOVQ   x_len+32(FP), R8
	MOVQ   w_base+48(FP), R9
	MOVQ   b_base+72(FP), R10
	MOVQ   R8, CX
	ANDQ   $7, CX
	VXORPS Y14, Y14, Y14 // tail mask, all clear without a tail
	TESTQ  CX, CX
	JZ     l8_nomask
	TAILMASK8(Y14)

l8_nomask:
	MOVQ R8, R11
	SHRQ $3, R11 // full chunks

	// mean
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	MOVQ   SI, AX
	MOVQ   R11, BX

l8_sum2:
	CMPQ   BX, $2
	JB     l8_sum1
	VADDPS (AX), Y0, Y0
	VADDPS 32(AX), Y1, Y1
	ADDQ   $64, AX
	SUBQ   $2, BX
	JMP    l8_sum2

l8_sum1:
	TESTQ  BX, BX
	JZ     l8_sumtail
	VADDPS (AX), Y0, Y0
	ADDQ   $32, AX

l8_sumtail:
	TESTQ      CX, CX
	JZ         l8_sumdone
	VMASKMOVPS (AX), Y14, Y2
	VADDPS     Y2, Y1, Y1

l8_sumdone:
	VADDPS       Y1, Y0, Y0
	HSUM8
	VCVTSI2SSQ   R8, X3, X3 // d
	VDIVSS       X3, X0, X0 // mean
	VBROADCASTSS X0, Y4     // mean in every lane

	// variance
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	MOVQ   SI, AX
	MOVQ   R11, BX

l8_var2:
	CMPQ        BX, $2
	JB          l8_var1
	VSUBPS      (AX), Y4, Y2 // mean - x
	VSUBPS      32(AX), Y4, Y5
	VFMADD231PS Y2, Y2, Y0
	VFMADD231PS Y5, Y5, Y1
	ADDQ        $64, AX
	SUBQ        $2, BX
	JMP         l8_var2

l8_var1:
	TESTQ       BX, BX
	JZ          l8_vartail
	VSUBPS      (AX), Y4, Y2
	VFMADD231PS Y2, Y2, Y0
	ADDQ        $32, AX

l8_vartail:
	TESTQ       CX, CX
	JZ          l8_vardone
	VMASKMOVPS  (AX), Y14, Y2
	VSUBPS      Y2, Y4, Y2
	VANDPS      Y14, Y2, Y2 // tail lanes only
	VFMADD231PS Y2, Y2, Y1

l8_vardone:
	VADDPS       Y1, Y0, Y0
	HSUM8
	VDIVSS       X3, X0, X0 // var
	VADDSS       eps+96(FP), X0, X0
	VSQRTSS      X0, X0, X0
	MOVL         $0x3f800000, AX
	VMOVD        AX, X5
	VDIVSS       X0, X5, X0 // 1/sqrt(var+eps)
	VBROADCASTSS X0, Y5

	// normalise
	MOVQ R11, BX

l8_out:
	TESTQ       BX, BX
	JZ          l8_outtail
	VMOVUPS     (SI), Y2
	VSUBPS      Y4, Y2, Y2
	VMULPS      Y5, Y2, Y2
	VMOVUPS     (R10), Y3
	VFMADD231PS (R9), Y2, Y3
	VMOVUPS     Y3, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	ADDQ        $32, R9
	ADDQ        $32, R10
	DECQ        BX
	JMP         l8_out

l8_outtail:
	TESTQ       CX, CX
	JZ          l8_done
	VMASKMOVPS  (SI), Y14, Y2
	VSUBPS      Y4, Y2, Y2
	VMULPS      Y5, Y2, Y2
	VMASKMOVPS  (R10), Y14, Y3
	VMASKMOVPS  (R9), Y14, Y6
	VFMADD231PS Y6, Y2, Y3
	VMASKMOVPS  Y3, Y14, (DI)

l8_done:
	VZEROUPPER
	RET

// func divMaxAVX2(x []float32, d float32) float32
// x[i] /= d, returning the largest result (NaNs ignored, -Inf for none),
// as divMaxGo.
TEXT ·divMaxAVX2(SB), NOSPLIT, $0-36
	MOVQ         x_base+0(FP), SI
	MOVQ         x_len+8(FP), CX
	VBROADCASTSS d+24(FP), Y15
	VMOVUPS      K_NEGINF, Y0
	VMOVUPS      K_NEGINF, Y1

dm_loop16:
	CMPQ    CX, $16
	JB      dm_loop8
	VMOVUPS (SI), Y2
	VMOVUPS 32(SI), Y3
	VDIVPS  Y15, Y2, Y2
	VDIVPS  Y15, Y3, Y3
	VMOVUPS Y2, (SI)
	VMOVUPS Y3, 32(SI)
	VMAXPS  Y0, Y2, Y0 // NaN in Y2: Y0 stays
	VMAXPS  Y1, Y3, Y1
	ADDQ    $64, SI
	SUBQ    $16, CX
	JMP     dm_loop16

dm_loop8:
	CMPQ    CX, $8
	JB      dm_tail
	VMOVUPS (SI), Y2
	VDIVPS  Y15, Y2, Y2
	VMOVUPS Y2, (SI)
	VMAXPS  Y0, Y2, Y0
	ADDQ    $32, SI
	SUBQ    $8, CX

dm_tail:
	TESTQ      CX, CX
	JZ         dm_done
	TAILMASK8(Y14)
	VMASKMOVPS (SI), Y14, Y2
	VDIVPS     Y15, Y2, Y2
	VMASKMOVPS Y2, Y14, (SI)
	VBLENDVPS  Y14, Y2, Y1, Y2 // lanes past the row keep Y1's
	VMAXPS     Y1, Y2, Y1

dm_done:
	VMAXPS       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXSS       X1, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+32(FP)
	RET
