package usage

import "github.com/quotabreaker/quotabreaker/internal/jsonscan"

// This file holds jsonCapture, an incremental reader of one JSON value fed in
// pieces of any size. It keeps the few members the observer needs, bounded,
// and skips everything else without buffering it, so a body of any size costs
// constant memory. Unlike internal/jsonscan's Scanner it never needs the whole
// value at once.

// capField names a member jsonCapture keeps.
type capField uint8

const (
	capNone capField = iota
	capUsage
	capError
	capModel
	capID
	capTier
	capType
	capCode
	capMessage
	capErrorType // Text Generation Inference: {"error": "...", "error_type": "validation"}
	capErrorCode // FastChat: {"text": "...", "error_code": 50001}
	capText
	// The same members of the object under "response" (OpenAI Responses
	// stream events) or "message" (Anthropic's message_start).
	capInnerUsage
	capInnerError
	capInnerModel
	capInnerID
	capInnerTier
	nCapFields
)

// capLimits bounds each kept value. A usage object is a few hundred bytes,
// Anthropic's with per-iteration details a few thousand; an error a few
// hundred; names and ids a few dozen.
var capLimits = [nCapFields]int{
	capUsage: 32 << 10, capInnerUsage: 32 << 10,
	capError: 16 << 10, capInnerError: 16 << 10,
	capModel: 256, capInnerModel: 256,
	capID: 256, capInnerID: 256,
	capTier: 64, capInnerTier: 64,
	capType: 64, capCode: 256, capMessage: 1 << 10,
	capErrorType: 64, capErrorCode: 64, capText: 1 << 10,
}

// level is the state of a tracked object level.
type level struct {
	expect uint8
	cur    capField // the member whose value comes next
}

// What a tracked object level expects next.
const (
	expKey = iota
	expColon
	expValue
	expComma
)

// jsonCapture reads one JSON value incrementally. For a top-level object it
// keeps the raw text (escapes left in place) of the members named in
// capField, and of the same members one level down under "response" or
// "message"; it notes whether "choices" was an empty array. A kept value
// longer than its limit keeps its prefix and is marked truncated. Keys are
// compared as raw bytes: a key written with escapes matches nothing.
//
// Invalid JSON never makes it fail or grow: it keeps what it read, and its
// results are simply less complete. Its zero value is ready to use.
type jsonCapture struct {
	depth int  // nesting depth at the current byte; 0 outside the value
	str   bool // inside a string
	esc   bool // inside a string, right after a backslash
	done  bool // the top-level value ended
	dirty bool // written since the last reset

	inner   bool // depth 2 is the object under "response" or "message"
	descend bool // the value about to start may be that object
	lvl     [3]level
	obj     bool // the top-level value is an object

	key      [24]byte // the key being read, at a tracked level
	keyLen   int
	inKey    bool
	keyLvl   int
	keyBad   bool // escaped or too long: matches nothing
	choices  bool // "choices" was the member whose value comes next
	choicesV int8 // 0 not seen; 1 empty array; 2 anything else; 3 undecided

	// The value being kept.
	capOn    bool
	capF     capField
	capDepth int  // depth its container closes back to
	capStr   bool // a string: ends at its closing quote
	capScal  bool // a number or literal: ends at the next delimiter
	capFrom  int  // where it started in the current piece

	vals [nCapFields][]byte
	// usage is vals[capUsage] read, when usageRead is set: readWhole
	// reads it as it passes, where write only keeps it.
	usage     usageFields
	usageRead bool
	seen      uint32 // bit per field: a value started
	trunc     uint32 // bit per field: kept only a prefix
	// bytewise reads every byte in turn, the plainest way and the way it
	// was read before skim and jsonscan.Special, for tests to compare with.
	bytewise bool
	// py reads a Python bytes literal around the value (b'{...}'), which a
	// gateway writes when it formats bytes into a data: line: 1 after a
	// leading b, 2 after b'.
	py uint8
}

// reset readies c for a new value, keeping its buffers.
func (c *jsonCapture) reset() {
	if !c.dirty {
		return
	}
	vals := c.vals
	*c = jsonCapture{bytewise: c.bytewise}
	for i := range vals {
		c.vals[i] = vals[i][:0]
	}
}

func (c *jsonCapture) has(f capField) bool { return c.seen&(1<<f) != 0 && c.trunc&(1<<f) == 0 }

// get returns the kept raw text of f, nil when absent or truncated.
func (c *jsonCapture) get(f capField) []byte {
	if !c.has(f) {
		return nil
	}
	return c.vals[f]
}

// prefix returns what was kept of f, even when truncated.
func (c *jsonCapture) prefix(f capField) []byte {
	if c.seen&(1<<f) == 0 {
		return nil
	}
	return c.vals[f]
}

// topKeys and innerKeys map raw keys to the fields kept at depth 1 and under
// "response"/"message".
func topKey(k []byte) capField {
	switch string(k) {
	case "usage", "usageMetadata": // usageMetadata: Gemini
		return capUsage
	case "error":
		return capError
	case "model", "modelVersion":
		return capModel
	case "id", "responseId":
		return capID
	case "service_tier":
		return capTier
	case "type":
		return capType
	case "code":
		return capCode
	case "message":
		return capMessage
	case "error_type":
		return capErrorType
	case "error_code":
		return capErrorCode
	case "text":
		return capText
	}
	return capNone
}

func innerKey(k []byte) capField {
	switch string(k) {
	case "usage", "usageMetadata":
		return capInnerUsage
	case "error":
		return capInnerError
	case "model", "modelVersion":
		return capInnerModel
	case "id", "responseId":
		return capInnerID
	case "service_tier":
		return capInnerTier
	}
	return capNone
}

// tracked reports whether object members are followed at depth d.
func (c *jsonCapture) tracked(d int) bool {
	return (d == 1 && c.obj) || (d == 2 && c.inner)
}

// write feeds the next piece of the value and returns how much of it the
// value took: all of p, unless the value ended inside it.
func (c *jsonCapture) write(p []byte) int {
	if c.done || len(p) == 0 {
		return 0
	}
	c.dirty = true
	i := 0
	for i < len(p) && !c.done {
		if c.str {
			i = c.inString(p, i)
			continue
		}
		if c.depth >= 2 && !c.tracked(c.depth) && !(c.capOn && c.capScal) && c.choicesV != 3 && !c.bytewise {
			if i = c.skim(p, i); i == len(p) {
				break
			}
		}
		b := p[i]
		if b == ' ' || b == '\t' || b == '\n' || b == '\r' {
			if c.capOn && c.capScal {
				c.endCapture(p, i)
			}
			i++
			continue
		}
		if c.choicesV == 3 { // the byte after "choices": [
			c.choicesV = 2
			if b == ']' {
				c.choicesV = 1
			}
		}
		d := c.depth
		valueHere := c.tracked(d) && c.lvl[d].expect == expValue
		switch b {
		case '"':
			c.str, c.esc = true, false
			if c.tracked(d) && c.lvl[d].expect == expKey {
				c.inKey, c.keyLvl, c.keyLen, c.keyBad = true, d, 0, false
			} else if valueHere {
				c.valueStarts(p, i, d, kindString)
			}
		case '{', '[':
			if d == 0 {
				c.obj = b == '{'
			}
			inner := false
			if valueHere {
				inner = d == 1 && c.descend && b == '{'
				c.valueStarts(p, i, d, kindContainer)
			}
			c.descend = false
			c.depth++
			if c.depth == 1 {
				c.lvl[1].expect = expKey
			}
			if inner {
				c.inner = true
				c.lvl[2] = c.lvl[0] // zero: expKey
			}
		case '}', ']':
			if c.capOn && c.capScal {
				c.endCapture(p, i)
			}
			c.depth--
			if c.depth == 1 {
				c.inner = false
			}
			if c.capOn && c.depth == c.capDepth {
				c.endCapture(p, i+1)
			}
			if c.depth <= 0 {
				c.depth, c.done = 0, true
			}
		case ',':
			if c.capOn && c.capScal {
				c.endCapture(p, i)
			}
			if c.tracked(d) {
				c.lvl[d].expect = expKey
			}
		case ':':
			if c.tracked(d) && c.lvl[d].expect == expColon {
				c.lvl[d].expect = expValue
			}
		default: // a number, a literal, or garbage
			switch {
			case valueHere:
				c.valueStarts(p, i, d, kindScalar)
			case d == 0 && c.py == 0 && b == 'b':
				c.py = 1 // perhaps b'{...}'
			case d == 0 && c.py == 1 && b == '\'':
				c.py = 2
			case d == 0:
				c.done = true // a scalar top-level value: nothing to keep
			}
		}
		i++
	}
	if c.capOn {
		c.keep(p[c.capFrom:])
		c.capFrom = 0
	}
	return i
}

// Kinds of value, for where a kept value ends.
const (
	kindString = iota
	kindContainer
	kindScalar
)

// skim passes the bytes of p from i inside a container no member of which
// is kept, which is most of a body: it follows only strings and brackets,
// and returns at the end of p or, unread, at the bracket that closes back
// to a depth the loop in write follows. Between strings the bytes are few,
// and a string is passed with one search for its closing quote.
func (c *jsonCapture) skim(p []byte, i int) int {
	for ; i < len(p); i++ {
		switch p[i] {
		case '"':
			start := i + 1
			if i = stringEnd(p, start); i == len(p) {
				// It goes on in the next piece, and so does an escape
				// left open at its end.
				c.str, c.esc = true, backslashes(p[start:])%2 == 1
				return i
			}
		case '{', '[':
			c.depth++
			c.descend = false
		case '}', ']':
			if c.depth <= 3 {
				return i
			}
			c.depth--
		}
	}
	return i
}

// backslashes returns the length of the run of backslashes that ends b.
func backslashes(b []byte) int {
	n := 0
	for n < len(b) && b[len(b)-1-n] == '\\' {
		n++
	}
	return n
}

// inString consumes string bytes from p[i:] and returns where it stopped.
func (c *jsonCapture) inString(p []byte, i int) int {
	if c.esc {
		c.esc = false
		return i + 1
	}
	if c.bytewise && p[i] != '"' && p[i] != '\\' {
		c.keyBytes(p[i : i+1])
		return i + 1
	}
	end := len(p)
	if k := jsonscan.Special(p[i:]); k >= 0 {
		if end = i + k; p[end] == '\\' {
			c.keyBytes(p[i:end])
			c.keyBad = true // an escaped key matches nothing
			c.esc = true
			return end + 1
		}
	} else if len(p)-i > jsonscan.ShortString {
		// Longer than any key: only its end matters.
		if end = stringEnd(p, i); end == len(p) {
			c.esc = backslashes(p[i:])%2 == 1
		}
	}
	c.keyBytes(p[i:end])
	if end == len(p) {
		return end
	}
	// The closing quote.
	c.str = false
	switch {
	case c.inKey:
		c.inKey = false
		c.keyRead()
	case c.capOn && c.capStr && c.depth == c.capDepth:
		c.endCapture(p, end+1)
	case c.depth == 0:
		c.done = true // a string top-level value
	}
	return end + 1
}

// keyRead notes which member the key just read names.
func (c *jsonCapture) keyRead() {
	l := &c.lvl[c.keyLvl]
	l.expect = expColon
	l.cur = capNone
	c.choices, c.descend = false, false
	if c.keyBad {
		return
	}
	k := c.key[:c.keyLen]
	if c.keyLvl == 2 {
		l.cur = innerKey(k)
		return
	}
	l.cur = topKey(k)
	switch string(k) {
	case "choices":
		c.choices = true
	case "response", "message":
		c.descend = true
	}
}

func (c *jsonCapture) keyBytes(b []byte) {
	if !c.inKey || c.keyBad {
		return
	}
	if c.keyLen+len(b) > len(c.key) {
		c.keyBad = true
		return
	}
	c.keyLen += copy(c.key[c.keyLen:], b)
}

// valueStarts is called at the first byte, p[i], of the value of the member
// last read at tracked depth d.
func (c *jsonCapture) valueStarts(p []byte, i, d, kind int) {
	l := &c.lvl[d]
	l.expect = expComma
	f := l.cur
	l.cur = capNone
	if d == 1 && c.choices {
		c.choices = false
		c.choicesV = 2
		if p[i] == '[' {
			c.choicesV = 3 // decided at the next byte
		}
	}
	if f == capNone || c.capOn || (f == capMessage && kind == kindContainer) {
		// Anthropic's "message" object is read through its inner members.
		return
	}
	c.capOn, c.capF, c.capDepth, c.capFrom = true, f, d, i
	c.capStr, c.capScal = kind == kindString, kind == kindScalar
	c.seen |= 1 << f
	c.trunc &^= 1 << f
	c.vals[f] = c.vals[f][:0]
}

// endCapture ends the kept value at p[:end].
func (c *jsonCapture) endCapture(p []byte, end int) {
	c.keep(p[c.capFrom:end])
	c.capOn = false
}

// keep appends part of the kept value, up to its limit.
func (c *jsonCapture) keep(b []byte) {
	f := c.capF
	v := c.vals[f]
	if room := capLimits[f] - len(v); len(b) > room {
		b = b[:max(room, 0)]
		c.trunc |= 1 << f
	}
	c.vals[f] = append(v, b...)
}

// choicesEmpty reports whether the value had "choices": [].
func (c *jsonCapture) choicesEmpty() bool { return c.choicesV == 1 }
