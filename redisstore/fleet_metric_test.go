package redisstore_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// gatedStore holds every Claim until gate is closed, as a slow store would.
type gatedStore struct {
	*redisstore.Store
	gate chan struct{}
	held atomic.Int64 // Claims waiting at the gate
}

func (g *gatedStore) Claim(ctx context.Context, tr quotabreaker.Trip) (bool, quotabreaker.ScopeState, error) {
	g.held.Add(1)
	defer g.held.Add(-1)
	select {
	case <-g.gate:
	case <-ctx.Done():
		return false, quotabreaker.ScopeState{}, ctx.Err()
	}
	return g.Store.Claim(ctx, tr)
}

// openLatches reads the quotabreaker.open_latches metric.
func openLatches(t testing.TB, r *sdkmetric.ManualReader) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "quotabreaker.open_latches" {
				for _, dp := range sum.DataPoints {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// A latch reset in the Transport while its claim is on the way to the
// store: the claim lands after the reset, with nothing there to clear, so
// the Transport clears it again. The store ends with no latch, and the
// open_latches metric at zero: the alert on that metric must not fire for a
// latch that no replica holds.
func TestFleetResetBeforeClaim(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	g := &gatedStore{Store: newStore(t, srv, redisstore.Options{}), gate: make(chan struct{})}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	var pages, resets atomic.Int64
	tr := quotabreaker.New(base, quotabreaker.WithStore(g), quotabreaker.WithStoreTimeout(time.Minute), quotabreaker.WithMeterProvider(mp),
		quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) { pages.Add(1) }),
		quotabreaker.OnReset(func(context.Context, quotabreaker.Trip) { resets.Add(1) }))
	defer tr.Close()
	r := &replica{Transport: tr, hc: &http.Client{Transport: tr}}

	p.quota.Store(true)
	r.call(t, p, "sk-gated")
	scope := r.scope(t, p, "sk-gated")
	if n := openLatches(t, reader); n != 1 {
		t.Fatalf("open_latches after the trip = %d, want 1", n)
	}
	waitFor(t, "the claim is held", func() bool { return g.held.Load() == 1 })
	if ok, err := tr.Reset(context.Background(), scope); !ok || err != nil {
		t.Fatalf("Reset = %v, %v", ok, err)
	}
	close(g.gate)
	waitFor(t, "open_latches back to 0", func() bool { return openLatches(t, reader) == 0 })
	waitFor(t, "the late claim is cleared", func() bool {
		snap, err := g.Snapshot(context.Background())
		return err == nil && len(snap.Open) == 0
	})
	// It paged (the claim waited past 100 ms), so the reset is reported
	// too, after the page.
	waitFor(t, "OnReset after OnTrip", func() bool { return pages.Load() == 1 && resets.Load() == 1 })
}

// Shutdown against a store that holds every claim: it returns at its
// deadline, saying what it could not write, and the trip has paged from this
// process: a trip is never lost, though another replica may page for it too.
func TestFleetShutdownPagesWhatItCannotWrite(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	g := &gatedStore{Store: newStore(t, srv, redisstore.Options{}), gate: make(chan struct{})}
	var pages atomic.Int64
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	tr := quotabreaker.New(base, quotabreaker.WithStore(g), quotabreaker.WithStoreTimeout(time.Minute),
		quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) { pages.Add(1) }))
	r := &replica{Transport: tr, hc: &http.Client{Transport: tr}}
	p.quota.Store(true)
	r.call(t, p, "sk-closing")
	waitFor(t, "the claim is held", func() bool { return g.held.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := tr.Shutdown(ctx)
	if took := time.Since(start); err == nil || took > 2*time.Second {
		t.Errorf("Shutdown = %v after %v, want an error at its 500ms deadline", err, took)
	}
	if n := pages.Load(); n != 1 {
		t.Errorf("OnTrip ran %d times, want 1", n)
	}
}
