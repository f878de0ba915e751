package quotabreaker

import (
	"bytes"
	"errors"
	"math"
	"net/http"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the named zones below, whatever the machine has

	"github.com/quotabreaker/quotabreaker/internal/corpus"
	"github.com/quotabreaker/quotabreaker/prices"
)

// TestBudgetPeriods checks the built-in periods on ordinary days and on
// the days a named zone changes to and from daylight saving time.
func TestBudgetPeriods(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	// Chile moves its clocks at midnight: 2026-09-06 starts at 01:00.
	scl, err := time.LoadLocation("America/Santiago")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		name       string
		period     func(time.Time) (time.Time, time.Time)
		at         string
		start, end string
		hours      float64
	}{
		{"daily UTC", DailyUTC, "2026-03-14T23:59:59Z", "2026-03-14T00:00:00Z", "2026-03-15T00:00:00Z", 24},
		{"daily UTC at midnight", DailyUTC, "2026-03-15T00:00:00Z", "2026-03-15T00:00:00Z", "2026-03-16T00:00:00Z", 24},
		{"weekly UTC on a Saturday", WeeklyUTC, "2026-03-14T09:00:00Z", "2026-03-09T00:00:00Z", "2026-03-16T00:00:00Z", 168},
		{"weekly UTC on a Sunday night", WeeklyUTC, "2026-03-15T23:59:59Z", "2026-03-09T00:00:00Z", "2026-03-16T00:00:00Z", 168},
		{"weekly UTC on a Monday", WeeklyUTC, "2026-03-16T00:00:00Z", "2026-03-16T00:00:00Z", "2026-03-23T00:00:00Z", 168},
		// 02:00 UTC on the 15th is still the 14th in New York (EDT, -4).
		{"daily New York, late evening", DailyIn(ny), "2026-03-15T02:00:00Z", "2026-03-14T04:00:00Z", "2026-03-15T04:00:00Z", 24},
		// The clocks go forward on 2026-03-08: a day of 23 hours.
		{"daily New York, spring forward", DailyIn(ny), "2026-03-08T12:00:00Z", "2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z", 23},
		// And back on 2026-11-01: 25 hours.
		{"daily New York, fall back", DailyIn(ny), "2026-11-01T12:00:00Z", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z", 25},
		{"weekly New York across spring forward", WeeklyIn(ny), "2026-03-08T12:00:00Z", "2026-03-02T05:00:00Z", "2026-03-09T04:00:00Z", 167},
		{"monthly New York", MonthlyIn(ny), "2026-04-01T03:59:59Z", "2026-03-01T05:00:00Z", "2026-04-01T04:00:00Z", 743},
		// Midnight does not exist in Santiago on 2026-09-06: the day
		// starts at the first instant that does, 01:00 -03.
		{"daily Santiago, no midnight", DailyIn(scl), "2026-09-06T12:00:00Z", "2026-09-06T04:00:00Z", "2026-09-07T03:00:00Z", 23},
		{"nil location is UTC", DailyIn(nil), "2026-03-14T23:59:59Z", "2026-03-14T00:00:00Z", "2026-03-15T00:00:00Z", 24},
	} {
		t.Run(c.name, func(t *testing.T) {
			at := utc(c.at)
			start, end := c.period(at)
			if !start.Equal(utc(c.start)) || !end.Equal(utc(c.end)) {
				t.Errorf("period of %v = %v to %v, want %v to %v", at, start.UTC(), end.UTC(), c.start, c.end)
			}
			if at.Before(start) || !at.Before(end) {
				t.Errorf("%v is not in its own period %v to %v", at, start, end)
			}
			if h := end.Sub(start).Hours(); h != c.hours {
				t.Errorf("period lasts %vh, want %vh", h, c.hours)
			}
			// The next period starts where this one ends.
			if s2, _ := c.period(end); !s2.Equal(end) {
				t.Errorf("the next period starts at %v, want %v", s2, end)
			}
		})
	}
}

// A daily budget in a named zone rolls over at midnight there, not in UTC:
// a key refused at 23:59:59 in New York (03:59:59 UTC) passes again at
// 00:00:00, and Budgets reports the new day.
func TestBudgetDailyRolloverInZone(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	clk, p := newClock(), pricedProvider(t)
	clk.set(time.Date(2026, 3, 14, 23, 0, 0, 0, ny))
	tr := New(p, WithClock(clk.Now),
		WithBudget(Budget{Name: "daily", Limit: 3 * answerMicros / 1e6, HardLimit: true, Period: DailyIn(ny)}))
	for n := 1; n <= 3; n++ {
		if resp, _ := send(t, tr, budgetURL, "sk-day"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %s", n, resp.Status)
		}
	}
	clk.set(time.Date(2026, 3, 14, 23, 59, 59, 0, ny))
	if resp, _ := send(t, tr, budgetURL, "sk-day"); resp.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("at 23:59:59 New York time: %s, want 402", resp.Status)
	}
	// Midnight in UTC came long ago (20:00 in New York): what counts is
	// New York's.
	clk.set(time.Date(2026, 3, 15, 0, 0, 0, 0, ny))
	if resp, _ := send(t, tr, budgetURL, "sk-day"); resp.StatusCode != 200 {
		t.Fatalf("at midnight New York time: %s, want 200", resp.Status)
	}
	st := budgetStatuses(t, tr)
	if len(st) != 1 || st[0].Spent != answerMicros/1e6 || st[0].Exhausted ||
		!st[0].PeriodStart.Equal(time.Date(2026, 3, 15, 0, 0, 0, 0, ny)) || !st[0].PeriodEnd.Equal(time.Date(2026, 3, 16, 0, 0, 0, 0, ny)) {
		t.Errorf("Budgets() = %+v, want the 15th in New York with one answer", st)
	}
	if got := p.hits.Load(); got != 4 {
		t.Errorf("provider hits = %d, want 4 (the refusal never reached it)", got)
	}
}

// Sixteen answers of 2^50 completion tokens (the most an answer may
// report) for a model at $600 per million output tokens, in flight at once,
// cost 16 × 6.8e17 µ$, more than an int64 holds: the spend stops at its
// largest value instead of wrapping negative, and the hard limit holds.
func TestBudgetSpendSaturates(t *testing.T) {
	const n = 16
	body, h := corpus.ReadStream(t, "openai-chat-reasoning.json")
	body = bytes.Replace(body, []byte(`"completion_tokens": 467`), []byte(`"completion_tokens": 1125899906842624`), 1)
	if !bytes.Contains(body, []byte("1125899906842624")) {
		t.Fatal("the fixture's completion_tokens moved")
	}
	var arrived sync.WaitGroup
	arrived.Add(n)
	release := make(chan struct{})
	p := newProvider(func(r *http.Request) corpusAnswer {
		if bearerKey(r) == "sk-huge" {
			arrived.Done()
			<-release // all sixteen are in flight before any is counted
		}
		return corpusAnswer{200, h, string(body)}
	})
	expensive := func(provider, model, tier string) (prices.Price, bool) {
		return prices.Price{Input: 150_000_000, Output: 600_000_000}, true
	}
	tr := New(p, WithPrices(expensive), WithBudget(Budget{Name: "b", Limit: 1000, HardLimit: true}))
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _, err := trySend(tr, chatRequest(t, budgetURL, "sk-huge"))
			if err == nil && resp.StatusCode != 200 {
				err = errors.New(resp.Status)
			}
			errs <- err
		}()
	}
	arrived.Wait()
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := budgetStatuses(t, tr)
	if len(st) != 1 || !(st[0].Spent > 0) || st[0].Spent != float64(math.MaxInt64)/1e6 || !st[0].Exhausted {
		t.Fatalf("Budgets() = %+v, want the spend at its largest value, exhausted", st)
	}
	if resp, _ := send(t, tr, budgetURL, "sk-huge"); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("after the overflow: %s, want 402", resp.Status)
	}
}

func TestSatAdd(t *testing.T) {
	for _, c := range []struct{ a, b, want int64 }{
		{1, 2, 3},
		{math.MaxInt64 - 1, 1, math.MaxInt64},
		{math.MaxInt64, 1, math.MaxInt64},
		{math.MaxInt64 / 2, math.MaxInt64/2 + 10, math.MaxInt64},
		{math.MinInt64 + 1, -5, math.MinInt64},
		{-5, 3, -2},
	} {
		if got := satAdd(c.a, c.b); got != c.want {
			t.Errorf("satAdd(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
