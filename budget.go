package quotabreaker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A Budget counts what the answers of one key cost in a period, warns as
// the spend crosses its thresholds and, with HardLimit, refuses the key's
// further requests once the limit is spent, before the provider stops them.
//
// Spend is counted client side, from the usage each successful answer
// reports and the price of its model (see WithPrices), when the caller has
// read the answer's body to the end or closed it. Requests already in
// flight when the limit is reached still complete, so the spend can pass
// the limit by at most what those requests cost.
type Budget struct {
	// Name names the budget in OnBudget, metrics and Budgets. It is
	// required and unique within a Transport.
	Name string
	// Limit is what the budget allows each key to spend per period, in US
	// dollars. It must be positive.
	Limit float64
	// Key maps a request to the key whose spend is counted. nil means the
	// request's latch scope (DefaultScope or WithScope's). It is called on
	// every request, on the caller's goroutine, must be fast and safe for
	// concurrent use, and its result appears in hooks and metrics, so it must
	// not contain a secret. A budget tracks at most 65,536 keys in a period:
	// the spend of keys beyond that is not counted, so a key function should
	// map to tenants, not to requests.
	Key func(*http.Request) string
	// Period returns the period that contains t. nil means the calendar
	// month in UTC (MonthlyUTC); DailyUTC, WeeklyUTC, DailyIn, WeeklyIn
	// and MonthlyIn give the others. Spend and fired thresholds start from
	// zero in each period.
	Period func(t time.Time) (start, end time.Time)
	// Thresholds are the fractions of Limit at which OnBudget fires, once
	// per key, threshold and period, even under concurrency. nil means 0.5,
	// 0.8 and 0.95; the limit itself (1) is always reported.
	Thresholds []float64
	// Unmetered says what the budget charges for an answer whose usage is
	// unknown (see usage.Metering), which the provider bills all the same.
	// The zero value, UnmeteredEstimate, charges an answer cut short (a
	// stream the caller closed early, a connection that broke) the
	// estimate of usage.Result.Estimate, priced like a metered answer, and
	// counts the others (no usage chunk, closed unread, a shape the reader
	// does not know) as unmetered without charging them. That is the safe
	// default: charging nothing would let a client that closes its streams
	// early spend without bound under a hard limit (the provider bills the
	// whole generation), while refusing the key would turn one harmless
	// answer without usage (a model list, a shape added by a provider)
	// into an outage; every unmetered answer is still counted
	// (BudgetStatus.Unmetered, the quotabreaker.answers metric), so none is
	// taken as free without saying so.
	Unmetered Unmetered
	// HardLimit makes the Transport refuse a key's requests, in
	// ModeEnforce, once its spend reaches Limit, until the next period or
	// ResetBudget. A refused request gets a 402 answer that the SDKs raise
	// and do not retry (or an *OpenError with WithShortCircuitError), with a
	// Trip whose Cause is CauseBudget.
	HardLimit bool
}

// Unmetered is what a budget charges for an answer whose usage is unknown;
// see Budget.Unmetered.
type Unmetered uint8

const (
	// UnmeteredEstimate charges an answer cut short its estimate, and the
	// other unmetered answers nothing (the default).
	UnmeteredEstimate Unmetered = iota
	// UnmeteredFree charges no unmetered answer, not even an estimate:
	// each is counted, and a hard limit may be passed by what they cost.
	UnmeteredFree
	// UnmeteredRefuses charges as UnmeteredEstimate does, and an
	// unmetered answer exhausts its key: with HardLimit, the key's
	// requests are refused until the next period or ResetBudget. For keys
	// that must never spend what is not measured. With a store, the
	// refusal is this process's alone.
	UnmeteredRefuses
)

// BudgetStatus is a budget's state for one key in its current period, as
// Budgets lists it and OnBudget receives it. Its JSON form is part of the
// API.
type BudgetStatus struct {
	Budget      string    `json:"budget"`
	Key         string    `json:"key"`
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	// Spent and Limit are in US dollars. Spent counts priced answers and
	// the estimates charged for unmetered ones (EstimatedSpent of it).
	Spent float64 `json:"spent_usd"`
	Limit float64 `json:"limit_usd"`
	// EstimatedSpent is the part of Spent that is estimated (see
	// Budget.Unmetered), in US dollars.
	EstimatedSpent float64 `json:"estimated_spent_usd"`
	// Threshold is the fraction of Limit that was crossed, in OnBudget; in
	// Budgets, the highest one crossed so far (0 when none).
	Threshold float64 `json:"threshold"`
	// Every successful answer the budget counted is one of three:
	// Priced, its usage read and its model priced; Unpriced, its usage
	// read but its model without a price (its tokens were counted, not its
	// cost); Unmetered, its usage unknown (see Budget.Unmetered for what
	// it is charged). Estimated counts the unmetered answers charged an
	// estimate.
	Priced    int64 `json:"priced_answers"`
	Unpriced  int64 `json:"unpriced_answers"`
	Unmetered int64 `json:"unmetered_answers"`
	Estimated int64 `json:"estimated_answers"`
	// Exhausted reports that Spent reached Limit; with HardLimit the key's
	// requests are refused.
	Exhausted bool `json:"exhausted"`
	// HardLimit is the budget's HardLimit.
	HardLimit bool `json:"hard_limit"`
}

// ErrUnknownBudget is returned by the budget operations for a name that no
// WithBudget option gave.
var ErrUnknownBudget = errors.New("quotabreaker: unknown budget")

// maxBudgetKeys bounds the keys a budget tracks. Beyond it, keys of past
// periods are dropped first; a key of the current period is never dropped,
// since that would forget its spend.
const maxBudgetKeys = 1 << 16

// defaultThresholds are the thresholds of a Budget that names none.
var defaultThresholds = [...]float64{0.5, 0.8, 0.95}

// budget is a Budget's running state.
type budget struct {
	Budget
	limit      atomic.Int64 // micro-dollars; SetBudgetLimit changes it
	thresholds []float64    // sorted, in (0, 1], always ending with 1
	shared     bool         // a store shares the spend across the fleet

	mu   sync.RWMutex
	keys map[string]*budgetKey // guarded by mu
}

// budgetKey is one key's spend in one period. A new period replaces it.
type budgetKey struct {
	start, end time.Time
	spent      atomic.Int64  // micro-dollars spent by this process
	estimated  atomic.Int64  // the part of spent that is estimated
	priced     atomic.Int64  // answers priced
	unpriced   atomic.Int64  // answers with no price
	unmetered  atomic.Int64  // answers without usage
	estimates  atomic.Int64  // unmetered answers charged an estimate
	refused    atomic.Bool   // an unmetered answer exhausted it (UnmeteredRefuses)
	fired      atomic.Uint64 // bit i: thresholds[i] has fired
	// With a store: the fleet's total as last read, and how much of
	// spent it already counts.
	fleet, flushed atomic.Int64
	pending        pendingSpend // with a store: spend not yet queued (see addSpend)
}

// effective is the spend the budget judges: this process's own, or, with a
// store, the fleet's last total plus what this process spent since.
func (k *budgetKey) effective(shared bool) int64 {
	if !shared {
		return k.spent.Load()
	}
	return satAdd(k.fleet.Load(), max(k.spent.Load()-k.flushed.Load(), 0))
}

func newBudget(b Budget) (*budget, error) {
	switch {
	case b.Name == "":
		return nil, errors.New("quotabreaker: a Budget needs a Name")
	case !(b.Limit > 0) || b.Limit > maxDollars:
		return nil, fmt.Errorf("quotabreaker: budget %q: Limit must be a positive number of dollars, got %v", b.Name, b.Limit)
	}
	if b.Period == nil {
		b.Period = MonthlyUTC
	}
	ths := b.Thresholds
	if ths == nil {
		ths = defaultThresholds[:]
	}
	bs := &budget{Budget: b, keys: make(map[string]*budgetKey)}
	for _, th := range ths {
		if !(th > 0 && th < 1) {
			return nil, fmt.Errorf("quotabreaker: budget %q: thresholds are fractions between 0 and 1, got %v", b.Name, th)
		}
		bs.thresholds = append(bs.thresholds, th)
	}
	bs.thresholds = append(bs.thresholds, 1)
	slices.Sort(bs.thresholds)
	bs.thresholds = slices.Compact(bs.thresholds)
	if len(bs.thresholds) > 64 {
		return nil, fmt.Errorf("quotabreaker: budget %q: at most 63 thresholds", b.Name)
	}
	bs.limit.Store(dollarsToMicros(b.Limit))
	return bs, nil
}

// key returns the budget key of req, whose latch scope is scope.
func (b *budget) key(req *http.Request, scope string) string {
	if b.Key != nil {
		if k := b.Key(req); k != "" {
			return k
		}
	}
	return scope
}

// current returns key's state for the period containing now, or nil when
// it has none yet.
func (b *budget) current(key string, now time.Time) *budgetKey {
	b.mu.RLock()
	k := b.keys[key]
	b.mu.RUnlock()
	if k == nil || now.Before(k.start) || !now.Before(k.end) {
		return nil
	}
	return k
}

// exhausted reports whether key has spent its limit in the period of now.
func (b *budget) exhausted(key string, now time.Time) bool {
	k := b.current(key, now)
	return k != nil && (k.effective(b.shared) >= b.limit.Load() || k.refused.Load())
}

// state returns key's state for the period containing now, starting a new
// one if needed.
func (b *budget) state(key string, now time.Time) *budgetKey {
	if k := b.current(key, now); k != nil {
		return k
	}
	start, end := b.Period(now)
	if !end.After(start) {
		// A Period that returns nonsense must not make every answer a new
		// period; count the instant as one.
		start, end = now, now.Add(time.Nanosecond)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if k := b.keys[key]; k != nil && !now.Before(k.start) && now.Before(k.end) {
		return k
	}
	if len(b.keys) >= maxBudgetKeys {
		for name, k := range b.keys {
			if !now.Before(k.end) {
				delete(b.keys, name)
			}
		}
	}
	k := &budgetKey{start: start, end: end, pending: pendingSpend{b: b, key: key}}
	if len(b.keys) < maxBudgetKeys {
		b.keys[key] = k
	}
	return k
}

// charge is what one answer costs a budget key.
type charge struct {
	micros    int64 // its cost, or its estimate's
	priced    bool  // micros is a price (of its usage, or of its estimate)
	unmetered bool  // its usage is unknown; micros, if priced, is an estimate
}

// add counts the answer c against key and, when local is set, returns the
// thresholds this call was the first to cross. Without local, a store
// shares the spend, and the thresholds are claimed across the fleet. It
// returns the micro-dollars it charged.
func (b *budget) add(key string, c charge, now time.Time, local bool) (k *budgetKey, charged int64, crossed []float64) {
	k = b.state(key, now)
	switch {
	case !c.unmetered && c.priced:
		k.priced.Add(1)
	case !c.unmetered:
		k.unpriced.Add(1)
		return k, 0, nil
	default:
		k.unmetered.Add(1)
		if b.Unmetered == UnmeteredRefuses {
			k.refused.Store(true)
		}
		if b.Unmetered == UnmeteredFree || !c.priced {
			return k, 0, nil
		}
		k.estimates.Add(1)
		addSat(&k.estimated, max(c.micros, 0))
	}
	charged = max(c.micros, 0)
	spent := addSat(&k.spent, charged)
	if !local {
		return k, charged, nil
	}
	limit := b.limit.Load()
	for i, th := range b.thresholds {
		if float64(spent) < th*float64(limit) {
			break
		}
		bit := uint64(1) << i
		for {
			old := k.fired.Load()
			if old&bit != 0 {
				break
			}
			if k.fired.CompareAndSwap(old, old|bit) {
				crossed = append(crossed, th)
				break
			}
		}
	}
	return k, charged, crossed
}

// status describes k, key's state, with th as its threshold.
func (b *budget) status(key string, k *budgetKey, th float64) BudgetStatus {
	limit := b.limit.Load()
	spent := k.effective(b.shared)
	if th == 0 {
		fired := k.fired.Load()
		for i, t := range b.thresholds {
			if fired&(1<<i) != 0 {
				th = t
			}
		}
	}
	return BudgetStatus{
		Budget:         b.Name,
		Key:            key,
		PeriodStart:    k.start,
		PeriodEnd:      k.end,
		Spent:          microsToDollars(spent),
		Limit:          microsToDollars(limit),
		Threshold:      th,
		Priced:         k.priced.Load(),
		Unpriced:       k.unpriced.Load(),
		Unmetered:      k.unmetered.Load(),
		Estimated:      k.estimates.Load(),
		EstimatedSpent: microsToDollars(k.estimated.Load()),
		Exhausted:      spent >= limit || k.refused.Load(),
		HardLimit:      b.HardLimit,
	}
}

// budgets are a Transport's budgets.
// budgetCharge is what one answer did to one budget key: what telemetry
// records of it, and the thresholds it crossed, for OnBudget.
type budgetCharge struct {
	b       *budget
	key     string
	k       *budgetKey
	crossed []BudgetStatus
}

// charge counts u against every budget, queues the spend a store shares,
// and appends to spent what each budget key now holds.
func (t *Transport) charge(at *attempt, u *Usage, now time.Time, spent []budgetCharge) []budgetCharge {
	for _, b := range t.budgets {
		key := b.key(at.req, at.latch.scope)
		k, charged, crossed := b.add(key, charge{micros: u.micros, priced: u.Priced, unmetered: !u.Metered}, now, !b.shared)
		c := budgetCharge{b: b, key: key, k: k}
		for _, th := range crossed {
			c.crossed = append(c.crossed, b.status(key, k, th))
		}
		spent = append(spent, c)
		if b.shared && charged > 0 {
			t.addSpend(k, charged)
		}
	}
	return spent
}

type budgets []*budget

func (bs budgets) byName(name string) *budget {
	for _, b := range bs {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// refusing returns the first hard-limited budget that req's key has
// exhausted, and that key.
func (bs budgets) refusing(req *http.Request, scope string, now time.Time) (*budget, string) {
	for _, b := range bs {
		if !b.HardLimit {
			continue
		}
		if key := b.key(req, scope); b.exhausted(key, now) {
			return b, key
		}
	}
	return nil, ""
}

// Budgets returns the state of every budget for every key that has spent
// in its current period, sorted by budget and key; an empty slice (never
// nil) when there is none.
func (t *Transport) Budgets(ctx context.Context) ([]BudgetStatus, error) {
	out := []BudgetStatus{}
	if t.base == nil {
		return out, errNotNew
	}
	now := t.cfg.now()
	for _, b := range t.budgets {
		b.mu.RLock()
		for key, k := range b.keys {
			if !now.Before(k.start) && now.Before(k.end) {
				out = append(out, b.status(key, k, 0))
			}
		}
		b.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b BudgetStatus) int {
		if c := strings.Compare(a.Budget, b.Budget); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out, nil
}

// ResetBudget forgets what key spent in budget's current period (with a
// store, across the fleet), which lifts a hard limit's refusal and lets its
// thresholds fire again. It reports whether the key had spent anything in
// this process.
func (t *Transport) ResetBudget(ctx context.Context, budget, key string) (bool, error) {
	if t.base == nil {
		return false, errNotNew
	}
	b := t.budgets.byName(budget)
	if b == nil {
		return false, fmt.Errorf("%w %q", ErrUnknownBudget, budget)
	}
	if f := t.fleet; f != nil && f.spend != nil {
		start, end := b.Period(t.cfg.now())
		sk := spendKey{budget: b, key: key, period: Period{Start: start, End: end}}
		// Spend queued before the reset must not land after it: wait for
		// a write under way, and drop what is queued.
		f.spendMu.Lock()
		f.dropSpend(sk)
		err := f.spend.ResetSpend(ctx, sk.storeKey(), sk.period)
		f.spendMu.Unlock()
		if err != nil {
			return false, err
		}
	}
	b.mu.Lock()
	_, ok := b.keys[key]
	delete(b.keys, key)
	b.mu.Unlock()
	return ok, nil
}

// SetBudgetLimit changes budget's Limit, in US dollars, for every key, from
// now on: raising it lifts the refusal of keys below the new limit.
// Thresholds already fired in this period do not fire again.
func (t *Transport) SetBudgetLimit(budget string, limit float64) error {
	if t.base == nil {
		return errNotNew
	}
	b := t.budgets.byName(budget)
	if b == nil {
		return fmt.Errorf("%w %q", ErrUnknownBudget, budget)
	}
	if !(limit > 0) || limit > maxDollars {
		return fmt.Errorf("quotabreaker: budget %q: Limit must be a positive number of dollars, got %v", budget, limit)
	}
	b.limit.Store(dollarsToMicros(limit))
	return nil
}
