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
