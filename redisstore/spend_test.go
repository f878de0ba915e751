package redisstore_test

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
)

// period is the calendar month that starts at start.
func period(start time.Time) redisstore.Period {
	return redisstore.Period{Start: start, End: start.AddDate(0, 1, 0)}
}

var (
	november = period(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	december = period(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
)

// Spend added from many goroutines on several clients adds up, and every
// call sees a total that includes its own spend.
func TestAddSpendConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	const clients, perClient, each = 4, 16, 1250
	var wg sync.WaitGroup
	totals := make(chan int64, clients*perClient)
	for range clients {
		s := newStore(t, srv, redisstore.Options{})
		for range perClient {
			wg.Go(func() {
				total, err := s.AddSpend(ctxT(t), redisstore.SpendWrite{Key: "team-a", Period: november, Micros: each})
				if err != nil {
					t.Error(err)
				}
				totals <- total
			})
		}
	}
	wg.Wait()
	close(totals)
	seen := map[int64]bool{}
	for total := range totals {
		if total%each != 0 || total < each || total > clients*perClient*each || seen[total] {
			t.Errorf("a call saw the total %d", total)
		}
		seen[total] = true
	}
	spends, err := newStore(t, srv, redisstore.Options{}).Spend(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []redisstore.Spend{{Key: "team-a", Period: november, Micros: clients * perClient * each}}
	if !equalSpends(spends, want) {
		t.Errorf("Spend = %+v, want %+v", spends, want)
	}
}

// Each threshold is claimed once per period across every client, however
// many race for it.
func TestClaimThresholdOnce(t *testing.T) {
	srv := redistest.Start(t)
	const clients, perClient = 4, 16
	thresholds := []int{50, 80, 95}
	var mu sync.Mutex
	wins := map[string]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range clients {
		s := newStore(t, srv, redisstore.Options{})
		for range perClient {
			wg.Go(func() {
				<-start
				for _, p := range []redisstore.Period{november, december} {
					for _, pct := range thresholds {
						claimed, err := s.ClaimThreshold(ctxT(t), "team-a", p, pct)
						if err != nil {
							t.Error(err)
						}
						if claimed {
							mu.Lock()
							wins[fmt.Sprint(p.Start.Month(), pct)]++
							mu.Unlock()
						}
					}
				}
			})
		}
	}
	close(start)
	wg.Wait()
	want := map[string]int{"November 50": 1, "November 80": 1, "November 95": 1, "December 50": 1, "December 80": 1, "December 95": 1}
	if !reflect.DeepEqual(wins, want) {
		t.Errorf("claims won: %v, want one per threshold and period: %v", wins, want)
	}
}

func TestSpend(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	ctx := ctxT(t)
	if spends, err := s.Spend(ctx); err != nil || spends == nil || len(spends) != 0 {
		t.Errorf("Spend with nothing = %#v, %v; want an empty, non-nil slice", spends, err)
	}
	steps := []struct {
		key    string
		p      redisstore.Period
		micros int64
		pct    int // a threshold to claim, if not 0
	}{
		{"b", december, 7, 0},
		{"b", november, 10, 95},
		{"b", november, 5, 50},
		{"a", november, 3, 0},
		{"a:colon", november, -1, 0}, // a refund
		{"c", december, 0, 80},       // a threshold with no spend
	}
	for _, st := range steps {
		if _, err := s.AddSpend(ctx, redisstore.SpendWrite{Key: st.key, Period: st.p, Micros: st.micros}); err != nil {
			t.Fatal(err)
		}
		if st.pct != 0 {
			if _, err := s.ClaimThreshold(ctx, st.key, st.p, st.pct); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := []redisstore.Spend{
		{Key: "a", Period: november, Micros: 3},
		{Key: "a:colon", Period: november, Micros: -1},
		{Key: "b", Period: november, Micros: 15, Thresholds: []int{50, 95}},
		{Key: "b", Period: december, Micros: 7},
		{Key: "c", Period: december, Micros: 0, Thresholds: []int{80}},
	}
	spends, err := s.Spend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !equalSpends(spends, want) {
		t.Errorf("Spend =\n%+v\nwant\n%+v", spends, want)
	}

	// A period's keys expire one period length after it ends.
	for _, k := range []string{
		"quotabreaker:spend:2026-11-01T00:00:00Z/2026-12-01T00:00:00Z",
		"quotabreaker:thresholds:2026-11-01T00:00:00Z/2026-12-01T00:00:00Z",
	} {
		exp, err := srv.Client().ExpireTime(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC); exp != time.Duration(want.Unix())*time.Second {
			t.Errorf("%s expires at %v, want %v", k, time.Unix(int64(exp/time.Second), 0).UTC(), want)
		}
	}

	// Reset zeroes one key in one period and lets its thresholds fire
	// again; the rest stays.
	if err := s.ResetSpend(ctx, "b", november); err != nil {
		t.Fatal(err)
	}
	if claimed, err := s.ClaimThreshold(ctx, "b", november, 50); err != nil || !claimed {
		t.Errorf("threshold after a reset: %v, %v; want claimed", claimed, err)
	}
	if total, err := s.AddSpend(ctx, redisstore.SpendWrite{Key: "b", Period: november, Micros: 2}); err != nil || total != 2 {
		t.Errorf("spend after a reset: %d, %v; want 2", total, err)
	}
	want[2] = redisstore.Spend{Key: "b", Period: november, Micros: 2, Thresholds: []int{50}}
	if spends, err := s.Spend(ctx); err != nil || !equalSpends(spends, want) {
		t.Errorf("after a reset, Spend =\n%+v, %v\nwant\n%+v", spends, err, want)
	}

	// A period whose keys are gone leaves the list.
	if err := srv.Client().Del(ctx,
		"quotabreaker:spend:2026-12-01T00:00:00Z/2027-01-01T00:00:00Z",
		"quotabreaker:thresholds:2026-12-01T00:00:00Z/2027-01-01T00:00:00Z").Err(); err != nil {
		t.Fatal(err)
	}
	if spends, err := s.Spend(ctx); err != nil || !equalSpends(spends, want[:3]) {
		t.Errorf("after December expired, Spend =\n%+v, %v\nwant\n%+v", spends, err, want[:3])
	}
	if n, err := srv.Client().ZCard(ctx, "quotabreaker:periods").Result(); err != nil || n != 1 {
		t.Errorf("period index holds %d, %v; want 1", n, err)
	}
}

func equalSpends(a, b []redisstore.Spend) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].Micros != b[i].Micros || !a[i].Period.Start.Equal(b[i].Period.Start) ||
			!a[i].Period.End.Equal(b[i].Period.End) || !reflect.DeepEqual(a[i].Thresholds, b[i].Thresholds) {
			return false
		}
	}
	return true
}

func TestSpendInvalidPeriod(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, p := range []redisstore.Period{{}, {Start: at, End: at}, {Start: at, End: at.Add(-time.Hour)}} {
		if _, err := s.AddSpend(ctxT(t), redisstore.SpendWrite{Key: "k", Period: p, Micros: 1}); err == nil {
			t.Errorf("AddSpend accepted %+v", p)
		}
		if _, err := s.ClaimThreshold(ctxT(t), "k", p, 1); err == nil {
			t.Errorf("ClaimThreshold accepted %+v", p)
		}
		if err := s.ResetSpend(ctxT(t), "k", p); err == nil {
			t.Errorf("ResetSpend accepted %+v", p)
		}
	}
}
