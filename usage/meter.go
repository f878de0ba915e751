package usage

import (
	"bytes"
	"io"

	"github.com/quotabreaker/quotabreaker/internal/bodyio"
)

// This file holds what the observer says when usage is unknown: why
// (Metering), how much text the answer carried (for an estimate), and the
// encoded bodies it reads through.

// Metering says whether an answer's usage is known and, when it is not,
// why. Its zero value, NoUsage, is that of a Result that read nothing;
// Metered is the only value with known usage.
type Metering uint8

const (
	// NoUsage: the answer reached its end and reported no usage, as a
	// Chat Completions stream does when it was not asked for its usage
	// chunk.
	NoUsage Metering = iota
	// CutShort: the answer ended before its end, without usage: the
	// caller closed the body early, or the connection broke. The provider
	// bills what it generated all the same; see Result.Estimate.
	CutShort
	// ClosedUnread: the body was closed before a byte of it was read.
	ClosedUnread
	// UnknownShape: the answer carried usage the observer cannot read: a
	// usage object with no counter it knows, or a counter that is not a
	// count (negative, fractional, not a number).
	UnknownShape
	// Encoded: the body has a Content-Encoding the observer does not
	// decode (gzip and deflate it does), or an encoded body larger than
	// maxEncoded.
	Encoded
	// Metered: the answer reported its usage (Result.Known).
	Metered
)

var meteringNames = [...]string{"no_usage", "cut_short", "closed_unread", "unknown_shape", "encoded", "metered"}

// String returns the metering's name as metrics and spans use it:
// "no_usage", "cut_short", "closed_unread", "unknown_shape", "encoded" or
// "metered".
func (m Metering) String() string {
	if int(m) < len(meteringNames) {
		return meteringNames[m]
	}
	return "unknown"
}

// BytesPerToken is the ratio Estimate assumes between the bytes of a JSON
// request or of generated text and the tokens they cost. English text
// runs at about four bytes per token in the tokenizers of OpenAI,
// Anthropic and Google; see Result.Estimate for what it misses.
const BytesPerToken = 4

// Estimate returns r with Tokens estimated from what was sent and
// received, and Estimated set, when r was cut short (Metering CutShort):
// the provider bills what it generated, and the bytes seen show part of
// it. Any other r is returned unchanged: an answer closed unread showed
// nothing, and one that ended without usage is unmetered, not cut.
// requestBytes is the size of the request body.
//
//	InputTokens  = ceil(requestBytes / BytesPerToken)
//	OutputTokens = ceil(TextBytes / BytesPerToken)
//
// Measured on the real answers in testdata/streams against the provider's
// own count (TestEstimateError; estimate/reported):
//
//   - Output, when all of it is streamed text: x1.33 (gpt-4o, 30 tokens).
//   - Output, when part of it is reasoning: x0.61 (Groq gpt-oss, its
//     reasoning streamed), x0.71 and x0.25 (Gemini 2.5 Pro and 3 Flash,
//     thoughts streamed as summaries), x0.34 (Claude, thinking not
//     streamed), x0.17 and x0.01 (OpenAI Responses, reasoning hidden: 448
//     of gpt-5's 469 tokens).
//   - Input, from the request's JSON: x2.56 and x10.18 for short prompts
//     (the JSON's keys and settings outweigh them), x0.43 when Google's
//     tools added prompts the request does not carry, x0.01 when the
//     prompt was cached on the server (Gemini's cachedContent). Files and
//     images sent by reference are missed the same way.
//
// So the estimate is within a factor of two of what text costs and low by
// whatever the stream does not show; it is charged so that an answer cut
// short is never free, and marked so that it is never taken for the bill.
func (r Result) Estimate(requestBytes int64) Result {
	if r.Known || r.Metering != CutShort {
		return r
	}
	r.Tokens = Tokens{
		InputTokens:  ceilDiv(max(requestBytes, 0), BytesPerToken),
		OutputTokens: ceilDiv(r.TextBytes, BytesPerToken),
	}
	r.Estimated = true
	return r
}

func ceilDiv(n, d int64) int64 { return min((n+d-1)/d, maxTokenCount) }

// maxTextLine bounds the start of a line textCounter holds while the line
// spans writes; the bytes of a line beyond it count as text whoever reads
// it, so that the count does not depend on how the body was cut.
const maxTextLine = 16 << 10

// textCounter counts the bytes of generated text in a stream, line by line:
// the string values of the members that carry text deltas in the streams
// of OpenAI (content, refusal, arguments, and reasoning_content or
// reasoning of the servers that copy it), Anthropic (text, thinking,
// partial_json), Gemini (text) and the Responses API (delta). Of named
// events only the deltas are read (see line). Escapes count as the bytes
// they are. It costs a search for the line's end and, in the common case,
// one comparison where the last line had its text.
type textCounter struct {
	n int64
	// hint is the key (without its opening quote) and separator, up to
	// the value's opening quote, of the last text value found: nearly
	// every line of a stream carries its text under the same key, which
	// one search then finds.
	hint     []byte
	hintBuf  [24]byte
	hintAt   int    // where it was in its line: in most streams, where it is in the next
	held     []byte // the start of a line spanning writes
	long     int64  // bytes of that line beyond held
	spanning bool
	skip     bool // the current event repeats text (a Responses .done event)
}

func (t *textCounter) write(p []byte) {
	for len(p) > 0 {
		e := bytes.IndexByte(p, '\n')
		if e < 0 {
			t.hold(p)
			return
		}
		line := p[:e]
		p = p[e+1:]
		if t.spanning {
			t.hold(line)
			t.line(t.held, t.long)
			t.held, t.long, t.spanning = t.held[:0], 0, false
			continue
		}
		if len(line) > maxTextLine {
			t.line(line[:maxTextLine], int64(len(line)-maxTextLine))
		} else {
			t.line(line, 0)
		}
	}
}

func (t *textCounter) hold(b []byte) {
	t.spanning = true
	if room := maxTextLine - len(t.held); len(b) > room {
		t.long += int64(len(b) - room)
		b = b[:room]
	}
	t.held = append(t.held, b...)
}

// end counts a last line that no newline ended. It returns where its text
// value is, as whole does.
func (t *textCounter) end() (from, to int) {
	from, to = -1, -1
	if t.spanning {
		if from, to = t.count(t.held, t.long); t.long > 0 {
			from, to = -1, -1 // held is not the whole line
		}
		t.held, t.long, t.spanning = t.held[:0], 0, false
	}
	return from, to
}

// whole counts a whole line (an event stream's data, which the observer
// found and chose). It returns where the line's text value under the hint's
// key is, l[from:to] (the observer's shape check uses it), or -1, -1.
func (t *textCounter) whole(l []byte) (from, to int) {
	if len(l) > maxTextLine {
		t.count(l[:maxTextLine], int64(len(l)-maxTextLine))
		return -1, -1
	}
	return t.count(l, 0)
}

// endLine counts the line held since it spanned writes, which b ends, and
// returns where its text value is, as whole does.
func (t *textCounter) endLine(b []byte) (from, to int) {
	t.hold(b)
	return t.end()
}

// line counts one line of a body read by write, l its first maxTextLine
// bytes and extra the rest.
func (t *textCounter) line(l []byte, extra int64) {
	if extra == 0 {
		l = trimCR(l)
	}
	switch {
	case len(l) == 0:
		t.skip = false // the blank line that ends an event
		return
	case l[0] == 'e' && bytes.HasPrefix(l, []byte("event:")):
		// Of named events only the deltas carry new text: Anthropic's
		// content_block_delta and the Responses API's *.delta. The others
		// repeat it (response.output_text.done) or carry none (pings,
		// message_delta, and content_block_start, whose text is "" or a
		// tool's result, which is input).
		name := bytes.TrimSpace(l[len("event:"):])
		t.skip = !bytes.HasSuffix(name, []byte("delta")) || bytes.Equal(name, []byte("message_delta"))
		return
	case t.skip:
		return
	}
	t.count(l, extra)
}

// count counts the text values of l, a line's first maxTextLine bytes, and
// extra, the bytes of the line beyond them. It returns where the value
// under the hint's key is, when the hint names one, or -1, -1.
func (t *textCounter) count(l []byte, extra int64) (from, to int) {
	if extra == 0 {
		l = trimCR(l)
	}
	t.n += extra
	if len(t.hint) > 0 {
		// The common case: the line carries its text under the key of
		// the last, most often at the same place; then that value alone
		// is counted.
		if k := t.hintAt; k > 0 && k < len(l) && l[k-1] == '"' && bytes.HasPrefix(l[k:], t.hint) {
			from = k + len(t.hint)
			to = stringEnd(l, from)
			t.n += int64(to - from)
			return from, to
		}
	}
	n, key, at := textIn(l)
	t.n += n
	if key == nil {
		return -1, -1
	}
	t.hint, t.hintAt = append(t.hintBuf[:0], key...), at
	from = at + len(key)
	return from, stringEnd(l, from)
}

// textIn returns the bytes of the text values in l, a line of JSON, and
// the first one's key and separator (from the key's first letter to the
// value's opening quote, included) and where it starts, nil when there is
// none.
func textIn(l []byte) (n int64, key []byte, at int) {
	for i := 0; i < len(l); {
		k := bytes.IndexByte(l[i:], ':')
		if k < 0 {
			return n, key, at
		}
		j := i + k
		i = j + 1
		if j < 2 || l[j-1] != '"' || !textKeyBefore(l, j-1) {
			continue
		}
		q := bytes.LastIndexByte(l[:j-1], '"') // the key's opening quote: one found by textKeyBefore
		s := i
		for s < len(l) && l[s] == ' ' {
			s++
		}
		if s == len(l) || l[s] != '"' {
			continue
		}
		e := stringEnd(l, s+1)
		n += int64(e - (s + 1))
		if key == nil && s+1-(q+1) <= 24 {
			key, at = l[q+1:s+1], q+1
		}
		i = e + 1
	}
	return n, key, at
}

// textKeyBefore reports whether the key whose closing quote is l[q] is
// one textKey names: whether the string from the last quote before q to q
// is one. It looks at the key's last byte, and then compares the few keys
// ending with it, rather than searching back for the opening quote at
// every colon of the line.
func textKeyBefore(l []byte, q int) bool {
	switch l[q-1] {
	case 't':
		return keyBefore(l, q, "content") || keyBefore(l, q, "text") || keyBefore(l, q, "reasoning_content")
	case 'a':
		return keyBefore(l, q, "delta")
	case 'g':
		return keyBefore(l, q, "thinking") || keyBefore(l, q, "reasoning")
	case 'n':
		return keyBefore(l, q, "partial_json")
	case 's':
		return keyBefore(l, q, "arguments")
	case 'l':
		return keyBefore(l, q, "refusal")
	}
	return false
}

// keyBefore reports whether l holds "k" with its closing quote at l[q]. k
// has no quote, so the quote before it is the last before q.
func keyBefore(l []byte, q int, k string) bool {
	o := q - len(k) - 1
	return o >= 0 && l[o] == '"' && string(l[o+1:q]) == k
}

// textKey reports whether k is the key of a text value; textKeyBefore is
// its faster form, checked against it in TestTextKeyBefore.
func textKey(k []byte) bool {
	switch string(k) {
	case "content", "text", "delta", "thinking", "partial_json", "arguments", "reasoning_content", "reasoning", "refusal":
		return true
	}
	return false
}

// stringEnd returns the index of the quote that closes the string starting
// at l[from], or len(l) when the line ends first.
func stringEnd(l []byte, from int) int {
	for j := from; ; {
		k := bytes.IndexByte(l[j:], '"')
		if k < 0 {
			return len(l)
		}
		end := j + k
		n := 0
		for p := end - 1; p >= from && l[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return end
		}
		j = end + 1
	}
}

// maxEncoded bounds the encoded body an observer keeps to decode once the
// answer ends; the bytes of a larger one are dropped and its usage is
// unknown (Encoded). maxDecoded bounds what it decodes of one, against a
// body that inflates without end.
const (
	maxEncoded = 1 << 20
	maxDecoded = 64 << 20
)

// encodedBody holds a gzip or deflate body the caller asked for, until its
// end.
type encodedBody struct {
	enc  string // its Content-Encoding
	b    []byte
	over bool // more than maxEncoded: given up
}

func (g *encodedBody) write(p []byte) {
	if g.over {
		return
	}
	if len(g.b)+len(p) > maxEncoded {
		g.over, g.b = true, nil
		return
	}
	g.b = append(g.b, p...)
}

// decode reads the body kept so far through a fresh observer of the
// decoded bytes, as if the caller had read them, and returns its result.
func (g *encodedBody) decode(o *Observer) Result {
	if g.over {
		return Result{Metering: Encoded}
	}
	in := newObserver(o.header, false)
	zr, err := bodyio.Decode(g.enc, g.b)
	if err == nil {
		_, err = io.Copy(in, io.LimitReader(zr, maxDecoded))
	}
	if err == nil && o.eof {
		in.EOF()
	}
	in.wrote = in.wrote || len(g.b) > 0
	r := in.Result()
	in.Release()
	return r
}
