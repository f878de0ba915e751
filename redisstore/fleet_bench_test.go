package redisstore_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
)

// cannedOK answers every request with okBody, without a network, so that
// the benchmark measures the Transport.
type cannedOK struct{}

func (cannedOK) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{
		StatusCode:    http.StatusOK,
		Status:        "200 OK",
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(okBody)),
		ContentLength: int64(len(okBody)),
		Request:       req,
	}, nil
}

// BenchmarkFleetRoundTrip is the success path, answer read to its end and
// priced, with and without a store (store=none, store=redis) and with and
// without a budget: the request path never touches Redis, so the ratio
// between store=redis and store=none should be 1. store=null is the
// Transport's side of a store alone (its goroutines, the spend queue, a
// write at most every 100 ms) against a store that keeps nothing: what
// store=redis costs beyond it is Redis and its client, whose connection
// buffers (384 KiB) make the collector run more often on this benchmark's
// small heap. Compare with
//
//	go test -run '^$' -bench FleetRoundTrip -count 10 | benchstat -col /store -
func BenchmarkFleetRoundTrip(b *testing.B) {
	fleetRoundTrips(b, func(b *testing.B, tr *quotabreaker.Transport) {
		for b.Loop() {
			fleetRoundTrip(b, tr)
		}
	})
}

// BenchmarkFleetRoundTripParallel is BenchmarkFleetRoundTrip from many
// goroutines through one Transport, all charging one budget key: where a
// lock the answers share would show.
func BenchmarkFleetRoundTripParallel(b *testing.B) {
	fleetRoundTrips(b, func(b *testing.B, tr *quotabreaker.Transport) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				fleetRoundTrip(b, tr)
			}
		})
	})
}

func fleetRoundTrips(b *testing.B, run func(*testing.B, *quotabreaker.Transport)) {
	srv := redistest.Start(b)
	for _, budget := range []bool{false, true} {
		for _, store := range []string{"none", "null", "redis"} {
			name := "budget=no"
			opts := []quotabreaker.Option{quotabreaker.WithPrices(dollarAnswer)}
			if budget {
				name = "budget=yes"
				opts = append(opts, quotabreaker.WithBudget(quotabreaker.Budget{Name: "b", Limit: 1e9}))
			}
			b.Run(name+"/store="+store, func(b *testing.B) {
				opts := opts[:len(opts):len(opts)]
				switch store {
				case "null":
					opts = append(opts, quotabreaker.WithStore(nullStore{}))
				case "redis":
					// A client of this run's own, closed with it: one left
					// open keeps its connections' buffers on the heap, and
					// every row after it would pay for them in collections.
					c := srv.Client()
					defer c.Close()
					s, err := redisstore.New(c, redisstore.Options{})
					if err != nil {
						b.Fatal(err)
					}
					opts = append(opts, quotabreaker.WithStore(s))
				}
				tr := quotabreaker.New(cannedOK{}, opts...)
				defer tr.Close()
				b.ReportAllocs()
				// Neither New, which reads the store, nor Close, which
				// writes to it, is the request path.
				b.ResetTimer()
				run(b, tr)
				b.StopTimer()
			})
		}
	}
}

// nullStore takes every write and holds nothing.
type nullStore struct{}

var _ quotabreaker.Store = nullStore{}

func (nullStore) Claim(_ context.Context, tr quotabreaker.Trip) (bool, quotabreaker.ScopeState, error) {
	return true, quotabreaker.ScopeState{Scope: tr.Scope, Epoch: tr.Epoch, Open: true, Trip: tr}, nil
}
func (nullStore) Clear(_ context.Context, scope string) (quotabreaker.Change, error) {
	return quotabreaker.Change{Kind: quotabreaker.ChangeCleared, Scope: scope}, nil
}
func (nullStore) ClearAll(context.Context) ([]quotabreaker.Change, error) {
	return []quotabreaker.Change{}, nil
}
func (nullStore) Snapshot(context.Context) (quotabreaker.Snapshot, error) {
	return quotabreaker.Snapshot{Open: []quotabreaker.Trip{}, Epochs: map[string]uint64{}}, nil
}
func (nullStore) Watch(ctx context.Context, _ func(quotabreaker.Change)) error {
	<-ctx.Done()
	return nil
}
func (nullStore) AddSpend(_ context.Context, w quotabreaker.SpendWrite) (int64, error) {
	return w.Micros, nil
}
func (nullStore) ClaimThreshold(context.Context, string, quotabreaker.Period, int) (bool, error) {
	return false, nil
}
func (nullStore) Spend(context.Context) ([]quotabreaker.Spend, error) {
	return []quotabreaker.Spend{}, nil
}
func (nullStore) ResetSpend(context.Context, string, quotabreaker.Period) error { return nil }

var benchBody = []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say OK"}]}`)

// fleetRoundTrip sends one request through tr and reads its answer.
func fleetRoundTrip(b *testing.B, tr *quotabreaker.Transport) {
	req, _ := http.NewRequest(http.MethodPost, "https://api.openai.com/v1/chat/completions", bytes.NewReader(benchBody))
	req.Header.Set("Authorization", "Bearer sk-bench")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		b.Error(err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
