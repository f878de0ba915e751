package balance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// balanceServer answers GET /user/balance as DeepSeek documents it
// (deepseekDoc), with a total_balance the test sets, and
// GET /api/v1/key as OpenRouter documents it (openrouterKeyDoc), with a
// limit_remaining the test sets. It checks the key, and counts its hits.
type balanceServer struct {
	*httptest.Server
	hits    atomic.Int64
	mu      sync.Mutex
	balance string // DeepSeek's total_balance, OpenRouter's limit_remaining
	status  []int  // answers to give before the documented one, in order
	retry   string // Retry-After on a 429 among them
}

func newBalanceServer(t *testing.T, balance string) *balanceServer {
	s := &balanceServer{balance: balance}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+canary {
			http.Error(w, `{"error":{"message":"Authentication Fails"}}`, http.StatusUnauthorized)
			return
		}
		s.mu.Lock()
		bal := s.balance
		var status int
		if len(s.status) > 0 {
			status, s.status = s.status[0], s.status[1:]
		}
		retry := s.retry
		s.mu.Unlock()
		if status != 0 {
			if retry != "" && status == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", retry)
			}
			// An error body that echoes the key, as some proxies do: it
			// must go nowhere.
			http.Error(w, `{"error":"bad key `+canary+`"}`, status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/user/balance": // deepseekDoc, total_balance set
			fmt.Fprintf(w, `{"is_available":true,"balance_infos":[{"currency":"CNY","total_balance":%q,"granted_balance":"10.00","topped_up_balance":"100.00"}]}`, bal)
		case "/api/v1/key": // openrouterKeyDoc, limit_remaining set
			body := strings.Replace(openrouterKeyDoc, `"limit_remaining":74.5`, `"limit_remaining":`+bal, 1)
			w.Write([]byte(body))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *balanceServer) set(balance string) {
	s.mu.Lock()
	s.balance = balance
	s.mu.Unlock()
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// alerts collects the alerts of a Watcher.
type alerts struct {
	mu   sync.Mutex
	list []Alert
}

func (a *alerts) hook(_ context.Context, al Alert) {
	a.mu.Lock()
	a.list = append(a.list, al)
	a.mu.Unlock()
}

func (a *alerts) take() []Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.list
	a.list = nil
	return l
}

func TestWatcherLowOncePerCrossingAndAfterTopUp(t *testing.T) {
	srv := newBalanceServer(t, "110.00")
	clk := newClock()
	var got alerts
	w := NewWatcher(Config{
		Probes: []Probe{DeepSeek{Key: canaryKey, BaseURL: srv.URL}},
		Client: srv.Client(),
		Levels: map[string][]Amount{"CNY": {10_000000, 5_000000}, "USD": {1_000000}},
		OnLow:  got.hook,
		Now:    clk.Now,
	})
	fp := Fingerprint(canary)
	steps := []struct {
		balance string
		want    []string // levels fired
	}{
		{"110.00", nil},
		{"9.50", []string{"10.00"}},
		{"9.00", nil},  // still below: once per crossing
		{"10.00", nil}, // at the level: neither fires nor re-arms
		{"4.00", []string{"5.00"}},
		{"200.00", nil}, // a top-up re-arms both
		{"8.00", []string{"10.00"}},
		{"1.00", []string{"5.00"}},
	}
	for i, s := range steps {
		srv.set(s.balance)
		clk.Add(5 * time.Minute)
		if err := w.Poll(context.Background()); err != nil {
			t.Fatalf("step %d: Poll: %v", i, err)
		}
		var levels []string
		for _, a := range got.take() {
			if a.Kind != AlertLow || a.Balance.Currency != "CNY" || a.Balance.Fingerprint != fp {
				t.Errorf("step %d: alert %+v", i, a)
			}
			want := fmt.Sprintf("DeepSeek key %s is below %s CNY: %s CNY left", fp, a.Level, s.balance)
			if a.Message != want {
				t.Errorf("step %d: message %q, want %q", i, a.Message, want)
			}
			levels = append(levels, a.Level.String())
		}
		if fmt.Sprint(levels) != fmt.Sprint(s.want) {
			t.Errorf("step %d (balance %s): fired %v, want %v", i, s.balance, levels, s.want)
		}
	}
	st := w.Statuses()
	if len(st) != 1 || st[0].Available != 1_000000 || fmt.Sprint(st[0].Below) != "[10.00 5.00]" {
		t.Errorf("Statuses = %+v", st)
	}
}

func TestWatcherForecastFromSpend(t *testing.T) {
	srv := newBalanceServer(t, "74.5") // OpenRouter: dollars left of the key's limit
	clk := newClock()
	var got alerts
	w := NewWatcher(Config{
		Probes:   []Probe{OpenRouter{Key: canaryKey, BaseURL: srv.URL}},
		Client:   srv.Client(),
		OnRunOut: got.hook,
		Now:      clk.Now,
	})
	// The Transport counted $1 every 6 minutes for an hour, under the
	// inference host's scope (the probe's host differs: a test server).
	fp := Fingerprint(canary)
	scope := "openrouter.ai/key:" + fp
	t0 := clk.Now()
	for i := range 10 {
		w.Spent(scope, 1, t0.Add(time.Duration(i)*6*time.Minute))
	}
	w.Spent("openrouter.ai/key:000000000000", 1000, t0) // another key's spend counts not
	clk.Add(time.Hour)
	if err := w.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := w.Statuses()
	if len(st) != 1 || !st[0].HasForecast || st[0].Source != "spend" {
		t.Fatalf("Statuses = %+v", st)
	}
	f := st[0].Forecast
	// $10 an hour against $74.50: 7.45 hours.
	if math.Abs(f.Rate.PerHour-10e6) > 1 || math.Abs(f.HoursLeft-7.45) > 1e-9 || f.Left != 74_500000 {
		t.Errorf("forecast = %+v, want 7.45 hours at 10 USD an hour", f)
	}
	if !f.Empty.Equal(clk.Now().Add(7*time.Hour + 27*time.Minute)) {
		t.Errorf("Empty = %v", f.Empty)
	}
	a := got.take()
	want := "at this rate, OpenRouter key " + fp + " runs out in about 7 hours (74.50 USD left, 10.00 USD an hour)"
	if len(a) != 1 || a[0].Kind != AlertRunOut || a[0].Message != want {
		t.Fatalf("alerts = %+v, want one: %q", a, want)
	}

	// Still under the horizon: no second page.
	clk.Add(5 * time.Minute)
	w.Spent(scope, 1, clk.Now())
	w.Poll(context.Background())
	if a := got.take(); len(a) != 0 {
		t.Errorf("second alert while under the horizon: %+v", a)
	}
	// A top-up lifts the forecast over the horizon, re-arming it; the
	// balance falling back under pages again.
	srv.set("1000")
	clk.Add(5 * time.Minute)
	w.Poll(context.Background())
	if a := got.take(); len(a) != 0 {
		t.Errorf("alert after a top-up: %+v", a)
	}
	srv.set("50")
	clk.Add(5 * time.Minute)
	w.Poll(context.Background())
	if a := got.take(); len(a) != 1 || !strings.Contains(a[0].Message, "runs out in about") {
		t.Errorf("alerts after the fall = %+v, want one", a)
	}
}

func TestWatcherForecastOtherCurrency(t *testing.T) {
	fp := Fingerprint(canary)
	for _, tc := range []struct {
		name      string
		perUSD    map[string]float64
		spend     float64 // USD an hour, told by Spent
		fall      string  // the balance after an hour, from 110.00
		hours     float64
		source    string
		noForcast bool
	}{
		// The balance's own decline: 10 CNY in an hour, 100 left.
		{name: "decline", fall: "100.00", hours: 10, source: "decline"},
		// Spend in dollars, converted: $2 an hour at 7 CNY a dollar is 14
		// CNY an hour, faster than the decline; 100 CNY last 7.14 hours.
		{name: "converted", perUSD: map[string]float64{"cny": 7}, spend: 2, fall: "100.00", hours: 100.0 / 14, source: "spend"},
		// Dollars without a rate of exchange count not against yuan.
		{name: "no rate", spend: 2, fall: "110.00", noForcast: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newBalanceServer(t, "110.00")
			clk := newClock()
			w := NewWatcher(Config{Probes: []Probe{DeepSeek{Key: canaryKey, BaseURL: srv.URL}},
				Client: srv.Client(), PerUSD: tc.perUSD, Now: clk.Now})
			if err := w.Poll(context.Background()); err != nil {
				t.Fatal(err)
			}
			t0 := clk.Now()
			for i := range 6 {
				w.Spent("api.deepseek.com/key:"+fp, tc.spend/6, t0.Add(time.Duration(i)*10*time.Minute))
			}
			clk.Add(time.Hour)
			srv.set(tc.fall)
			if err := w.Poll(context.Background()); err != nil {
				t.Fatal(err)
			}
			st := w.Statuses()[0]
			if tc.noForcast {
				if st.HasForecast {
					t.Fatalf("forecast %+v from dollars against yuan", st.Forecast)
				}
				return
			}
			if !st.HasForecast || st.Source != tc.source || math.Abs(st.Forecast.HoursLeft-tc.hours) > 1e-4 {
				t.Errorf("status = %+v, want %v hours from %s", st, tc.hours, tc.source)
			}
		})
	}
}

// stepper is the Watcher's timer in a test: each wait is recorded and
// passes at once, on the clock too, but the nth, which never passes and
// closes done.
type stepper struct {
	clk   *clock
	n     int
	mu    sync.Mutex
	waits []time.Duration
	done  chan struct{}
}

func (s *stepper) After(d time.Duration) <-chan time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waits) == s.n {
		return nil
	}
	s.waits = append(s.waits, d)
	if len(s.waits) == s.n {
		close(s.done)
		return nil
	}
	s.clk.Add(d)
	c := make(chan time.Time, 1)
	c <- s.clk.Now()
	return c
}

func TestWatcherBackoff(t *testing.T) {
	srv := newBalanceServer(t, "110.00")
	// Four failures (500, 502, 503, 500), then a 429 asking for two
	// hours, then the documented answer.
	srv.status = []int{500, 502, 503, 500, 429}
	srv.retry = "7200"
	clk := newClock()
	st := &stepper{clk: clk, n: 8, done: make(chan struct{})}
	var logs bytes.Buffer
	w := NewWatcher(Config{
		Probes:     []Probe{DeepSeek{Key: canaryKey, BaseURL: srv.URL}},
		Client:     srv.Client(),
		Interval:   time.Minute,
		MaxBackoff: 10 * time.Minute,
		Jitter:     -1,
		Now:        clk.Now,
		After:      st.After,
		Logger:     slog.New(slog.NewTextHandler(&logs, nil)),
	})
	w.Start(context.Background())
	<-st.done
	w.Close()
	// 1m × 2^n after n failures, capped at 10m; the 429's two hours; then
	// the interval.
	want := []time.Duration{2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute,
		2 * time.Hour, time.Minute, time.Minute, time.Minute}
	if fmt.Sprint(st.waits) != fmt.Sprint(want) {
		t.Errorf("waits = %v, want %v", st.waits, want)
	}
	if h := srv.hits.Load(); h != 8 {
		t.Errorf("%d reads, want 8 (the first, and one after each wait but the last)", h)
	}
	if len(w.Statuses()) != 1 {
		t.Errorf("Statuses = %+v", w.Statuses())
	}
	// One line when it started failing, one when it recovered.
	if n := strings.Count(logs.String(), "\n"); n != 2 || !strings.Contains(logs.String(), "answered 500") {
		t.Errorf("log:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), canary) {
		t.Errorf("the key in the log:\n%s", logs.String())
	}
}

func TestWatcherWaitJitter(t *testing.T) {
	w := NewWatcher(Config{Interval: time.Minute, Jitter: 0.5})
	for range 100 {
		if d := w.wait(0, nil); d < time.Minute || d >= 90*time.Second {
			t.Fatalf("wait %v, want in [1m, 1m30s)", d)
		}
	}
}

// TestWatcherNoKey reads the key nowhere: not in Poll's errors (a wrong
// key, an error answer echoing the key, an unknown shape), an alert, the
// statuses' JSON or the log.
func TestWatcherNoKey(t *testing.T) {
	srv := newBalanceServer(t, "1.00")
	var logs bytes.Buffer
	var got alerts
	clk := newClock()
	w := NewWatcher(Config{
		Probes: []Probe{
			DeepSeek{Key: canaryKey, BaseURL: srv.URL},
			OpenRouter{Key: canaryKey, BaseURL: srv.URL},
			Moonshot{Key: func() (string, error) { return canary + "-wrong", nil }, BaseURL: srv.URL, Currency: "CNY"},
			SiliconFlow{Key: canaryKey, BaseURL: srv.URL, Currency: "CNY"}, // 404: a path the server does not know
		},
		Client:   srv.Client(),
		Levels:   map[string][]Amount{"CNY": {5_000000}},
		OnLow:    got.hook,
		OnRunOut: got.hook,
		Now:      clk.Now,
		Logger:   slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	w.Spent("openrouter.ai/key:"+Fingerprint(canary), 0.5, clk.Now())
	srv.status = []int{500}
	err1 := w.Poll(context.Background())
	clk.Add(time.Hour)
	err2 := w.Poll(context.Background())
	if err1 == nil || err2 == nil || !errors.Is(err2, ErrUnauthorized) {
		t.Fatalf("Poll = %v, %v", err1, err2)
	}
	js, err := json.Marshal(w.Statuses())
	if err != nil {
		t.Fatal(err)
	}
	a := got.take()
	if len(a) != 2 {
		t.Errorf("alerts = %+v, want a low balance and a forecast", a)
	}
	everything := err1.Error() + err2.Error() + string(js) + logs.String() + fmt.Sprintf("%+v", a)
	for _, leak := range []string{canary, "CANARY"} {
		if strings.Contains(everything, leak) {
			t.Errorf("%q found in:\n%s", leak, everything)
		}
	}
	if !strings.Contains(string(js), `"available":"1.00"`) || !strings.Contains(string(js), `"fingerprint":"`+Fingerprint(canary)+`"`) {
		t.Errorf("JSON = %s", js)
	}
}

// gone reports whether, within 5 seconds, no goroutine's stack names fn.
func gone(fn string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		if !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte(fn)) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWatcherStops(t *testing.T) {
	srv := newBalanceServer(t, "110.00")
	const loop = "balance.(*Watcher).loop"
	t.Run("Close", func(t *testing.T) {
		w := NewWatcher(Config{Probes: []Probe{DeepSeek{Key: canaryKey, BaseURL: srv.URL}}, Client: srv.Client(), Interval: time.Second})
		w.Start(context.Background())
		w.Start(context.Background()) // once only
		for srv.hits.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		w.Close()
		w.Close()
		if !gone(loop) {
			t.Errorf("the loop runs after Close")
		}
		w.Start(context.Background()) // not after Close
		if !gone(loop) {
			t.Errorf("Start after Close started a loop")
		}
	})
	t.Run("context", func(t *testing.T) {
		w := NewWatcher(Config{Probes: []Probe{DeepSeek{Key: canaryKey, BaseURL: srv.URL}}, Client: srv.Client(), Interval: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		w.Start(ctx)
		cancel()
		if !gone(loop) {
			t.Errorf("the loop runs after the context ended")
		}
		w.Close()
	})
}

// memShare is a Share in memory, as a fleet's store would hold it.
type memShare struct {
	mu     sync.Mutex
	leases map[string]time.Time
	now    func() time.Time
	latest map[balanceKey]Balance
}

func (m *memShare) Lease(_ context.Context, name string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if until, ok := m.leases[name]; ok && m.now().Before(until) {
		return false, nil
	}
	m.leases[name] = m.now().Add(ttl)
	return true, nil
}

func (m *memShare) Publish(_ context.Context, bs []Balance) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range bs {
		m.latest[keyOf(b)] = b
	}
	return nil
}

func (m *memShare) Latest(context.Context) ([]Balance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var bs []Balance
	for _, b := range m.latest {
		bs = append(bs, b)
	}
	return bs, nil
}

func TestWatcherShare(t *testing.T) {
	srv := newBalanceServer(t, "110.00")
	clk := newClock()
	share := &memShare{leases: map[string]time.Time{}, latest: map[balanceKey]Balance{}, now: clk.Now}
	var ws []*Watcher
	for range 3 {
		ws = append(ws, NewWatcher(Config{Probes: []Probe{DeepSeek{Key: canaryKey, BaseURL: srv.URL}},
			Client: srv.Client(), Interval: time.Minute, Share: share, Now: clk.Now}))
	}
	for i, bal := range []string{"110.00", "100.00", "90.00"} {
		srv.set(bal)
		for _, w := range ws {
			if err := w.Poll(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if h := srv.hits.Load(); h != int64(i+1) {
			t.Fatalf("interval %d: %d reads, want one per interval", i, h)
		}
		for j, w := range ws {
			if st := w.Statuses(); len(st) != 1 || st[0].Available.String() != bal {
				t.Errorf("interval %d, replica %d: %+v", i, j, st)
			}
		}
		clk.Add(time.Minute)
	}
	// Every replica forecasts from the fleet's decline: 10 CNY a minute.
	for j, w := range ws {
		if st := w.Statuses()[0]; !st.HasForecast || st.Source != "decline" || math.Abs(st.Forecast.Rate.PerHour-600e6) > 1 {
			t.Errorf("replica %d: %+v", j, st)
		}
	}
}

func TestAbout(t *testing.T) {
	for d, want := range map[time.Duration]string{
		20 * time.Second:             "about 1 minute",
		40 * time.Minute:             "about 40 minutes",
		90 * time.Minute:             "about 2 hours",
		9*time.Hour + 10*time.Minute: "about 9 hours",
		47 * time.Hour:               "about 47 hours",
		80 * time.Hour:               "about 3 days",
		time.Hour:                    "about 1 hour",
	} {
		if got := About(d); got != want {
			t.Errorf("About(%v) = %q, want %q", d, got, want)
		}
	}
}
