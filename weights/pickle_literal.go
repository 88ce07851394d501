package weights

// Pickle literals: the opcodes that push numbers, strings and bytes, and
// the parsing of their text (protocol 0) and binary forms.

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// literalOp executes the opcodes that push a literal: None, booleans,
// integers, floats, strings and bytes.
func (u *unpickler) literalOp(op byte) bool {
	switch op {
	case opNone:
		u.push(nil)
	case opNewTrue:
		u.push(true)
	case opNewFalse:
		u.push(false)
	case opBinInt:
		u.push(int64(int32(uint32(u.uint(4)))))
	case opBinInt1:
		u.push(int64(u.uint(1)))
	case opBinInt2:
		u.push(int64(u.uint(2)))
	case opInt:
		switch l := u.line(); l {
		case "00":
			u.push(false)
		case "01":
			u.push(true)
		default:
			u.push(u.intText(l))
		}
	case opLong:
		u.push(u.intText(strings.TrimSuffix(u.line(), "L")))
	case opLong1:
		u.push(decodeLong(u.longBytes(1)))
	case opLong4:
		u.push(decodeLong(u.longBytes(4)))
	case opFloat:
		u.push(u.floatText(u.line()))
	case opBinFloat:
		if b := u.read(8); len(b) == 8 {
			u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
		}
	case opString:
		u.push(u.quoted(u.line()))
	case opUnicode:
		u.push(unescapeRawUnicode(u.line()))
	default:
		return u.bytesOp(op)
	}
	return true
}

// bytesOp executes the opcodes that push counted strings and bytes.
func (u *unpickler) bytesOp(op byte) bool {
	var n uint64
	switch op {
	case opShortBinString, opShortBinUni, opShortBinBytes:
		n = u.uint(1)
	case opBinString, opBinUnicode, opBinBytes:
		n = u.uint(4)
		if op == opBinString && int32(uint32(n)) < 0 {
			u.failf("negative string length")
		}
	case opBinUnicode8, opBinBytes8, opByteArray8:
		n = u.uint(8)
	default:
		return false
	}
	if n > math.MaxInt64 {
		u.failf("length %d", n)
	}
	b := u.read(int64(n))
	if u.err != nil {
		return true
	}
	switch op {
	case opShortBinUni, opBinUnicode, opBinUnicode8, opShortBinString, opBinString:
		// Python 2 str (BINSTRING) holds names in torch files: treat as text.
		u.push(string(b))
	default:
		u.push(b)
	}
	return true
}

// intText parses a protocol-0 integer.
func (u *unpickler) intText(l string) any {
	if u.err != nil {
		return nil
	}
	v, err := parseIntText(l)
	u.fail(err)
	return v
}

// floatText parses a protocol-0 float.
func (u *unpickler) floatText(l string) float64 {
	if u.err != nil {
		return 0
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(l), 64)
	if err != nil {
		u.failf("FLOAT %q", l)
	}
	return f
}

// quoted unquotes a protocol-0 string.
func (u *unpickler) quoted(l string) string {
	if u.err != nil {
		return ""
	}
	v, err := unquote(l)
	u.fail(err)
	return v
}

// longBytes reads the bytes of a LONG1 (size 1) or LONG4 (size 4) integer.
func (u *unpickler) longBytes(size int) []byte {
	n := u.uint(size)
	if n > maxBigIntBytes {
		u.failf("integer of %d bytes", n)
		return nil
	}
	return u.read(int64(n))
}

// decodeLong decodes a little-endian two's-complement integer (LONG1/LONG4).
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var x uint64
		for i := len(b) - 1; i >= 0; i-- {
			x = x<<8 | uint64(b[i])
		}
		shift := uint(64 - 8*len(b))
		return int64(x<<shift) >> shift
	}
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	v := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if v.IsInt64() {
		return v.Int64()
	}
	return v
}

func parseIntText(s string) (any, error) {
	s = strings.TrimSpace(s)
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, nil
	}
	if len(s) > 3*maxBigIntBytes {
		return nil, fmt.Errorf("%w: integer text too long", ErrPickle)
	}
	v, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return nil, fmt.Errorf("%w: bad integer %q", ErrPickle, s)
	}
	return v, nil
}

// unquote decodes a protocol-0 STRING argument (a Python repr in quotes).
func unquote(l string) (string, error) {
	if len(l) < 2 || (l[0] != '\'' && l[0] != '"') || l[len(l)-1] != l[0] {
		return "", fmt.Errorf("%w: STRING argument not quoted", ErrPickle)
	}
	body := l[1 : len(l)-1]
	if !strings.Contains(body, `\`) {
		return body, nil
	}
	var sb strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' || i+1 == len(body) {
			sb.WriteByte(c)
			continue
		}
		i++
		switch body[i] {
		case 'n':
			sb.WriteByte('\n')
		case 't':
			sb.WriteByte('\t')
		case 'r':
			sb.WriteByte('\r')
		case 'x':
			if i+3 <= len(body) {
				if v, err := strconv.ParseUint(body[i+1:i+3], 16, 8); err == nil {
					sb.WriteByte(byte(v))
					i += 2
					continue
				}
			}
			sb.WriteString(`\x`)
		default:
			sb.WriteByte(body[i])
		}
	}
	return sb.String(), nil
}

// unescapeRawUnicode decodes protocol-0 UNICODE (raw-unicode-escape).
func unescapeRawUnicode(l string) string {
	if !strings.Contains(l, `\u`) && !strings.Contains(l, `\U`) {
		return l
	}
	var sb strings.Builder
	for i := 0; i < len(l); i++ {
		if l[i] == '\\' && i+1 < len(l) && (l[i+1] == 'u' || l[i+1] == 'U') {
			n := 4
			if l[i+1] == 'U' {
				n = 8
			}
			if i+2+n <= len(l) {
				if v, err := strconv.ParseUint(l[i+2:i+2+n], 16, 32); err == nil {
					sb.WriteRune(rune(v))
					i += 1 + n
					continue
				}
			}
		}
		sb.WriteByte(l[i])
	}
	return sb.String()
}
