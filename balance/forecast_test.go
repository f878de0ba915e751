package balance

import (
	"errors"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

// hourly returns cumulative samples spending perHour each hour for n hours
// up to end.
func hourly(end time.Time, n int, perHour Amount) []Sample {
	s := make([]Sample, 0, n+1)
	for i := 0; i <= n; i++ {
		s = append(s, Sample{At: end.Add(time.Duration(i-n) * time.Hour), Spent: Amount(i) * perHour})
	}
	return s
}

func TestSpendRate(t *testing.T) {
	// 2 dollars an hour for 10 hours; a 6-hour window sees 6 hours of it.
	r := SpendRate("USD", hourly(t0, 10, 2_000000), 6*time.Hour, t0)
	if r.Currency != "USD" || r.PerHour != 2_000000 {
		t.Errorf("rate = %+v, want 2 USD an hour", r)
	}
	// Samples after now are not seen; neither is order.
	s := hourly(t0.Add(5*time.Hour), 15, 1_000000)
	s[0], s[len(s)-1] = s[len(s)-1], s[0]
	if r := SpendRate("USD", s, 4*time.Hour, t0); r.PerHour != 1_000000 {
		t.Errorf("rate = %+v, want 1 USD an hour", r)
	}
	// A counter that restarts counts from zero: 0, 3, 6, restart, 3, 6 in
	// four hours is 12 in 4 hours.
	restart := []Sample{{t0.Add(-4 * time.Hour), 0}, {t0.Add(-3 * time.Hour), 3}, {t0.Add(-2 * time.Hour), 6},
		{t0.Add(-1 * time.Hour), 3}, {t0, 6}}
	if r := SpendRate("USD", restart, 24*time.Hour, t0); r.PerHour != 3 {
		t.Errorf("rate across a restart = %v, want 3", r.PerHour)
	}
	// Too little to tell: a zero rate.
	for _, s := range [][]Sample{nil, {{t0, 5}}, {{t0, 5}, {t0, 9}}, hourly(t0.Add(-48*time.Hour), 3, 1)} {
		if r := SpendRate("USD", s, time.Hour, t0); r.PerHour != 0 {
			t.Errorf("SpendRate(%v) = %v, want 0", s, r.PerHour)
		}
	}
}

func TestPredict(t *testing.T) {
	// 110 yuan read two hours ago, spending 1 yuan an hour: 108 left, for
	// 108 hours.
	b := Balance{Currency: "CNY", Available: 110_000000, Read: t0.Add(-2 * time.Hour)}
	r := SpendRate("CNY", hourly(t0, 24, 1_000000), 24*time.Hour, t0)
	f, err := Predict(b, r, t0)
	if err != nil {
		t.Fatal(err)
	}
	want := Forecast{Left: 108_000000, HoursLeft: 108, Empty: t0.Add(108 * time.Hour), Rate: r}
	if f != want {
		t.Errorf("Predict = %+v, want %+v", f, want)
	}

	// Spend counted in USD does not forecast a CNY balance...
	usd := Rate{Currency: "USD", PerHour: 1_000000}
	if _, err := Predict(b, usd, t0); !errors.Is(err, ErrCurrency) {
		t.Errorf("USD spend, CNY balance: err = %v, want ErrCurrency", err)
	}
	// ... until it is converted: $1 an hour at 7.25 yuan a dollar.
	f, err = Predict(b, usd.Convert("CNY", 7.25), t0)
	if err != nil || math.Abs(f.HoursLeft-(110-2*7.25)/7.25) > 1e-9 {
		t.Errorf("converted: %+v, %v", f, err)
	}
	// Currencies compare without regard to case (OpenAI writes "usd").
	if _, err := Predict(Balance{Currency: "USD", Available: 1}, Rate{"usd", 1}, t0); err != nil {
		t.Errorf("usd against USD: %v", err)
	}

	// No spend, no forecast.
	for _, pr := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if _, err := Predict(b, Rate{"CNY", pr}, t0); !errors.Is(err, ErrNoSpend) {
			t.Errorf("rate %v: err = %v, want ErrNoSpend", pr, err)
		}
	}

	// Already gone: zero hours, now.
	f, err = Predict(Balance{Currency: "USD", Available: 1_000000, Read: t0.Add(-3 * time.Hour)}, Rate{"USD", 1_000000}, t0)
	if err != nil || f.HoursLeft != 0 || !f.Empty.Equal(t0) || f.Left != -2_000000 {
		t.Errorf("spent out: %+v, %v", f, err)
	}
	// A balance read "after" now (another replica's clock) is not aged.
	f, _ = Predict(Balance{Currency: "USD", Available: 10_000000, Read: t0.Add(time.Minute)}, Rate{"USD", 1_000000}, t0)
	if f.HoursLeft != 10 {
		t.Errorf("future read: %+v", f)
	}
	// A tiny rate does not overflow the time.
	f, _ = Predict(Balance{Currency: "USD", Available: math.MaxInt64}, Rate{"USD", 1e-9}, t0)
	if f.Empty.Before(t0) {
		t.Errorf("huge horizon wrapped: %+v", f)
	}
}

func TestThresholdsFireOncePerCrossing(t *testing.T) {
	th := NewThresholds(10_000000, 50_000000, 20_000000, 20_000000)
	steps := []struct {
		balance Amount
		fired   []Amount
	}{
		{100_000000, nil},
		{45_000000, []Amount{50_000000}},
		{40_000000, nil}, // still below 50: no second page
		{50_000000, nil}, // at the level: neither fires nor re-arms
		{49_000000, nil},
		{15_000000, []Amount{20_000000}},
		{5_000000, []Amount{10_000000}},
		{4_000000, nil},
		{60_000000, nil}, // a top-up lifts it above every level
		{30_000000, []Amount{50_000000}},
		{8_000000, []Amount{20_000000, 10_000000}},
		{25_000000, nil}, // a small top-up re-arms 10 and 20 only
		{9_000000, []Amount{20_000000, 10_000000}},
	}
	for i, s := range steps {
		if got := th.Observe(s.balance); !reflect.DeepEqual(got, s.fired) {
			t.Errorf("step %d: Observe(%v) = %v, want %v", i, s.balance, got, s.fired)
		}
	}
	if got := th.Below(); !reflect.DeepEqual(got, []Amount{50_000000, 20_000000, 10_000000}) {
		t.Errorf("Below = %v", got)
	}
	// A first reading already below fires at once.
	if got := NewThresholds(5).Observe(1); !reflect.DeepEqual(got, []Amount{5}) {
		t.Errorf("first reading below: %v", got)
	}
}

// TestThresholdsConcurrent: readers racing each crossing page it once.
func TestThresholdsConcurrent(t *testing.T) {
	th := NewThresholds(10)
	var mu sync.Mutex
	fired := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				n := len(th.Observe(5))
				mu.Lock()
				fired += n
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if fired != 1 {
		t.Errorf("fired %d times, want once", fired)
	}
}
