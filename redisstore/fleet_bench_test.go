package redisstore_test

import (
	"bytes"
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
// between store=redis and store=none should be 1. Compare with
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
		for _, withStore := range []bool{false, true} {
			name := "budget=no"
			opts := []quotabreaker.Option{quotabreaker.WithPrices(dollarAnswer)}
			if budget {
				name = "budget=yes"
				opts = append(opts, quotabreaker.WithBudget(quotabreaker.Budget{Name: "b", Limit: 1e9}))
			}
			name += "/store=none"
			if withStore {
				name = name[:len(name)-len("none")] + "redis"
			}
			b.Run(name, func(b *testing.B) {
				opts := opts[:len(opts):len(opts)]
				if withStore {
					// A client of this run's own, closed with it: one left
					// open keeps its connections' buffers (384 KiB) on the
					// heap, and every row after it would pay for them in
					// collections.
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
