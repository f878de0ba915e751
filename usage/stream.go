package usage

import (
	"bytes"
	"encoding/json"
	"io"

	"github.com/quotabreaker/quotabreaker/internal/jsonscan"
)

// This file holds the two halves of "streams without usage": a request
// rewriter that asks a Chat Completions stream for its usage, and a filter
// that drops the extra usage chunk again before an SDK that did not ask for
// it sees it (go-openai's callers index Choices[0] of every chunk).

// MaxRewriteBody bounds the request bodies requestStreamUsage rewrites; a
// larger one is left alone rather than parsed twice.
const MaxRewriteBody = 8 << 20

// requestStreamUsage asks a streamed Chat Completions request for usage. If
// body is a JSON object with "stream": true whose stream_options.include_usage
// is not true, it returns a copy with "stream_options": {"include_usage":
// true} (merged into an existing stream_options object) and changed true.
// asked reports that the request had asked for usage itself, in which case
// body is returned unchanged and the caller's SDK expects the usage chunk.
//
// Every other byte keeps its meaning. On any doubt the body is returned
// unchanged with changed false: not valid JSON, not an object, larger than
// MaxRewriteBody, "stream" or "stream_options" given twice or in another
// case ("Stream", which a case-insensitive decoder would read),
// stream_options or include_usage of an unexpected type.
func RequestStreamUsage(body []byte) (out []byte, changed, asked bool) {
	if len(body) > MaxRewriteBody || !json.Valid(body) {
		return body, false, false
	}
	s := jsonscan.Scanner{B: body}
	s.SkipSpace()
	if s.Peek() != '{' {
		return body, false, false
	}
	var (
		streamTrue    bool
		streams, opts int
		optStart      = -1 // the stream_options value
		optEnd        int
		doubt         bool
		closing       int // the top-level object's closing brace
	)
	s.Object(func(key []byte) bool {
		start := s.I
		switch {
		case string(key) == "stream":
			streams++
			ok := s.Skip()
			streamTrue = string(body[start:s.I]) == "true"
			return ok
		case string(key) == "stream_options":
			opts++
			optStart = start
			ok := s.Skip()
			optEnd = s.I
			return ok
		case bytes.EqualFold(key, []byte("stream")), bytes.EqualFold(key, []byte("stream_options")):
			doubt = true
		}
		return s.Skip()
	})
	if s.Bad || doubt || streams != 1 || opts > 1 || !streamTrue {
		return body, false, false
	}
	closing = s.I - 1
	if optStart < 0 {
		out = make([]byte, 0, len(body)+40)
		out = append(out, body[:closing]...)
		out = append(out, `,"stream_options":{"include_usage":true}`...)
		out = append(out, body[closing:]...)
		return checked(body, out)
	}
	opt := body[optStart:optEnd]
	if string(opt) == "null" {
		return splice(body, optStart, optEnd, []byte(`{"include_usage":true}`))
	}
	if opt[0] != '{' {
		return body, false, false
	}
	o := jsonscan.Scanner{B: opt}
	var (
		includes       int
		valStart, vEnd int
		inner          bool
	)
	o.Object(func(key []byte) bool {
		switch {
		case string(key) == "include_usage":
			includes++
			valStart = o.I
			ok := o.Skip()
			vEnd = o.I
			return ok
		case bytes.EqualFold(key, []byte("include_usage")):
			inner = true
		}
		return o.Skip()
	})
	if o.Bad || inner || includes > 1 {
		return body, false, false
	}
	if includes == 1 {
		switch string(opt[valStart:vEnd]) {
		case "true":
			return body, false, true
		case "false", "null":
			return splice(body, optStart+valStart, optStart+vEnd, []byte("true"))
		}
		return body, false, false
	}
	// Insert the member first, after the brace.
	rest := bytes.TrimLeft(opt[1:], " \t\r\n")
	ins := []byte(`"include_usage":true,`)
	if len(rest) > 0 && rest[0] == '}' {
		ins = ins[:len(ins)-1]
	}
	return splice(body, optStart+1, optStart+1, ins)
}

// splice returns body with body[from:to] replaced by repl.
func splice(body []byte, from, to int, repl []byte) ([]byte, bool, bool) {
	out := make([]byte, 0, len(body)-(to-from)+len(repl))
	out = append(out, body[:from]...)
	out = append(out, repl...)
	out = append(out, body[to:]...)
	return checked(body, out)
}

// checked returns out, or body if out is not valid JSON, which would be a
// bug here; the request must go out either way.
func checked(body, out []byte) ([]byte, bool, bool) {
	if !json.Valid(out) {
		return body, false, false
	}
	return out, true, false
}

// usageChunkFilter removes, from a Chat Completions event stream, the chunk
// that carries only usage: a data: line whose JSON has "choices": [] and a
// usage object, alone in its event, together with the blank line that ends
// the event. Everything else passes byte for byte. HideUsageChunk is its
// body; the observer must see the bytes before the filter does.
//
// It holds back a data: line until its end to decide (no other line, and no
// other event's first byte, waits longer), and lines longer than
// maxHeldLine pass through undecided: a usage chunk is a few hundred bytes.
// Its zero value is ready to use; it is not safe for concurrent use.
type usageChunkFilter struct {
	held      []byte // the current line, while it may be a usage chunk
	lineStart bool
	started   bool
	inEvent   bool // a line of the current event has passed
	dropped   bool // a usage chunk was just dropped: drop the blank line after it
	pass      bool // the rest of the current line passes
	doc       jsonCapture
}

// maxHeldLine bounds the line usageChunkFilter holds back.
const maxHeldLine = 64 << 10

// filter appends to dst what of p passes, and returns dst.
func (f *usageChunkFilter) filter(dst, p []byte) []byte {
	if !f.started {
		f.started, f.lineStart = true, true
	}
	for len(p) > 0 {
		if f.lineStart {
			f.lineStart, f.pass = false, false
			f.held = f.held[:0]
		}
		e := bytes.IndexByte(p, '\n')
		piece := p
		if e >= 0 {
			piece = p[:e+1]
		}
		p = p[len(piece):]
		switch {
		case f.pass:
			dst = append(dst, piece...)
			f.lineStart = e >= 0
			continue
		case e >= 0 && len(f.held) == 0:
			// A whole line in one piece, the common case: decide
			// without copying it.
			dst = f.line(dst, piece)
			f.lineStart = true
			continue
		}
		// Hold the line's bytes until it is known to be neither a usage
		// chunk nor the blank line after one, or until its end.
		f.held = append(f.held, piece...)
		if !f.stillHeld() {
			dst = append(dst, f.held...)
			f.otherLine(f.held)
			f.held = f.held[:0]
			f.pass = true
			f.lineStart = e >= 0
			continue
		}
		if e >= 0 {
			dst = f.line(dst, f.held)
			f.held = f.held[:0]
			f.lineStart = true
		}
	}
	return dst
}

// line decides on a whole line and appends it to dst unless it is dropped.
func (f *usageChunkFilter) line(dst, line []byte) []byte {
	switch {
	case isBlank(line):
		if !f.dropped {
			dst = append(dst, line...)
		}
		f.dropped, f.inEvent = false, false
	case !f.inEvent && !f.dropped && f.usageOnly(line):
		f.dropped = true
	default:
		dst = append(dst, line...)
		f.otherLine(line)
	}
	return dst
}

// otherLine notes a line that passes and is not blank: a field of the
// current event, or a comment, which belongs to none.
func (f *usageChunkFilter) otherLine(line []byte) {
	f.dropped = false
	if len(line) > 0 && line[0] != ':' {
		f.inEvent = true
	}
}

// stillHeld reports whether the held start of a line may still be a usage
// chunk or the blank line after one.
func (f *usageChunkFilter) stillHeld() bool {
	h := f.held
	switch {
	case len(h) > maxHeldLine:
		return false
	case isBlankPrefix(h):
		return true
	case f.dropped, f.inEvent:
		// Only a blank line may follow a dropped chunk (anything else
		// shows its event went on; it stays dropped all the same), and
		// only an event's first line can be a usage chunk.
		return false
	}
	n := min(len(h), 5)
	return string(h[:n]) == "data:"[:n]
}

func isBlankPrefix(h []byte) bool {
	return len(h) == 0 || string(h) == "\r" || isBlank(h)
}

func isBlank(line []byte) bool {
	return string(line) == "\n" || string(line) == "\r\n"
}

// usageOnly reports whether line, a whole data: line starting an event, is
// a usage-only chunk.
func (f *usageChunkFilter) usageOnly(line []byte) bool {
	v, ok := bytes.CutPrefix(line, []byte("data:"))
	if !ok {
		return false
	}
	if !bytes.Contains(v, keyUsage) || !bytes.Contains(v, []byte(`choices"`)) {
		return false
	}
	f.doc.reset()
	f.doc.write(v)
	u := f.doc.get(capUsage)
	return f.doc.done && f.doc.choicesEmpty() && len(u) > 0 && u[0] == '{' && f.doc.prefix(capError) == nil
}

// flush appends what is still held at the end of the stream. A usage chunk
// cut off before its line ended is passed as it is.
func (f *usageChunkFilter) flush(dst []byte) []byte {
	dst = append(dst, f.held...)
	f.held = f.held[:0]
	return dst
}

// filterBody is a response body that shows its reader the stream without
// the usage chunk, and shows the observer, when there is one, every byte.
type filterBody struct {
	rc  io.ReadCloser
	obs *Observer
	f   usageChunkFilter
	out []byte // filtered bytes not yet returned
	off int
	err error
}

// HideUsageChunk returns a body that reads as rc without the chunk of a Chat
// Completions event stream that carries only usage ("choices": [] and a
// usage object, alone in its event), which AskStreamUsage or
// RequestStreamUsage had the provider send: use it only for a caller whose
// own request did not ask for that chunk. Every other byte passes as sent,
// and only a data: line is held back, until its end, to be judged. obs, when
// not nil, is written every byte of rc, the hidden chunk included, so that
// the stream is still metered. Closing the body closes rc.
func HideUsageChunk(rc io.ReadCloser, obs *Observer) io.ReadCloser {
	return &filterBody{rc: rc, obs: obs}
}

func (b *filterBody) Read(p []byte) (int, error) {
	for b.off == len(b.out) {
		if b.err != nil {
			return 0, b.err
		}
		b.out, b.off = b.out[:0], 0
		n, err := b.rc.Read(p)
		if n > 0 {
			if b.obs != nil {
				b.obs.Write(p[:n])
			}
			b.out = b.f.filter(b.out, p[:n])
		}
		if err != nil {
			b.out = b.f.flush(b.out)
			b.err = err
		}
	}
	n := copy(p, b.out[b.off:])
	b.off += n
	return n, nil
}

func (b *filterBody) Close() error { return b.rc.Close() }
