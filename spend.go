package quotabreaker

import (
	"context"
	"net/http"
	"strings"
	"time"

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
	provider    classify.Provider // by the request's host, "" when unknown
	span        trace.Span
	latch       *latch
	epoch       uint64    // the scope's reset epoch as the request was sent
	filterUsage bool      // remove the usage chunk the Transport asked for
	start       time.Time // when it was sent, for gen_ai.client.operation.duration
	status      int       // the answer's status
	errorType   string    // error.type of a failed attempt ("" when it succeeded)

	model     string // the request's model, once read
	modelRead bool
}

// requestModel returns the request's model, reading it once.
func (at *attempt) requestModel() string {
	if !at.modelRead {
		at.model, at.modelRead = requestModel(at.req), true
	}
	return at.model
}

// Usage is what one successful answer used and cost, as the Transport read
// it: what OnUsage receives, for an application that bills its own users or
// logs the cost of each of its requests.
type Usage struct {
	// Scope is the latch scope of the request (see WithScope).
	Scope string
	// Provider answered, when known.
	Provider classify.Provider
	// Model is the model the answer names, or else the one the request
	// asked for; "" when neither says.
	Model string
	// Metered reports that the answer said what it used: Tokens holds it.
	// An answer that did not (a stream without its usage chunk, one cut
	// short, a body closed unread, a shape the reader does not know) has
	// false, Metering says why, and Tokens is zero or, with Estimated, an
	// estimate (see usage.Result.Estimate): unknown, never free.
	Metered   bool
	Metering  usage.Metering
	Estimated bool
	Tokens    usage.Tokens
	// Priced reports that the cost is known: Cost is what the answer cost
	// in US dollars (with Estimated, what its estimate costs). CostSource
	// says whence: "provider" when the answer stated it (OpenRouter's
	// usage.cost, xAI's usage.cost_in_usd_ticks), which wins over any
	// price table, or "table" from the model's price (see WithPrices).
	// Price is the model's price when it has one. An unpriced answer's
	// tokens still count; its cost is unknown, not zero.
	Priced     bool
	Price      prices.Price
	Cost       float64
	CostSource string

	requestModel, responseModel string
	micros                      int64 // Cost in micro-dollars
}

// state is how the answer counts: "priced", "unpriced" (usage read, no
// price) or "unmetered" (usage unknown).
func (u *Usage) state() string {
	switch {
	case !u.Metered:
		return "unmetered"
	case u.Priced:
		return "priced"
	}
	return "unpriced"
}

// follow wraps a network answer's body so that its findings are settled and
// its span ends once the caller is done with it. A body nobody needs to
// watch (tracing off, nothing to observe) is left as it is.
func (t *Transport) follow(resp *http.Response, a attempt) {
	var obs *usage.Observer
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	hasBody := resp.Body != nil && resp.Body != http.NoBody
	metering := t.cfg.onUsage != nil || len(t.budgets) > 0
	if ok && hasBody && (!t.cfg.noUsage || metering || isEventStream(resp.Header)) {
		obs = usage.NewObserver(resp.Header)
	}
	if obs == nil {
		if ok && metering {
			t.settle(&a, &usage.Result{Metering: usage.NoUsage}) // no body: nothing to read, reported at once
		}
		if !a.span.IsRecording() {
			t.tel.operation(&a)
			a.span.End()
			return
		}
	}
	// Only now does the attempt outlive RoundTrip: the body keeps it.
	resp.Body = t.newAnswerBody(resp.Body, obs, &a)
	if a.filterUsage && obs != nil {
		resp.Body = usage.HideUsageChunk(resp.Body, nil)
	}
}

// done settles an answer once the caller is done with its body (seen is
// what its observer read, nil without one), and ends its span.
func (t *Transport) done(at *attempt, seen *usage.Result) {
	if seen != nil {
		t.settle(at, seen)
	}
	t.tel.operation(at)
	at.span.End()
}

func isEventStream(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "text/event-stream")
}

// settle runs once, on the goroutine that finished the body (the caller's,
// in Read or Close), before the attempt's span ends. Every answer it sees
// is priced, unpriced (usage read, no price) or unmetered (usage unknown,
// charged its estimate as each budget's Unmetered says).
func (t *Transport) settle(at *attempt, seen *usage.Result) {
	ctx := at.req.Context()
	if seen.StreamErr != nil {
		t.streamError(ctx, at, seen.StreamErr)
		if at.errorType == "" {
			at.errorType = string(seen.StreamErr.Result.Class)
		}
	}
	u := Usage{Scope: at.latch.scope, Provider: at.provider, responseModel: seen.Model, Metering: seen.Metering}
	if t.cfg.noUsage {
		if at.span.IsRecording() && seen.Model != "" {
			at.span.SetAttributes(semconv.GenAIResponseModel(seen.Model))
		}
		u.Model = u.responseModel
		if u.Model == "" && t.cfg.onUsage != nil {
			u.Model = at.requestModel()
		}
		callHook("OnUsage", t.cfg.onUsage, ctx, u)
		return
	}
	// The request's model is read whatever the sampling, so that the
	// metrics carry the same attributes with tracing on or off.
	if at.span.IsRecording() || t.tel.spendMetrics(ctx) || u.responseModel == "" {
		u.requestModel = at.requestModel()
	}
	u.Model = u.responseModel
	if u.Model == "" {
		u.Model = u.requestModel
	}
	if seen.Known {
		u.Metered, u.Metering, u.Tokens = true, usage.Metered, seen.Tokens
	} else if est := seen.Estimate(max(at.req.ContentLength, 0)); est.Tokens != (usage.Tokens{}) {
		u.Estimated, u.Tokens = true, est.Tokens
	}
	if u.Model != "" && (u.Metered || u.Estimated) {
		if p, ok := t.cfg.prices(string(u.Provider), u.Model, seen.ServiceTier); ok {
			u.micros = p.Cost(prices.Tokens{
				Input:        u.Tokens.InputTokens,
				CacheRead:    u.Tokens.CacheReadTokens,
				CacheWrite:   u.Tokens.CacheWriteTokens,
				CacheWrite1h: u.Tokens.CacheWrite1hTokens,
				Output:       u.Tokens.OutputTokens,
			})
			u.Priced, u.Price, u.Cost, u.CostSource = true, p, microsToDollars(u.micros), "table"
		}
	}
	if seen.ProviderCost { // what the provider billed: discounts, tools and fees included
		u.micros, u.Priced, u.CostSource = seen.ProviderCostMicros, true, "provider"
		u.Cost = microsToDollars(u.micros)
	}
	t.tel.spent(ctx, at.span, &u)
	now := t.cfg.now()
	if w := t.cfg.balances; w != nil && u.Priced {
		w.Spent(u.Scope, u.Cost, now) // toward the forecast of the key's balance
	}
	if r := t.cfg.reconciler; r != nil && u.Priced {
		r.Counted(string(u.Provider), u.Cost, now) // against the provider's bill
	}
	for _, b := range t.budgets {
		key := b.key(at.req, at.latch.scope)
		k, charged, crossed := b.add(key, charge{micros: u.micros, priced: u.Priced, unmetered: !u.Metered}, now, !b.shared)
		if b.shared && charged > 0 {
			t.addSpend(b, key, k, charged)
		}
		t.tel.budget(ctx, b, key, k)
		for _, th := range crossed {
			callHook("OnBudget", t.cfg.onBudget, ctx, b.status(key, k, th))
		}
	}
	callHook("OnUsage", t.cfg.onUsage, ctx, u)
}

// streamError records an error that arrived inside a successful answer, and
// opens the latch when its class trips, so that the next request of the
// scope is refused.
func (t *Transport) streamError(ctx context.Context, at *attempt, e *usage.StreamError) {
	c := e.Result
	if p := at.provider; p != "" {
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
