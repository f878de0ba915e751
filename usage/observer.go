package usage

import (
	"bytes"
	"net/http"
	"strings"
	"sync"

	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/internal/bodyio"
	"github.com/quotabreaker/quotabreaker/internal/jsonscan"
)

// Result is what an Observer read from one answer.
type Result struct {
	Tokens Tokens
	Known  bool // false: the answer carried no usable usage, which is unknown, never zero
	// Metering is Metered when Known, and otherwise says why the usage is
	// unknown.
	Metering Metering
	// Estimated reports that Tokens is an estimate made by Estimate for an
	// answer cut short, not what the provider reported; Known stays false.
	Estimated bool
	// TextBytes counts the bytes of generated text a stream carried (see
	// textCounter), what Estimate turns into output tokens; 0 for a plain
	// JSON body.
	TextBytes int64
	Model     string // the answer's model, as the provider named it
	// ServiceTier is the tier the answer reports it was served with
	// (OpenAI's top-level or response.service_tier, Anthropic's
	// usage.service_tier), "" when it reports none.
	ServiceTier string
	ResponseID  string
	// StreamErr is the most severe error carried inside the answer, nil
	// when there was none; severity follows classify.MoreSevere. StreamErrs counts
	// them all.
	StreamErr  *StreamError
	StreamErrs int
	Events     int // server-sent events that carried data; 0 for a plain JSON body
	// Terminated reports that the answer reached its own end: a JSON body
	// whose value closed, or a stream that sent data: [DONE], Anthropic's
	// message_stop or a Responses API terminal event. A stream cut short
	// (the caller closed it early, or the connection broke) has false.
	Terminated bool
	// ProviderCost reports that the answer's usage says what it cost:
	// OpenRouter's usage.cost or xAI's usage.cost_in_usd_ticks (preferred
	// when both are there). ProviderCostMicros is that cost in
	// micro-dollars, rounded up (see balance.UsageCost).
	ProviderCost       bool
	ProviderCostMicros int64
}

// StreamError is an error a provider sent inside a successful answer.
type StreamError struct {
	classify.Result
	// Status is the status the classification was made with: the error's
	// own numeric code when it has one from 400 to 599, otherwise the
	// status the same error is sent with outside a stream (see
	// streamErrorStatus).
	Status int
}

// Bounds of the event-stream reader.
const (
	maxEventName = 64 // longer event names are not ones it knows
	// maxCarry bounds the start of a first data line held while it spans
	// writes: a Chat Completions chunk is a few hundred bytes.
	maxCarry = 4 << 10
)

// Observer reads usage, the model and errors from one successful answer
// while the caller reads the body, from the bytes the caller reads, without
// buffering the body, changing it or delaying it. Feed it every byte the
// caller reads, in order, with Write, call EOF if the body's reader
// returned io.EOF, and call Result once the caller has read to the end or
// closed the body.
//
// It reads three kinds of body, chosen by Content-Type: server-sent events
// (text/event-stream), newline-delimited JSON (application/x-ndjson, as
// Ollama streams), read as events whose data is one line each, and anything
// else as one JSON value. Of a JSON body it reads the top-level usage (or
// Gemini's usageMetadata), model (or modelVersion), id (or responseId),
// service_tier and error; a body that is a JSON array, as Gemini's
// streamGenerateContent sends without alt=sse, is read as a stream whose
// events are its elements. A value written as a Python bytes literal
// (b'{...}', as a gateway formats bytes into its data: lines) is read as the
// value inside, and errors are found in the shapes other servers use too:
// FastChat's {"text": ..., "error_code": N} and Text Generation Inference's
// {"error": "...", "error_type": ...}. Of a stream
// it reads each event's data the same way, and also the object under
// "response" (Responses API events) or "message" (Anthropic's message_start);
// usage objects are merged field by field, a later one replacing the fields
// it carries (Anthropic's cumulative message_delta); errors are classified
// with Answer (see streamErr); and a JSON value outside any data: line, as
// Gemini appends when it fails mid-stream, is read as an error too. Events
// named as never carrying usage or errors (see quietEvent), and other events
// that do not mention either, are skipped after a search or two. Of a
// stream it also counts the bytes of generated text (Result.TextBytes), for
// an estimate of an answer cut short.
//
// Of a stream it copies the first write, up to maxCarry bytes, and reads it
// at the next write or at Result, so that the caller's first bytes wait for
// nothing.
//
// Its memory is bounded whatever the body's size or shape (see capLimits),
// and a line or value of any length costs no more. A gzip or deflate body
// (the caller asked for it itself, so Go's transport left it encoded) is
// kept, up to maxEncoded bytes, and read through a decoder once it ends; any
// other Content-Encoding makes it read nothing (Metering Encoded).
//
// An observer is not safe for concurrent use; the body it watches is not
// either.
type Observer struct {
	header   http.Header
	sse      bool
	ndjson   bool         // newline-delimited JSON (Ollama): every line is an event's data
	encoded  bool         // nothing to read: a body encoded by a Content-Encoding
	coded    *encodedBody // a gzip or deflate body, read once it ends
	finished bool         // result was called
	wrote    bool         // a byte was written
	eof      bool         // EOF was called
	sawUsage bool         // a usage object was read, known or not

	// A JSON array of answers (Gemini's default stream).
	jsonStarted bool // the first non-space byte of a JSON body was seen
	array       bool
	inElem      bool

	text textCounter

	// The JSON body, or the data of the current event.
	doc jsonCapture

	// Event-stream state.
	lineStart bool
	kind      lineKind
	prefix    [6]byte // the start of the current line, until its kind is known
	plen      int
	valStart  bool // at the first byte of a data value (after "data:" and its space)
	ev        event
	raw       *jsonCapture // a JSON value outside any data: line (Gemini's trailing error); nil until one starts
	rawOn     bool
	// carry holds the start of an event's first data line that spans
	// writes, up to maxCarry bytes, so that it is judged whole, as in one
	// write, and read once; a longer one is read as it comes (see track).
	carry []byte
	// early is the first write of a stream, kept to be read later (see
	// readEarly).
	early []byte
	// shape is the last first data line mayMatter searched and found
	// nothing in, and shapeFrom, shapeTo where its text value is (see
	// sameShape); shapeFrom is -1 when there is none.
	shape              []byte
	shapeFrom, shapeTo int
	noShape            bool // tests: search every line, to compare

	// Results so far.
	usage       usageFields
	codedResult Result
	model       []byte
	id          []byte
	tier        []byte
	errs        int
	worst       *StreamError
	events      int
	terminated  bool

	// names are the model and tier Result last returned, which reset
	// keeps (see text).
	names struct{ model, tier string }
}

// event is the state of the event being read.
type event struct {
	name     [maxEventName]byte
	nameLen  int
	nameLong bool
	nameSeen bool // a byte of the current event: line was read
	lines    int  // data lines
	examine  bool // its data is read
	poisoned bool // a data line was skipped, so its data cannot be read whole
	// For a first data line that spans writes (open): what track learns
	// to decide, at its end, whether it matters.
	open      bool
	spilled   bool                 // the line outgrew carry: track decides
	tail      [longestKey - 1]byte // the last bytes of the value so far
	tailLen   int
	mayMatter bool
	last      byte // last non-space byte of the value
	done      int  // bytes of the value matching "[DONE]" so far; -1 once not
	vlen      int
	cr        bool // a CR ended the last piece
}

type lineKind uint8

const (
	lineUnknown lineKind = iota // its first bytes are being read
	lineData
	lineEvent
	lineIgnore // a comment, another field, or a line no reader uses
	lineRaw    // part of a JSON value outside any field
)

// Read observes a whole answer body with header h and returns what it says.
func Read(h http.Header, body []byte) Result {
	o := NewObserver(h)
	o.Write(body)
	o.EOF()
	r := o.Result()
	o.Release()
	return r
}

// NewObserver returns an Observer for an answer with header h. Call its
// Release once done with it, and it costs the next one no allocation.
func NewObserver(h http.Header) *Observer {
	return newObserver(h, true)
}

// observers holds released Observers, buffers included: a plain answer
// then costs no allocation for its observer, which is the larger part of
// what reading its usage costs. It is the package's only mutable state.
var observers = sync.Pool{New: func() any { return new(Observer) }}

func newObserver(h http.Header, encoding bool) *Observer {
	o := observers.Get().(*Observer)
	o.init(h, encoding)
	return o
}

// init readies o, zero but for what reset keeps, for an answer with header
// h; encoding false reads the body as it is, whatever its
// Content-Encoding.
func (o *Observer) init(h http.Header, encoding bool) {
	o.header, o.lineStart, o.shapeFrom = h, true, -1
	// The keys are canonical already: h.Get would only spend the time to
	// find that out again.
	if enc := first(h["Content-Encoding"]); encoding && enc != "" && !strings.EqualFold(enc, "identity") {
		if bodyio.Decodes(enc) {
			o.coded = &encodedBody{enc: enc}
		} else {
			o.encoded = true
		}
	}
	mt, _, _ := strings.Cut(first(h["Content-Type"]), ";")
	switch mt = strings.TrimSpace(mt); {
	case isType(mt, "text/event-stream"):
		o.sse = true
	case isType(mt, "application/x-ndjson"), isType(mt, "application/jsonl"), isType(mt, "application/x-jsonlines"):
		o.sse, o.ndjson = true, true
	}
}

// isType reports whether the media type mt is want, ignoring case. The
// length is compared first: "application/json", the usual answer, shares
// its first twelve bytes with two of the types above.
func isType(mt, want string) bool {
	return len(mt) == len(want) && strings.EqualFold(mt, want)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// Write observes p, the next bytes the caller read. It never keeps p and
// never fails: an Observer is an io.Writer for io.TeeReader.
func (o *Observer) Write(p []byte) (int, error) {
	if len(p) > 0 && !o.finished {
		if !o.wrote && o.sse && !o.encoded && o.coded == nil && len(p) <= maxCarry {
			o.wrote, o.early = true, append(o.early[:0], p...)
			return len(p), nil
		}
		o.wrote = true
	}
	if len(o.early) > 0 {
		o.readEarly()
	}
	switch {
	case o.encoded || o.finished:
	case o.coded != nil:
		o.coded.write(p)
	case o.sse:
		o.writeSSE(p)
	default:
		o.writeJSON(p)
	}
	return len(p), nil
}

// Release gives o back for reuse by a later NewObserver. Call it at most
// once, when done with o; o must not be used after. A Result that o
// returned shares no memory with it and stays valid. Not calling it is
// harmless: o is then left to the garbage collector.
func (o *Observer) Release() {
	o.reset()
	observers.Put(o)
}

// maxPooled bounds a buffer a released Observer keeps: one that grew for an
// unusual answer (a long line, a large error) is left to the collector.
const maxPooled = 4 << 10

// reset readies o for reuse: the zero Observer with its buffers emptied,
// and the strings Result last made, which the next answer often repeats.
// raw, rare, is left to the collector.
func (o *Observer) reset() {
	vals := o.doc.vals
	carry, shape, held, early := o.carry, o.shape, o.text.held, o.early
	model, id, tier, utier := o.model, o.id, o.tier, o.usage.tier
	names := o.names
	*o = Observer{names: names}
	for i, v := range vals {
		o.doc.vals[i] = pooled(v)
	}
	o.carry, o.shape, o.text.held, o.early = pooled(carry), pooled(shape), pooled(held), pooled(early)
	o.model, o.id, o.tier, o.usage.tier = pooled(model), pooled(id), pooled(tier), pooled(utier)
}

func pooled(b []byte) []byte {
	if cap(b) > maxPooled {
		return nil
	}
	return b[:0]
}

// readEarly reads the first write of a stream, which Write kept: the
// caller has its first bytes without waiting for them to be read, and the
// reading waits for the caller's next read, or Result.
func (o *Observer) readEarly() {
	p := o.early
	o.early = o.early[:0]
	o.writeSSE(p)
}

// EOF tells the observer that the body's reader returned io.EOF: the
// answer is whole, even a stream whose provider sends no end marker
// (Gemini's), so usage it lacks is missing (NoUsage), not cut off.
func (o *Observer) EOF() {
	if !o.finished {
		o.eof = true
	}
}

// writeJSON reads p as part of a JSON body: one value, or an array of
// them.
func (o *Observer) writeJSON(p []byte) {
	if !o.jsonStarted {
		i := skipSpace(p, 0)
		if i == len(p) {
			return
		}
		o.jsonStarted = true
		o.array = p[i] == '['
	}
	if !o.array {
		// A first write that ends other than an object does is cut short
		// (io.ReadAll's first read is 512 bytes): readWhole would read it
		// only to give up.
		if o.doc.dirty || lastNonSpace(p) != '}' || !o.doc.readWhole(p) {
			o.doc.write(p)
		}
		return
	}
	o.text.write(p)
	for len(p) > 0 && !o.terminated {
		if o.inElem {
			p = p[o.doc.write(p):]
			if o.doc.done {
				o.apply(&o.doc, false, o.events == 0)
				o.events++
				o.doc.reset()
				o.inElem = false
			}
			continue
		}
		switch p[0] {
		case '{':
			o.inElem = true
			continue
		case ']':
			o.terminated = true
		}
		p = p[1:]
	}
}

// Result returns what the Observer read. Call it once the caller has read
// to the end or closed the body; later writes are ignored, and later calls
// return the same.
func (o *Observer) Result() Result {
	if o.encoded {
		return Result{Metering: Encoded}
	}
	if o.coded != nil {
		if !o.finished {
			o.finished = true
			o.codedResult = o.coded.decode(o)
			o.coded.b = nil
		}
		return o.codedResult
	}
	if !o.finished {
		if len(o.early) > 0 {
			o.readEarly()
		}
		o.finished = true
		o.text.end()
		switch {
		case o.array:
		case !o.sse:
			o.terminated = o.doc.done
			o.apply(&o.doc, false, true)
		default:
			// A stream cut before the blank line that ends its last
			// event: read that event if its JSON is whole.
			if o.kind == lineData && !o.lineStart && o.ev.open {
				o.spill()
				o.decide()
			}
			if o.ev.lines > 0 && o.ev.examine && !o.ev.poisoned && o.doc.done {
				o.dispatch()
			}
		}
	}
	r := Result{
		StreamErr:   o.worst,
		StreamErrs:  o.errs,
		Events:      o.events,
		Terminated:  o.terminated,
		Model:       text(o.model, &o.names.model),
		ResponseID:  jsonscan.Text(o.id, false),
		ServiceTier: text(o.tier, &o.names.tier),
	}
	if r.ServiceTier == "" {
		r.ServiceTier = text(o.usage.tier, &o.names.tier)
	}
	var bad bool
	r.Tokens, r.Known, bad = o.usage.usage()
	r.TextBytes = o.text.n
	switch {
	case r.Known:
		r.Metering = Metered
	case bad:
		r.Metering = UnknownShape
	case !o.wrote && !o.eof:
		r.Metering = ClosedUnread
	case !o.terminated && !o.eof:
		r.Metering = CutShort
	case o.sawUsage:
		r.Metering = UnknownShape
	default:
		r.Metering = NoUsage
	}
	r.ProviderCost, r.ProviderCostMicros = o.usage.costSet, o.usage.cost
	return r
}

// text returns jsonscan.Text(raw, false), and *last when that is it, which
// costs no allocation: most answers name the model and tier of the last
// one an observer read.
func text(raw []byte, last *string) string {
	// *last is valid UTF-8 no longer than MaxText, so raw equal to it is
	// its own Text.
	if len(raw) > 0 && string(raw) == *last {
		return *last
	}
	s := jsonscan.Text(raw, false)
	if s != "" {
		*last = s
	}
	return s
}

// writeSSE reads p as part of an event stream.
func (o *Observer) writeSSE(p []byte) {
	for i := 0; i < len(p); {
		if o.lineStart {
			o.lineStart, o.kind, o.plen = false, lineUnknown, 0
		}
		switch o.kind {
		case lineUnknown:
			i = o.lineHead(p, i)
		case lineData:
			if i = o.dataLine(p, i); o.ndjson && o.lineStart {
				o.dispatch() // a line is an event
			}
		case lineEvent:
			i = o.eventLine(p, i)
		case lineRaw:
			i = o.rawLine(p, i)
		default:
			i = o.skipLine(p, i)
		}
	}
}

// lineHead reads the first bytes of a line until its kind is known. In
// newline-delimited JSON every line that is not blank is data.
func (o *Observer) lineHead(p []byte, i int) int {
	if o.plen == 0 && p[i] == '\n' {
		o.lineStart = true
		o.dispatch()
		return i + 1
	}
	if o.ndjson {
		if p[i] == '\r' {
			o.kind = lineIgnore // a blank line's CR; the line ends at its LF
			return i
		}
		o.kind, o.valStart = lineData, true
		o.dataStarts()
		return i
	}
	if o.plen == 0 && !o.rawOn && len(p)-i >= len("event:") {
		switch {
		case string(p[i:i+len("data:")]) == "data:":
			o.kind, o.valStart = lineData, true
			o.dataStarts()
			return i + len("data:")
		case string(p[i:i+len("event:")]) == "event:":
			o.kind = lineEvent
			o.ev.nameLen, o.ev.nameLong = 0, false
			return i + len("event:")
		}
	}
	for ; i < len(p); i++ {
		b := p[i]
		if o.plen == 0 {
			switch {
			case b == '\n':
				o.lineStart = true
				o.dispatch()
				return i + 1
			case b == '{' || b == '[':
				if !o.rawOn {
					o.rawOn = true
					if o.raw == nil {
						o.raw = new(jsonCapture) // rare: kept out of every observer
					} else {
						o.raw.reset()
					}
				}
				o.kind = lineRaw
				return i
			case o.rawOn && b != 'd' && b != 'e' && b != '\r':
				// Inside a JSON value spread over lines, every line
				// belongs to it until a field starts.
				o.kind = lineRaw
				return i
			}
		}
		if b == '\n' {
			if o.plen == 1 && o.prefix[0] == '\r' {
				o.lineStart = true // "\r\n": a blank line
				o.dispatch()
				return i + 1
			}
			o.kind = lineIgnore
			return i
		}
		o.prefix[o.plen] = b
		o.plen++
		h := o.prefix[:o.plen]
		switch {
		case string(h) == "data:":
			o.leaveRaw()
			o.kind, o.valStart = lineData, true
			o.dataStarts()
			return i + 1
		case string(h) == "event:":
			o.leaveRaw()
			o.kind = lineEvent
			o.ev.nameLen, o.ev.nameLong = 0, false
			return i + 1
		case string(h) == "\r":
		case bytes.HasPrefix([]byte("data:"), h), bytes.HasPrefix([]byte("event:"), h):
		case o.rawOn:
			// Not a field after all: these bytes belong to the value.
			o.raw.write(h)
			o.kind = lineRaw
			return i + 1
		default:
			o.kind = lineIgnore
			return i + 1
		}
	}
	return i
}

// leaveRaw abandons a JSON value outside any field when a field starts.
func (o *Observer) leaveRaw() {
	if o.rawOn {
		o.rawOn = false
		o.raw.reset()
	}
}

// skipLine passes the rest of a line nobody reads.
func (o *Observer) skipLine(p []byte, i int) int {
	if e := bytes.IndexByte(p[i:], '\n'); e >= 0 {
		o.lineStart = true
		return i + e + 1
	}
	return len(p)
}

// eventLine reads an event: field's value, the event's name.
func (o *Observer) eventLine(p []byte, i int) int {
	ev := &o.ev
	e := bytes.IndexByte(p[i:], '\n')
	end := len(p)
	if e >= 0 {
		end = i + e
	}
	v := p[i:end]
	if !ev.nameSeen && len(v) > 0 {
		ev.nameSeen = true
		if v[0] == ' ' { // the one space after the colon
			v = v[1:]
		}
	}
	if n := copy(ev.name[ev.nameLen:], v); n < len(v) {
		ev.nameLong = true
	} else {
		ev.nameLen += n
	}
	if e < 0 {
		return len(p)
	}
	if n := ev.nameLen; n > 0 && ev.name[n-1] == '\r' && !ev.nameLong {
		ev.nameLen--
	}
	ev.nameSeen = false
	o.lineStart = true
	return end + 1
}

// textEvent reports whether the current event's data may carry generated
// text: an event with no name, or, of named events, only the deltas
// (Anthropic's content_block_delta, the Responses API's *.delta). The
// others repeat the text (response.output_text.done) or carry none (pings,
// message_delta, content_block_start, whose text is "" or a tool's result,
// which is input).
func (o *Observer) textEvent() bool {
	ev := &o.ev
	if ev.nameLong {
		return false
	}
	name := ev.name[:ev.nameLen]
	return len(name) == 0 || bytes.HasSuffix(name, []byte("delta")) && string(name) != "message_delta"
}

// errorEvent reports whether the current event is named error.
func (o *Observer) errorEvent() bool {
	return !o.ev.nameLong && string(o.ev.name[:o.ev.nameLen]) == "error"
}

// rawLine feeds a line of a JSON value outside any field.
func (o *Observer) rawLine(p []byte, i int) int {
	e := bytes.IndexByte(p[i:], '\n')
	end := len(p)
	if e >= 0 {
		end = i + e + 1
	}
	o.raw.write(p[i:end])
	if o.raw.done {
		o.apply(o.raw, false, true)
		o.rawOn = false
		o.raw.reset()
		o.kind = lineIgnore // the rest of the line
	}
	if e >= 0 {
		o.lineStart = true
	}
	return end
}

// dataStarts is called when a data: line begins.
func (o *Observer) dataStarts() {
	ev := &o.ev
	ev.lines++
	if ev.lines == 1 {
		o.doc.reset()
		ev.examine, ev.open, ev.spilled = false, true, false
		o.carry = o.carry[:0]
		ev.tailLen, ev.mayMatter, ev.last, ev.done, ev.vlen, ev.cr = 0, false, 0, 0, 0, false
		return
	}
	if ev.examine {
		o.doc.write(newline)
	} else {
		// The first line was skipped: this event's data cannot be read
		// whole any more.
		ev.poisoned = true
	}
}

var newline = []byte("\n")

// dataLine reads the value of a data: line.
func (o *Observer) dataLine(p []byte, i int) int {
	ev := &o.ev
	if o.valStart {
		o.valStart = false
		if p[i] == ' ' {
			i++
			if i == len(p) {
				return i
			}
		}
		// The common case: a first data line whole in this write. Look
		// at it before reading it.
		if ev.lines == 1 {
			if e := bytes.IndexByte(p[i:], '\n'); e >= 0 {
				from, to := -1, -1
				if o.textEvent() {
					from, to = o.text.whole(p[i : i+e])
				}
				o.firstLine(trimCR(p[i:i+e]), from, to)
				o.lineStart = true
				return i + e + 1
			}
		}
	}
	e := bytes.IndexByte(p[i:], '\n')
	end := len(p)
	if e >= 0 {
		end = i + e
	}
	v := p[i:end]
	from, to := -1, -1 // of the text value in the carried line, as in firstLine
	if o.textEvent() {
		switch {
		case e < 0:
			o.text.hold(v)
		case o.text.spanning:
			from, to = o.text.endLine(v)
		default:
			from, to = o.text.whole(v)
		}
	}
	if ev.open && !ev.spilled {
		// A first line spanning writes: carried until it ends, then
		// judged whole, unless it outgrows the carry.
		if len(o.carry)+len(v) <= maxCarry {
			if e < 0 {
				if o.carry == nil {
					// A chunk's line fits; a longer one grows it
					// up to maxCarry.
					o.carry = make([]byte, 0, 512)
				}
				o.carry = append(o.carry, v...)
				return len(p)
			}
			if len(o.carry) > 0 {
				o.carry = append(o.carry, v...)
				v = o.carry
			}
			o.firstLine(trimCR(v), from, to)
			o.carry = o.carry[:0]
			o.lineStart = true
			return end + 1
		}
		o.spill()
	}
	switch {
	case ev.poisoned:
	case ev.open:
		// A first line spanning writes: read it while deciding whether
		// it matters, on the same grounds as mayMatter.
		o.track(v, e >= 0)
		o.doc.write(v)
	case ev.examine:
		o.doc.write(v)
	}
	if e < 0 {
		return len(p)
	}
	if ev.open {
		o.decide()
	}
	o.lineStart = true
	return end + 1
}

// firstLine reads an event's first data line v, whole, its CR trimmed:
// the end of the stream, or data read if it may matter. v[from:to] is its
// text value under the text counter's hint, if from >= 0.
func (o *Observer) firstLine(v []byte, from, to int) {
	ev := &o.ev
	ev.open = false
	switch {
	case string(v) == "[DONE]":
		o.terminated = true
	case o.mayMatter(v, from, to):
		ev.examine = true
		o.doc.write(v)
	}
}

// spill gives up carrying a first data line: what was carried is read as
// one piece, and the rest of the line as it comes (see track).
func (o *Observer) spill() {
	ev := &o.ev
	if ev.spilled {
		return
	}
	ev.spilled = true
	if len(o.carry) > 0 {
		o.track(o.carry, false)
		o.doc.write(o.carry)
		o.carry = o.carry[:0]
	}
}

func trimCR(v []byte) []byte {
	if n := len(v); n > 0 && v[n-1] == '\r' {
		return v[:n-1]
	}
	return v
}

// Keys whose presence makes an event's data worth reading. The leading
// quote is left out because bytes.Index is three times faster on a pattern
// that does not start with a byte as common as a quote. FastChat names its
// errors error_code.
var (
	keyUsage     = []byte(`usage"`)
	keyError     = []byte(`error"`)
	keyErrorCode = []byte(`error_code"`)
	// keyUsageStem finds usage" and Gemini's usageMetadata" in one search.
	keyUsageStem = []byte(`usage`)
)

// longestKey is the length of the longest of those keys: a window of
// longestKey-1 bytes on each side of a write's boundary finds one split by
// it.
const longestKey = len(`error_code"`)

// mayMatter reports whether the first data line v of an event is read: the
// stream's first event (for the model), an event named error, and, unless
// its name is a quiet one, one whose line names an error, or usage with a
// value other than null, and one whose line is not a whole JSON object (its
// JSON continues on the next data: line). The rest, nearly every event of a long stream, are skipped after a
// search or two. A key written with escapes is not "usage" to jsonCapture
// either, so the search never skips what apply would use; and apply takes
// nothing from an event without usage or an error but the first, so
// reading more events, as track does, changes nothing. Nor does reading
// fewer of those, as sameShape does: it skips a line that differs from
// one the search found nothing in only inside its text value, or in a tail
// it searched.
func (o *Observer) mayMatter(v []byte, from, to int) bool {
	switch {
	case o.events == 0 || o.errorEvent():
		return true
	case o.quietEvent() || o.sameShape(v, from, to):
		return false
	case containsError(v) || usageNotNull(v) || lastNonSpace(v) != '}':
		return true
	}
	o.keepShape(v, from, to)
	return false
}

// maxShape bounds the line sameShape compares with: a Chat Completions
// chunk is a few hundred bytes.
const maxShape = 1 << 10

// sameShape reports whether v, whose text value is v[from:to], is the line
// kept by keepShape up to that value, and nothing after the value may
// matter. Nearly every chunk of a Chat Completions stream repeats the last
// up to its content (id, created, model, fingerprint), and most repeat what
// follows too: then the search is one comparison, or a search of the few
// bytes after the value. The value is a string, so the line has the kept
// line's members up to its end; and the prefix compared ends with the
// value's key, colon and opening quote, so no key the search looks for
// spans its end.
func (o *Observer) sameShape(v []byte, from, to int) bool {
	if from != o.shapeFrom || from < 0 || to >= len(v) || o.noShape || !bytes.Equal(v[:from], o.shape[:from]) {
		return false
	}
	tail := v[to:] // from the value's closing quote
	if bytes.Equal(tail, o.shape[o.shapeTo:]) {
		return true
	}
	return !containsError(tail) && !usageNotNull(tail) && lastNonSpace(tail) == '}'
}

// keepShape keeps v, a line the search found nothing in, for sameShape,
// if its text value v[from:to] is closed.
func (o *Observer) keepShape(v []byte, from, to int) {
	if from < 0 || to >= len(v) || len(v) > maxShape {
		return
	}
	o.shape = append(o.shape[:0], v...)
	o.shapeFrom, o.shapeTo = from, to
}

// quietEvent reports whether the current event's name is one that never
// carries usage or an error: Anthropic's content blocks and pings, and the
// Responses API's events other than its terminal ones. Most events of those
// streams are such, and are skipped without a search.
func (o *Observer) quietEvent() bool {
	ev := &o.ev
	if ev.nameLong {
		return false
	}
	name := ev.name[:ev.nameLen]
	switch {
	case string(name) == "ping", bytes.HasPrefix(name, []byte("content_block_")):
		return true
	case bytes.HasPrefix(name, []byte("response.")):
		return !terminalEvent(name)
	}
	return false
}

// containsError reports whether v holds keyError or keyErrorCode, three
// times faster on JSON than bytes.Contains: it looks for the less common r
// rather than e.
func containsError(v []byte) bool {
	for i := 0; i < len(v); {
		k := bytes.IndexByte(v[i:], 'r')
		if k < 0 {
			return false
		}
		j := i + k // at the first r of error
		if j >= 1 && j+5 <= len(v) && string(v[j-1:j+4]) == "error" &&
			(v[j+4] == '"' || j+10 <= len(v) && string(v[j+4:j+10]) == `_code"`) {
			return true
		}
		i = j + 1
	}
	return false
}

// usageNotNull reports whether v holds the string "usage" (or Gemini's
// "usageMetadata") anywhere but as a key whose value is null, which is how
// every chunk of a Chat Completions stream with include_usage says it.
func usageNotNull(v []byte) bool {
	for {
		k := bytes.Index(v, keyUsageStem)
		if k < 0 {
			return false
		}
		quoted := k > 0 && v[k-1] == '"'
		v = v[k+len(keyUsageStem):]
		if !quoted {
			continue // "prompt_usage" or the like: not the key jsonCapture keeps
		}
		if bytes.HasPrefix(v, []byte(`Metadata"`)) {
			return true
		}
		if len(v) == 0 || v[0] != '"' {
			continue // "usages" or the like
		}
		v = v[1:]
		j := skipSpace(v, 0)
		if j == len(v) || v[j] != ':' {
			return true
		}
		j = skipSpace(v, j+1)
		if j == len(v) || v[j] != 'n' {
			return true
		}
	}
}

func skipSpace(v []byte, j int) int {
	for j < len(v) && (v[j] == ' ' || v[j] == '\t' || v[j] == '\r' || v[j] == '\n') {
		j++
	}
	return j
}

func lastNonSpace(v []byte) byte {
	for i := len(v) - 1; i >= 0; i-- {
		switch v[i] {
		case ' ', '\t', '\r', '\n':
		default:
			return v[i]
		}
	}
	return 0
}

// track follows a first data line that spans writes: whether it names usage
// or error (a coarser test than usageNotNull, which is harmless: see
// mayMatter), its last non-space byte, and whether it is "[DONE]". A CR at
// the end of a piece is held back until it is known not to end the line.
func (o *Observer) track(v []byte, final bool) {
	ev := &o.ev
	if final {
		v = trimCR(v)
		if len(v) == 0 {
			ev.cr = false
		}
	}
	if ev.cr {
		ev.cr = false
		o.trackPiece([]byte{'\r'})
	}
	if !final && len(v) > 0 && v[len(v)-1] == '\r' {
		v = v[:len(v)-1]
		ev.cr = true
	}
	o.trackPiece(v)
}

func (o *Observer) trackPiece(v []byte) {
	ev := &o.ev
	if len(v) == 0 {
		return
	}
	if !ev.mayMatter {
		// Search the window across the boundary, then the piece.
		var w [2 * longestKey]byte
		n := copy(w[:], ev.tail[:ev.tailLen])
		n += copy(w[n:], v[:min(len(v), longestKey-1)])
		ev.mayMatter = bytes.Contains(w[:n], keyUsageStem) || containsError(w[:n]) ||
			bytes.Contains(v, keyUsageStem) || containsError(v)
	}
	if len(v) >= len(ev.tail) {
		ev.tailLen = copy(ev.tail[:], v[len(v)-len(ev.tail):])
	} else {
		var t [2 * longestKey]byte
		n := copy(t[:], ev.tail[:ev.tailLen])
		n += copy(t[n:], v)
		ev.tailLen = copy(ev.tail[:], t[max(0, n-len(ev.tail)):n])
	}
	if b := lastNonSpace(v); b != 0 {
		ev.last = b
	}
	for _, b := range v {
		if ev.done >= 0 && ev.done < 6 && b == "[DONE]"[ev.done] {
			ev.done++
		} else {
			ev.done = -1
			break
		}
	}
	ev.vlen += len(v)
}

// decide ends a first data line that spanned writes.
func (o *Observer) decide() {
	ev := &o.ev
	ev.open = false
	switch {
	case ev.done == 6 && ev.vlen == 6:
		o.terminated = true
		ev.examine = false
	default:
		ev.examine = o.events == 0 || o.errorEvent() ||
			!o.quietEvent() && (ev.mayMatter || ev.last != '}')
	}
	if !ev.examine {
		o.doc.reset()
	}
}

// dispatch ends the current event, at a blank line.
func (o *Observer) dispatch() {
	ev := &o.ev
	if ev.lines > 0 {
		if ev.examine && !ev.poisoned {
			o.apply(&o.doc, o.errorEvent(), o.events == 0)
		}
		o.events++
	}
	if !ev.nameLong && terminalEvent(ev.name[:ev.nameLen]) {
		o.terminated = true
	}
	// Not *ev = event{}: clearing the name's array for every event shows
	// in a profile. The fields dataStarts sets are left to it.
	ev.nameLen, ev.nameLong, ev.nameSeen = 0, false, false
	ev.lines, ev.examine, ev.poisoned, ev.open = 0, false, false, false
	o.doc.reset()
}

// terminalEvent reports whether an event of this name ends its stream:
// Anthropic's message_stop and the Responses API's terminal events.
func terminalEvent(name []byte) bool {
	switch string(name) {
	case "message_stop", "response.completed", "response.incomplete", "response.failed":
		return true
	}
	return false
}

// apply takes what one JSON value (a body, or an event's data) says.
// errorEvent reports that it is the data of an event named error. Of a value that carries
// neither usage nor an error it takes nothing unless it is the first (a
// body, the first event): the model of later events is the same, and
// ignoring them keeps the result independent of which events mayMatter
// chose to read.
func (o *Observer) apply(d *jsonCapture, errorEvent bool, first bool) {
	var u usageFields
	carries := false
	for _, f := range [...]capField{capInnerUsage, capUsage} {
		if f == capUsage && d.usageRead {
			u.merge(&d.usage)
			carries = true
		} else if raw := d.get(f); raw != nil && parseUsage(raw, &u) {
			carries = true
		}
	}
	typ, _ := stringValue(d.get(capType))
	errKind := 0
	switch {
	case nonNull(d.prefix(capError)):
		errKind = 1
	case nonNull(d.prefix(capInnerError)):
		errKind = 2
	case string(typ) == "error" || errorEvent:
		errKind = 3
	case nonZero(d.get(capErrorCode)):
		errKind = 4
	}
	if carries {
		o.sawUsage = true
	}
	if !carries && errKind == 0 && !first {
		return
	}
	o.usage.merge(&u)
	for _, f := range [...][2]capField{{capModel, capInnerModel}, {capID, capInnerID}, {capTier, capInnerTier}} {
		dst := &o.model
		switch f[0] {
		case capID:
			dst = &o.id
		case capTier:
			dst = &o.tier
		}
		for _, g := range f {
			if s, _ := stringValue(d.get(g)); len(s) > 0 {
				*dst = append((*dst)[:0], s...)
			}
		}
	}
	if terminalEvent(typ) {
		o.terminated = true
	}
	switch errKind {
	case 1:
		// {"error": {...}}, Anthropic's {"type": "error", "error": {...}},
		// and Text Generation Inference's {"error": "...", "error_type": ...}.
		o.streamErr(errorBody(d.get(capType), d.prefix(capError), d.get(capErrorType)))
	case 2:
		// A Responses API response.failed event's response.error.
		o.streamErr(errorBody(nil, d.prefix(capInnerError), nil))
	case 3:
		// The Responses API's documented error event is flat:
		// {"type": "error", "code": ..., "message": ...}.
		o.streamErr(flatErrorBody(d.get(capCode), d.get(capMessage)))
	case 4:
		// FastChat's {"text": "...", "error_code": 50001}, read as the
		// {"object": "error", "message": ..., "code": ...} it answers with
		// outside a stream.
		o.streamErr(fastChatErrorBody(d.get(capErrorCode), d.get(capText)))
	}
}

// nonZero reports whether raw is a number other than 0.
func nonZero(raw []byte) bool {
	return len(raw) > 0 && raw[0] >= '0' && raw[0] <= '9' && !(len(raw) == 1 && raw[0] == '0')
}

// nonNull reports whether raw is a value other than null (or anything else
// starting with n, which is no error either).
func nonNull(raw []byte) bool {
	return len(raw) > 0 && raw[0] != 'n'
}

// stringValue returns the contents of a raw JSON string, escapes left in
// place, and false for any other value.
func stringValue(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, false
	}
	return raw[1 : len(raw)-1], true
}

// errorBody rebuilds a small error body from the kept parts, in the shape
// Answer reads: {"type": <typ>, "error_type": <errType>, "error": <err>}.
// err may be a truncated prefix; Answer keeps what it can read of it.
func errorBody(typ, err, errType []byte) []byte {
	b := make([]byte, 0, len(typ)+len(err)+len(errType)+40)
	b = append(b, '{')
	if len(typ) > 0 {
		b = append(append(append(b, `"type":`...), typ...), ',')
	}
	if len(errType) > 0 {
		b = append(append(append(b, `"error_type":`...), errType...), ',')
	}
	b = append(append(b, `"error":`...), err...)
	return append(b, '}')
}

func fastChatErrorBody(code, text []byte) []byte {
	b := append(make([]byte, 0, len(code)+len(text)+50), `{"object":"error","code":`...)
	b = append(b, code...)
	if len(text) > 0 {
		b = append(append(b, `,"message":`...), text...)
	}
	return append(b, '}')
}

func flatErrorBody(code, msg []byte) []byte {
	b := append(make([]byte, 0, len(code)+len(msg)+40), `{"type":"error"`...)
	if len(code) > 0 {
		b = append(append(b, `,"code":`...), code...)
	}
	if len(msg) > 0 {
		b = append(append(b, `,"message":`...), msg...)
	}
	return append(b, '}')
}

// streamErr classifies one error found inside the answer.
func (o *Observer) streamErr(body []byte) {
	c, status := classify.StreamError(o.header, body)
	e := &StreamError{Result: c, Status: status}
	o.errs++
	if o.worst == nil || classify.MoreSevere(c.Class, o.worst.Class) {
		o.worst = e
	}
}
