package quotabreaker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// This file keeps a Transport's latches and budgets in step with a store
// shared by a fleet of processes. Requests never wait on the store: they
// are decided from the registry in memory, which one goroutine keeps current
// from the store's changes, a periodic resync and a resync after every
// reconnection. The same goroutine writes this process's trips and spend to
// the store, claims each trip (so that one process in the fleet pages) and
// each budget threshold, and keeps what it could not write until the store
// takes it, retrying with a capped, jittered backoff. User hooks never run
// on it: they run on a goroutine of their own (see hookRunner), so that a
// slow pager holds up neither the fleet nor Shutdown. The store's contract,
// how it is called, its health as this process sees it, and Shutdown are in
// store.go; the spend it shares is in spend.go.

// Defaults of the store's options, and the fleet's timings.
const (
	defaultStoreTimeout = 2 * time.Second
	defaultStoreResync  = 10 * time.Second
	// spendDelay is how long spend waits to be written with the spend
	// that follows it.
	spendDelay = 100 * time.Millisecond
	// claimWait is how long a trip waits for its fleet-wide claim before
	// this process pages for it anyway: a store that answers takes a few
	// milliseconds, and a page must not wait for a client's retries
	// against a Redis that refuses connections. A claim that lands later
	// pages nobody twice.
	claimWait = 50 * time.Millisecond
	// Writes the store did not take are retried after minRetry, doubling
	// to maxRetry, each wait drawn at random between half and all of it,
	// so that a fleet does not retry in step. Against a store that refuses
	// every write (a read-only Redis) that is one attempt every 5 to 10
	// seconds: each a claim, which go-redis itself tries four times.
	minRetry = 250 * time.Millisecond
	maxRetry = 10 * time.Second
)

// fleet is a Transport's link to its store.
type fleet struct {
	store   LatchStore
	spend   SpendStore // nil when the store keeps latches only
	timeout time.Duration
	resync  time.Duration
	log     *slog.Logger
	writer  string // names this Transport's spend writes (SpendWrite.Writer)
	hooks   hookRunner

	// What the store did last, read without a lock by requests (span
	// attributes) and the Handler. readsUp: Snapshot and Watch work;
	// writesUp: claims and spend are written and spend reads back.
	readsUp  atomic.Bool
	writesUp atomic.Bool
	invalid  atomic.Int64 // changes Watch dropped as invalid
	// slow is how long the store's recent answers took, in nanoseconds:
	// the slowest, decaying by an eighth at each answer. A claim waits
	// for several of those before this process pages on its own.
	slow atomic.Int64

	ctx    context.Context // the background work's; Shutdown cancels it
	cancel context.CancelFunc
	done   sync.WaitGroup
	wake   chan struct{} // a claim is queued; buffered, never blocks a sender
	spent  chan struct{} // spend is queued; buffered
	kick   chan struct{} // a resync is wanted; buffered

	mu     sync.Mutex
	claims []*opened                // trips recorded here, not yet claimed in the store
	spends map[spendKey]*fleetSpend // spend not yet written, by budget key and period
	// unacked holds spend writes sent without an acknowledgement (failed,
	// timed out, refused). Each is retried as it is, with its Seq, before
	// any newer spend of its key: the store applies it at most once.
	unacked map[spendKey]*spendWrite
	seq     uint64 // the last SpendWrite.Seq given
	closed  bool   // Shutdown has written what it could: trips page here at once

	// dirty lists the budget keys with spend pending, pushed without a
	// lock, taken whole; dirtyClosed ends it at Shutdown (see addSpend).
	dirty       atomic.Pointer[budgetKey]
	dirtyClosed budgetKey

	// spendMu is held while spend is taken from the queue and written, so
	// that ResetBudget, which takes it, never sees a write land after it.
	spendMu sync.Mutex

	health health    // what the log and the metrics last said; loop and Watch goroutines
	mode   modeState // the fleet's mode as this process knows it: see handler.go

	shutdown    sync.Once
	shutdownErr error // set once shutdown is done
}

// newFleet links a Transport to store.
func newFleet(store LatchStore, cfg *config) *fleet {
	f := &fleet{store: store, timeout: cfg.storeTimeout, resync: cfg.storeResync, log: cfg.logger}
	f.spend, _ = store.(SpendStore)
	f.mode.store, _ = store.(ModeStore)
	var id [8]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	f.writer = hex.EncodeToString(id[:])
	return f
}

// startFleet connects t to its store: it loads the fleet's open latches
// (waiting up to the store's timeout, so that a new replica starts with the
// latches that are open), then keeps them current in the background until
// Shutdown.
func (t *Transport) startFleet() {
	f := t.fleet
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.wake = make(chan struct{}, 1)
	f.spent = make(chan struct{}, 1)
	f.kick = make(chan struct{}, 1)
	f.spends = make(map[spendKey]*fleetSpend)
	f.unacked = make(map[spendKey]*spendWrite)
	f.readsUp.Store(true)
	f.writesUp.Store(true)
	f.health.since = t.cfg.now()
	t.resync(f.ctx)
	f.done.Add(2)
	go func() {
		defer f.done.Done()
		for f.ctx.Err() == nil {
			if err := f.store.Watch(f.ctx, t.applyChange); err != nil {
				t.observed(opRead, err)
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

func (t *Transport) fleetLoop() {
	f := t.fleet
	tick := time.NewTicker(f.resync)
	defer tick.Stop()
	// Spend is written at most every spendDelay, not once per answer, so
	// that a busy fleet costs Redis a few calls a second per process.
	spend := time.NewTimer(spendDelay)
	spend.Stop()
	defer spend.Stop()
	// After a failed write nothing is written until retry fires: neither
	// new trips (they page at once, see claim) nor new spend, nor a resync,
	// so that a store that refuses writes gets a few calls a minute, not
	// a loop.
	retry := time.NewTimer(minRetry)
	retry.Stop()
	defer retry.Stop()
	spendDue, retrying := false, false
	backoff := minRetry
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.wake:
		case <-f.spent:
			if !spendDue && !retrying {
				spendDue = true
				spend.Reset(spendDelay)
			}
			continue
		case <-spend.C:
		case <-retry.C:
			retrying = false
		case <-f.kick:
			t.resync(f.ctx)
			if f.health.takeBack() {
				// The store is back after an outage: write at once.
				retrying = false
				retry.Stop()
				backoff = minRetry
			}
		case <-tick.C:
			t.resync(f.ctx)
		}
		if retrying {
			continue
		}
		spendDue = false
		spend.Stop()
		if t.flush(f.ctx) == nil {
			backoff = minRetry
			continue
		}
		if f.ctx.Err() != nil {
			return
		}
		retrying = true
		retry.Reset(jitter(backoff))
		backoff = min(2*backoff, maxRetry)
	}
}

// dropClaims removes from the queue the claims of latches that were reset
// here before their claim was written: written now, they would reopen the
// latch in the fleet. Their reset's telemetry is completed here, quietly:
// no OnTrip was called for them, so no OnReset is.
func (t *Transport) dropClaims(ctx context.Context) {
	f := t.fleet
	var dropped []*opened
	f.mu.Lock()
	kept := f.claims[:0]
	for _, o := range f.claims {
		if t.latches.wasReset(o) {
			dropped = append(dropped, o)
		} else {
			kept = append(kept, o)
		}
	}
	clear(f.claims[len(kept):])
	f.claims = kept
	f.mu.Unlock()
	for _, o := range dropped {
		if t.latches.quiet(o) {
			t.resetDone(ctx, o)
		}
	}
}

// flush writes the queued trips, mode switch and spend, and returns the
// first error. What the store does not take stays queued for the next try;
// a trip whose claim fails pages from this process. A flush that wrote
// anything records whether the store takes writes.
func (t *Transport) flush(ctx context.Context) error {
	// A store that refused a claim refuses the mode and spend too: one
	// failed call per attempt is enough.
	wrote, err := t.flushClaims(ctx)
	for _, next := range [...]func(context.Context) (bool, error){t.flushMode, t.flushSpend} {
		if err == nil && ctx.Err() == nil {
			var w bool
			w, err = next(ctx)
			wrote = wrote || w
		}
	}
	if wrote && ctx.Err() == nil {
		t.observed(opWrite, err)
	}
	return err
}

func (t *Transport) flushClaims(ctx context.Context) (wrote bool, err error) {
	f := t.fleet
	f.mu.Lock()
	claims := f.claims
	f.claims = nil
	f.mu.Unlock()
	for i, o := range claims {
		wrote = true
		claimed, cur, err := t.claimOne(ctx, o)
		if err != nil {
			f.mu.Lock()
			f.claims = append(claims[i:], f.claims...)
			f.mu.Unlock()
			if ctx.Err() != nil {
				// Shutdown interrupted the background loop: it writes
				// these itself, and pages what it cannot write.
				return wrote, err
			}
			// Page now rather than after the store takes it: one page
			// per process is better than none. The claim is retried,
			// and pages nobody twice.
			for _, o := range claims[i:] {
				t.pageAsync(o)
			}
			return wrote, err
		}
		switch {
		case claimed:
			t.pageAsync(o)
			if t.latches.wasReset(o) {
				// Reset here while its claim was on the way: the store
				// had nothing to clear then, so clear it now.
				var ch Change
				if t.call(ctx, func(ctx context.Context) (err error) {
					ch, err = f.store.Clear(ctx, o.Scope)
					return err
				}) == nil {
					t.applyCleared(ch.Scope, ch.Epoch)
				}
			}
		default:
			// Another process paged for it, or it is stale: the scope
			// was reset after this request was sent. A reset that came
			// here first left its telemetry to whoever announced the
			// trip, which is now this quiet end.
			if t.latches.quiet(o) {
				t.resetAsync(o)
			}
			if !cur.Open {
				t.applyCleared(cur.Scope, cur.Epoch)
			}
		}
	}
	return wrote, nil
}

// claimOne claims o in the store. A claim that takes longer than claimWait,
// or four times the store's recent answers when those were slower (a busy
// Redis, which still decides the claim: paging here meanwhile would page
// twice), pages from this process meanwhile.
func (t *Transport) claimOne(ctx context.Context, o *opened) (claimed bool, cur ScopeState, err error) {
	wait := min(max(claimWait, 4*time.Duration(t.fleet.slow.Load())), t.fleet.timeout)
	late := time.AfterFunc(wait, func() { t.pageAsync(o) })
	defer late.Stop()
	err = t.call(ctx, func(ctx context.Context) (err error) {
		claimed, cur, err = t.fleet.store.Claim(ctx, o.Trip)
		return err
	})
	return claimed, cur, err
}

// resync reconciles the registry with a snapshot of the store.
func (t *Transport) resync(ctx context.Context) {
	f := t.fleet
	var snap Snapshot
	err := t.call(ctx, func(ctx context.Context) (err error) {
		snap, err = f.store.Snapshot(ctx)
		return err
	})
	if ctx.Err() != nil {
		return
	}
	t.observed(opRead, err)
	if err != nil {
		return
	}
	open := make(map[string]bool, len(snap.Open))
	for _, tr := range snap.Open {
		if !validTrip(tr.Scope, tr.Epoch) {
			continue
		}
		open[tr.Scope] = true
		t.applyOpened(tr, tr.Epoch)
	}
	for scope, epoch := range snap.Epochs {
		if validTrip(scope, epoch) {
			t.applyCleared(scope, epoch)
		}
	}
	t.applySnapshotMode(snap)
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
	if f.spend == nil || len(t.budgets) == 0 {
		return
	}
	var spends []Spend
	err = t.call(ctx, func(ctx context.Context) (err error) {
		spends, err = f.spend.Spend(ctx)
		return err
	})
	if ctx.Err() != nil {
		return
	}
	t.observed(opSpendRead, err)
	if err == nil {
		t.applySpend(spends)
	}
}

// validTrip reports whether a scope and epoch from the store pass the
// checks a store makes on Claim: a store that holds others was written by
// something else, and its word on them is not taken.
func validTrip(scope string, epoch uint64) bool {
	return scope != "" && epoch <= MaxEpoch
}

// applyChange applies one change from the store's Watch.
func (t *Transport) applyChange(ch Change) {
	switch ch.Kind {
	case ChangeOpened, ChangeCleared:
		t.observed(opRead, nil)
		if !validTrip(ch.Scope, ch.Epoch) || (ch.Kind == ChangeCleared && ch.Epoch == 0) {
			t.invalidChange()
			return
		}
		if ch.Kind == ChangeOpened {
			t.applyOpened(ch.Trip, ch.Epoch)
		} else {
			t.applyCleared(ch.Scope, ch.Epoch)
		}
	case ChangeResync:
		t.observed(opRead, nil)
		signal(t.fleet.kick)
	case ChangeDisconnected:
		t.observed(opRead, errWatchLost)
	case ChangeInvalid:
		t.invalidChange()
	case ChangeMode:
		t.applyModeChange(ch)
	}
}

// invalidChange counts a change that was dropped as invalid.
func (t *Transport) invalidChange() {
	t.fleet.invalid.Add(1)
	t.tel.invalidChange()
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
// epoch newer than the one this process knows. It runs on the store's
// goroutines, so the resets' hooks go to the hook goroutine.
func (t *Transport) applyCleared(scope string, epoch uint64) {
	for _, o := range t.latches.clearEpoch(scope, epoch) {
		t.resetAsync(o)
	}
}

// validMode reports whether a mode and its epoch from the store pass the
// checks a store makes on SetMode.
func validMode(m Mode, epoch uint64) bool {
	return (m == ModeEnforce || m == ModeObserve) && epoch > 0 && epoch <= MaxEpoch
}

// applyModeChange applies a ChangeMode from the store's Watch; one that
// fails the checks SetMode makes is dropped and counted as invalid.
func (t *Transport) applyModeChange(ch Change) {
	t.observed(opRead, nil)
	if !validMode(ch.Mode, ch.Epoch) {
		t.invalidChange()
		return
	}
	if t.fleet.mode.store != nil {
		t.applyMode(ch.Mode, ch.Epoch)
	}
}

// applySnapshotMode takes the fleet's mode from a Snapshot, when the store
// shares it and one was set. A mode that fails the checks SetMode makes was
// written by something else, and is not taken. A store that holds no mode
// after this process heard a switch lost it (Redis restarted without its
// data): the mode is written again, as lost latches are claimed again, so
// that a replica started since does not take its WithMode. Each replica
// looks before it writes (failed), so that a switch made meanwhile wins.
func (t *Transport) applySnapshotMode(snap Snapshot) {
	f := t.fleet
	if f.mode.store == nil {
		return
	}
	if validMode(snap.Mode, snap.ModeEpoch) {
		t.applyMode(snap.Mode, snap.ModeEpoch)
		return
	}
	f.mode.mu.Lock()
	lost := snap.ModeEpoch == 0 && f.mode.epoch > 0 && f.mode.want == nil
	if lost {
		f.mode.want = &modeWrite{mode: f.mode.mode, base: f.mode.epoch, failed: true}
	}
	f.mode.mu.Unlock()
	if lost {
		signal(f.wake)
	}
}
