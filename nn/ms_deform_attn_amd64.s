//go:build !purego && amd64

#include "textflag.h"

// func deformTaps32AVX2(acc, v []float32, off []int, wt []float32)
//
// acc[0:32] += sum over k of wt[k] * v[off[k] : off[k]+32]: the taps are
// taken two at a time into two sets of four accumulators, summed at the end.
TEXT ·deformTaps32AVX2(SB), NOSPLIT, $0-96
	MOVQ acc_base+0(FP), DI
	MOVQ v_base+24(FP), SI
	MOVQ off_base+48(FP), BX
	MOVQ wt_base+72(FP), DX
	MOVQ wt_len+80(FP), CX
	VMOVUPS 0(DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

pairs:
	CMPQ CX, $2
	JLT  single
	MOVQ 0(BX), AX
	MOVQ 8(BX), R9
	LEAQ (SI)(AX*4), R8
	LEAQ (SI)(R9*4), R10
	VBROADCASTSS 0(DX), Y8
	VBROADCASTSS 4(DX), Y9
	VFMADD231PS 0(R8), Y8, Y0
	VFMADD231PS 32(R8), Y8, Y1
	VFMADD231PS 64(R8), Y8, Y2
	VFMADD231PS 96(R8), Y8, Y3
	VFMADD231PS 0(R10), Y9, Y4
	VFMADD231PS 32(R10), Y9, Y5
	VFMADD231PS 64(R10), Y9, Y6
	VFMADD231PS 96(R10), Y9, Y7
	ADDQ $16, BX
	ADDQ $8, DX
	SUBQ $2, CX
	JMP  pairs

single:
	TESTQ CX, CX
	JEQ   done
	MOVQ 0(BX), AX
	LEAQ (SI)(AX*4), R8
	VBROADCASTSS 0(DX), Y8
	VFMADD231PS 0(R8), Y8, Y0
	VFMADD231PS 32(R8), Y8, Y1
	VFMADD231PS 64(R8), Y8, Y2
	VFMADD231PS 96(R8), Y8, Y3

done:
	VADDPS Y4, Y0, Y0
	VADDPS Y5, Y1, Y1
	VADDPS Y6, Y2, Y2
	VADDPS Y7, Y3, Y3
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	VZEROUPPER
	RET

// Constants of deformHead32AVX2, eight lanes each.
DATA dfm<>+0(SB)/8, $0x3f8000003f800000 // 1.0
DATA dfm<>+8(SB)/8, $0x3f8000003f800000
DATA dfm<>+16(SB)/8, $0x3f8000003f800000
DATA dfm<>+24(SB)/8, $0x3f8000003f800000
DATA dfm<>+32(SB)/8, $0x3f0000003f000000 // 0.5
DATA dfm<>+40(SB)/8, $0x3f0000003f000000
DATA dfm<>+48(SB)/8, $0x3f0000003f000000
DATA dfm<>+56(SB)/8, $0x3f0000003f000000
DATA dfm<>+64(SB)/8, $0xbf800000bf800000 // -1.0
DATA dfm<>+72(SB)/8, $0xbf800000bf800000
DATA dfm<>+80(SB)/8, $0xbf800000bf800000
DATA dfm<>+88(SB)/8, $0xbf800000bf800000
DATA dfm<>+96(SB)/8, $0xffffffffffffffff // int32 -1
DATA dfm<>+104(SB)/8, $0xffffffffffffffff
DATA dfm<>+112(SB)/8, $0xffffffffffffffff
DATA dfm<>+120(SB)/8, $0xffffffffffffffff
GLOBL dfm<>(SB), RODATA|NOPTR, $128

#define D_ONE dfm<>+0(SB)
#define D_HALF dfm<>+32(SB)
#define D_NEG1 dfm<>+64(SB)
#define D_IM1 dfm<>+96(SB)

// Offsets in deformTab (checked by TestDeformTabLayout).
#define T_WHALF 0
#define T_HHALF 256
#define T_WF 512
#define T_HF 768
#define T_WI 1024
#define T_WM2 1280
#define T_HM2 1536
#define T_WS 1792
#define T_BASE 2048
#define T_STRIDE 2304
#define T_DSTSTEP 2336
#define T_LOCSTEP 2344
#define T_ATTNSTEP 2352
#define T_VALSTEP 2360
#define T_OFFS 2368
#define T_WTS 10560

// func deformItems32AVX2(dst, value, loc, attn []float32, tab *deformTab, items, groups int)
//
// The sampling core of MSDeformAttnInto for items query-heads of 32
// channels: item k reads its 8*groups slots at loc + k*T_LOCSTEP bytes (x,
// y interleaved) and attn + k*T_ATTNSTEP, the value from value +
// k*T_VALSTEP, and writes its 32 sums to dst + k*T_DSTSTEP. Slot i of
// every item samples the level laid out in tab's slot i, with its bilinear
// taps formed as bilinearTaps forms them (the same float32 operations).
// First every item's taps are formed, 8 slots (32 taps) at a time in
// vectors, into tab's scratch: element offsets (-1 for a neighbour outside
// the map, which is skipped) and weights; then each item sums its taps,
// two at a time into two sets of accumulators (the scratch is written well
// before it is read back, so the loads do not wait on the stores).
TEXT ·deformItems32AVX2(SB), NOSPLIT, $0-120
	MOVQ loc_base+48(FP), R8
	MOVQ attn_base+72(FP), SI
	MOVQ tab+96(FP), R13
	MOVQ items+104(FP), R9
	LEAQ T_OFFS(R13), BX
	LEAQ T_WTS(R13), DX
	TESTQ R9, R9
	JEQ di_ret

di_item:
	MOVQ R13, R10
	MOVQ R8, R11
	MOVQ SI, R12
	MOVQ groups+112(FP), R14

di_group:
	// x and y of the 8 slots
	VMOVUPS  (R11), Y8
	VMOVUPS  32(R11), Y9
	VSHUFPS  $0x88, Y9, Y8, Y10
	VSHUFPS  $0xdd, Y9, Y8, Y11
	VPERMPD  $0xd8, Y10, Y10
	VPERMPD  $0xd8, Y11, Y11
	// ix = ((2x-1)+1)*(w/2) - 0.5, iy alike
	VADDPS   Y10, Y10, Y10
	VSUBPS   D_ONE, Y10, Y10
	VADDPS   D_ONE, Y10, Y10
	VMULPS   T_WHALF(R10), Y10, Y10
	VSUBPS   D_HALF, Y10, Y10
	VADDPS   Y11, Y11, Y11
	VSUBPS   D_ONE, Y11, Y11
	VADDPS   D_ONE, Y11, Y11
	VMULPS   T_HHALF(R10), Y11, Y11
	VSUBPS   D_HALF, Y11, Y11
	// valid = -1 < ix < w && -1 < iy < h (false for NaN)
	VCMPPS   $0x1e, D_NEG1, Y10, Y12
	VCMPPS   $0x11, T_WF(R10), Y10, Y13
	VANDPS   Y13, Y12, Y12
	VCMPPS   $0x1e, D_NEG1, Y11, Y13
	VANDPS   Y13, Y12, Y12
	VCMPPS   $0x11, T_HF(R10), Y11, Y13
	VANDPS   Y13, Y12, Y12
	// floors and the weights' factors
	VROUNDPS $1, Y10, Y13             // fx0
	VROUNDPS $1, Y11, Y14             // fy0
	VSUBPS   Y13, Y10, Y15            // ix - fx0
	VADDPS   D_ONE, Y13, Y9
	VSUBPS   Y10, Y9, Y9              // fx1 - ix
	VSUBPS   Y14, Y11, Y10            // iy - fy0
	VADDPS   D_ONE, Y14, Y8
	VSUBPS   Y11, Y8, Y8              // fy1 - iy
	// neighbours inside the map
	VCVTTPS2DQ Y13, Y13               // x0
	VCVTTPS2DQ Y14, Y14               // y0
	VPCMPGTD D_IM1, Y13, Y0           // x0 >= 0
	VPAND    Y12, Y0, Y0
	VPCMPGTD T_WM2(R10), Y13, Y1      // x0+1 >= w
	VPANDN   Y12, Y1, Y1              // x0+1 < w, valid
	VPCMPGTD D_IM1, Y14, Y2           // y0 >= 0
	VPCMPGTD T_HM2(R10), Y14, Y3      // y0+1 >= h
	VPAND    Y2, Y0, Y4               // nw
	VPAND    Y2, Y1, Y5               // ne
	VPANDN   Y0, Y3, Y6               // sw
	VPANDN   Y1, Y3, Y7               // se
	// weights a*(fx*fy) of nw, ne, sw, se, zero outside
	VMULPS   Y8, Y9, Y11
	VMULPS   (R12), Y11, Y11
	VANDPS   Y4, Y11, Y11
	VMOVUPS  Y11, (DX)
	VMULPS   Y8, Y15, Y11
	VMULPS   (R12), Y11, Y11
	VANDPS   Y5, Y11, Y11
	VMOVUPS  Y11, 32(DX)
	VMULPS   Y10, Y9, Y11
	VMULPS   (R12), Y11, Y11
	VANDPS   Y6, Y11, Y11
	VMOVUPS  Y11, 64(DX)
	VMULPS   Y10, Y15, Y11
	VMULPS   (R12), Y11, Y11
	VANDPS   Y7, Y11, Y11
	VMOVUPS  Y11, 96(DX)
	// offsets base + (y0*w + x0)*stride (+stride, +w*stride), -1 outside
	VPMULLD  T_WI(R10), Y14, Y15
	VPADDD   Y13, Y15, Y15
	VPMULLD  T_STRIDE(R13), Y15, Y15
	VPADDD   T_BASE(R10), Y15, Y15
	VMOVDQU  D_IM1, Y12
	VBLENDVPS Y4, Y15, Y12, Y14
	VMOVDQU   Y14, (BX)
	VPADDD    T_STRIDE(R13), Y15, Y14
	VBLENDVPS Y5, Y14, Y12, Y14
	VMOVDQU   Y14, 32(BX)
	VPADDD    T_WS(R10), Y15, Y15
	VBLENDVPS Y6, Y15, Y12, Y14
	VMOVDQU   Y14, 64(BX)
	VPADDD    T_STRIDE(R13), Y15, Y14
	VBLENDVPS Y7, Y14, Y12, Y14
	VMOVDQU   Y14, 96(BX)

	ADDQ $128, BX
	ADDQ $128, DX
	ADDQ $64, R11
	ADDQ $32, R12
	ADDQ $32, R10
	DECQ R14
	JNZ  di_group
	ADDQ T_LOCSTEP(R13), R8
	ADDQ T_ATTNSTEP(R13), SI
	DECQ R9
	JNZ  di_item

	// Sum each item's taps.
	MOVQ dst_base+0(FP), DI
	MOVQ value_base+24(FP), SI
	MOVQ items+104(FP), R9
	LEAQ T_OFFS(R13), BX
	LEAQ T_WTS(R13), DX

di_sum:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ groups+112(FP), CX
	SHLQ $4, CX                       // tap pairs

di_tap:
	MOVLQSX (BX), AX
	TESTQ   AX, AX
	JS      di_tap1
	VBROADCASTSS (DX), Y8
	VFMADD231PS (SI)(AX*4), Y8, Y0
	VFMADD231PS 32(SI)(AX*4), Y8, Y1
	VFMADD231PS 64(SI)(AX*4), Y8, Y2
	VFMADD231PS 96(SI)(AX*4), Y8, Y3

di_tap1:
	MOVLQSX 4(BX), AX
	TESTQ   AX, AX
	JS      di_tap2
	VBROADCASTSS 4(DX), Y9
	VFMADD231PS (SI)(AX*4), Y9, Y4
	VFMADD231PS 32(SI)(AX*4), Y9, Y5
	VFMADD231PS 64(SI)(AX*4), Y9, Y6
	VFMADD231PS 96(SI)(AX*4), Y9, Y7

di_tap2:
	ADDQ $8, BX
	ADDQ $8, DX
	DECQ CX
	JNZ  di_tap

	VADDPS  Y4, Y0, Y0
	VADDPS  Y5, Y1, Y1
	VADDPS  Y6, Y2, Y2
	VADDPS  Y7, Y3, Y3
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ T_DSTSTEP(R13), DI
	ADDQ T_VALSTEP(R13), SI
	DECQ R9
	JNZ  di_sum

di_ret:
	VZEROUPPER
	RET
