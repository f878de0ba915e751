package quotabreaker

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/prices"
	"github.com/quotabreaker/quotabreaker/usage"
)

// This file follows a successful answer to its end: the observer reads
// what the answer says it used, and once the caller is done with the body,
// settle turns that into money (the usage priced by model, the budgets'
// spend, and their telemetry) and judges an error found inside the stream
// like an error answer. With a store, the budgets' spend is queued here and
// written by the fleet's goroutine (flushSpend), and the fleet's totals are
// taken back (applySpend).

// requestModel returns the request's model, reading it once.
func (at *attempt) requestModel() string {
	if !at.modelRead {
		at.model, at.modelRead = usage.ReadRequestModel(at.req), true
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

// settle runs once, on the goroutine that finished the body (the caller's,
// in Read or Close), before the attempt's span ends. Every answer it sees
// is priced, unpriced (usage read, no price) or unmetered (usage unknown,
// charged its estimate as each budget's Unmetered says). It works out the
// answer's usage and cost and charges them, then records them, then
// announces a trip an error in the stream made, then calls the hooks, so
// that a hook sees what telemetry already holds.
func (t *Transport) settle(at *attempt, seen *usage.Result) {
	ctx := at.req.Context()
	u := Usage{Scope: at.latch.scope, Provider: at.provider, responseModel: seen.Model, Metering: seen.Metering}
	t.cost(at, seen, &u)
	var streamErr *classify.Result
	var first *opened // the trip the stream's error made, if any
	if e := seen.StreamErr; e != nil {
		c := e.Result
		if p := at.provider; p != "" {
			c.Provider = p
		}
		streamErr = &c
		first = t.judgeStream(at, c, e.Status)
		if at.errorType == "" {
			at.errorType = string(c.Class)
		}
	}
	var charged [4]budgetCharge // most Transports have a budget or two: no allocation for those
	spent := charged[:0]
	// The clock is read only for what keeps time: it costs tens of
	// nanoseconds on some virtual machines.
	if !t.cfg.noUsage && (len(t.budgets) > 0 || t.cfg.balances != nil || t.cfg.reconciler != nil) {
		now := t.cfg.now()
		if w := t.cfg.balances; w != nil && u.Priced {
			w.Spent(u.Scope, u.Cost, now) // toward the forecast of the key's balance
		}
		if r := t.cfg.reconciler; r != nil && u.Priced {
			r.Counted(string(u.Provider), u.Cost, now) // against the provider's bill
		}
		spent = t.charge(at, &u, now, spent)
	}
	t.tel.settled(ctx, at.span, at.attrs, &u, !t.cfg.noUsage, spent, streamErr, first)
	if first != nil {
		t.announce(ctx, first)
	}
	for _, c := range spent {
		for _, st := range c.crossed {
			callHook("OnBudget", t.cfg.onBudget, ctx, st)
		}
	}
	callHook("OnUsage", t.cfg.onUsage, ctx, u)
}

// cost fills u with what seen says the answer used, and what that cost;
// with usage off (see WithUsage), only the model, and that only for OnUsage.
func (t *Transport) cost(at *attempt, seen *usage.Result, u *Usage) {
	if t.cfg.noUsage {
		u.Model = u.responseModel
		if u.Model == "" && t.cfg.onUsage != nil {
			u.Model = at.requestModel()
		}
		return
	}
	// The request's model is read whatever the sampling, so that the
	// metrics carry the same attributes with tracing on or off.
	if at.span.IsRecording() || t.tel.spendMetrics(at.req.Context()) || u.responseModel == "" {
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
}

// spendKey names one budget key's spend in one period.
type spendKey struct {
	budget *budget
	key    string
	period Period
}

// fleetSpend is spend waiting to be written.
type fleetSpend struct {
	k      *budgetKey
	micros int64
}

// spendWrite is spend sent to the store, kept until the store
// acknowledges it.
type spendWrite struct {
	sk spendKey
	k  *budgetKey
	w  SpendWrite
}

// storeKey is the key under which a budget key's spend is shared: budgets
// of one Transport may count the same key.
// The budget's name goes first with its length, so that budget "a" with key
// "b/c" and budget "a/b" with key "c" never share a spend.
func (sk spendKey) storeKey() string { return budgetPrefix(sk.budget.Name) + sk.key }

func budgetPrefix(name string) string { return strconv.Itoa(len(name)) + ":" + name + "/" }

// pendingSpend is a budget key's spend counted here and not yet taken by
// the fleet's loop, which a request hands over without a lock (addSpend).
type pendingSpend struct {
	b      *budget
	key    string
	micros atomic.Int64 // not yet taken into f.spends
	queued atomic.Bool  // on the dirty list, or about to be pushed onto it
	next   *budgetKey   // on the dirty list: set by its pusher, read by its taker
}

// addSpend queues micros of spend of k, a key of a shared budget, for the
// store, with neither a lock nor a map, so that answers of many goroutines
// wait neither on each other nor on the loop: the spend goes into k's
// pending count, and k is pushed onto the fleet's dirty list unless it is
// on it. The list is taken whole, never popped, so a key pushed again once
// taken cannot corrupt it; and k is of the period its spend was charged in.
func (t *Transport) addSpend(k *budgetKey, micros int64) {
	f, p := t.fleet, &k.pending
	addSat(&p.micros, micros)
	// takeDirty clears queued before it takes micros: while queued is
	// set, the spend just added goes with k's.
	if p.queued.Load() || !p.queued.CompareAndSwap(false, true) {
		return
	}
	for {
		head := f.dirty.Load()
		if head == &f.dirtyClosed {
			return // counted here only: see Shutdown
		}
		p.next = head
		if f.dirty.CompareAndSwap(head, k) {
			// Only the first spend of a batch wakes the loop: a wake per
			// answer would cost a goroutine switch per request. Spend
			// left after a failed write goes with the next retry.
			if head == nil {
				signal(f.spent)
			}
			return
		}
	}
}

// takeDirty moves the spend on the dirty list into f.spends, and reports
// whether spend waits to be written. It leaves the list empty, or closed
// when close is set or it was closed already: then addSpend pushes nothing
// more. It requires that f.mu is held, under which nothing else closes it.
func (f *fleet) takeDirty(close bool) (queued bool) {
	end := (*budgetKey)(nil)
	if close || f.dirty.Load() == &f.dirtyClosed {
		end = &f.dirtyClosed
	}
	for k := f.dirty.Swap(end); k != nil && k != &f.dirtyClosed; {
		p := &k.pending
		next := p.next // before queued is cleared: then k may be pushed again
		p.next = nil
		p.queued.Store(false)
		if micros := p.micros.Swap(0); micros != 0 {
			sk := spendKey{budget: p.b, key: p.key, period: Period{Start: k.start, End: k.end}}
			s := f.spends[sk]
			if s == nil {
				s = &fleetSpend{k: k}
				f.spends[sk] = s
			}
			s.micros = satAdd(s.micros, micros)
		}
		k = next
	}
	return len(f.spends)+len(f.unacked) > 0
}

// dropSpend forgets the spend queued, or sent without an acknowledgement,
// for sk: ResetBudget zeroes it in the store. It requires that f.spendMu
// is held, so that no write of it is under way.
func (f *fleet) dropSpend(sk spendKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.takeDirty(false)
	delete(f.spends, sk)
	delete(f.unacked, sk)
}

// flushSpend writes the spend queued, each write before any newer one of
// its key, and claims the thresholds the fleet's totals crossed. It runs on
// the loop's goroutine, or in Shutdown once the loop is done.
func (t *Transport) flushSpend(ctx context.Context) (wrote bool, err error) {
	f := t.fleet
	if f.spend == nil {
		return false, nil
	}
	f.spendMu.Lock()
	defer f.spendMu.Unlock()
	f.mu.Lock()
	f.takeDirty(false)
	writes := make([]*spendWrite, 0, len(f.unacked)+len(f.spends))
	for _, w := range f.unacked {
		writes = append(writes, w)
	}
	for sk, s := range f.spends {
		if f.unacked[sk] != nil {
			continue // after its unacknowledged write
		}
		f.seq++
		w := &spendWrite{sk: sk, k: s.k, w: SpendWrite{Key: sk.storeKey(), Period: sk.period, Micros: s.micros, Writer: f.writer, Seq: f.seq}}
		writes = append(writes, w)
		f.unacked[sk] = w
		delete(f.spends, sk)
	}
	f.mu.Unlock()
	for _, w := range writes {
		if ctx.Err() != nil {
			break
		}
		wrote = true
		var total int64
		if werr := t.call(ctx, func(ctx context.Context) (err error) {
			total, err = f.spend.AddSpend(ctx, w.w)
			return err
		}); werr != nil {
			if err == nil {
				err = werr
			}
			continue
		}
		f.mu.Lock()
		delete(f.unacked, w.sk)
		f.mu.Unlock()
		// The store's total is the truth, lower too after a reset in
		// another process.
		addSat(&w.k.flushed, w.w.Micros)
		w.k.fleet.Store(total)
		if terr := t.claimThresholds(ctx, w.sk, w.k); terr != nil && err == nil {
			err = terr
		}
	}
	return wrote, err
}

// claimThresholds fires OnBudget for the thresholds the fleet's total has
// crossed that no process has claimed yet.
func (t *Transport) claimThresholds(ctx context.Context, sk spendKey, k *budgetKey) error {
	b := sk.budget
	spent := k.effective(true)
	limit := b.limit.Load()
	for i, th := range b.thresholds {
		if float64(spent) < th*float64(limit) {
			break
		}
		bit := uint64(1) << i
		if k.fired.Load()&bit != 0 {
			continue
		}
		var claimed bool
		if err := t.call(ctx, func(ctx context.Context) (err error) {
			claimed, err = t.fleet.spend.ClaimThreshold(ctx, sk.storeKey(), sk.period, int(math.Round(th*100)))
			return err
		}); err != nil {
			return err
		}
		if k.fired.Or(bit)&bit == 0 && claimed {
			st := b.status(sk.key, k, th)
			t.fleet.hooks.run(func() { callHook("OnBudget", t.cfg.onBudget, t.hookContext(), st) })
		}
	}
	return nil
}

// applySpend takes the fleet's totals, as the store holds them now, for
// this process's budgets, so that a hard limit holds against the fleet's
// spend: a key this process has not spent on yet starts from the fleet's
// total, and a key whose spend was reset in another process (absent from
// the store) counts only what this process spent since its last write.
// Thresholds follow the store's claims, so that those a reset forgot can
// fire again. It runs on the loop's goroutine, as flush does, so no write
// of this process's spend is under way.
func (t *Transport) applySpend(spends []Spend) {
	now := t.cfg.now()
	for _, b := range t.budgets {
		start, end := b.Period(now)
		if !end.After(start) {
			continue // b.state counts such a period on its own
		}
		seen := make(map[string]bool)
		for _, s := range spends {
			key, ok := strings.CutPrefix(s.Key, budgetPrefix(b.Name))
			if !ok || !s.Period.Start.Equal(start) || !s.Period.End.Equal(end) {
				continue
			}
			k := b.state(key, now)
			if !k.start.Equal(start) {
				continue
			}
			seen[key] = true
			k.fleet.Store(s.Micros)
			var fired uint64
			for _, pct := range s.Thresholds {
				for i, th := range b.thresholds {
					if int(math.Round(th*100)) == pct {
						fired |= 1 << i
					}
				}
			}
			k.fired.Store(fired)
		}
		b.mu.RLock()
		for key, k := range b.keys {
			if !seen[key] && k.start.Equal(start) {
				k.fleet.Store(0)
				k.fired.Store(0)
			}
		}
		b.mu.RUnlock()
	}
}

// satAdd returns a+b, or the int64 bound it would pass: spend never wraps.
func satAdd(a, b int64) int64 {
	switch {
	case b > 0 && a > math.MaxInt64-b:
		return math.MaxInt64
	case b < 0 && a < math.MinInt64-b:
		return math.MinInt64
	}
	return a + b
}

// addSat adds d to a, saturating, and returns the new value.
func addSat(a *atomic.Int64, d int64) int64 {
	for {
		old := a.Load()
		n := satAdd(old, d)
		if n == old || a.CompareAndSwap(old, n) {
			return n
		}
	}
}

// maxDollars keeps a budget's limit in micro-dollars well inside an int64.
const maxDollars = 1e12

func dollarsToMicros(d float64) int64 { return int64(math.Round(d * 1e6)) }

func microsToDollars(m int64) float64 { return float64(m) / 1e6 }

// follow wraps a network answer's body so that its findings are settled and
// its span ends once the caller is done with it. A body nobody needs to
// watch (tracing off, nothing to observe) is left as it is.
func (t *Transport) follow(resp *http.Response, a attempt) {
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	hasBody := resp.Body != nil && resp.Body != http.NoBody
	metering := t.cfg.onUsage != nil || len(t.budgets) > 0
	observe := ok && hasBody && (!t.cfg.noUsage || metering || isEventStream(resp.Header))
	if !observe {
		var seen *usage.Result
		if ok && metering {
			seen = &usage.Result{Metering: usage.NoUsage} // no body: nothing to read, reported at once
		}
		if resp.Body == nil || !a.span.IsRecording() {
			t.done(&a, seen)
			return
		}
		if seen != nil {
			t.settle(&a, seen)
		}
	}
	// Only now does the attempt outlive RoundTrip: the body keeps it.
	resp.Body = t.newAnswerBody(resp, observe, &a)
}

// done settles an answer once the caller is done with its body (seen is
// what its observer read, nil without one), and ends the attempt: its
// duration and its span. An attempt the base failed ends here too.
func (t *Transport) done(at *attempt, seen *usage.Result) {
	if seen != nil {
		t.settle(at, seen)
	}
	t.tel.ended(at)
}

func isEventStream(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "text/event-stream")
}

// announce reports a trip this goroutine recorded, once its telemetry is
// recorded: OnTrip, then the OnReset of a reset that came while OnTrip ran.
// It runs before the answer's span can end, and before OnReset can run.
// With a store, OnTrip waits for the fleet-wide claim instead (see
// WithStore).
func (t *Transport) announce(ctx context.Context, o *opened) {
	if t.fleet != nil {
		t.claim(context.WithoutCancel(ctx), o)
		return
	}
	t.latches.markPaging(o)
	t.page(context.WithoutCancel(ctx), o)
}
