package quotabreaker

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// This file keeps a Transport's latches and budgets in step with a Store
// shared by a fleet of processes. Requests never wait on the store: they
// are decided from the registry in memory, which one goroutine keeps current
// from the store's changes, a periodic resync and a resync after every
// reconnection. The same goroutine writes this process's trips and spend to
// the store, claims each trip (so that one process in the fleet pages) and
// each budget threshold, and keeps what it could not write until the store
// is back.

// Defaults of the store's options.
const (
	defaultStoreTimeout = 2 * time.Second
	defaultStoreResync  = 10 * time.Second
	// spendDelay is how long spend waits to be written with the spend
	// that follows it.
	spendDelay = 100 * time.Millisecond
)

// fleet is a Transport's link to its Store.
type fleet struct {
	store   Store
	timeout time.Duration
	resync  time.Duration
	log     *slog.Logger

	up     atomic.Bool // the last call to the store succeeded
	ctx    context.Context
	cancel context.CancelFunc
	done   sync.WaitGroup
	wake   chan struct{} // a claim is queued; buffered, never blocks a sender
	spent  chan struct{} // spend is queued; buffered
	kick   chan struct{} // a resync is wanted; buffered

	mu     sync.Mutex
	claims []*opened                // trips recorded here, not yet claimed in the store
	spends map[spendKey]*fleetSpend // spend not yet written, by budget key and period
}

// spendKey names one budget key's spend in one period.
type spendKey struct {
	budget *budget
	key    string
	period Period
}

// fleetSpend is spend waiting to be written.
type fleetSpend struct {
	k      *budgetKey
	micros int64
}

// storeKey is the key under which a budget key's spend is shared: budgets
// of one Transport may count the same key.
// The budget's name goes first with its length, so that budget "a" with key
// "b/c" and budget "a/b" with key "c" never share a spend.
func (sk spendKey) storeKey() string { return budgetPrefix(sk.budget.Name) + sk.key }

func budgetPrefix(name string) string { return strconv.Itoa(len(name)) + ":" + name + "/" }

// startFleet connects t to its store: it loads the fleet's open latches
// (waiting up to the store's timeout, so that a new replica starts with the
// latches that are open), then keeps them current in the background until
// Close.
func (t *Transport) startFleet() {
	f := t.fleet
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.wake = make(chan struct{}, 1)
	f.spent = make(chan struct{}, 1)
	f.kick = make(chan struct{}, 1)
	f.spends = make(map[spendKey]*fleetSpend)
	f.up.Store(true)
	t.resync()
	f.done.Add(2)
	go func() {
		defer f.done.Done()
		for f.ctx.Err() == nil {
			if err := f.store.Watch(f.ctx, t.applyChange); err != nil {
				t.storeFailed(err)
			}
			select {
			case <-f.ctx.Done():
			case <-time.After(f.timeout):
			}
		}
	}()
	go func() {
		defer f.done.Done()
		t.fleetLoop()
	}()
}

// Close stops the Transport's work with its store (see WithStore) and
// waits for it; trips and spend not yet written are lost. Requests can
// still be sent, decided by this process alone. Without a store, Close does
// nothing. It is safe to call more than once.
func (t *Transport) Close() error {
	if t.fleet == nil {
		return nil
	}
	t.fleet.cancel()
	t.fleet.done.Wait()
	return nil
}

func (t *Transport) fleetLoop() {
	f := t.fleet
	tick := time.NewTicker(f.resync)
	defer tick.Stop()
	// Spend is written at most every spendDelay, not once per answer, so
	// that a busy fleet costs Redis a few calls a second per process.
	spend := time.NewTimer(spendDelay)
	spend.Stop()
	spendDue := false
	for {
		select {
		case <-f.ctx.Done():
			spend.Stop()
			return
		case <-f.wake:
		case <-f.spent:
			if !spendDue {
				spendDue = true
				spend.Reset(spendDelay)
			}
			continue
		case <-spend.C:
		case <-f.kick:
			t.resync()
		case <-tick.C:
			t.resync()
		}
		spendDue = false
		spend.Stop()
		t.flush()
	}
}

// signal wakes the loop without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// call runs one store operation with the store's timeout and records
// whether the store answered.
func (t *Transport) call(op func(ctx context.Context) error) bool {
	f := t.fleet
	ctx, cancel := context.WithTimeout(f.ctx, f.timeout)
	defer cancel()
	if err := op(ctx); err != nil {
		if f.ctx.Err() == nil {
			t.storeFailed(err)
		}
		return false
	}
	t.storeUp()
	return true
}

// storeFailed and storeUp log a change of the store's reachability once
// per change, never once per request, and record it in the metric.
func (t *Transport) storeFailed(err error) {
	if t.fleet.up.CompareAndSwap(true, false) {
		t.fleet.log.Warn("quotabreaker: store unreachable; deciding from this process's latches until it is back", "error", err.Error())
		t.tel.storeState(false)
	}
}

func (t *Transport) storeUp() {
	if t.fleet.up.CompareAndSwap(false, true) {
		t.fleet.log.Info("quotabreaker: store reachable again")
		t.tel.storeState(true)
		signal(t.fleet.kick)
	}
}

// claim queues a trip recorded here for the store; OnTrip waits for the
// claim, so that one process in the fleet pages.
func (t *Transport) claim(o *opened) {
	f := t.fleet
	f.mu.Lock()
	f.claims = append(f.claims, o)
	f.mu.Unlock()
	signal(f.wake)
}

// addSpend queues micros of spend of key's budget for the store.
func (t *Transport) addSpend(b *budget, key string, k *budgetKey, micros int64) {
	f := t.fleet
	sk := spendKey{budget: b, key: key, period: Period{Start: k.start, End: k.end}}
	f.mu.Lock()
	first := len(f.spends) == 0
	s := f.spends[sk]
	if s == nil {
		s = &fleetSpend{k: k}
		f.spends[sk] = s
	}
	s.micros = satAdd(s.micros, micros)
	f.mu.Unlock()
	// Only the first spend of a batch wakes the loop: a wake per answer
	// would cost a busy process a goroutine switch per request. Spend
	// left after a failed write goes with the next resync or claim.
	if first {
		signal(f.spent)
	}
}

// flush writes the queued trips and spend. What the store does not take
// stays queued for the next try.
func (t *Transport) flush() {
	f := t.fleet
	f.mu.Lock()
	claims := f.claims
	f.claims = nil
	f.mu.Unlock()
	for i, o := range claims {
		var claimed bool
		var cur ScopeState
		if !t.call(func(ctx context.Context) (err error) {
			claimed, cur, err = f.store.Claim(ctx, o.Trip)
			return err
		}) {
			f.mu.Lock()
			f.claims = append(claims[i:], f.claims...)
			f.mu.Unlock()
			if f.ctx.Err() != nil {
				// Close interrupted the claim of a store that may well
				// be answering, and another process paging: Close drops
				// what it has not written.
				return
			}
			// The store is unreachable. Page now rather than after it
			// returns: one page per process is better than none. The
			// claim is retried, and pages nobody twice.
			for _, o := range claims[i:] {
				if t.latches.markPaging(o) {
					t.page(context.Background(), o)
				}
			}
			break
		}
		switch {
		case claimed:
			if t.latches.markPaging(o) {
				t.page(context.Background(), o)
			}
		default:
			// Another process paged for it, or it is stale: the scope
			// was reset after this request was sent. A reset that came
			// here first left its telemetry to whoever announced the
			// trip, which is now this quiet end.
			if t.latches.quiet(o) {
				t.resetDone(context.Background(), o)
			}
			if !cur.Open {
				t.applyCleared(cur.Scope, cur.Epoch)
			}
		}
	}

	f.mu.Lock()
	spends := f.spends
	f.spends = make(map[spendKey]*fleetSpend)
	f.mu.Unlock()
	for sk, s := range spends {
		var total int64
		if !t.call(func(ctx context.Context) (err error) {
			total, err = f.store.AddSpend(ctx, sk.storeKey(), sk.period, s.micros)
			return err
		}) {
			f.mu.Lock()
			if q := f.spends[sk]; q != nil {
				q.micros = satAdd(q.micros, s.micros)
			} else {
				f.spends[sk] = s
			}
			f.mu.Unlock()
			continue
		}
		// The store's total is the truth, lower too after a reset in
		// another process.
		addSat(&s.k.flushed, s.micros)
		s.k.fleet.Store(total)
		t.claimThresholds(sk, s.k)
	}
}

// claimThresholds fires OnBudget for the thresholds the fleet's total has
// crossed that no process has claimed yet.
func (t *Transport) claimThresholds(sk spendKey, k *budgetKey) {
	b := sk.budget
	spent := k.effective(true)
	limit := b.limit.Load()
	for i, th := range b.thresholds {
		if float64(spent) < th*float64(limit) {
			break
		}
		bit := uint64(1) << i
		if k.fired.Load()&bit != 0 {
			continue
		}
		var claimed bool
		if !t.call(func(ctx context.Context) (err error) {
			claimed, err = t.fleet.store.ClaimThreshold(ctx, sk.storeKey(), sk.period, int(math.Round(th*100)))
			return err
		}) {
			return
		}
		if k.fired.Or(bit)&bit == 0 && claimed {
			callHook("OnBudget", t.cfg.onBudget, context.Background(), b.status(sk.key, k, th))
		}
	}
}

// resync reconciles the registry with a snapshot of the store.
func (t *Transport) resync() {
	f := t.fleet
	var snap Snapshot
	if !t.call(func(ctx context.Context) (err error) {
		snap, err = f.store.Snapshot(ctx)
		return err
	}) {
		return
	}
	open := make(map[string]bool, len(snap.Open))
	for _, tr := range snap.Open {
		open[tr.Scope] = true
		t.applyOpened(tr, tr.Epoch)
	}
	for scope, epoch := range snap.Epochs {
		t.applyCleared(scope, epoch)
	}
	// A latch open here that the store does not hold, at an epoch the
	// store has not passed (applyCleared closed those), is one the store
	// lost: Redis restarted without its data, say. A latch never closes
	// on its own, and a reset always advances the epoch, so it is claimed
	// again, which pages nobody twice. A latch that opened after the
	// Snapshot was read is claimed again too, which changes nothing.
	f.mu.Lock()
	queued := make(map[*opened]bool, len(f.claims))
	for _, o := range f.claims {
		queued[o] = true
	}
	n := len(f.claims)
	for _, o := range t.latches.opened() {
		if !open[o.Scope] && !queued[o] {
			f.claims = append(f.claims, o)
		}
	}
	more := len(f.claims) > n
	f.mu.Unlock()
	if more {
		signal(f.wake)
	}
	var spends []Spend
	if t.call(func(ctx context.Context) (err error) {
		spends, err = f.store.Spend(ctx)
		return err
	}) {
		t.applySpend(spends)
	}
}

// applyChange applies one change from the store's Watch.
func (t *Transport) applyChange(ch Change) {
	switch ch.Kind {
	case ChangeOpened:
		t.storeUp()
		t.applyOpened(ch.Trip, ch.Epoch)
	case ChangeCleared:
		t.storeUp()
		t.applyCleared(ch.Scope, ch.Epoch)
	case ChangeResync:
		t.storeUp()
		signal(t.fleet.kick)
	case ChangeDisconnected:
		t.storeFailed(errWatchLost)
	}
}

// errWatchLost is what the log says when Watch reports a lost connection.
var errWatchLost = errors.New("the store's change feed was lost")

// applyOpened opens the latch of tr.Scope quietly: another process paged.
func (t *Transport) applyOpened(tr Trip, epoch uint64) {
	tr.Epoch = epoch
	o := newOpened(tr, "", nil, false)
	if t.latches.openQuiet(o) {
		t.tel.openLatches.Add(context.Background(), 1)
	}
}

// applyCleared closes scope's latch here if the store cleared it at an
// epoch newer than the one this process knows.
func (t *Transport) applyCleared(scope string, epoch uint64) {
	for _, o := range t.latches.clearEpoch(scope, epoch) {
		t.resetDone(context.Background(), o)
	}
}

// applySpend takes the fleet's totals, as the store holds them now, for
// this process's budgets, so that a hard limit holds against the fleet's
// spend: a key this process has not spent on yet starts from the fleet's
// total, and a key whose spend was reset in another process (absent from
// the store) counts only what this process spent since its last write.
// Thresholds follow the store's claims, so that those a reset forgot can
// fire again. It runs on the loop's goroutine, as flush does, so no write
// of this process's spend is under way.
func (t *Transport) applySpend(spends []Spend) {
	now := t.cfg.now()
	for _, b := range t.budgets {
		start, end := b.Period(now)
		if !end.After(start) {
			continue // b.state counts such a period on its own
		}
		seen := make(map[string]bool)
		for _, s := range spends {
			key, ok := strings.CutPrefix(s.Key, budgetPrefix(b.Name))
			if !ok || !s.Period.Start.Equal(start) || !s.Period.End.Equal(end) {
				continue
			}
			k := b.state(key, now)
			if !k.start.Equal(start) {
				continue
			}
			seen[key] = true
			k.fleet.Store(s.Micros)
			var fired uint64
			for _, pct := range s.Thresholds {
				for i, th := range b.thresholds {
					if int(math.Round(th*100)) == pct {
						fired |= 1 << i
					}
				}
			}
			k.fired.Store(fired)
		}
		b.mu.RLock()
		for key, k := range b.keys {
			if !seen[key] && k.start.Equal(start) {
				k.fleet.Store(0)
				k.fired.Store(0)
			}
		}
		b.mu.RUnlock()
	}
}
