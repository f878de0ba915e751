package jsonscan

import "bytes"

// This file holds Query, which reads a fixed set of fields from a JSON text
// in one pass, on the Scanner of scan.go.

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
