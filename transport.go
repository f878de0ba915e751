package quotabreaker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/usage"
	"go.opentelemetry.io/otel"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
)

// Headers the Transport adds to answers.
const (
	// HeaderShouldRetry is the header OpenAI's SDKs (and others generated
	// the same way) read before the status to decide on a retry. In
	// ModeEnforce the Transport sets it to "false" on every answer of a
	// tripping class, and on every answer that the SDKs would retry by its
	// status (408, 409, 429, 5xx) but whose class cannot succeed later.
	HeaderShouldRetry = "X-Should-Retry"
	// HeaderShortCircuit is set to "true" on an answer the Transport made
	// itself, from an open latch, without reaching the network.
	HeaderShortCircuit = "Quotabreaker-Short-Circuit"
	// HeaderScope names the open latch on a short-circuited answer, or the
	// budget key on an answer refused by a budget.
	HeaderScope = "Quotabreaker-Scope"
	// HeaderBudget names the budget on an answer refused by its hard limit.
	HeaderBudget = "Quotabreaker-Budget"
)

// errNotNew is what a Transport that did not come from New answers.
var errNotNew = errors.New("quotabreaker: Transport used without New; create it with quotabreaker.New(base, opts...)")

// Transport is an http.RoundTripper that classifies error answers, opens a
// latch (a circuit breaker that never closes on its own) for the scope of a
// request whose answer says the quota is exhausted, and refuses that scope's
// later requests without reaching the network until Reset.
//
// Answers below 400 reach the caller unchanged and undelayed; the body of a
// 2xx answer is read as the caller reads it, for its usage and for errors
// inside a stream (see WithUsage), never buffered or held back. Error
// answers are classified from a bounded prefix of their body and reach the
// caller byte for byte as sent; rate limits and every other retryable
// answer pass through unchanged, for the caller's retry logic. Transport
// errors pass through unchanged and never trip a latch.
//
// A Transport must be made with New: the zero Transport answers every
// request with an error that says so. It is safe for concurrent use, and
// its mode can be switched at run time with SetMode. Deciding a request
// costs a keyed hash of the scope's headers, a map lookup under a read lock
// and two operations on the scope's breaker mutex (which concurrent
// requests of one scope share), and no allocation; reading a 2xx body for
// its usage costs one small allocation and a pass over the bytes the
// caller reads; tracing costs what the tracer provider charges.
type Transport struct {
	base    http.RoundTripper
	cfg     config
	mode    atomic.Int32 // a Mode
	seed    maphash.Seed
	latches latches
	budgets budgets
	fleet   *fleet // nil without WithStore
	tel     telemetry
	// warnedNoCredential: the logger has said once that a request
	// carried no credential the Transport can find.
	warnedNoCredential atomic.Bool
	// mark: base is not a plain *http.Transport, so it may hold another
	// Transport, which must see that this one handles the request.
	mark bool
}

// handledKey marks a request's context with the Transport that handles it.
type handledKey struct{}

var _ http.RoundTripper = (*Transport)(nil)

// New returns a Transport that sends requests through base. A nil base
// means http.DefaultTransport. It panics on an invalid Budget (no name, a
// limit that is not a positive number, a threshold outside (0, 1), or two
// budgets with one name): a mistake in the program, found at start-up.
func New(base http.RoundTripper, opts ...Option) *Transport {
	if base == nil {
		base = http.DefaultTransport
	}
	for {
		// New(New(base)): the inner Transport would only pass requests
		// through (see RoundTrip), so send them to its base at once.
		inner, ok := base.(*Transport)
		if !ok || inner.base == nil {
			break
		}
		base = inner.base
	}
	t := &Transport{base: base, cfg: newConfig(opts), seed: maphash.MakeSeed()}
	// Only a base that may hold another Transport further down (otelhttp, a
	// retry layer, anything but the standard library's) needs requests
	// marked: a context value and a shallow copy of the request, two small
	// allocations per request, which a plain *http.Transport is spared.
	_, plain := base.(*http.Transport)
	t.mark = !plain
	t.mode.Store(int32(t.cfg.mode))
	for _, b := range t.cfg.budgets {
		bs, err := newBudget(b)
		if err == nil && t.budgets.byName(b.Name) != nil {
			err = fmt.Errorf("quotabreaker: two budgets named %q", b.Name)
		}
		if err != nil {
			panic("quotabreaker.New: " + err.Error())
		}
		t.budgets = append(t.budgets, bs)
	}
	t.latches.open = new(atomic.Int64)
	if t.cfg.store != nil {
		t.fleet = newFleet(t.cfg.store, &t.cfg)
		for _, b := range t.budgets {
			b.shared = t.fleet.spend != nil
		}
	}
	t.tel.init(t)
	if t.fleet != nil {
		t.startFleet()
	}
	return t
}

// RoundTrip implements http.RoundTripper.
//
// A request that another Transport handles already (a Transport under
// otelhttp under a Transport, say) passes through this one untouched, so
// that wrapping twice pages once, counts a cost once and records one span
// per attempt: the outer Transport is the one that acts. New(New(base))
// skips the inner one outright.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.base == nil {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper closes it, even when it sends nothing
		}
		return nil, errNotNew
	}
	if outer, _ := req.Context().Value(handledKey{}).(*Transport); outer != nil && outer != t {
		return t.base.RoundTrip(req)
	}
	id, custom, credential := t.scopeID(req)
	provider := requestProvider(req) // once per attempt: every reader of the answer needs it
	name := func() string {
		if custom != "" {
			return custom
		}
		return t.scopeName(req)
	}
	mode := t.Mode()
	l, refusedBy := t.admit(id, name)
	epoch := l.epoch.Load() // the scope's reset epoch as the request is sent
	ctx, span, pending := t.tel.start(req, refusedBy != nil && mode == ModeEnforce, credential)
	// The span ends here unless something took it over, should the base
	// panic.
	spanTaken := false
	defer func() {
		l.release()
		if !spanTaken {
			setAttrs(span, &pending)
			span.End()
		}
	}()
	var b *budget // the budget that refuses req, if any
	var key string
	if len(t.budgets) > 0 {
		b, key = t.budgets.refusing(req, l.scope, t.cfg.now())
	}
	if refuses(refusedBy, b, mode) {
		setAttrs(span, &pending) // refuse ends the span
	}
	if resp, refused, err := t.refuse(ctx, req, span, provider, refusedBy, b, key, mode); refused {
		spanTaken = true
		return resp, err
	}
	var body *answerBody // the answer's, made with the mark (see markHandled)
	if t.mark {
		ctx, body = t.markHandled(ctx, span)
	}
	if ctx != req.Context() {
		req = req.WithContext(ctx)
	}
	a := attempt{provider: provider, span: span, latch: l, epoch: epoch, mode: mode, body: body, attrs: pending}
	var err error
	if t.cfg.streamUsage && (provider == classify.ProviderOpenAI || provider == classify.ProviderDeepSeek) {
		var asked *http.Request
		if asked, a.filterUsage, err = usage.AskStreamUsage(req); err == nil {
			req = asked
		}
	}
	var resp *http.Response
	if err == nil {
		if t.tel.timed(ctx) {
			a.start = t.cfg.now()
		}
		resp, err = t.base.RoundTrip(req)
		if err == nil && resp == nil {
			err = fmt.Errorf("quotabreaker: base RoundTripper (%T) returned a nil *Response with a nil error", t.base)
		}
	}
	a.req = req
	if err != nil {
		// The request could not be read for its rewrite (no duration is
		// recorded then: it was never sent), or the base failed.
		spanTaken = true
		a.err, a.errorType = err, semconv.ErrorType(err).Value.AsString()
		t.done(&a, nil)
		return nil, err
	}
	if resp.Header == nil {
		resp.Header = make(http.Header) // the rest of RoundTrip relies on one
	}
	var c classify.Result
	var first *opened
	if resp.StatusCode >= 400 {
		var body []byte
		var complete bool
		c, body, complete = t.inspect(resp, provider)
		retries := classify.SDKRetries(resp.StatusCode)
		first = t.judge(resp, c, retries, body, complete, l, epoch, refusedBy != nil, mode)
	}
	spanTaken = true
	a.attrs = t.tel.answer(span, a.attrs, req, resp, c, provider, l.scope, l.state(), mode, refusedBy, first)
	if first != nil {
		t.announce(ctx, first)
	}
	a.status = resp.StatusCode
	if resp.StatusCode >= 400 {
		a.errorType = string(c.Class)
		if a.errorType == "" {
			a.errorType = strconv.Itoa(resp.StatusCode)
		}
	}
	t.follow(resp, a)
	return resp, nil
}

// page calls OnTrip for o, then completes a reset that came meanwhile.
func (t *Transport) page(ctx context.Context, o *opened) {
	callHook("OnTrip", t.cfg.onTrip, ctx, o.Trip)
	if t.latches.announced(o) {
		t.resetDone(ctx, o)
	}
}

// resetDone records a latch's reset and calls OnReset if OnTrip was called
// for it here; it runs with no lock held.
func (t *Transport) resetDone(ctx context.Context, o *opened) {
	t.tel.reset(ctx, o.Trip)
	if !o.quiet {
		callHook("OnReset", t.cfg.onReset, ctx, o.Trip)
	}
}

// CloseIdleConnections closes the base transport's idle connections, if it
// has any to close, so that http.Client.CloseIdleConnections reaches it.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// isHTTPInstrumentation reports whether rt is otelhttp's Transport, whose
// CLIENT span for each attempt makes the Transport's own span INTERNAL.
func isHTTPInstrumentation(rt http.RoundTripper) bool {
	typ := reflect.TypeOf(rt)
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	return strings.HasSuffix(typ.PkgPath(), "/otelhttp")
}

// tracedOutside reports whether an outer HTTP client instrumentation has
// already started this attempt's span: the traceparent header it injected
// names the span in ctx.
func tracedOutside(ctx context.Context, h http.Header) bool {
	tp := h["Traceparent"]
	if len(tp) == 0 {
		return false
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return false
	}
	id := sc.SpanID()
	var hexID [16]byte
	hex.Encode(hexID[:], id[:])
	return strings.Contains(tp[0], string(hexID[:]))
}

// hookKey marks the context of a hook run by a hookRunner, with the
// Transport it belongs to.
type hookKey struct{}

// hookRunner runs hooks on a goroutine of its own, one at a time and in the
// order given, so that OnTrip runs before OnReset for one trip, and so that
// neither the store's goroutines nor Shutdown wait on user code. The
// goroutine exists only while there are hooks to run.
type hookRunner struct {
	mu    sync.Mutex
	queue []func()      // guarded by mu
	idle  chan struct{} // guarded by mu; nil while no goroutine runs, closed when it stops
}

// run queues fn; it never blocks.
func (h *hookRunner) run(fn func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queue = append(h.queue, fn)
	if h.idle == nil {
		h.idle = make(chan struct{})
		go h.drain(h.idle)
	}
}

func (h *hookRunner) drain(idle chan struct{}) {
	for {
		h.mu.Lock()
		if len(h.queue) == 0 {
			h.idle = nil
			h.mu.Unlock()
			close(idle)
			return
		}
		fn := h.queue[0]
		h.queue[0] = nil
		h.queue = h.queue[1:]
		h.mu.Unlock()
		fn()
	}
}

// wait waits until every hook queued has returned, or ctx is done.
func (h *hookRunner) wait(ctx context.Context) error {
	h.mu.Lock()
	idle := h.idle
	h.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hookContext is the context of a hook run on the runner.
func (t *Transport) hookContext() context.Context {
	return context.WithValue(context.Background(), hookKey{}, t)
}

// pageAsync has OnTrip called for o on the hook goroutine, unless it was
// called (or is due) already.
func (t *Transport) pageAsync(o *opened) {
	if t.latches.markPaging(o) {
		t.fleet.hooks.run(func() { t.page(t.hookContext(), o) })
	}
}

// resetAsync completes o's reset (telemetry, OnReset) on the hook
// goroutine, after any OnTrip queued before it.
func (t *Transport) resetAsync(o *opened) {
	t.fleet.hooks.run(func() { t.resetDone(t.hookContext(), o) })
}

// callHook runs a user's hook. A panic in it is an ordinary bug in the
// user's code (a pager client, say) that must not leave a latch, a span or a
// metric half-updated, so it is recovered and reported to otel.Handle, as
// OpenTelemetry reports its own errors.
func callHook[T any](name string, fn func(context.Context, T), ctx context.Context, v T) {
	if fn == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			otel.Handle(fmt.Errorf("quotabreaker: %s panicked: %v", name, r))
		}
	}()
	fn(ctx, v)
}

// announced records that OnTrip for o has returned, and reports whether a
// reset came first and left its OnReset to the caller.
func (ls *latches) announced(o *opened) (resetOwed bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	o.announced = true
	return o.resetOwed
}

// markPaging reports whether OnTrip for o is still to be called here, and
// if so records that the caller calls it.
func (ls *latches) markPaging(o *opened) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if o.paging || o.quiet {
		return false
	}
	o.paging = true
	return true
}

// wasReset reports whether o's latch was reset here.
func (ls *latches) wasReset(o *opened) bool {
	ls.mu.RLock()
	defer ls.mu.RUnlock()
	return o.wasReset
}

// quiet records that o will not be announced here (another process paged
// for it), and reports whether a reset came first and is owed its
// telemetry.
func (ls *latches) quiet(o *opened) (resetOwed bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if o.paging {
		return false
	}
	o.quiet, o.announced = true, true
	return o.resetOwed
}

// claim queues a trip recorded here for the store; OnTrip waits for the
// claim, so that one process in the fleet pages, unless the store is not
// taking writes now: then it pages at once (the claim, written later,
// pages nobody twice). After Shutdown it pages on the caller's goroutine,
// as without a store.
func (t *Transport) claim(ctx context.Context, o *opened) {
	f := t.fleet
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		t.latches.markPaging(o)
		t.page(ctx, o)
		return
	}
	f.claims = append(f.claims, o)
	f.mu.Unlock()
	if !f.writesUp.Load() {
		t.pageAsync(o)
	}
	signal(f.wake)
}
