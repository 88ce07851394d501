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
func (u *unpickler) literalOp(op byte) (bool, error) {
	s := u.src
	switch op {
	case opNone:
		u.push(nil)
	case opNewTrue:
		u.push(true)
	case opNewFalse:
		u.push(false)
	case opBinInt:
		x, err := u.uint(4)
		if err != nil {
			return true, err
		}
		u.push(int64(int32(uint32(x))))
	case opBinInt1:
		x, err := u.uint(1)
		if err != nil {
			return true, err
		}
		u.push(int64(x))
	case opBinInt2:
		x, err := u.uint(2)
		if err != nil {
			return true, err
		}
		u.push(int64(x))
	case opInt:
		l, err := s.line()
		if err != nil {
			return true, err
		}
		switch l {
		case "00":
			u.push(false)
		case "01":
			u.push(true)
		default:
			v, err := parseIntText(l)
			if err != nil {
				return true, err
			}
			u.push(v)
		}
	case opLong:
		l, err := s.line()
		if err != nil {
			return true, err
		}
		v, err := parseIntText(strings.TrimSuffix(l, "L"))
		if err != nil {
			return true, err
		}
		u.push(v)
	case opLong1, opLong4:
		size := 1
		if op == opLong4 {
			size = 4
		}
		n, err := u.uint(size)
		if err != nil {
			return true, err
		}
		if n > maxBigIntBytes {
			return true, fmt.Errorf("%w: integer of %d bytes", ErrPickle, n)
		}
		b, err := s.bytes(int64(n))
		if err != nil {
			return true, err
		}
		u.push(decodeLong(b))
	case opFloat:
		l, err := s.line()
		if err != nil {
			return true, err
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(l), 64)
		if err != nil {
			return true, fmt.Errorf("%w: FLOAT %q", ErrPickle, l)
		}
		u.push(f)
	case opBinFloat:
		b, err := s.bytes(8)
		if err != nil {
			return true, err
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case opString:
		l, err := s.line()
		if err != nil {
			return true, err
		}
		v, err := unquote(l)
		if err != nil {
			return true, err
		}
		u.push(v)
	case opUnicode:
		l, err := s.line()
		if err != nil {
			return true, err
		}
		u.push(unescapeRawUnicode(l))
	case opShortBinString, opShortBinUni, opShortBinBytes:
		n, err := u.uint(1)
		if err != nil {
			return true, err
		}
		if err := u.pushBytes(op, n); err != nil {
			return true, err
		}
	case opBinString, opBinUnicode, opBinBytes:
		n, err := u.uint(4)
		if err != nil {
			return true, err
		}
		if op == opBinString && int32(uint32(n)) < 0 {
			return true, fmt.Errorf("%w: negative string length", ErrPickle)
		}
		if err := u.pushBytes(op, n); err != nil {
			return true, err
		}
	case opBinUnicode8, opBinBytes8, opByteArray8:
		n, err := u.uint(8)
		if err != nil {
			return true, err
		}
		if err := u.pushBytes(op, n); err != nil {
			return true, err
		}
	default:
		return false, nil
	}
	return true, nil
}

func (u *unpickler) pushBytes(op byte, n uint64) error {
	if n > math.MaxInt64 {
		return fmt.Errorf("%w: length %d", ErrPickle, n)
	}
	b, err := u.src.bytes(int64(n))
	if err != nil {
		return err
	}
	switch op {
	case opShortBinUni, opBinUnicode, opBinUnicode8, opShortBinString, opBinString:
		// Python 2 str (BINSTRING) holds names in torch files: treat as text.
		u.push(string(b))
	default:
		u.push(b)
	}
	return nil
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
