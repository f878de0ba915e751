package balance

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

// ReconcileConfig configures a Reconciler. Its zero fields get the
// documented defaults.
type ReconcileConfig struct {
	// Readers read what each provider billed (OpenAICosts,
	// AnthropicCosts), each with an admin key.
	Readers []CostReader
	// Client sends their requests; nil means http.DefaultClient. As for a
	// Watcher, never a quotabreaker.Transport.
	Client *http.Client
	// Interval is the time between two reads of the reports (an hour when
	// zero; at least a minute): providers fill a day's bucket over hours.
	Interval time.Duration
	// Days is how many UTC days each read covers, today included (7 when
	// zero).
	Days int
	// Logger receives a line per failed read (never a key). Nil means
	// slog.Default().
	Logger *slog.Logger
	// Now and After are the clock and the timer (time.Now and time.After
	// when nil).
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
}

// Reconciler compares, per provider and UTC day, the spend a Transport
// counted (told by Counted) with what the provider billed (read by its
// CostReader), so that the drift between the two shows: prices that
// changed, fees no token count explains, spend from outside the Transport.
// Today's figures are partial on both sides, and the providers' reports
// lag by hours: the drift of a day settles the day after.
//
// Make it with NewReconciler; Start reads the reports at an interval on
// one goroutine until Close or the context's end, Read reads them at once.
// It is safe for concurrent use. Counted costs a mutex and a map update.
type Reconciler struct {
	cfg   ReconcileConfig
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
	log   *slog.Logger

	mu      sync.Mutex                      // protects the fields below
	counted map[string]map[time.Time]Amount // provider -> UTC day -> micro-dollars
	drifts  map[string][]Drift              // provider -> the last read's drifts
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewReconciler returns a Reconciler of cfg's readers. It starts nothing.
func NewReconciler(cfg ReconcileConfig) *Reconciler {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Hour
	}
	cfg.Interval = max(cfg.Interval, time.Minute)
	if cfg.Days <= 0 {
		cfg.Days = 7
	}
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	r := &Reconciler{cfg: cfg, now: cfg.Now, after: cfg.After, log: cfg.Logger,
		counted: map[string]map[time.Time]Amount{}, drifts: map[string][]Drift{}, done: make(chan struct{})}
	if r.now == nil {
		r.now = time.Now
	}
	if r.after == nil {
		r.after = time.After
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r
}

// Counted tells the Reconciler that the Transport counted usd US dollars
// of provider's ("openai", "anthropic", as classify.Provider names them) at
// at. Days older than the window are forgotten.
func (r *Reconciler) Counted(provider string, usd float64, at time.Time) {
	if provider == "" || !(usd > 0) || math.IsInf(usd, 1) {
		return
	}
	d := utcDay(at)
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.counted[provider]
	if m == nil {
		m = map[time.Time]Amount{}
		r.counted[provider] = m
	}
	m[d] += Amount(math.Round(usd * 1e6))
	oldest := utcDay(r.now()).AddDate(0, 0, -r.cfg.Days)
	for day := range m {
		if day.Before(oldest) {
			delete(m, day)
		}
	}
}

// Read reads every report now and returns their errors joined. A reader
// that fails keeps the drifts of its last good read.
func (r *Reconciler) Read(ctx context.Context) error {
	now := r.now()
	end := utcDay(now).AddDate(0, 0, 1)
	start := end.AddDate(0, 0, -r.cfg.Days)
	var errs []error
	for _, rd := range r.cfg.Readers {
		billed, err := rd.Daily(ctx, r.cfg.Client, start, end)
		if err != nil {
			r.log.Warn("quotabreaker/balance: reading billed costs failed", "provider", rd.Provider(), "error", err.Error())
			errs = append(errs, err)
			continue
		}
		r.mu.Lock()
		var counted []Day
		for d, a := range r.counted[rd.Provider()] {
			if !d.Before(start) && d.Before(end) {
				counted = append(counted, Day{Start: d, USD: a})
			}
		}
		r.drifts[rd.Provider()] = Drifts(counted, billed)
		r.mu.Unlock()
	}
	return errors.Join(errs...)
}

// ProviderDrift is one provider's drift on one day.
type ProviderDrift struct {
	Provider string
	Drift
}

// Drifts returns the drifts of the last reads, by provider then day.
func (r *Reconciler) Drifts() []ProviderDrift {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ProviderDrift
	for p, ds := range r.drifts {
		for _, d := range ds {
			out = append(out, ProviderDrift{Provider: p, Drift: d})
		}
	}
	slices.SortFunc(out, func(a, b ProviderDrift) int {
		if a.Provider != b.Provider {
			if a.Provider < b.Provider {
				return -1
			}
			return 1
		}
		return a.Day.Compare(b.Day)
	})
	return out
}

// Start starts the goroutine that reads the reports at once and then
// every Interval, until Close or the end of ctx. Only the first call
// starts anything, and none after Close.
func (r *Reconciler) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.cancel != nil {
		return
	}
	ctx, r.cancel = context.WithCancel(ctx)
	go func() {
		defer close(r.done)
		for {
			_ = r.Read(ctx) // logged
			select {
			case <-ctx.Done():
				return
			case <-r.after(r.cfg.Interval):
			}
		}
	}()
}

// Close stops the goroutine and waits for it. It is safe to call more
// than once, and before Start.
func (r *Reconciler) Close() error {
	r.mu.Lock()
	r.closed = true
	cancel := r.cancel
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-r.done
	}
	return nil
}
