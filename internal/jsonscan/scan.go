// Package jsonscan walks JSON text without building values: a small,
// allocation-free reader for the few fields the classifier and the usage
// reader need. It takes any bytes at all (HTML, truncated or hostile JSON)
// in bounded time and memory: it never recurses on input depth, skips
// everything it is not asked for, and stops at the first malformed byte,
// keeping what was read before it.
package jsonscan

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Scanner walks JSON text without building values. Once Bad is set every
// method returns at once; the caller keeps what it read before.
type Scanner struct {
	B   []byte
	I   int
	Bad bool
	// Strict makes Skip fail on a number or literal holding a byte that
	// none is made of: a quote or bracket there ({"n": 0"}) is skipped as
	// text by a lenient reader, and as the start of a string or a
	// container by one that only counts brackets, and the two would
	// disagree on where the value ends.
	Strict bool
}

// Peek returns the byte at s.I, 0 at the end.
func (s *Scanner) Peek() byte {
	if s.I < len(s.B) {
		return s.B[s.I]
	}
	return 0
}

// SkipSpace moves s.I past JSON white space.
func (s *Scanner) SkipSpace() {
	// Every space is at most ' ', and most bytes it is called at are
	// not: one comparison tells most of them.
	for s.I < len(s.B) && s.B[s.I] <= ' ' {
		switch s.B[s.I] {
		case ' ', '\t', '\n', '\r':
			s.I++
		default:
			return
		}
	}
}

// Fail marks the input malformed and returns false, for use in returns.
func (s *Scanner) Fail() bool {
	s.Bad = true
	s.I = len(s.B)
	return false
}

// Str reads the string at s.I and returns its raw contents (between the
// quotes, escapes left in place) and whether it holds any escape.
func (s *Scanner) Str() (raw []byte, escaped bool) {
	if s.Peek() != '"' {
		s.Fail()
		return nil, false
	}
	start := s.I + 1
	if k := Special(s.B[start:]); k >= 0 && s.B[start+k] == '"' {
		s.I = start + k + 1
		return s.B[start : start+k], false
	}
	if !s.skipStr() {
		return nil, false
	}
	raw = s.B[start : s.I-1]
	return raw, bytes.IndexByte(raw, '\\') >= 0
}

// skipStr passes the string at s.I. Skip needs only its end, which one
// search for its closing quote finds, where Str spends a second on telling
// whether it holds escapes.
func (s *Scanner) skipStr() bool {
	start := s.I + 1
	// Most strings are short keys and names, whose end Special finds
	// faster than a call to IndexByte does.
	j := start
	if k := Special(s.B[start:]); k >= 0 && s.B[start+k] == '"' {
		s.I = start + k + 1
		return true
	} else if k < 0 {
		j = min(start+ShortString, len(s.B))
	}
	for {
		k := bytes.IndexByte(s.B[j:], '"')
		if k < 0 {
			return s.Fail()
		}
		end := j + k
		// The quote ends the string unless an odd run of backslashes escapes it.
		n := 0
		for p := end - 1; p >= start && s.B[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			s.I = end + 1
			return true
		}
		j = end + 1
	}
}

// ShortString is how far Special looks.
const ShortString = 32

// Special returns the index of the first quote or backslash among the first
// ShortString bytes of b, -1 if there is none there. Most strings in JSON
// are short keys and names, whose end it finds in the time of one
// bytes.IndexByte call, where telling a closing quote from an escape takes
// two; a longer string is better searched with bytes.IndexByte.
func Special(b []byte) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(b) && i < ShortString; i += 8 {
		// A byte of x^(lo*c) is zero where b holds c; the lowest zero
		// byte sets the lowest bit of the mask (bytes above it may set
		// theirs wrongly, by a borrow, which does not matter).
		w := binary.LittleEndian.Uint64(b[i:])
		q, bs := w^(lo*'"'), w^(lo*'\\')
		if m := ((q-lo)&^q | (bs-lo)&^bs) & hi; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b) && i < ShortString; i++ {
		if b[i] == '"' || b[i] == '\\' {
			return i
		}
	}
	return -1
}

// StringValue reads a value that should be a string; any other value is
// skipped and reads as absent.
func (s *Scanner) StringValue() (raw []byte, escaped bool) {
	if s.Peek() == '"' {
		return s.Str()
	}
	s.Skip()
	return nil, false
}

// ScalarValue reads a string or a number, which providers use alike for
// codes ("429", 429); null and anything else read as absent.
func (s *Scanner) ScalarValue() (raw []byte, escaped bool) {
	switch c := s.Peek(); {
	case c == '"':
		return s.Str()
	case c == '-' || ('0' <= c && c <= '9'):
		start := s.I
		s.Skip()
		return s.B[start:s.I], false
	}
	s.Skip()
	return nil, false
}

// Skip passes over one value of any kind. Containers are skipped by counting
// brackets outside strings, so depth costs no stack.
func (s *Scanner) Skip() bool {
	if s.Bad {
		return false
	}
	switch s.Peek() {
	case '"':
		return s.skipStr()
	case '{', '[':
		depth := 0
		for s.I < len(s.B) {
			switch s.B[s.I] {
			case '"':
				if !s.skipStr() {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.I++
					return true
				}
			}
			s.I++
		}
		return s.Fail()
	}
	start := s.I
	for s.I < len(s.B) {
		switch c := s.B[s.I]; c {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return s.I > start || s.Fail()
		default:
			if s.Strict && !ScalarByte(c) {
				return s.Fail()
			}
		}
		s.I++
	}
	return s.I > start || s.Fail()
}

// ScalarByte reports whether b may be part of a JSON number or literal.
func ScalarByte(b byte) bool {
	return 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-' || b == '+' || b == '.' || 'A' <= b && b <= 'Z'
}

// Object reads the object at s.I, calling member with each key and s placed
// at the value, which member must consume.
func (s *Scanner) Object(member func(key []byte) bool) bool {
	if s.Peek() != '{' {
		return s.Fail()
	}
	s.I++
	s.SkipSpace()
	if s.Peek() == '}' {
		s.I++
		return true
	}
	for {
		s.SkipSpace()
		key, escaped := s.Str()
		if s.Bad {
			return false
		}
		if escaped {
			key = Unescape(key)
		}
		s.SkipSpace()
		if s.Peek() != ':' {
			return s.Fail()
		}
		s.I++
		s.SkipSpace()
		if !member(key) || s.Bad {
			return s.Fail()
		}
		s.SkipSpace()
		switch s.Peek() {
		case ',':
			s.I++
		case '}':
			s.I++
			return true
		default:
			return s.Fail()
		}
	}
}

// Array reads the array at s.I, calling elem with s placed at each element.
func (s *Scanner) Array(elem func() bool) bool {
	if s.Peek() != '[' {
		return s.Fail()
	}
	s.I++
	s.SkipSpace()
	if s.Peek() == ']' {
		s.I++
		return true
	}
	for {
		s.SkipSpace()
		if !elem() || s.Bad {
			return s.Fail()
		}
		s.SkipSpace()
		switch s.Peek() {
		case ',':
			s.I++
		case ']':
			s.I++
			return true
		default:
			return s.Fail()
		}
	}
}

// Unescape applies JSON escapes to the raw contents of a string. Escaped keys
// and codes are rare enough that encoding/json may do it.
func Unescape(raw []byte) []byte {
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	var s string
	if json.Unmarshal(quoted, &s) != nil {
		return raw
	}
	return []byte(s)
}

// MaxText bounds a string that Text returns: such strings (codes, types,
// model names, ids) end up as span and metric attributes, and real ones are
// a few dozen bytes at most.
const MaxText = 128

// Text returns the raw contents of a JSON string as valid UTF-8 of at most
// MaxText bytes, cut at a rune boundary; "" for none.
func Text(raw []byte, escaped bool) string {
	if len(raw) == 0 {
		return ""
	}
	if escaped {
		raw = Unescape(raw)
	}
	s := string(raw)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) > MaxText {
		cut := MaxText
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// AppendUnescaped appends the raw contents of a JSON string to dst with its
// escapes applied, and returns the extended slice. It allocates only when
// dst lacks room: the text never grows, so a dst with len(raw) free bytes
// is enough. An escape that is malformed or cut off at the end of raw is
// copied as it is, and a lone surrogate becomes U+FFFD, as in encoding/json.
func AppendUnescaped(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			dst = append(dst, c)
			i++
			continue
		}
		switch e := raw[i+1]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(raw[i+2:])
			if !ok {
				dst = append(dst, c)
				i++
				continue
			}
			n := 6
			if utf16.IsSurrogate(r) {
				r2, ok := rune(-1), false
				if i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
					r2, ok = hex4(raw[i+8:])
				}
				if d := utf16.DecodeRune(r, r2); ok && d != utf8.RuneError {
					r, n = d, 12
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			i += n
			continue
		default:
			dst = append(dst, c)
			i++
			continue
		}
		i += 2
	}
	return dst
}

// hex4 reads the four hex digits of a \u escape.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
