package quotabreaker

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/trace"
)

// Headers the Transport adds to answers.
const (
	// HeaderShouldRetry is the header OpenAI's SDKs (and others generated
	// the same way) read before the status to decide on a retry. The
	// Transport sets it to "false" on every answer of a tripping class.
	HeaderShouldRetry = "X-Should-Retry"
	// HeaderShortCircuit is set to "true" on an answer the Transport made
	// itself, from an open latch, without reaching the network.
	HeaderShortCircuit = "Quotabreaker-Short-Circuit"
	// HeaderScope names the open latch on a short-circuited answer.
	HeaderScope = "Quotabreaker-Scope"
)

// Transport is an http.RoundTripper that classifies error answers, opens a
// latch (a circuit breaker that never closes on its own) for the scope of a
// request whose answer says the quota is exhausted, and refuses that scope's
// later requests without reaching the network until Reset.
//
// Answers below 400 pass through untouched: their bodies are neither read
// nor delayed. Error answers are classified from a bounded prefix of their
// body and reach the caller byte for byte as sent; rate limits and every
// other retryable answer pass through unchanged, for the caller's retry
// logic. Transport errors pass through unchanged and never trip a latch.
//
// A Transport must be made with New. It is safe for concurrent use. On the
// success path it costs a keyed hash of the scope's headers, a map lookup
// under a read lock and two operations on the scope's breaker mutex (which
// concurrent requests of one scope share), and no allocation; tracing costs
// what the tracer provider charges.
type Transport struct {
	base    http.RoundTripper
	cfg     config
	seed    maphash.Seed
	latches latches
	tel     telemetry
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns a Transport that sends requests through base. A nil base
// means http.DefaultTransport.
func New(base http.RoundTripper, opts ...Option) *Transport {
	if base == nil {
		base = http.DefaultTransport
	}
	t := &Transport{base: base, cfg: newConfig(opts), seed: maphash.MakeSeed()}
	t.latches.open = new(atomic.Int64)
	t.tel.init(t)
	return t
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	id, custom := t.scope(req)
	l := t.latches.acquire(id, func() string { return scopeName(req, custom) })
	defer l.release()

	ctx, span := t.tel.start(req)
	spanOwned := false // set once something else has taken over ending it
	defer func() {
		if !spanOwned { // the base panicked
			span.End()
		}
	}()
	if ctx != req.Context() {
		req = req.WithContext(ctx)
	}
	var (
		resp  *http.Response
		rtErr error
		c     Classification
		first *opened
	)
	// The breaker sees errTripped for a tripping answer and nil for anything
	// else, transport errors included: only a tripping class opens it.
	_, err := l.cb.Execute(func() (struct{}, error) {
		resp, rtErr = t.roundTrip(req)
		if rtErr != nil || resp.StatusCode < 400 {
			return struct{}{}, nil
		}
		var body []byte
		var complete bool
		c, body, complete = t.inspect(req, resp)
		if !t.trips(c.Class) {
			return struct{}{}, nil
		}
		resp.Header.Set(HeaderShouldRetry, "false")
		o := &opened{
			Trip: Trip{
				Scope:          l.scope,
				Classification: c,
				Status:         resp.StatusCode,
				RequestID:      requestID(resp.Header),
				At:             t.cfg.now().Round(0), // no monotonic reading: At is for people
			},
			answer: replayAnswer(resp, l.scope, c, body, complete),
		}
		o.shortCircuits = shortCircuitAttrs(o.Trip)
		// Record before the breaker opens, so a request that finds it open
		// always finds the answer to give. A latch reset since this request
		// started records nothing, and its breaker stays closed: the answer
		// is stale.
		if t.latches.record(l, o) {
			first = o
		}
		if l.trip.Load() == nil {
			return struct{}{}, nil
		}
		return struct{}{}, errTripped
	})
	if err == gobreaker.ErrOpenState {
		if o := l.trip.Load(); o != nil {
			spanOwned = true
			return t.shortCircuit(req, l, o, span)
		}
		// Unreachable: a breaker opens only after its trip is recorded.
		// Send the request rather than refuse it without a reason.
		resp, rtErr = t.roundTrip(req)
	}
	spanOwned = true
	if rtErr != nil {
		t.tel.transportError(span, rtErr, l.state())
		return nil, rtErr
	}
	if first != nil {
		// Before the answer's span can end, and before OnReset can run.
		t.tel.tripped(span, first.Trip)
		if t.cfg.onTrip != nil {
			t.cfg.onTrip(first.Trip)
		}
		if t.latches.announced(first) {
			t.resetDone(first.Trip)
		}
	}
	t.tel.answer(span, req, resp, c, l.scope, l.state())
	return resp, nil
}

// roundTrip calls the base and holds it to the RoundTripper contract the
// rest of RoundTrip relies on: a response or an error, and a header map.
func (t *Transport) roundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	switch {
	case err != nil:
		return nil, err
	case resp == nil:
		return nil, fmt.Errorf("quotabreaker: base RoundTripper (%T) returned a nil *Response with a nil error", t.base)
	case resp.Header == nil:
		resp.Header = make(http.Header)
	}
	return resp, nil
}

func (t *Transport) trips(c Class) bool {
	for _, tc := range t.cfg.tripClasses {
		if c == tc {
			return true
		}
	}
	return false
}

// shortCircuit answers req from the open latch l without the network.
func (t *Transport) shortCircuit(req *http.Request, l *latch, o *opened, span trace.Span) (*http.Response, error) {
	// A RoundTripper must close the request body, even when it sends nothing.
	if req.Body != nil {
		req.Body.Close()
	}
	if t.cfg.errorOnOpen {
		err := &OpenError{Trip: o.Trip}
		t.tel.shortCircuit(span, nil, o)
		return nil, err
	}
	a := &o.answer
	header := a.header()
	resp := &http.Response{
		Status:        a.statusLine,
		StatusCode:    a.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          newReplayBody(a.body),
		ContentLength: int64(len(a.body)),
		Request:       req,
	}
	t.tel.shortCircuit(span, resp, o)
	return resp, nil
}

// Reset closes the open latch named scope (as shown in Trip.Scope) and
// reports whether there was one. Requests of that scope reach the network
// again; an answer to a request sent before the reset cannot reopen it.
// Call it once billing is fixed.
func (t *Transport) Reset(scope string) bool {
	return t.reset(scope, false) > 0
}

// ResetAll closes every open latch and returns how many there were.
func (t *Transport) ResetAll() int {
	return t.reset("", true)
}

func (t *Transport) reset(scope string, all bool) int {
	n, due := t.latches.reset(scope, all)
	sortTrips(due)
	for _, tr := range due {
		t.resetDone(tr)
	}
	return n
}

// resetDone records a reset and calls OnReset; it runs with no lock held.
func (t *Transport) resetDone(tr Trip) {
	t.tel.reset(tr)
	if t.cfg.onReset != nil {
		t.cfg.onReset(tr)
	}
}

// CloseIdleConnections closes the base transport's idle connections, if it
// has any to close, so that http.Client.CloseIdleConnections reaches it.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// OpenLatches returns the trips of the open latches, oldest first.
func (t *Transport) OpenLatches() []Trip {
	return t.latches.openLatches()
}

// inspect classifies an error answer from a bounded prefix of its body and
// puts back a body that yields exactly the bytes the server sent. It returns
// the decoded prefix and whether that prefix is the whole body.
func (t *Transport) inspect(req *http.Request, resp *http.Response) (c Classification, body []byte, complete bool) {
	if resp.Body != nil && resp.Body != http.NoBody {
		var rerr error
		body, complete, rerr = readPrefix(resp.Body, t.cfg.maxErrorBody, resp.ContentLength)
		resp.Body = newPrefixBody(body, complete, rerr, resp.Body)
	} else {
		complete = true
	}
	if enc := resp.Header.Get("Content-Encoding"); enc != "" && !resp.Uncompressed && len(body) > 0 {
		body, complete = decode(enc, body, complete, t.cfg.maxErrorBody)
	}
	c = Classify(resp.StatusCode, resp.Header, body)
	if p := hostProvider(requestHost(req)); p != "" {
		c.Provider = p
	}
	return c, body, complete
}

// readPrefix reads up to limit bytes of r and reports whether it reached the
// end. The size hint, the answer's Content-Length, saves growing the buffer.
func readPrefix(r io.Reader, limit int, hint int64) (buf []byte, eof bool, err error) {
	size := 512
	if hint > 0 {
		size = int(min(hint+1, int64(limit)))
	}
	buf = make([]byte, 0, size)
	for {
		if len(buf) >= limit {
			return buf, false, nil
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(len(buf), limit-len(buf)))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), limit)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, true, nil
		}
		if err != nil {
			return buf, false, err
		}
	}
}

// prefixBody gives back the bytes read to classify an answer, then the rest
// of the original body, or the error that interrupted the first read.
type prefixBody struct {
	prefix []byte
	eof    bool
	err    error
	rest   io.ReadCloser
}

func newPrefixBody(prefix []byte, eof bool, err error, rest io.ReadCloser) io.ReadCloser {
	return &prefixBody{prefix: prefix, eof: eof, err: err, rest: rest}
}

func (b *prefixBody) Read(p []byte) (int, error) {
	if len(b.prefix) > 0 {
		n := copy(p, b.prefix)
		b.prefix = b.prefix[n:]
		return n, nil
	}
	switch {
	case b.err != nil:
		return 0, b.err
	case b.eof:
		return 0, io.EOF
	}
	return b.rest.Read(p)
}

func (b *prefixBody) Close() error { return b.rest.Close() }

// decode undoes a Content-Encoding the caller asked for itself (Go's
// transport decodes gzip only when it added Accept-Encoding). The output is
// bounded like the input; an encoding it cannot undo yields no body, so the
// answer is classified by its status.
func decode(encoding string, b []byte, complete bool, limit int) ([]byte, bool) {
	var zr io.Reader
	var err error
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "identity":
		return b, complete
	case "gzip", "x-gzip":
		zr, err = gzip.NewReader(bytes.NewReader(b))
	case "deflate":
		// "deflate" is zlib-wrapped by the standard, raw in some servers.
		if zr, err = zlib.NewReader(bytes.NewReader(b)); err != nil {
			zr, err = flate.NewReader(bytes.NewReader(b)), nil
		}
	default:
		return nil, false
	}
	if err != nil {
		return nil, false
	}
	out, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
	if len(out) > limit {
		return out[:limit], false
	}
	return out, complete && err == nil
}

// replayAnswer is what requests refused by the latch will receive: the
// tripping answer's status and body, decoded, with its content type. A body
// too large to keep is replaced by a short one in OpenAI's shape carrying the
// same code and type, which every OpenAI-compatible SDK parses.
func replayAnswer(resp *http.Response, scope string, c Classification, body []byte, complete bool) answer {
	contentType := resp.Header.Get("Content-Type")
	if !complete {
		body = syntheticBody(c)
		contentType = "application/json"
	}
	return answer{
		status:      resp.StatusCode,
		statusLine:  strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode),
		contentType: contentType,
		scope:       scope,
		body:        bytes.Clone(body),
	}
}

// header returns a fresh header for one short-circuited answer: the caller
// owns it and may change it. Its values share one backing array, as in
// http.Header.Clone, but no map is walked.
func (a *answer) header() http.Header {
	vals := [...]string{"false", "true", a.scope, a.contentType}
	all := vals[:]
	if a.contentType == "" {
		all = all[:3]
	}
	v := make([]string, len(all))
	copy(v, all)
	h := make(http.Header, len(v))
	h[HeaderShouldRetry] = v[0:1:1]
	h[HeaderShortCircuit] = v[1:2:2]
	h[HeaderScope] = v[2:3:3]
	if len(v) == 4 {
		h["Content-Type"] = v[3:4:4]
	}
	return h
}

// replayBody is a short-circuited answer's body.
type replayBody struct{ bytes.Reader }

func newReplayBody(b []byte) *replayBody {
	r := &replayBody{}
	r.Reset(b)
	return r
}

func (*replayBody) Close() error { return nil }

func syntheticBody(c Classification) []byte {
	type apiError struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	}
	b, _ := json.Marshal(struct {
		Error apiError `json:"error"`
	}{apiError{
		Message: "quotabreaker: latch open after a " + string(c.Class) + " answer; reset it once fixed",
		Type:    c.Type,
		Code:    c.Code,
	}})
	return b
}

// requestID returns the provider's id of an answer, bounded and printable.
func requestID(h http.Header) string {
	for _, name := range [...]string{"X-Request-Id", "Request-Id", "Apim-Request-Id"} {
		if v := h.Get(name); v != "" {
			return fieldString([]byte(v), false)
		}
	}
	return ""
}

// hostProvider names the provider of well-known API hosts.
func hostProvider(host string) string {
	host, _ = hostPort(host)
	host = strings.ToLower(host)
	for _, p := range knownHosts {
		if host == p.host || (p.suffix && strings.HasSuffix(host, "."+p.host)) {
			return p.provider
		}
	}
	return ""
}

var knownHosts = [...]struct {
	host     string
	suffix   bool
	provider string
}{
	{"api.openai.com", false, "openai"},
	{"openai.azure.com", true, "azure"},
	{"cognitiveservices.azure.com", true, "azure"},
	{"services.ai.azure.com", true, "azure"},
	{"api.anthropic.com", false, "anthropic"},
	{"generativelanguage.googleapis.com", false, "gemini"},
	{"api.deepseek.com", false, "deepseek"},
	{"openrouter.ai", false, "openrouter"},
	{"api.groq.com", false, "groq"},
	{"api.mistral.ai", false, "mistral"},
	{"api.x.ai", false, "xai"},
	{"api.together.xyz", false, "together"},
	{"api.together.ai", false, "together"},
	{"api.perplexity.ai", false, "perplexity"},
	{"api.fireworks.ai", false, "fireworks"},
	{"api.moonshot.ai", false, "moonshot"},
	{"api.moonshot.cn", false, "moonshot"},
	{"open.bigmodel.cn", false, "zhipu"},
	{"api.z.ai", false, "zhipu"},
	{"api.siliconflow.cn", false, "siliconflow"},
	{"api.cohere.com", false, "cohere"},
}
