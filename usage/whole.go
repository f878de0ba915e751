package usage

import "github.com/quotabreaker/quotabreaker/internal/jsonscan"

// This file holds readWhole, jsonCapture's fast path for a value that
// arrives in one piece, as a plain JSON answer of a few hundred bytes
// nearly always does.

// span is where a kept value is in the piece readWhole reads.
type span struct{ from, to int }

// readWhole reads p as one whole JSON object, followed by anything, and
// keeps what write would keep, as if c were fresh and p its first piece.
// It walks the object's members and skips their values whole, where write
// follows every byte. It reports false, leaving c unchanged, when p is
// anything else: an object cut short, a member malformed in any way, a
// value that is not an object or is a Python bytes literal. Then write,
// which reads all of those its own way, reads p.
func (c *jsonCapture) readWhole(p []byte) bool {
	s := jsonscan.Scanner{B: p}
	s.SkipSpace()
	if s.Peek() != '{' {
		return false
	}
	var w whole
	if !w.members(&s, false) {
		return false
	}
	c.dirty, c.done, c.obj, c.choicesV = true, true, true, w.choicesV
	for f := capField(1); f < nCapFields; f++ {
		if w.seen&(1<<f) != 0 {
			c.seen |= 1 << f
			c.trunc &^= 1 << f
			c.vals[f] = c.vals[f][:0]
			c.capF = f
			c.keep(p[w.at[f].from:w.at[f].to])
		}
	}
	// Only a usage kept whole is read: a cut one is not (see get).
	if c.usageRead = w.parsed && c.has(capUsage); c.usageRead {
		c.usage = w.usage
	}
	return true
}

// whole is what readWhole found: the last value of each kept member, as
// write keeps the last.
type whole struct {
	at       [nCapFields]span
	seen     uint32
	choicesV int8
	// usage is the top-level usage object, read, when parsed is set.
	usage  usageFields
	parsed bool
}

// members reads the object at s, the top-level one or, inner, the one
// under "response" or "message", and notes its kept members. It follows
// the rules write follows (see valueStarts and keyRead), for JSON that
// write reads no differently from a strict reader: keys are compared raw,
// so one with an escape names nothing, and a scalar is a run of the bytes
// numbers and literals are made of.
func (w *whole) members(s *jsonscan.Scanner, inner bool) bool {
	s.I++ // the opening brace
	if s.SkipSpace(); s.Peek() == '}' {
		s.I++
		return true
	}
	for {
		// Skip finds the key's end in one search, where Str spends a
		// second on escapes, which a raw comparison needs no word of.
		at := s.I
		if s.Peek() != '"' || !s.Skip() {
			return false
		}
		key := s.B[at+1 : s.I-1]
		if s.SkipSpace(); s.Peek() != ':' {
			return false
		}
		s.I++
		s.SkipSpace()
		from, b := s.I, s.Peek()
		var f capField
		switch {
		case inner:
			f = innerKey(key)
		case string(key) == "choices":
			// Whether it is an empty array, for the usage-chunk filter.
			w.choicesV = 2
			if b == '[' {
				if j := skipSpace(s.B, s.I+1); j < len(s.B) && s.B[j] == ']' {
					w.choicesV = 1
				}
			}
		default:
			f = topKey(key)
		}
		switch {
		case b == '{' && !inner && (string(key) == "response" || string(key) == "message"):
			// Its members are read too; Anthropic's message object is
			// read only through them.
			f = capNone
			if !w.members(s, true) {
				return false
			}
		case f == capUsage && b == '{':
			// Read now rather than skipped and read again by apply. A
			// service tier inside would point into p, which the caller
			// reuses: apply reads that one from the copy kept.
			// Strict, so that it ends where Skip would (see Strict).
			w.usage = usageFields{}
			s.Strict = true
			w.parsed = readUsage(s, &w.usage) && w.usage.tier == nil
			if s.Strict = false; !w.parsed {
				s.I, s.Bad = from, false
				if !s.Skip() {
					return false
				}
			}
		case b == '"' || b == '{' || b == '[':
			if f == capMessage && b == '[' {
				f = capNone
			}
			if !s.Skip() {
				return false
			}
		default:
			for s.I < len(s.B) && jsonscan.ScalarByte(s.B[s.I]) {
				s.I++
			}
			if s.I == from {
				return false
			}
		}
		if f == capUsage && b != '{' {
			w.parsed = false // a later member replaces the usage read
		}
		if f != capNone {
			w.at[f] = span{from, s.I}
			w.seen |= 1 << f
		}
		s.SkipSpace()
		switch s.Peek() {
		case ',':
			s.I++
			s.SkipSpace()
		case '}':
			s.I++
			return true
		default:
			return false
		}
	}
}
