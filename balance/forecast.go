package balance

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sample is a scope's cumulative spend at one moment, as a Transport
// counts it: in millionths of Rate's currency.
type Sample struct {
	At    time.Time
	Spent Amount
}

// Rate is a spend rate: millionths of Currency per hour.
type Rate struct {
	Currency string
	PerHour  float64
}

// Convert returns r in another currency, at perUnit units of to for one
// unit of r's currency: a USD rate converts to CNY with Convert("CNY", 7.1)
// when a dollar buys 7.1 yuan. The rate of exchange is the caller's: this
// package knows none.
func (r Rate) Convert(to string, perUnit float64) Rate {
	return Rate{Currency: to, PerHour: r.PerHour * perUnit}
}

// SpendRate returns the rate at which the cumulative samples grew over
// the window that ends at now: what they rose by from the first sample in
// the window to the last, over the hours between the two. A sample lower
// than the one before it is a counter that restarted (a process restart,
// a new budget period): it counts as spend from zero. Fewer than two
// samples in the window, or none apart in time, give a zero rate. The
// samples may come in any order; the function keeps none of them.
func SpendRate(currency string, samples []Sample, window time.Duration, now time.Time) Rate {
	in := make([]Sample, 0, len(samples))
	for _, s := range samples {
		if !s.At.After(now) && !s.At.Before(now.Add(-window)) {
			in = append(in, s)
		}
	}
	slices.SortStableFunc(in, func(a, b Sample) int { return a.At.Compare(b.At) })
	r := Rate{Currency: currency}
	if len(in) < 2 {
		return r
	}
	hours := in[len(in)-1].At.Sub(in[0].At).Hours()
	if hours <= 0 {
		return r
	}
	var spent float64
	for i := 1; i < len(in); i++ {
		d := in[i].Spent - in[i-1].Spent
		if d < 0 {
			d = in[i].Spent // restarted from zero
		}
		spent += float64(d)
	}
	r.PerHour = spent / hours
	return r
}

// Errors of Predict.
var (
	// ErrNoSpend: the rate is zero (nothing spent in the window, or too
	// few samples to tell): at that rate the balance never runs out, and
	// there is no forecast.
	ErrNoSpend = errors.New("balance: no spend: no forecast")
	// ErrCurrency: the spend and the balance are in different currencies
	// (spend counted in USD from the price table, a DeepSeek balance in
	// CNY). Convert the rate with Rate.Convert first.
	ErrCurrency = errors.New("balance: spend and balance in different currencies")
)

// Forecast is when a balance runs out at a spend rate.
type Forecast struct {
	// Left is the balance estimated at now: Available less the spend at
	// Rate since the balance was read. Zero or less when it has run out.
	Left Amount
	// HoursLeft is how long Left lasts at Rate, from now; zero when it
	// has run out.
	HoursLeft float64
	// Empty is when: now plus HoursLeft, to the second.
	Empty time.Time
	// Rate is the rate the forecast assumes.
	Rate Rate
}

// Predict returns when b runs out if spending goes on at r. It reads no
// clock: now is the caller's. It assumes what a straight line assumes: that
// the rate holds (the window's average: no daily cycle, no growth), that
// nothing else spends from the account, that the balance has fallen at r
// since it was read, and that no top-up comes. It returns ErrNoSpend when r
// is not a positive, finite rate and ErrCurrency when r is not in b's currency (compared
// without regard to case: OpenAI writes "usd").
func Predict(b Balance, r Rate, now time.Time) (Forecast, error) {
	if !strings.EqualFold(r.Currency, b.Currency) {
		return Forecast{}, fmt.Errorf("%w: spend in %q, balance in %q", ErrCurrency, r.Currency, b.Currency)
	}
	if !(r.PerHour > 0) || math.IsInf(r.PerHour, 1) {
		return Forecast{}, ErrNoSpend
	}
	since := now.Sub(b.Read).Hours()
	if since < 0 || b.Read.IsZero() {
		since = 0
	}
	left := float64(b.Available) - r.PerHour*since
	f := Forecast{Rate: r, Empty: now}
	if left <= 0 {
		f.Left = Amount(math.Max(left, math.MinInt64))
		return f, nil
	}
	f.Left = Amount(math.Round(left))
	f.HoursLeft = left / r.PerHour
	if d := f.HoursLeft * float64(time.Hour); d < float64(math.MaxInt64) {
		f.Empty = now.Add(time.Duration(d).Round(time.Second))
	} else {
		f.Empty = now.Add(math.MaxInt64)
	}
	return f, nil
}

// Thresholds fires once each time a balance falls below one of its levels,
// and arms that level again once a top-up lifts the balance above it. It
// watches one balance (one scope, one currency): a Transport keeps one per
// Balance it polls. It is safe for concurrent use.
type Thresholds struct {
	mu     sync.Mutex
	levels []Amount // descending, distinct
	below  []bool   // below[i]: fired for levels[i], not yet re-armed
}

// NewThresholds returns Thresholds at levels, in the balance's currency.
// All levels start armed: a first reading already below a level fires it.
func NewThresholds(levels ...Amount) *Thresholds {
	ls := slices.Clone(levels)
	slices.Sort(ls)
	ls = slices.Compact(ls)
	slices.Reverse(ls)
	return &Thresholds{levels: ls, below: make([]bool, len(ls))}
}

// Observe takes a new reading of the balance and returns the levels it is
// newly below, highest first, or nil. A level fires when the balance is
// below it (strictly) and re-arms when the balance is above it (strictly);
// a balance equal to a level changes nothing.
func (t *Thresholds) Observe(available Amount) []Amount {
	t.mu.Lock()
	defer t.mu.Unlock()
	var fired []Amount
	for i, l := range t.levels {
		switch {
		case available < l && !t.below[i]:
			t.below[i] = true
			fired = append(fired, l)
		case available > l:
			t.below[i] = false
		}
	}
	return fired
}

// Below returns the levels the balance is below (fired and not re-armed),
// highest first.
func (t *Thresholds) Below() []Amount {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ls []Amount
	for i, l := range t.levels {
		if t.below[i] {
			ls = append(ls, l)
		}
	}
	return ls
}
