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

// A latch reset elsewhere while its trip waits to be claimed leaves the
// open_latches metric at zero once the claim is found stale: the alert on
// that metric must not fire for a latch that no replica holds.
func TestFleetResetBeforeClaim(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	g := &gatedStore{Store: newStore(t, srv, redisstore.Options{}), gate: make(chan struct{})}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	tr := quotabreaker.New(base, quotabreaker.WithStore(g), quotabreaker.WithStoreTimeout(time.Minute), quotabreaker.WithMeterProvider(mp))
	defer tr.Close()
	r := &replica{Transport: tr, hc: &http.Client{Transport: tr}}
	operator := newStore(t, srv, redisstore.Options{})
	// Wait until the Transport watches the store: the held claim will
	// hold its resyncs, so only the change feed can bring it the reset.
	if _, _, err := operator.Claim(context.Background(), trip("warm-up", 0, "r")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Transport watches", func() bool { return len(openScopes(t, r)) == 1 })
	if _, err := operator.Clear(context.Background(), "warm-up"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the warm-up latch closes", func() bool { return len(openScopes(t, r)) == 0 })

	p.quota.Store(true)
	r.call(t, p, "sk-gated")
	scope := r.scope(t, p, "sk-gated")
	if n := openLatches(t, reader); n != 1 {
		t.Fatalf("open_latches after the trip = %d, want 1", n)
	}
	// The operator resets the scope while the trip's claim is held.
	if _, err := operator.Clear(context.Background(), scope); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reset reaches the Transport", func() bool { return len(openScopes(t, r)) == 0 })
	close(g.gate)
	waitFor(t, "open_latches back to 0", func() bool { return openLatches(t, reader) == 0 })
	snap, err := g.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Open) != 0 {
		t.Errorf("the stale claim opened %+v", snap.Open)
	}
}

// Close does not page for a trip whose claim it interrupts: the store was
// answering, so another replica may be paging for it; Close drops what it
// has not written, as it says.
func TestFleetCloseDoesNotPage(t *testing.T) {
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
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if n := pages.Load(); n != 0 {
		t.Errorf("OnTrip ran %d times during Close", n)
	}
}
