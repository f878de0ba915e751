package quotabreaker

import (
	"context"
	"io"
	"net/http"
	"strings"

	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/prices"
	"github.com/quotabreaker/quotabreaker/usage"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
)

// This file follows a successful answer to its end: the observer reads
// what the answer says it used, and once the caller is done with the body,
// settle turns that into money (the usage priced by model, the budgets'
// spend, and their telemetry) and judges an error found inside the stream
// like an error answer.

// attempt is what settling an answer needs to know of its request.
type attempt struct {
	req         *http.Request
	span        trace.Span
	latch       *latch
	epoch       uint64 // the scope's reset epoch as the request was sent
	filterUsage bool   // remove the usage chunk the Transport asked for
}

// spend is what one answer used and cost.
type spend struct {
	tokens        usage.Tokens
	requestModel  string
	responseModel string
	micros        int64 // cost in micro-dollars, when priced
	priced        bool
}

// follow wraps a network answer's body so that its findings are settled and
// its span ends once the caller is done with it. A body nobody needs to
// watch (tracing off, nothing to observe) is left as it is.
func (t *Transport) follow(resp *http.Response, a attempt) {
	var obs *usage.Observer
	if resp.StatusCode >= 200 && resp.StatusCode < 300 && resp.Body != nil && resp.Body != http.NoBody &&
		(!t.cfg.noUsage || isEventStream(resp.Header)) {
		obs = usage.NewObserver(resp.Header)
	}
	if obs == nil && !a.span.IsRecording() {
		a.span.End()
		return
	}
	at := new(attempt) // only now does the attempt outlive RoundTrip
	*at = a
	resp.Body = newAnswerBody(resp.Body, obs, func(seen *usage.Result) {
		if seen != nil {
			t.settle(at, seen)
		}
		at.span.End()
	})
	if at.filterUsage && obs != nil {
		resp.Body = usage.HideUsageChunk(resp.Body, nil)
	}
}

func isEventStream(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "text/event-stream")
}

// settle runs once, on the goroutine that finished the body (the caller's,
// in Read or Close), before the attempt's span ends.
func (t *Transport) settle(at *attempt, seen *usage.Result) {
	ctx := at.req.Context()
	if seen.StreamErr != nil {
		t.streamError(ctx, at, seen.StreamErr)
	}
	if !seen.Known || t.cfg.noUsage {
		if at.span.IsRecording() && seen.Model != "" {
			at.span.SetAttributes(semconv.GenAIResponseModel(seen.Model))
		}
		return
	}
	provider := requestProvider(at.req)
	s := spend{tokens: seen.Tokens, responseModel: seen.Model}
	if at.span.IsRecording() || s.responseModel == "" {
		s.requestModel = requestModel(at.req)
	}
	model := s.responseModel
	if model == "" {
		model = s.requestModel
	}
	if model != "" {
		if p, ok := t.cfg.prices(string(provider), model, seen.ServiceTier); ok {
			s.micros = p.Cost(prices.Tokens{
				Input:      s.tokens.InputTokens,
				CacheRead:  s.tokens.CacheReadTokens,
				CacheWrite: s.tokens.CacheWriteTokens,
				Output:     s.tokens.OutputTokens,
			})
			s.priced = true
		}
	}
	t.tel.spent(ctx, at.span, provider, &s)
	now := t.cfg.now()
	for _, b := range t.budgets {
		key := b.key(at.req, at.latch.scope)
		k, crossed := b.add(key, s.micros, s.priced, now, !b.shared)
		if b.shared && s.priced {
			t.addSpend(b, key, k, s.micros)
		}
		t.tel.budget(ctx, b, key, k)
		for _, th := range crossed {
			callHook("OnBudget", t.cfg.onBudget, ctx, b.status(key, k, th))
		}
	}
}

// streamError records an error that arrived inside a successful answer, and
// opens the latch when its class trips, so that the next request of the
// scope is refused.
func (t *Transport) streamError(ctx context.Context, at *attempt, e *usage.StreamError) {
	c := e.Result
	if p := requestProvider(at.req); p != "" {
		c.Provider = p
	}
	t.tel.streamError(ctx, at.span, c)
	if !t.trips(c.Class) {
		return
	}
	l := t.latches.holding(at.latch)
	if l == nil {
		return // reset since the request was sent: its answer opens nothing
	}
	defer l.release()
	tr := t.newTrip(l.scope, CauseStream, t.Mode(), c, e.Status, "", at.epoch)
	o := newOpened(tr, "", nil, false)
	if !t.latches.record(l, o) {
		return // open already
	}
	t.announce(ctx, at.span, o)
}

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
	b, _, _ := readPrefix(rc, 64<<10, req.ContentLength)
	return usage.RequestModel(b)
}

// askStreamUsage returns req, or a copy of it asking for the stream's usage
// (see WithStreamUsage), and whether the usage chunk must be removed from
// the answer because the caller had not asked for it.
func askStreamUsage(req *http.Request) (*http.Request, bool, error) {
	if req.Method != http.MethodPost || req.Body == nil || req.Body == http.NoBody ||
		req.URL == nil || !strings.HasSuffix(req.URL.Path, "/chat/completions") ||
		req.ContentLength > usage.MaxRewriteBody {
		return req, false, nil
	}
	switch requestProvider(req) {
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
