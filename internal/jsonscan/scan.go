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

// Each, as a step of a Field's path, stands for every element of an array.
const Each = "[]"

// MaxPath bounds the steps of a Field's path. Find's memory is a stack of
// MaxPath+1 small frames whatever the input's depth: it walks into a
// container only where a path goes on, and skips the rest.
const MaxPath = 7

// A Field names a value for a Query: the member names that lead to it from
// the top-level value, with Each for every element of an array. A field
// below an Each step keeps the first element's value that it finds, so that
// "the reason of any detail" reads as the first one given.
type Field struct {
	Path []string
	// Number reads a number as its text, as a string's contents are read:
	// providers send codes both ways ("429", 429).
	Number bool
}

// Value is what Find read for one Field: its last occurrence (or, below an
// Each step, its first one holding a string or number), and how often its
// member occurred.
//
// An object that repeats a member replaces the earlier one entirely, as in
// encoding/json: the Values of every field below that member start again.
type Value struct {
	// Raw is a string's contents between the quotes, escapes left in
	// place, or a Number field's text; nil for any other value, which
	// reads as absent.
	Raw []byte
	// At is where the value starts in the body, to tell which of two
	// fields came last.
	At int
	// Count is how many times the member occurred; null counts.
	Count int
	// Kind is the value's first byte: '"', '{', '[', 'n', 't', 'f', '-' or
	// a digit; 0 if the member never occurred or the body ended at it.
	Kind    byte
	Escaped bool // Raw holds JSON escapes (a string's only: a number has none)
	// Differs reports that an occurrence read differently from the Raw
	// kept before it: SDKs disagree on which duplicate counts.
	Differs bool
}

// A Query reads a fixed set of fields from a JSON text in one pass. It is
// built once, by NewQuery, and is safe for concurrent use.
type Query struct {
	fields int
	root   *queryNode
}

// queryNode is a step of the paths: its members, or its elements.
type queryNode struct {
	members []queryMember
	each    *queryNode  // the node of its elements; nil when no path goes on through an array
	leaves  []queryLeaf // the fields whose path ends here
	below   []int       // the fields whose path goes on below: reset when the member repeats
}

type queryMember struct {
	name string
	node *queryNode
}

type queryLeaf struct {
	field  int
	number bool // Field.Number
	first  bool // below an Each step: the first value found stays
}

// NewQuery returns a Query for fields; Find's i-th Value is for fields[i].
// It panics on a path longer than MaxPath, or a step with more than 64
// member names below it, which are mistakes in the caller's table.
func NewQuery(fields []Field) *Query {
	q := &Query{fields: len(fields), root: new(queryNode)}
	for i, f := range fields {
		if len(f.Path) > MaxPath {
			panic("jsonscan: path longer than MaxPath")
		}
		n := q.root
		leaf := queryLeaf{field: i, number: f.Number}
		for j, step := range f.Path {
			if j > 0 {
				n.below = append(n.below, i)
			}
			n = n.step(step)
			leaf.first = leaf.first || step == Each
		}
		n.leaves = append(n.leaves, leaf)
	}
	return q
}

// step returns the node that step leads to from n, adding it if new.
func (n *queryNode) step(step string) *queryNode {
	if step == Each {
		if n.each == nil {
			n.each = new(queryNode)
		}
		return n.each
	}
	for _, m := range n.members {
		if m.name == step {
			return m.node
		}
	}
	if len(n.members) == 64 {
		panic("jsonscan: more than 64 member names below one step")
	}
	n.members = append(n.members, queryMember{step, new(queryNode)})
	return n.members[len(n.members)-1].node
}

// queryFrame is a container Find is inside of.
type queryFrame struct {
	node    *queryNode
	seen    uint64 // the node's members met in this object, by index
	array   bool
	started bool // a member or element was read: a separator comes next
}

// Find reads q's fields from body into vals, which must have room for one
// Value per field. It takes any bytes at all in bounded time and memory,
// never recursing on the input's depth, and stops at the first malformed
// byte, keeping what it read before it; a value cut off by the end of
// body reads as absent. Text after the top-level value is ignored. It
// allocates only for a member name written with escapes.
func (q *Query) Find(body []byte, vals []Value) {
	vals = vals[:q.fields]
	clear(vals)
	s := Scanner{B: body}
	var stack [MaxPath + 1]queryFrame
	depth := 0
	s.SkipSpace()
	// One loop over the values that paths lead to: read the value, note it
	// for the fields that end there, then move to the next such value, past
	// the ends of containers and the members no path names.
	for n := q.root; ; {
		at, kind := s.I, s.Peek()
		var raw []byte
		var escaped bool
		switch {
		case kind == '{' && len(n.members) > 0, kind == '[' && n.each != nil:
			s.I++
			stack[depth] = queryFrame{node: n, array: kind == '['}
			depth++
		case kind == '"':
			raw, escaped = s.Str()
		case kind == '-' || '0' <= kind && kind <= '9':
			s.Skip()
			raw = s.B[at:s.I]
		default:
			s.Skip()
		}
		for _, l := range n.leaves {
			vals[l.field].note(l, raw, escaped, kind, at)
		}
		for n = nil; n == nil; {
			if depth == 0 || s.Bad {
				return
			}
			f := &stack[depth-1]
			s.SkipSpace()
			switch c := s.Peek(); {
			case c == '}' && !f.array, c == ']' && f.array:
				s.I++
				depth--
				continue
			case !f.started:
				f.started = true
			case c == ',':
				s.I++
				s.SkipSpace()
			default:
				s.Fail()
				return
			}
			if f.array {
				n = f.node.each
				continue
			}
			key, escaped := s.Str()
			if escaped {
				key = Unescape(key)
			}
			if s.SkipSpace(); s.Peek() != ':' {
				s.Fail()
				return
			}
			s.I++
			s.SkipSpace()
			for i, m := range f.node.members {
				if m.name != string(key) {
					continue
				}
				if f.seen&(1<<i) != 0 {
					// A member the object repeats replaces the earlier one.
					for _, j := range m.node.below {
						vals[j] = Value{}
					}
				}
				f.seen |= 1 << i
				n = m.node
				break
			}
			if n == nil {
				s.Skip()
			}
		}
	}
}

// note records one occurrence of a value for leaf l.
func (v *Value) note(l queryLeaf, raw []byte, escaped bool, kind byte, at int) {
	if kind != '"' && !l.number {
		raw, escaped = nil, false
	}
	v.Differs = v.Differs || v.Count > 0 && !bytes.Equal(raw, v.Raw)
	v.Count++
	if !l.first || v.Raw == nil {
		v.Raw, v.Escaped, v.Kind, v.At = raw, escaped, kind, at
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
