package quotabreaker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/internal/corpus"
	"github.com/quotabreaker/quotabreaker/prices"
)

// memStore is a Store in memory, for the shared spend of the tests below
// without Redis. Their requests never trip: its latches stay empty.
type memStore struct {
	mu      sync.Mutex
	spend   map[spendID]int64
	seqs    map[string]uint64 // the last Seq applied, by Writer and spendID
	claims  map[spendID][]int
	writes  atomic.Int64 // AddSpend calls that applied
	fail    atomic.Bool  // AddSpend refuses
	slow    atomic.Int64 // AddSpend sleeps this long first, in nanoseconds
	refused atomic.Int64 // AddSpend calls refused
	// before, when set, is called first by AddSpend, which returns its
	// error.
	before func(context.Context) error
}

// spendID is a Key and a Period, comparable.
type spendID struct {
	key        string
	start, end int64
}

func newSpendID(key string, p Period) spendID {
	return spendID{key, p.Start.UnixNano(), p.End.UnixNano()}
}

func newMemStore() *memStore {
	return &memStore{spend: map[spendID]int64{}, seqs: map[string]uint64{}, claims: map[spendID][]int{}}
}

func (s *memStore) Claim(_ context.Context, tr Trip) (bool, ScopeState, error) {
	return true, ScopeState{Scope: tr.Scope, Epoch: tr.Epoch, Open: true, Trip: tr}, nil
}

func (s *memStore) Clear(_ context.Context, scope string) (Change, error) {
	return Change{Kind: ChangeCleared, Scope: scope}, nil
}

func (s *memStore) ClearAll(context.Context) ([]Change, error) { return []Change{}, nil }

func (s *memStore) Snapshot(context.Context) (Snapshot, error) {
	return Snapshot{Open: []Trip{}, Epochs: map[string]uint64{}}, nil
}

func (s *memStore) Watch(ctx context.Context, fn func(Change)) error {
	fn(Change{Kind: ChangeResync})
	<-ctx.Done()
	return nil
}

func (s *memStore) AddSpend(ctx context.Context, w SpendWrite) (int64, error) {
	if s.before != nil {
		if err := s.before(ctx); err != nil {
			return 0, err
		}
	}
	if d := s.slow.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	if s.fail.Load() {
		s.refused.Add(1)
		return 0, errors.New("memStore: refused")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := newSpendID(w.Key, w.Period)
	seq := fmt.Sprintf("%s|%v", w.Writer, id)
	if w.Writer != "" && w.Seq <= s.seqs[seq] {
		return s.spend[id], nil // applied already
	}
	s.seqs[seq] = w.Seq
	s.spend[id] = satAdd(s.spend[id], w.Micros)
	s.writes.Add(1)
	return s.spend[id], nil
}

func (s *memStore) ClaimThreshold(_ context.Context, key string, p Period, pct int) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := newSpendID(key, p)
	if slices.Contains(s.claims[id], pct) {
		return false, nil
	}
	s.claims[id] = append(s.claims[id], pct)
	slices.Sort(s.claims[id])
	return true, nil
}

func (s *memStore) Spend(context.Context) ([]Spend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Spend{}
	for id, micros := range s.spend {
		p := Period{time.Unix(0, id.start).UTC(), time.Unix(0, id.end).UTC()}
		out = append(out, Spend{Key: id.key, Period: p, Micros: micros, Thresholds: slices.Clone(s.claims[id])})
	}
	slices.SortFunc(out, func(a, b Spend) int {
		if c := a.Period.Start.Compare(b.Period.Start); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out, nil
}

func (s *memStore) ResetSpend(_ context.Context, key string, p Period) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.spend, newSpendID(key, p))
	delete(s.claims, newSpendID(key, p))
	return nil
}

// total is the spend the store holds for key of budget "b" in p.
func (s *memStore) total(key string, p Period) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spend[newSpendID(budgetPrefix("b")+key, p)]
}

// sharedBudget is a Transport on store whose budget "b" counts the spend
// of each bearer key, priced answerMicros an answer.
func sharedBudget(t *testing.T, store *memStore, opts ...Option) *Transport {
	t.Helper()
	tr := New(pricedProvider(t), append([]Option{WithStore(store),
		WithBudget(Budget{Name: "b", Limit: 1e6, Key: bearerKey})}, opts...)...)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// chargeAll sends n answers from each of goroutines goroutines, all at
// once, spreading them over keys, and returns when all are read and closed.
func chargeAll(t *testing.T, tr *Transport, keys []string, goroutines, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range n {
				key := keys[(g+i)%len(keys)]
				if resp, _, err := trySend(tr, chatRequest(t, budgetURL, key)); err != nil || resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("%s: %v %v", key, resp, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// charging is answers sent through a Transport from several goroutines
// until halt: sent counts those begun, settled those answered.
type charging struct {
	sent, settled atomic.Int64
	stop          chan struct{}
	wg            sync.WaitGroup
}

// startCharging sends answers through tr from goroutines goroutines, the
// g-th on keys[g%len(keys)], one after the other until halt.
func startCharging(t *testing.T, tr *Transport, goroutines int, keys ...string) *charging {
	c := &charging{stop: make(chan struct{})}
	for g := range goroutines {
		key := keys[g%len(keys)]
		c.wg.Go(func() {
			for {
				select {
				case <-c.stop:
					return
				default:
				}
				c.sent.Add(1)
				if _, _, err := trySend(tr, chatRequest(t, budgetURL, key)); err != nil {
					t.Error(err)
					return
				}
				c.settled.Add(1)
			}
		})
	}
	return c
}

// halt stops the goroutines and waits for them.
func (c *charging) halt() {
	close(c.stop)
	c.wg.Wait()
}

// Many goroutines charge a shared budget's keys while the loop writes
// them; the clock then enters the next month, with spend of March still
// queued, and they charge again. Once Shutdown has written what was
// queued, the store holds, for each key and month, exactly what was
// charged then: every answer once, in the period it was charged in.
func TestSharedSpendConcurrent(t *testing.T) {
	store, clk := newMemStore(), newClock()
	store.slow.Store(int64(time.Millisecond)) // answers pile up while it writes
	tr := sharedBudget(t, store, WithClock(clk.Now))
	keys := []string{"sk-a", "sk-b", "sk-c"}
	const goroutines, n = 8, 150 // 1,200 answers a month, 400 a key
	march, april := Period{}, Period{}
	march.Start, march.End = MonthlyUTC(clk.Now())
	chargeAll(t, tr, keys, goroutines, n)
	clk.set(march.End.Add(time.Hour))
	april.Start, april.End = MonthlyUTC(clk.Now())
	chargeAll(t, tr, keys, goroutines, n)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := int64(goroutines * n / len(keys) * answerMicros)
	for _, key := range keys {
		for _, p := range []Period{march, april} {
			if got := store.total(key, p); got != want {
				t.Errorf("%s in %s: store holds %d µ$, want %d", key, p.Start.Format("January"), got, want)
			}
		}
	}
	if w := store.writes.Load(); w >= 2*goroutines*n {
		t.Errorf("%d writes for %d answers: spend was not batched", w, 2*goroutines*n)
	}
}

// ResetBudget while other keys are charged and their spend written, right
// after a round of answers of its key whose spend is still queued: that
// spend never reaches the store after the reset, and the other keys lose
// nothing.
func TestSharedSpendResetWhileCharging(t *testing.T) {
	store, clk := newMemStore(), newClock()
	tr := sharedBudget(t, store, WithClock(clk.Now))
	var p Period
	p.Start, p.End = MonthlyUTC(clk.Now())
	others := startCharging(t, tr, 4, "sk-x", "sk-y")
	for round := range 5 {
		chargeAll(t, tr, []string{"sk-hot"}, 4, 10+round)
		if _, err := tr.ResetBudget(context.Background(), "b", "sk-hot"); err != nil {
			t.Fatal(err)
		}
	}
	chargeAll(t, tr, []string{"sk-hot"}, 4, 25) // after the last reset: 100 answers
	others.halt()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := store.total("sk-hot", p), int64(100*answerMicros); got != want {
		t.Errorf("sk-hot: store holds %d µ$, want %d (the answers after the last reset)", got, want)
	}
	if got, want := store.total("sk-x", p)+store.total("sk-y", p), others.settled.Load()*answerMicros; got != want {
		t.Errorf("the other keys: store holds %d µ$, want %d", got, want)
	}
}

// ResetBudget while its own key is charged from many goroutines: an answer
// settled before the reset began is dropped with it, and one sent after it
// returned is written; those in between may go either way.
func TestSharedSpendResetRacesCharges(t *testing.T) {
	store, clk := newMemStore(), newClock()
	tr := sharedBudget(t, store, WithClock(clk.Now))
	var p Period
	p.Start, p.End = MonthlyUTC(clk.Now())
	c := startCharging(t, tr, 6, "sk-hot")
	time.Sleep(150 * time.Millisecond) // past a write or two
	before := c.settled.Load()
	if _, err := tr.ResetBudget(context.Background(), "b", "sk-hot"); err != nil {
		t.Fatal(err)
	}
	after := c.sent.Load()
	time.Sleep(150 * time.Millisecond)
	c.halt()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	all := c.settled.Load()
	got := store.total("sk-hot", p)
	if got%answerMicros != 0 || got < (all-after)*answerMicros || got > (all-before)*answerMicros {
		t.Errorf("store holds %d µ$ = %v answers; want from %d (sent after the reset) to %d (not settled before it)",
			got, float64(got)/answerMicros, all-after, all-before)
	}
}

// Shutdown while many goroutines charge: it returns, though every round
// of its writes (slow ones) finds new spend queued; it writes every answer
// settled before it was called, none sent after it returned, and nothing
// once it has returned.
func TestSharedSpendShutdownWhileCharging(t *testing.T) {
	store, clk := newMemStore(), newClock()
	store.slow.Store(int64(5 * time.Millisecond))
	tr := sharedBudget(t, store, WithClock(clk.Now))
	var p Period
	p.Start, p.End = MonthlyUTC(clk.Now())
	c := startCharging(t, tr, 6, "sk-a", "sk-b", "sk-c")
	time.Sleep(150 * time.Millisecond)
	before := c.settled.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		c.halt()
		t.Fatal(err)
	}
	after := c.sent.Load()
	written := store.writes.Load()
	time.Sleep(150 * time.Millisecond) // answers after Shutdown count here only
	c.halt()
	if w := store.writes.Load(); w != written {
		t.Errorf("%d writes after Shutdown returned", w-written)
	}
	var got int64
	for _, key := range []string{"sk-a", "sk-b", "sk-c"} {
		got += store.total(key, p)
	}
	if got%answerMicros != 0 || got < before*answerMicros || got > after*answerMicros {
		t.Errorf("store holds %v answers; want from %d (settled before Shutdown) to %d (sent before it returned)",
			float64(got)/answerMicros, before, after)
	}
}

// An answer settled while Shutdown writes is written too: Shutdown looks
// again once its writes are done, before it closes the queue.
func TestSharedSpendDuringShutdownWrite(t *testing.T) {
	store, clk := newMemStore(), newClock()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	store.before = func(ctx context.Context) error {
		if ctx.Value(shutdownKey{}) == nil {
			// The loop's write waits for Shutdown to cancel it, so
			// that Shutdown has sk-a to write.
			<-ctx.Done()
			return ctx.Err()
		}
		once.Do(func() {
			close(entered)
			<-release
		})
		return nil
	}
	tr := sharedBudget(t, store, WithClock(clk.Now))
	var p Period
	p.Start, p.End = MonthlyUTC(clk.Now())
	send(t, tr, budgetURL, "sk-a")
	done := make(chan error)
	go func() { done <- tr.Shutdown(context.WithValue(context.Background(), shutdownKey{}, true)) }()
	<-entered
	send(t, tr, budgetURL, "sk-b")
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"sk-a", "sk-b"} {
		if got := store.total(key, p); got != answerMicros {
			t.Errorf("%s: store holds %d µ$, want %d", key, got, answerMicros)
		}
	}
}

type shutdownKey struct{}

// A Shutdown that cannot write says how many budget keys' spend it lost:
// the spend still queued as it closed is counted too, and a key with a
// write unacknowledged and spend queued after it counts once.
func TestSharedSpendShutdownCountsLost(t *testing.T) {
	store := newMemStore()
	store.fail.Store(true)
	tr := sharedBudget(t, store, WithStoreTimeout(50*time.Millisecond), WithLogger(slog.New(slog.DiscardHandler)))
	send(t, tr, budgetURL, "sk-a")
	for store.refused.Load() == 0 {
		time.Sleep(time.Millisecond) // the loop's write of sk-a
	}
	for _, key := range []string{"sk-a", "sk-b", "sk-c"} {
		send(t, tr, budgetURL, key)
	}
	err := tr.Shutdown(context.Background())
	if err == nil || !strings.Contains(err.Error(), "0 trips (paged from this process) and 3 budget keys' spend not written") {
		t.Errorf("Shutdown = %v, want 3 budget keys' spend not written", err)
	}
}

// Sixteen answers that together cost more than an int64 holds, charged at
// once to a shared budget: the spend queued for the store stops at its
// largest value, as the budget's does, instead of wrapping.
func TestSharedSpendSaturates(t *testing.T) {
	const n = 16
	body, h := corpus.ReadStream(t, "openai-chat-reasoning.json")
	body = bytes.Replace(body, []byte(`"completion_tokens": 467`), []byte(`"completion_tokens": 1125899906842624`), 1)
	p := newProvider(func(*http.Request) corpusAnswer { return corpusAnswer{200, h, string(body)} })
	expensive := func(provider, model, tier string) (prices.Price, bool) {
		return prices.Price{Input: 150_000_000, Output: 600_000_000}, true
	}
	store, clk := newMemStore(), newClock()
	tr := New(p, WithStore(store), WithClock(clk.Now), WithPrices(expensive),
		WithBudget(Budget{Name: "b", Limit: 1000, Key: bearerKey}))
	t.Cleanup(func() { _ = tr.Close() })
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, _, err := trySend(tr, chatRequest(t, budgetURL, "sk-huge")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var period Period
	period.Start, period.End = MonthlyUTC(clk.Now())
	if got := store.total("sk-huge", period); got != math.MaxInt64 {
		t.Errorf("store holds %d µ$, want %d", got, int64(math.MaxInt64))
	}
}

// Requests charge each of many keys twice, the second charge often while
// the key sits on the dirty list, as a taker empties the list as fast as
// it can (the loop takes it every 100 ms; this makes every moment one): no
// spend is left behind a key taken while it was charged.
func TestSharedSpendQueueStress(t *testing.T) {
	store, clk := newMemStore(), newClock()
	tr := sharedBudget(t, store, WithClock(clk.Now))
	f, b := tr.fleet, tr.budgets[0]
	stop := make(chan struct{})
	var taker sync.WaitGroup
	taker.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			f.mu.Lock()
			f.takeDirty(false)
			f.mu.Unlock()
		}
	})
	const goroutines, keys = 4, 5000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range keys {
				k := b.state(fmt.Sprintf("sk-%d-%d", g, i), clk.Now())
				tr.addSpend(k, 1)
				tr.addSpend(k, 1)
			}
		})
	}
	wg.Wait()
	close(stop)
	taker.Wait()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spends, _ := store.Spend(context.Background())
	var got int64
	for _, s := range spends {
		got += s.Micros
	}
	if want := int64(goroutines * keys * 2); got != want {
		t.Errorf("store holds %d µ$ over %d keys, want %d", got, len(spends), want)
	}
}
