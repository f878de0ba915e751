package quotabreaker

import (
	"context"
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
	// false and zero Tokens: unknown, never free.
	Metered bool
	Tokens  usage.Tokens
	// Priced reports that the cost is known: Cost is what the answer cost
	// in US dollars. CostSource says whence: "provider" when the answer
	// stated it (OpenRouter's usage.cost, xAI's usage.cost_in_usd_ticks),
	// which wins over any price table, or "table" from the model's price
	// (see WithPrices). Price is the model's price when it has one. An
	// unpriced answer's tokens still count; its cost is unknown, not zero.
	Priced     bool
	Price      prices.Price
	Cost       float64
	CostSource string

	requestModel, responseModel string
	micros                      int64 // Cost in micro-dollars
}

// follow wraps a network answer's body so that its findings are settled and
// its span ends once the caller is done with it. A body nobody needs to
// watch (tracing off, nothing to observe) is left as it is.
func (t *Transport) follow(resp *http.Response, a attempt) {
	var obs *usage.Observer
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	hasBody := resp.Body != nil && resp.Body != http.NoBody
	if ok && hasBody && (!t.cfg.noUsage || t.cfg.onUsage != nil || isEventStream(resp.Header)) {
		obs = usage.NewObserver(resp.Header)
	}
	if obs == nil {
		if ok && t.cfg.onUsage != nil {
			t.settle(&a, &usage.Result{}) // no body: nothing to read, reported at once
		}
		if !a.span.IsRecording() {
			a.span.End()
			return
		}
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
	u := Usage{Scope: at.latch.scope, Provider: requestProvider(at.req), responseModel: seen.Model}
	if !seen.Known || t.cfg.noUsage {
		if at.span.IsRecording() && seen.Model != "" {
			at.span.SetAttributes(semconv.GenAIResponseModel(seen.Model))
		}
		u.Model = u.responseModel
		if u.Model == "" && t.cfg.onUsage != nil {
			u.Model = requestModel(at.req)
		}
		callHook("OnUsage", t.cfg.onUsage, ctx, u)
		return
	}
	u.Metered, u.Tokens = true, seen.Tokens
	if at.span.IsRecording() || u.responseModel == "" {
		u.requestModel = requestModel(at.req)
	}
	u.Model = u.responseModel
	if u.Model == "" {
		u.Model = u.requestModel
	}
	if u.Model != "" {
		if p, ok := t.cfg.prices(string(u.Provider), u.Model, seen.ServiceTier); ok {
			u.micros = p.Cost(prices.Tokens{
				Input:      u.Tokens.InputTokens,
				CacheRead:  u.Tokens.CacheReadTokens,
				CacheWrite: u.Tokens.CacheWriteTokens,
				Output:     u.Tokens.OutputTokens,
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
		k, crossed := b.add(key, u.micros, u.Priced, now, !b.shared)
		if b.shared && u.Priced {
			t.addSpend(b, key, k, u.micros)
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
