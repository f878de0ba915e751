package balance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults of a Config's zero fields.
const (
	DefaultInterval   = 5 * time.Minute
	DefaultJitter     = 0.1
	DefaultMaxBackoff = time.Hour
	DefaultWindow     = 6 * time.Hour
	DefaultHorizon    = 24 * time.Hour
)

// Config configures a Watcher. Its zero fields get the documented defaults.
type Config struct {
	// Probes are the accounts to watch.
	Probes []Probe
	// Client sends the probes' requests; nil means http.DefaultClient.
	// Give it a plain client, never one whose Transport is a
	// quotabreaker.Transport: a probe's request is not spend, and must not
	// count as such nor trip a latch.
	Client *http.Client
	// Interval is the time between two reads of one probe (DefaultInterval
	// when zero; at least a second). Providers do not document a rate
	// limit for their balance endpoints: minutes, not seconds.
	Interval time.Duration
	// Jitter adds up to Jitter × the delay to each wait, so that replicas
	// started together do not poll in step (DefaultJitter when zero; none
	// when negative).
	Jitter float64
	// MaxBackoff caps the wait after failures (DefaultMaxBackoff when
	// zero, and never below Interval). After n failures in a row a probe
	// waits Interval × 2^n, capped, or the answer's Retry-After when that
	// is longer: errors never make polling faster than Interval.
	MaxBackoff time.Duration
	// Window is how far back spend counts toward a forecast's rate
	// (DefaultWindow when zero).
	Window time.Duration
	// Horizon is the forecast below which OnRunOut fires (DefaultHorizon,
	// 24 hours, when zero).
	Horizon time.Duration
	// Levels are the thresholds by currency ("USD", "CNY"; compared
	// without regard to case): OnLow fires when a balance in that currency
	// falls below one of them, and again only after a top-up has lifted it
	// above (see Thresholds).
	Levels map[string][]Amount
	// PerUSD converts the spend the Transport counted (US dollars, see
	// Spent) into other currencies: PerUSD["CNY"] = 7.1 when a dollar buys
	// 7.1 yuan. Without a rate for its currency, a balance's forecast
	// comes from its own decline between reads alone.
	PerUSD map[string]float64
	// OnLow is called once per threshold crossing (Alert.Kind is
	// AlertLow), OnRunOut once each time a forecast falls below Horizon
	// (AlertRunOut). Both run on the goroutine that read the balance (the
	// Watcher's, or Poll's caller's), with no lock held, one alert at a
	// time; they delay the next read while they run, so hand slow work
	// (a call to a paging service) to another goroutine. A panic in one is
	// recovered and logged. Nil hooks are not called.
	OnLow    func(ctx context.Context, a Alert)
	OnRunOut func(ctx context.Context, a Alert)
	// Share, when set, lets a fleet of Watchers poll once per interval
	// for all: the replica that takes the probe's lease polls and
	// publishes, the others read what it published. An unreachable Share
	// makes each replica poll for itself.
	Share Share
	// Logger receives a line each time a probe starts or stops failing
	// (never a key: errors name the provider and the status). Nil means
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock (time.Now when nil), and After the timer the
	// polling goroutine waits on (time.After when nil): tests inject
	// both.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
}

// Share is what a fleet of Watchers shares: a lease per probe, so that one
// replica polls per interval, and the balances it read. The redisstore
// module implements it on Redis. Its methods must be safe for concurrent
// use and should honour ctx.
type Share interface {
	// Lease takes the lease named name for ttl and reports whether this
	// caller got it (false while another holds it).
	Lease(ctx context.Context, name string, ttl time.Duration) (bool, error)
	// Publish records bs as the latest balances, each replacing the one
	// with its provider, scope, account and currency.
	Publish(ctx context.Context, bs []Balance) error
	// Latest returns the balances published, in any order.
	Latest(ctx context.Context) ([]Balance, error)
}

// AlertKind says why an Alert fired.
type AlertKind string

const (
	// AlertLow: the balance fell below one of Config.Levels.
	AlertLow AlertKind = "low"
	// AlertRunOut: the forecast fell below Config.Horizon.
	AlertRunOut AlertKind = "run_out"
)

// Alert is what OnLow and OnRunOut receive. It holds no key.
type Alert struct {
	Kind    AlertKind
	Balance Balance
	// Level is the threshold crossed (AlertLow).
	Level Amount
	// Forecast is the forecast that fell below the horizon (AlertRunOut).
	Forecast Forecast
	// Message says it in a sentence for a page: "at this rate, DeepSeek
	// key 3f2a9e52b7c1 runs out in about 9 hours (110.00 CNY left, 12.22
	// CNY an hour)".
	Message string
}

// Status is a watched balance as last read, with its forecast.
type Status struct {
	Balance
	// Below are the levels the balance is below, highest first.
	Below []Amount
	// Forecast is valid when HasForecast: there is spend to forecast from.
	Forecast    Forecast
	HasForecast bool
	// Source says where the forecast's rate comes from: "spend" (what the
	// Transport counted, see Spent) or "decline" (the balance's own fall
	// between reads).
	Source string
}

// MarshalJSON writes s for operators (the Handler, the command): amounts
// as decimal text in the currency's unit, the key by its fingerprint only.
func (s Status) MarshalJSON() ([]byte, error) {
	type view struct {
		Provider    string   `json:"provider"`
		Scope       string   `json:"scope"`
		Fingerprint string   `json:"fingerprint"`
		Account     string   `json:"account,omitempty"`
		Currency    string   `json:"currency"`
		Available   string   `json:"available"`
		Usable      bool     `json:"usable"`
		Read        string   `json:"read"`
		Below       []string `json:"below"`
		HoursLeft   *float64 `json:"hours_left"`
		Empty       string   `json:"empty_at,omitempty"`
		PerHour     string   `json:"per_hour,omitempty"`
		Source      string   `json:"rate_source,omitempty"`
	}
	v := view{Provider: s.Provider, Scope: s.Scope, Fingerprint: s.Fingerprint, Account: s.Account,
		Currency: s.Currency, Available: s.Available.String(), Usable: s.Usable,
		Read: s.Read.UTC().Format(time.RFC3339), Below: []string{}}
	for _, l := range s.Below {
		v.Below = append(v.Below, l.String())
	}
	if s.HasForecast {
		h := math.Round(s.Forecast.HoursLeft*100) / 100
		v.HoursLeft = &h
		v.Empty = s.Forecast.Empty.UTC().Format(time.RFC3339)
		v.PerHour = Amount(math.Round(s.Forecast.Rate.PerHour)).String()
		v.Source = s.Source
	}
	return json.Marshal(v)
}

// Watcher polls balance probes, keeps the latest balance of each account
// (by provider, scope, account and currency), forecasts when each runs out
// from the spend it is told of (Spent) and from the balance's own decline,
// and calls OnLow and OnRunOut as balances and forecasts cross their
// thresholds.
//
// Make it with NewWatcher. Start starts one goroutine that polls each
// probe at its interval until Close or the context's end; Poll reads every
// probe at once, on the caller's goroutine. Its methods are safe for
// concurrent use. Spent costs a mutex and, once a minute per key, an
// append; Statuses costs a forecast per balance. A probe's request costs
// what the provider charges for it: nothing, for those documented here.
type Watcher struct {
	cfg   Config
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
	log   *slog.Logger

	mu       sync.Mutex            // protects the fields below
	balances map[balanceKey]*watch // the latest balance of each account
	spend    map[string]*spendLog  // spend told by Spent, by key fingerprint
	probes   []*probeState         // the probes' schedules
	closed   bool
	cancel   context.CancelFunc // nil until Start
	done     chan struct{}      // closed when the goroutine Start began returns
}

type balanceKey struct{ provider, scope, account, currency string }

func keyOf(b Balance) balanceKey {
	return balanceKey{b.Provider, b.Scope, b.Account, strings.ToUpper(b.Currency)}
}

// watch is what a Watcher knows of one balance.
type watch struct {
	bal      Balance
	th       *Thresholds
	declined Amount   // the sum of the balance's falls between reads
	decline  []Sample // declined after each read, within the window
	runOut   bool     // the forecast is below the horizon: OnRunOut fired
}

// spendLog is the cumulative spend of one key, in micro-dollars, one
// sample per minute at most.
type spendLog struct {
	total   Amount
	samples []Sample
}

// probeState is a probe's schedule.
type probeState struct {
	probe    Probe
	due      time.Time
	failures int
}

// NewWatcher returns a Watcher of cfg's probes. It starts nothing: call
// Start to poll in the background, or Poll.
func NewWatcher(cfg Config) *Watcher {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	cfg.Interval = max(cfg.Interval, time.Second)
	if cfg.Jitter == 0 {
		cfg.Jitter = DefaultJitter
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.Interval)
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Horizon <= 0 {
		cfg.Horizon = DefaultHorizon
	}
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	w := &Watcher{cfg: cfg, now: cfg.Now, after: cfg.After, log: cfg.Logger,
		balances: map[balanceKey]*watch{}, spend: map[string]*spendLog{}, done: make(chan struct{})}
	if w.now == nil {
		w.now = time.Now
	}
	if w.after == nil {
		w.after = time.After
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	for _, p := range cfg.Probes {
		if p != nil {
			w.probes = append(w.probes, &probeState{probe: p})
		}
	}
	return w
}

// Start starts the polling goroutine: every probe is read at once, then
// each at its own interval (see Config.Interval and MaxBackoff). It runs
// until Close or until ctx ends. Only the first call starts anything, and
// none after Close.
func (w *Watcher) Start(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.cancel != nil {
		return
	}
	ctx, w.cancel = context.WithCancel(ctx)
	go func() {
		defer close(w.done)
		w.loop(ctx)
	}()
}

// Close stops the polling goroutine and waits for it to return (a poll
// under way is cancelled). It is safe to call more than once, and before
// Start. The balances and forecasts stay readable.
func (w *Watcher) Close() error {
	w.mu.Lock()
	w.closed = true
	cancel := w.cancel
	w.mu.Unlock()
	if cancel != nil {
		cancel()
		<-w.done
	}
	return nil
}

func (w *Watcher) loop(ctx context.Context) {
	for {
		w.mu.Lock()
		next := time.Time{}
		for i, p := range w.probes {
			if i == 0 || p.due.Before(next) {
				next = p.due
			}
		}
		w.mu.Unlock()
		if len(w.probes) == 0 {
			<-ctx.Done()
			return
		}
		if d := next.Sub(w.now()); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-w.after(d):
			}
		}
		if ctx.Err() != nil {
			return
		}
		w.poll(ctx, false)
	}
}

// Poll reads every probe now, whatever its schedule, and returns their
// errors joined. With a Share, a probe whose lease another replica holds
// is not read: its balances come from the Share.
func (w *Watcher) Poll(ctx context.Context) error {
	return w.poll(ctx, true)
}

// poll reads the probes that are due (all of them when all), one after
// the other, and schedules their next read.
func (w *Watcher) poll(ctx context.Context, all bool) error {
	now := w.now()
	var due []*probeState
	w.mu.Lock()
	for _, p := range w.probes {
		if all || !p.due.After(now) {
			due = append(due, p)
		}
	}
	w.mu.Unlock()
	var errs []error
	for _, p := range due {
		err := w.read(ctx, p.probe)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.mu.Lock()
		failures := p.failures
		if err != nil {
			p.failures++
		} else {
			p.failures = 0
		}
		p.due = w.now().Add(w.wait(p.failures, err))
		w.mu.Unlock()
		switch {
		case err != nil && failures == 0:
			w.log.Warn("quotabreaker/balance: probe failed", "provider", p.probe.Provider(), "error", err.Error())
		case err == nil && failures > 0:
			w.log.Info("quotabreaker/balance: probe answers again", "provider", p.probe.Provider(), "failures", failures)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// wait returns how long a probe waits after failures failures in a row,
// the last of them err.
func (w *Watcher) wait(failures int, err error) time.Duration {
	d := w.cfg.Interval
	for i := 0; i < failures && d < w.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.cfg.MaxBackoff)
	var se *StatusError
	if errors.As(err, &se) && se.RetryAfter > d {
		d = se.RetryAfter
	}
	if j := w.cfg.Jitter; j > 0 {
		d += time.Duration(rand.Float64() * j * float64(d))
	}
	return d
}

// read reads one probe, or takes its balances from the Share when another
// replica holds its lease, and takes them in.
func (w *Watcher) read(ctx context.Context, p Probe) error {
	if s := w.cfg.Share; s != nil {
		scope, err := p.Scope()
		if err != nil {
			return err
		}
		// The lease lasts a little less than an interval, so that the
		// holder's own next read (an interval or more later) finds it free
		// despite clocks that differ by a little across the fleet.
		ttl := w.cfg.Interval * 9 / 10
		got, err := s.Lease(ctx, "balance:"+p.Provider()+":"+scope, ttl)
		if err == nil && !got {
			bs, err := s.Latest(ctx)
			if err != nil {
				return fmt.Errorf("balance: reading the fleet's balances: %w", err)
			}
			for _, b := range bs {
				if b.Provider == p.Provider() && b.Scope == scope {
					w.take(ctx, b)
				}
			}
			return nil
		}
		// An unreachable Share: this replica reads for itself.
	}
	bs, err := p.Balances(ctx, w.cfg.Client)
	if err != nil {
		return err
	}
	for i := range bs {
		// The Watcher's clock, not the probe's, dates what it reads: a
		// forecast measures the time since the read with it.
		bs[i].Read = w.now()
	}
	if s := w.cfg.Share; s != nil {
		if err := s.Publish(ctx, bs); err != nil {
			w.log.Warn("quotabreaker/balance: publishing balances failed", "provider", p.Provider(), "error", err.Error())
		}
	}
	for _, b := range bs {
		w.take(ctx, b)
	}
	return nil
}

// take records a balance read now, unless one as recent is recorded, and
// fires the alerts it causes, after the lock is released.
func (w *Watcher) take(ctx context.Context, b Balance) {
	now := w.now()
	b.Parts = slices.Clone(b.Parts) // the caller's slice stays the caller's
	var alerts []Alert
	w.mu.Lock()
	k := keyOf(b)
	st := w.balances[k]
	if st == nil {
		var levels []Amount
		for cur, ls := range w.cfg.Levels {
			if strings.EqualFold(cur, b.Currency) {
				levels = append(levels, ls...)
			}
		}
		st = &watch{th: NewThresholds(levels...)}
		w.balances[k] = st
	} else if !b.Read.After(st.bal.Read) {
		w.mu.Unlock()
		return // read already (the fleet's latest, seen before)
	} else if fall := st.bal.Available - b.Available; fall > 0 {
		st.declined += fall
	}
	st.bal = b
	st.decline = append(prune(st.decline, b.Read.Add(-w.cfg.Window)), Sample{At: b.Read, Spent: st.declined})
	for _, l := range st.th.Observe(b.Available) {
		b := b
		b.Parts = slices.Clone(b.Parts)
		alerts = append(alerts, Alert{Kind: AlertLow, Balance: b, Level: l,
			Message: fmt.Sprintf("%s is below %s %s: %s %s left", who(b), l, b.Currency, b.Available, b.Currency)})
	}
	f, _, ok := w.forecast(st, now)
	under := ok && f.HoursLeft < w.cfg.Horizon.Hours()
	if under && !st.runOut {
		b := b
		b.Parts = slices.Clone(b.Parts)
		alerts = append(alerts, Alert{Kind: AlertRunOut, Balance: b, Forecast: f, Message: runOutMessage(b, f)})
	}
	st.runOut = under
	w.pruneSpend(now)
	w.mu.Unlock()
	for _, a := range alerts {
		hook := w.cfg.OnLow
		if a.Kind == AlertRunOut {
			hook = w.cfg.OnRunOut
		}
		w.call(ctx, hook, a)
	}
}

// Record takes in a balance read elsewhere (a fleet's published history,
// as the quotabreaker command reads it), as if a probe had read it: it
// becomes the latest of its account, counts toward the decline, and fires
// OnLow and OnRunOut as a read would, on the caller's goroutine. A balance
// no newer than the one recorded for its account is ignored.
func (w *Watcher) Record(ctx context.Context, b Balance) { w.take(ctx, b) }

// call calls a hook, recovering a panic.
func (w *Watcher) call(ctx context.Context, hook func(context.Context, Alert), a Alert) {
	if hook == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("quotabreaker/balance: alert hook panicked", "kind", string(a.Kind), "panic", fmt.Sprint(r))
		}
	}()
	hook(ctx, a)
}

// Spent tells the Watcher that the scope spent usd US dollars at at, as a
// quotabreaker.Transport does for each priced answer (see
// quotabreaker.WithBalances). The spend counts toward the forecasts of
// the balances of the scope's key: the fingerprint after "/key:" in the
// scope (as quotabreaker.DefaultScope names it), whatever the host or a
// prefix of the caller's. A scope with no key fingerprint counts toward
// nothing. It costs a mutex and, once a minute per key, an append.
func (w *Watcher) Spent(scope string, usd float64, at time.Time) {
	fp := scopeFingerprint(scope)
	if fp == "" || !(usd > 0) || math.IsInf(usd, 1) {
		return
	}
	micros := Amount(math.Round(usd * 1e6))
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.spend[fp]
	if l == nil {
		// A first sample at zero, so that the first spend counts.
		l = &spendLog{samples: []Sample{{At: at}}}
		w.spend[fp] = l
	}
	l.total += micros
	if n := len(l.samples); n > 1 && l.samples[n-1].At.Truncate(time.Minute).Equal(at.Truncate(time.Minute)) && !at.Before(l.samples[n-1].At) {
		l.samples[n-1] = Sample{At: at, Spent: l.total}
		return
	}
	l.samples = append(prune(l.samples, at.Add(-w.cfg.Window)), Sample{At: at, Spent: l.total})
}

// pruneSpend forgets the keys that spent nothing within the window.
// It requires w.mu.
func (w *Watcher) pruneSpend(now time.Time) {
	for fp, l := range w.spend {
		if l.samples[len(l.samples)-1].At.Before(now.Add(-w.cfg.Window)) {
			delete(w.spend, fp)
		}
	}
}

// prune drops the samples before from, keeping the order.
func prune(s []Sample, from time.Time) []Sample {
	i := 0
	for i < len(s) && s[i].At.Before(from) {
		i++
	}
	return slices.Delete(s, 0, i)
}

// scopeFingerprint returns the first key fingerprint a scope names.
func scopeFingerprint(scope string) string {
	_, rest, ok := strings.Cut(scope, "/key:")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/+"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// forecast returns the forecast of a balance at now, the source of its
// rate, and whether there is one. It requires w.mu.
//
// The rate is the faster of two: the spend the Transport counted for the
// key (in US dollars, converted by PerUSD for another currency) and the
// balance's own decline between reads. The first reacts within a minute
// but sees this process alone; the second sees the whole fleet and every
// other client of the account, but only as often as the balance is read.
func (w *Watcher) forecast(st *watch, now time.Time) (Forecast, string, bool) {
	b := st.bal
	best, source := Rate{Currency: b.Currency}, ""
	if l := w.spend[b.Fingerprint]; l != nil {
		r := SpendRate("USD", append(slices.Clip(l.samples), Sample{At: now, Spent: l.total}), w.cfg.Window, now)
		if !strings.EqualFold(b.Currency, "USD") {
			per, ok := perUSD(w.cfg.PerUSD, b.Currency)
			r = r.Convert(b.Currency, per)
			if !ok {
				r.PerHour = 0
			}
		}
		if r.PerHour > 0 {
			best, source = Rate{Currency: b.Currency, PerHour: r.PerHour}, "spend"
		}
	}
	if r := SpendRate(b.Currency, st.decline, w.cfg.Window, now); r.PerHour > best.PerHour {
		best, source = r, "decline"
	}
	f, err := Predict(b, best, now)
	if err != nil {
		return Forecast{}, "", false
	}
	return f, source, true
}

func perUSD(m map[string]float64, cur string) (float64, bool) {
	for c, v := range m {
		if strings.EqualFold(c, cur) && v > 0 {
			return v, true
		}
	}
	return 0, false
}

// Statuses returns every balance watched, with its forecast at the
// Watcher's clock's now, ordered by provider, scope, account and currency.
func (w *Watcher) Statuses() []Status {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Status, 0, len(w.balances))
	for _, st := range w.balances {
		s := Status{Balance: st.bal, Below: st.th.Below()}
		s.Parts = slices.Clone(s.Parts) // the Watcher's stay the Watcher's
		s.Forecast, s.Source, s.HasForecast = w.forecast(st, now)
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Status) int {
		return strings.Compare(a.Provider+"\x00"+a.Scope+"\x00"+a.Account+"\x00"+a.Currency,
			b.Provider+"\x00"+b.Scope+"\x00"+b.Account+"\x00"+b.Currency)
	})
	return out
}

// names are the providers as a sentence writes them.
var names = map[string]string{"deepseek": "DeepSeek", "openrouter": "OpenRouter", "moonshot": "Moonshot",
	"siliconflow": "SiliconFlow", "xai": "xAI"}

// who names a balance's account in a sentence, by the key's fingerprint.
func who(b Balance) string {
	n := names[b.Provider]
	if n == "" {
		n = b.Provider
	}
	if b.Account != "" {
		return n + " team " + b.Account + " (key " + b.Fingerprint + ")"
	}
	return n + " key " + b.Fingerprint
}

// runOutMessage says when a balance runs out.
func runOutMessage(b Balance, f Forecast) string {
	rate := Amount(math.Round(f.Rate.PerHour/1e4) * 1e4) // to the cent, for a person
	if f.HoursLeft <= 0 {
		return fmt.Sprintf("at this rate, %s has run out (%s %s an hour)", who(b), rate, b.Currency)
	}
	return fmt.Sprintf("at this rate, %s runs out in %s (%s %s left, %s %s an hour)",
		who(b), About(time.Duration(f.HoursLeft*float64(time.Hour))), f.Left, b.Currency, rate, b.Currency)
}

// About words a duration for a person: "about 40 minutes", "about 9
// hours", "about 3 days".
func About(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "about 1 " + unit
		}
		return fmt.Sprintf("about %d %ss", n, unit)
	}
	switch {
	case d < time.Hour:
		return plural(max(1, int64(math.Round(d.Minutes()))), "minute")
	case d < 48*time.Hour:
		return plural(int64(math.Round(d.Hours())), "hour")
	default:
		return plural(int64(math.Round(d.Hours()/24)), "day")
	}
}
