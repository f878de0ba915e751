package quotabreaker

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// nullStore takes every write and holds nothing: the benchmarks below
// measure the Transport's side of shared spend, not a store's.
type nullStore struct{}

func (nullStore) Claim(_ context.Context, tr Trip) (bool, ScopeState, error) {
	return true, ScopeState{Scope: tr.Scope, Epoch: tr.Epoch, Open: true, Trip: tr}, nil
}
func (nullStore) Clear(_ context.Context, scope string) (Change, error) {
	return Change{Kind: ChangeCleared, Scope: scope}, nil
}
func (nullStore) ClearAll(context.Context) ([]Change, error) { return []Change{}, nil }
func (nullStore) Snapshot(context.Context) (Snapshot, error) {
	return Snapshot{Open: []Trip{}, Epochs: map[string]uint64{}}, nil
}
func (nullStore) Watch(ctx context.Context, _ func(Change)) error { <-ctx.Done(); return nil }
func (nullStore) AddSpend(_ context.Context, w SpendWrite) (int64, error) {
	return w.Micros, nil
}
func (nullStore) ClaimThreshold(context.Context, string, Period, int) (bool, error) {
	return false, nil
}
func (nullStore) Spend(context.Context) ([]Spend, error)           { return []Spend{}, nil }
func (nullStore) ResetSpend(context.Context, string, Period) error { return nil }

// BenchmarkChargeShared is what one priced answer costs a budget whose
// spend a store shares (charge, which queues it for the store), from one
// goroutine and from many charging one key: where a lock the answers share
// shows, without the rest of the answer's path around it.
func BenchmarkChargeShared(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		name := "serial"
		if parallel {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			tr := New(http.DefaultTransport, WithStore(nullStore{}), WithBudget(Budget{Name: "b", Limit: 1e9}))
			defer tr.Close()
			req, _ := http.NewRequest(http.MethodPost, budgetURL, nil)
			at := &attempt{req: req, latch: &latch{scope: "sk-bench"}}
			now := time.Now()
			one := func() {
				u := Usage{Metered: true, Priced: true, micros: answerMicros}
				var spent [4]budgetCharge
				tr.charge(at, &u, now, spent[:0])
			}
			b.ReportAllocs()
			if !parallel {
				for b.Loop() {
					one()
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					one()
				}
			})
		})
	}
}
