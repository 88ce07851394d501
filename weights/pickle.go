package weights

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A restricted pickle reader: a stack machine for the opcodes of pickle
// protocols 0 to 5 that data (not code) needs. It never imports or calls
// anything: GLOBAL resolves only a fixed allow-list of names (the
// constructors torch.save uses for state dicts, pickle_torch.go), each
// modelled by a Go value, and any other global is an error that names it.
// This file is the machine: its input, stack, memo and the opcodes that
// work on them; literals are in pickle_literal.go, globals and calls in
// pickle_torch.go.

// ErrPickle is wrapped by every error about a malformed or disallowed pickle.
var ErrPickle = errors.New("pickle")

// Limits on what one pickle may build; real checkpoints are far below them.
const (
	maxPickleDims  = 64      // dimensions of one tensor
	maxPickleDepth = 64      // nesting followed when converting values
	maxBigIntBytes = 1 << 10 // bytes of one LONG integer
)

// byteSource is what the unpickler reads from: a buffered stream with the
// count of bytes left, so that no length field can make it allocate more
// than the input holds.
type byteSource struct {
	r    *bufio.Reader
	left int64 // bytes left in the input
	pos  int64 // bytes consumed
}

func (s *byteSource) byte() (byte, error) {
	if s.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	b, err := s.r.ReadByte()
	if err != nil {
		return 0, unexpected(err)
	}
	s.left--
	s.pos++
	return b, nil
}

func (s *byteSource) bytes(n int64) ([]byte, error) {
	if n < 0 || n > s.left {
		return nil, fmt.Errorf("%w: length %d exceeds the %d bytes left", ErrPickle, n, s.left)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(s.r, b); err != nil {
		return nil, unexpected(err)
	}
	s.left -= n
	s.pos += n
	return b, nil
}

// line reads up to and excluding '\n' (protocol 0 arguments), at most 64 KiB.
func (s *byteSource) line() (string, error) {
	var sb strings.Builder
	for {
		b, err := s.byte()
		if err != nil {
			return "", err
		}
		if b == '\n' {
			return sb.String(), nil
		}
		if sb.Len() >= 1<<16 {
			return "", fmt.Errorf("%w: text argument longer than 64 KiB", ErrPickle)
		}
		sb.WriteByte(b)
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// unpickler is the pickle stack machine. Its helpers record the first
// error of the opcode being run (err) and then do nothing, returning zero
// values, so an opcode reads as its steps; run stops after the opcode.
type unpickler struct {
	src   *byteSource
	stack []any
	marks []int
	memo  map[uint64]any
	// persistentLoad turns a persistent id into a value (torch storages).
	persistentLoad func(pid any) (any, error)
	err            error
}

// unpickle runs one pickle (up to STOP) from src and returns its value.
func unpickle(src *byteSource, persistentLoad func(any) (any, error)) (v any, err error) {
	u := &unpickler{src: src, memo: map[uint64]any{}, persistentLoad: persistentLoad}
	v, err = u.run()
	if err != nil {
		return nil, fmt.Errorf("%w (at byte %d)", err, src.pos)
	}
	return v, nil
}

// fail records err unless an error is recorded already (or err is nil).
func (u *unpickler) fail(err error) {
	if u.err == nil {
		u.err = err
	}
}

// failf records a malformed-pickle error.
func (u *unpickler) failf(format string, args ...any) {
	u.fail(fmt.Errorf("%w: "+format, append([]any{ErrPickle}, args...)...))
}

// read returns the next n bytes of the input.
func (u *unpickler) read(n int64) []byte {
	if u.err != nil {
		return nil
	}
	b, err := u.src.bytes(n)
	u.fail(err)
	return b
}

// line returns the next protocol-0 text argument.
func (u *unpickler) line() string {
	if u.err != nil {
		return ""
	}
	l, err := u.src.line()
	u.fail(err)
	return l
}

// uint reads an n-byte little-endian unsigned integer.
func (u *unpickler) uint(n int) uint64 {
	b := u.read(int64(n))
	var x uint64
	for i := len(b) - 1; i >= 0; i-- {
		x = x<<8 | uint64(b[i])
	}
	return x
}

// decimal reads a protocol-0 decimal argument of opcode name.
func (u *unpickler) decimal(name string) uint64 {
	l := u.line()
	i, err := strconv.ParseUint(l, 10, 64)
	if err != nil {
		u.failf("%s %q", name, l)
	}
	return i
}

// Pickle opcodes (Lib/pickletools.py).
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opFloat          = 'F'
	opInt            = 'I'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opLong           = 'L'
	opBinInt2        = 'M'
	opNone           = 'N'
	opPersID         = 'P'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opString         = 'S'
	opBinString      = 'T'
	opShortBinString = 'U'
	opUnicode        = 'V'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opGet            = 'g'
	opBinGet         = 'h'
	opInst           = 'i'
	opLongBinGet     = 'j'
	opList           = 'l'
	opEmptyList      = ']'
	opObj            = 'o'
	opPut            = 'p'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'
	opProto          = 0x80
	opNewObj         = 0x81
	opExt1           = 0x82
	opExt2           = 0x83
	opExt4           = 0x84
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opLong4          = 0x8b
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	opShortBinUni    = 0x8c
	opBinUnicode8    = 0x8d
	opBinBytes8      = 0x8e
	opEmptySet       = 0x8f
	opAddItems       = 0x90
	opFrozenSet      = 0x91
	opNewObjEx       = 0x92
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
	opByteArray8     = 0x96
	opNextBuffer     = 0x97
	opReadOnlyBuffer = 0x98
)

func opName(op byte) string {
	switch op {
	case opNewObj:
		return "NEWOBJ"
	case opNewObjEx:
		return "NEWOBJ_EX"
	case opInst:
		return "INST"
	case opObj:
		return "OBJ"
	case opExt1:
		return "EXT1"
	case opExt2:
		return "EXT2"
	case opExt4:
		return "EXT4"
	}
	return fmt.Sprintf("0x%02x", op)
}

// run executes opcodes until STOP and returns the value STOP pops.
func (u *unpickler) run() (any, error) {
	for {
		op, err := u.src.byte()
		if err != nil {
			return nil, fmt.Errorf("%w: truncated: %v", ErrPickle, err)
		}
		if op == opStop {
			v := u.pop()
			return v, u.err
		}
		if u.step(op); u.err != nil {
			return nil, u.err
		}
	}
}

// step executes one opcode other than STOP: those of the machine itself
// here, literals in literalOp, globals and calls in objectOp.
func (u *unpickler) step(op byte) {
	switch op {
	// Framing (frames only group the opcodes that follow).
	case opProto:
		if v := u.read(1); len(v) == 1 && v[0] > 5 {
			u.failf("unsupported protocol %d", v[0])
		}
	case opFrame:
		u.uint(8)
	// The stack.
	case opMark:
		u.marks = append(u.marks, len(u.stack))
	case opPop:
		if len(u.marks) > 0 && u.marks[len(u.marks)-1] == len(u.stack) {
			u.marks = u.marks[:len(u.marks)-1] // POP of a mark, as pickle.py does
		} else {
			u.pop()
		}
	case opPopMark:
		u.popMark()
	case opDup:
		u.push(u.top())
	// The memo.
	case opGet, opBinGet, opLongBinGet:
		u.memoGet(u.memoIndex(op))
	case opPut, opBinPut, opLongBinPut:
		u.memoPut(u.memoIndex(op))
	case opMemoize:
		u.memoPut(uint64(len(u.memo)))
	// Containers.
	case opEmptyTuple:
		u.push(pyTuple{})
	case opTuple1, opTuple2, opTuple3:
		u.push(pyTuple(u.popN(int(op-opTuple1) + 1)))
	case opTuple:
		u.push(pyTuple(u.popMark()))
	case opEmptyList:
		u.push(&pyList{})
	case opList:
		u.push(&pyList{items: u.popMark()})
	case opAppend, opAppends:
		items := u.popItems(op == opAppends, 1)
		if l, ok := topAs[*pyList](u, "APPEND to"); ok {
			l.items = append(l.items, items...)
		}
	case opEmptyDict:
		u.push(newDict())
	case opDict:
		d := newDict()
		u.fail(setItems(d, u.popMark()))
		u.push(d)
	case opSetItem, opSetItems:
		items := u.popItems(op == opSetItems, 2)
		if d, ok := topAs[*pyDict](u, "SETITEM on"); ok {
			u.fail(setItems(d, items))
		}
	case opEmptySet:
		u.push(&pySet{})
	case opAddItems:
		items := u.popMark()
		if set, ok := topAs[*pySet](u, "ADDITEMS to"); ok {
			set.items = append(set.items, items...)
		}
	case opFrozenSet:
		u.push(&pySet{items: u.popMark()})
	default:
		if !u.literalOp(op) && !u.objectOp(op) {
			u.failf("unknown opcode 0x%02x", op)
		}
	}
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

// popN removes the top n items (above the last MARK) and returns them in
// stack order.
func (u *unpickler) popN(n int) []any {
	if u.err != nil {
		return nil
	}
	k := len(u.stack)
	if k < n || (len(u.marks) > 0 && u.marks[len(u.marks)-1] > k-n) {
		u.failf("stack underflow")
		return nil
	}
	items := append([]any(nil), u.stack[k-n:]...)
	u.stack = u.stack[:k-n]
	return items
}

func (u *unpickler) pop() any {
	if items := u.popN(1); len(items) == 1 {
		return items[0]
	}
	return nil
}

func (u *unpickler) top() any {
	v := u.pop()
	if u.err == nil {
		u.push(v)
	}
	return v
}

// topAs returns the top of the stack as a T, or records an error: the
// opcode (what) cannot act on it.
func topAs[T any](u *unpickler, what string) (T, bool) {
	t := u.top()
	v, ok := t.(T)
	if !ok {
		u.failf("%s %s", what, typeName(t))
	}
	return v, ok && u.err == nil
}

// memoIndex reads the memo index of a GET or PUT opcode: text, one byte
// or four.
func (u *unpickler) memoIndex(op byte) uint64 {
	switch op {
	case opGet:
		return u.decimal("GET")
	case opPut:
		return u.decimal("PUT")
	case opBinGet, opBinPut:
		return u.uint(1)
	}
	return u.uint(4)
}

func (u *unpickler) memoGet(i uint64) {
	if u.err != nil {
		return
	}
	v, ok := u.memo[i]
	if !ok {
		u.failf("memo key %d was never stored", i)
		return
	}
	u.push(v)
}

func (u *unpickler) memoPut(i uint64) {
	if v := u.top(); u.err == nil {
		u.memo[i] = v
	}
}

// popItems pops the items since the last MARK (mark) or the top n.
func (u *unpickler) popItems(mark bool, n int) []any {
	if mark {
		return u.popMark()
	}
	return u.popN(n)
}

// popMark returns the items pushed since the last MARK and removes them.
func (u *unpickler) popMark() []any {
	if u.err != nil {
		return nil
	}
	if len(u.marks) == 0 {
		u.failf("no MARK on the stack")
		return nil
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items
}

func setItems(d *pyDict, items []any) error {
	if len(items)%2 != 0 {
		return fmt.Errorf("%w: odd number of dict items", ErrPickle)
	}
	for i := 0; i < len(items); i += 2 {
		d.set(items[i], items[i+1])
	}
	return nil
}
