package quotabreaker

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/usage"
)

// This file holds what the Transport does with bodies: reading an error
// answer's prefix to classify it without losing a byte of it, the body the
// caller reads of a successful answer (which ends the attempt's span), and
// the request body, read for its model or rewritten to ask a stream for its
// usage.

// inspect classifies an error answer from a bounded prefix of its body and
// puts back a body that yields exactly the bytes the server sent. It returns
// the decoded prefix and whether that prefix is the whole body.
func (t *Transport) inspect(resp *http.Response, provider classify.Provider) (c classify.Result, body []byte, complete bool) {
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
	c = classify.Answer(resp.StatusCode, resp.Header, body)
	if provider != "" {
		c.Provider = provider
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

// answerBody is the body the caller reads of an answer that came from the
// network: the one wrapper that serves every reader of a successful answer.
// It feeds each byte the caller reads to the observer, if any, and calls end
// once, with what the observer saw, when the caller closes the body or reads
// it to the end, whichever comes first, so that a streamed answer is
// measured whole. It never changes, holds back or reorders a byte.
type answerBody struct {
	rc    io.ReadCloser
	t     *Transport
	at    attempt      // settled by t.done, in the body: no closure nor copy to allocate
	seen  usage.Result // what obs saw, kept here so that it need not escape on its own
	ended atomic.Bool

	mu  sync.Mutex // guards obs: Close may race a Read in another goroutine
	obs *usage.Observer
	// observed is obs != nil at the start; obs becomes nil when finish
	// releases it, so Read checks it again under mu.
	observed bool
}

// newAnswerBody wraps resp's body, which is not nil, so that t.done runs
// for a once the caller is done with it; with observe, an observer reads
// its usage on the way, and the usage chunk the Transport asked for is
// removed (see WithStreamUsage).
func (t *Transport) newAnswerBody(resp *http.Response, observe bool, a *attempt) io.ReadCloser {
	rc := resp.Body
	b := &answerBody{rc: rc, t: t, at: *a, observed: observe}
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
	var seen *usage.Result
	if b.observed {
		b.mu.Lock()
		b.seen = b.obs.Result()
		b.obs.Release()
		b.obs = nil
		b.mu.Unlock()
		seen = &b.seen
	}
	b.t.done(&b.at, seen)
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

// askStreamUsage returns req, or a copy of it asking for the stream's usage
// (see WithStreamUsage), and whether the usage chunk must be removed from
// the answer because the caller had not asked for it.
func askStreamUsage(req *http.Request, provider classify.Provider) (*http.Request, bool, error) {
	if req.Method != http.MethodPost || req.Body == nil || req.Body == http.NoBody ||
		req.URL == nil || !strings.HasSuffix(req.URL.Path, "/chat/completions") ||
		req.ContentLength > usage.MaxRewriteBody {
		return req, false, nil
	}
	switch provider {
	case classify.ProviderOpenAI, classify.ProviderDeepSeek:
	default:
		return req, false, nil
	}
	body, complete, err := readPrefix(req.Body, usage.MaxRewriteBody+1, req.ContentLength)
	if err != nil {
		req.Body.Close()
		return nil, false, err
	}
	if !complete {
		// Too large to rewrite: send it as it is.
		r := req.Clone(req.Context())
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(strings.NewReader(string(body)), req.Body), req.Body}
		return r, false, nil
	}
	req.Body.Close()
	out, changed, asked := usage.RequestStreamUsage(body)
	r := req.Clone(req.Context())
	r.ContentLength = int64(len(out))
	r.Body = io.NopCloser(strings.NewReader(string(out)))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(out))), nil }
	return r, changed && !asked, nil
}

// requestModel returns the request's model, reading it once.
func (at *attempt) requestModel() string {
	if !at.modelRead {
		at.model, at.modelRead = requestModel(at.req), true
	}
	return at.model
}

// maxModelRead is how much of a request body is read for its model.
const maxModelRead = 64 << 10

// requestModel reads the "model" member of a JSON request body, from the
// first 64 KiB of a fresh copy (GetBody), "" when it has none there.
func requestModel(req *http.Request) string {
	if req.GetBody == nil || req.Method != http.MethodPost {
		return ""
	}
	rc, err := req.GetBody()
	if err != nil || rc == nil {
		return ""
	}
	defer rc.Close()
	b, _, _ := readPrefix(rc, maxModelRead, req.ContentLength)
	return usage.RequestModel(b)
}
