package quotabreaker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/internal/bodyio"
	"github.com/quotabreaker/quotabreaker/usage"
	"go.opentelemetry.io/otel/trace"
)

// This file holds what the Transport does with an answer's body: reading
// an error answer's prefix to classify it without losing a byte of it, and
// the body the caller reads of a successful answer, which ends the attempt
// (its usage settled, its span ended) when the caller is done with it; that
// body is made with the request's double-wrap mark when it can be, one
// allocation for both.

// inspect classifies an error answer from a bounded prefix of its body and
// puts back a body that yields exactly the bytes the server sent. It returns
// the decoded prefix and whether that prefix is the whole body.
func (t *Transport) inspect(resp *http.Response, provider classify.Provider) (c classify.Result, body []byte, complete bool) {
	if resp.Body != nil && resp.Body != http.NoBody {
		var rerr error
		body, complete, rerr = bodyio.ReadPrefix(resp.Body, t.cfg.maxErrorBody, resp.ContentLength)
		resp.Body = newPrefixBody(body, complete, rerr, resp.Body)
	} else {
		complete = true
	}
	if enc := resp.Header.Get("Content-Encoding"); enc != "" && !resp.Uncompressed && len(body) > 0 {
		body, complete = bodyio.DecodePrefix(enc, body, complete, t.cfg.maxErrorBody)
	}
	c = classify.Answer(resp.StatusCode, resp.Header, body)
	if provider != "" {
		c.Provider = provider
	}
	return c, body, complete
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

// answerBody is the body the caller reads of an answer that came from the
// network: the one wrapper that serves every reader of a successful answer.
// It feeds each byte the caller reads to the observer, if any, and calls end
// once, with what the observer saw, when the caller closes the body or reads
// it to the end, whichever comes first, so that a streamed answer is
// measured whole. It never changes, holds back or reorders a byte.
type answerBody struct {
	rc    io.ReadCloser
	t     *Transport
	at    attempt // settled by t.done, in the body: no closure nor copy to allocate
	ended atomic.Bool

	mu  sync.Mutex // guards obs: Close may race a Read in another goroutine
	obs *usage.Observer
	// observed is obs != nil at the start; obs becomes nil when finish
	// releases it, so Read checks it again under mu.
	observed bool

	// handled is the request's context marked for inner Transports (see
	// RoundTrip), when the body was made before the request was sent: one
	// allocation for both instead of two.
	handled handledCtx
}

// handledCtx marks a request's context with the Transport that handles it,
// as context.WithValue(ctx, handledKey{}, t) would.
type handledCtx struct {
	context.Context
	t *Transport
}

func (c *handledCtx) Value(key any) any {
	if _, ok := key.(handledKey); ok {
		return c.t
	}
	return c.Context.Value(key)
}

func (c *handledCtx) String() string {
	return fmt.Sprint(c.Context) + ".WithValue(quotabreaker.handledKey)"
}

// markHandled returns ctx marked as handled by t. An attempt whose span
// records gets an answerBody for any answer with a body (see follow): the
// mark is made inside that body, which is returned for newAnswerBody.
func (t *Transport) markHandled(ctx context.Context, span trace.Span) (context.Context, *answerBody) {
	if !span.IsRecording() {
		return &handledCtx{ctx, t}, nil
	}
	b := &answerBody{handled: handledCtx{ctx, t}}
	return &b.handled, b
}

// newAnswerBody wraps resp's body, which is not nil, so that t.done runs
// for a once the caller is done with it; with observe, an observer reads
// its usage on the way, and the usage chunk the Transport asked for is
// removed (see WithStreamUsage).
func (t *Transport) newAnswerBody(resp *http.Response, observe bool, a *attempt) io.ReadCloser {
	rc := resp.Body
	b := a.body // made with the request's mark, if it was
	if b == nil {
		b = new(answerBody)
	}
	b.rc, b.t, b.at, b.observed = rc, t, *a, observe
	if observe {
		b.obs = usage.NewObserver(resp.Header)
	}
	var body io.ReadCloser = b
	if _, ok := rc.(io.ReadWriteCloser); ok {
		// A 101 Switching Protocols body must stay writable.
		body = answerBodyRW{b}
	}
	if observe && a.filterUsage {
		body = usage.HideUsageChunk(body, nil)
	}
	return body
}

func (b *answerBody) finish() {
	if !b.ended.CompareAndSwap(false, true) {
		return
	}
	if !b.observed {
		b.t.done(&b.at, nil)
		return
	}
	b.mu.Lock()
	seen := b.obs.Result()
	b.obs.Release()
	b.obs = nil
	b.mu.Unlock()
	b.t.done(&b.at, &seen)
}

func (b *answerBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if b.observed && (n > 0 || err == io.EOF) {
		b.mu.Lock()
		if b.obs != nil { // nil once finished: a Read racing Close
			b.obs.Write(p[:n])
			if err == io.EOF {
				b.obs.EOF() // whole, even a stream with no end marker
			}
		}
		b.mu.Unlock()
	}
	if err == io.EOF {
		b.finish()
	}
	return n, err
}

func (b *answerBody) Close() error {
	err := b.rc.Close()
	b.finish()
	return err
}

type answerBodyRW struct{ *answerBody }

func (b answerBodyRW) Write(p []byte) (int, error) { return b.rc.(io.Writer).Write(p) }

// attempt is what settling an answer needs to know of its request.
type attempt struct {
	req         *http.Request
	provider    classify.Provider // by the request's host, "" when unknown
	span        trace.Span
	latch       *latch
	epoch       uint64    // the scope's reset epoch as the request was sent
	filterUsage bool      // remove the usage chunk the Transport asked for
	start       time.Time // when it was sent, for gen_ai.client.operation.duration
	status      int       // the answer's status
	errorType   string    // error.type of a failed attempt ("" when it succeeded)
	err         error     // the base's error, when it failed
	mode        Mode      // the Transport's mode as the request was sent

	model     string // the request's model, once read
	modelRead bool
	// attrs are the span attributes of the request, the answer and its
	// spend, set in one call as the span ends (see telemetry.ended); nil
	// when it does not record.
	attrs *spanAttrs
	body  *answerBody // made with the request's context, nil when it was not
}
