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
// This file is the machine: its input, stack, memo and the dispatch of
// opcodes by group (frames, stack, memo and containers here; literals in
// pickle_literal.go; globals and calls in pickle_torch.go).

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

// unpickler is the pickle stack machine.
type unpickler struct {
	src   *byteSource
	stack []any
	marks []int
	memo  map[uint64]any
	// persistentLoad turns a persistent id into a value (torch storages).
	persistentLoad func(pid any) (any, error)
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

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == n) {
		return nil, fmt.Errorf("%w: stack underflow", ErrPickle)
	}
	v := u.stack[n-1]
	u.stack = u.stack[:n-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == n) {
		return nil, fmt.Errorf("%w: stack underflow", ErrPickle)
	}
	return u.stack[n-1], nil
}

// popMark returns the items pushed since the last MARK and removes them.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, fmt.Errorf("%w: no MARK on the stack", ErrPickle)
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) memoGet(i uint64) error {
	v, ok := u.memo[i]
	if !ok {
		return fmt.Errorf("%w: memo key %d was never stored", ErrPickle, i)
	}
	u.push(v)
	return nil
}

func (u *unpickler) memoPut(i uint64) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	u.memo[i] = v
	return nil
}

func (u *unpickler) uint(n int) (uint64, error) {
	b, err := u.src.bytes(int64(n))
	if err != nil {
		return 0, err
	}
	var x uint64
	for i := n - 1; i >= 0; i-- {
		x = x<<8 | uint64(b[i])
	}
	return x, nil
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
			return u.pop()
		}
		if err := u.step(op); err != nil {
			return nil, err
		}
	}
}

// step executes one opcode other than STOP.
func (u *unpickler) step(op byte) error {
	for _, group := range []func(*unpickler, byte) (bool, error){
		(*unpickler).frameOp, (*unpickler).stackOp, (*unpickler).literalOp,
		(*unpickler).containerOp, (*unpickler).memoOp, (*unpickler).objectOp,
	} {
		if done, err := group(u, op); done || err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: unknown opcode 0x%02x", ErrPickle, op)
}

// frameOp executes PROTO and FRAME; it reports whether op was one of them.
func (u *unpickler) frameOp(op byte) (bool, error) {
	s := u.src
	switch op {
	case opProto:
		v, err := s.byte()
		if err != nil {
			return true, err
		}
		if v > 5 {
			return true, fmt.Errorf("%w: unsupported protocol %d", ErrPickle, v)
		}
	case opFrame:
		if _, err := u.uint(8); err != nil {
			return true, err
		}
	default:
		return false, nil
	}
	return true, nil
}

// stackOp executes the stack opcodes (MARK, POP, POP_MARK, DUP).
func (u *unpickler) stackOp(op byte) (bool, error) {
	switch op {
	case opMark:
		u.marks = append(u.marks, len(u.stack))
	case opPop:
		if len(u.marks) > 0 && u.marks[len(u.marks)-1] == len(u.stack) {
			// POP of a mark (what pickle.py does for a MARK on top).
			u.marks = u.marks[:len(u.marks)-1]
			break
		}
		if _, err := u.pop(); err != nil {
			return true, err
		}
	case opPopMark:
		if _, err := u.popMark(); err != nil {
			return true, err
		}
	case opDup:
		v, err := u.top()
		if err != nil {
			return true, err
		}
		u.push(v)
	default:
		return false, nil
	}
	return true, nil
}

// memoOp executes the memo opcodes (GET, PUT and their binary forms, MEMOIZE).
func (u *unpickler) memoOp(op byte) (bool, error) {
	s := u.src
	switch op {
	case opGet:
		l, err := s.line()
		if err != nil {
			return true, err
		}
		i, err := strconv.ParseUint(l, 10, 64)
		if err != nil {
			return true, fmt.Errorf("%w: GET %q", ErrPickle, l)
		}
		if err := u.memoGet(i); err != nil {
			return true, err
		}
	case opBinGet, opLongBinGet:
		n := 1
		if op == opLongBinGet {
			n = 4
		}
		i, err := u.uint(n)
		if err != nil {
			return true, err
		}
		if err := u.memoGet(i); err != nil {
			return true, err
		}
	case opPut:
		l, err := s.line()
		if err != nil {
			return true, err
		}
		i, err := strconv.ParseUint(l, 10, 64)
		if err != nil {
			return true, fmt.Errorf("%w: PUT %q", ErrPickle, l)
		}
		if err := u.memoPut(i); err != nil {
			return true, err
		}
	case opBinPut, opLongBinPut:
		n := 1
		if op == opLongBinPut {
			n = 4
		}
		i, err := u.uint(n)
		if err != nil {
			return true, err
		}
		if err := u.memoPut(i); err != nil {
			return true, err
		}
	case opMemoize:
		if err := u.memoPut(uint64(len(u.memo))); err != nil {
			return true, err
		}
	default:
		return false, nil
	}
	return true, nil
}

// containerOp executes the opcodes that build tuples, lists, dicts and sets.
func (u *unpickler) containerOp(op byte) (bool, error) {
	switch op {
	case opEmptyTuple:
		u.push(pyTuple{})
	case opTuple1, opTuple2, opTuple3:
		n := int(op-opTuple1) + 1
		if len(u.stack) < n || (len(u.marks) > 0 && u.marks[len(u.marks)-1] > len(u.stack)-n) {
			return true, fmt.Errorf("%w: stack underflow", ErrPickle)
		}
		t := append(pyTuple(nil), u.stack[len(u.stack)-n:]...)
		u.stack = u.stack[:len(u.stack)-n]
		u.push(t)
	case opTuple:
		items, err := u.popMark()
		if err != nil {
			return true, err
		}
		u.push(pyTuple(items))
	case opEmptyList:
		u.push(&pyList{})
	case opList:
		items, err := u.popMark()
		if err != nil {
			return true, err
		}
		u.push(&pyList{items: items})
	case opAppend:
		v, err := u.pop()
		if err != nil {
			return true, err
		}
		if err := u.appendTo([]any{v}); err != nil {
			return true, err
		}
	case opAppends:
		items, err := u.popMark()
		if err != nil {
			return true, err
		}
		if err := u.appendTo(items); err != nil {
			return true, err
		}
	case opEmptyDict:
		u.push(newDict())
	case opDict:
		items, err := u.popMark()
		if err != nil {
			return true, err
		}
		d := newDict()
		if err := setItems(d, items); err != nil {
			return true, err
		}
		u.push(d)
	case opSetItem:
		if len(u.stack) < 3 {
			return true, fmt.Errorf("%w: stack underflow", ErrPickle)
		}
		v, err := u.pop()
		if err != nil {
			return true, err
		}
		k, err := u.pop()
		if err != nil {
			return true, err
		}
		if err := u.setInto([]any{k, v}); err != nil {
			return true, err
		}
	case opSetItems:
		items, err := u.popMark()
		if err != nil {
			return true, err
		}
		if err := u.setInto(items); err != nil {
			return true, err
		}
	case opEmptySet:
		u.push(&pySet{})
	case opAddItems:
		items, err := u.popMark()
		if err != nil {
			return true, err
		}
		t, err := u.top()
		if err != nil {
			return true, err
		}
		set, ok := t.(*pySet)
		if !ok {
			return true, fmt.Errorf("%w: ADDITEMS to %s", ErrPickle, typeName(t))
		}
		set.items = append(set.items, items...)
	case opFrozenSet:
		items, err := u.popMark()
		if err != nil {
			return true, err
		}
		u.push(&pySet{items: items})
	default:
		return false, nil
	}
	return true, nil
}

func (u *unpickler) appendTo(items []any) error {
	t, err := u.top()
	if err != nil {
		return err
	}
	l, ok := t.(*pyList)
	if !ok {
		return fmt.Errorf("%w: APPEND to %s", ErrPickle, typeName(t))
	}
	l.items = append(l.items, items...)
	return nil
}

func (u *unpickler) setInto(items []any) error {
	t, err := u.top()
	if err != nil {
		return err
	}
	d, ok := t.(*pyDict)
	if !ok {
		return fmt.Errorf("%w: SETITEM on %s", ErrPickle, typeName(t))
	}
	return setItems(d, items)
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
