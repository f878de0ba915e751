package quotabreaker

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// This file holds what a Transport asks of a store (LatchStore, SpendStore
// and the values they trade), how it calls the store (call, with the
// store's timeout) and judges its health from the answers (once per change
// of state, never per call), and Shutdown, which ends its work with the
// store.

// LatchStore shares latches between the Transports of many processes, so
// that a fleet of replicas holds one latch per scope and pages once per
// trip. It is the part of a store that WithStore requires; a store that also
// implements SpendStore shares the spend of budgets too. The Redis
// implementation, of both, is in the nested module
// github.com/quotabreaker/quotabreaker/redisstore.
//
// Every scope has a reset epoch: a counter that starts at 0 and that only
// Clear and ClearAll advance. A Trip carries the epoch its scope had when the
// tripping request was sent, so that an answer to a request sent before a
// reset cannot reopen the latch anywhere.
//
// A Transport calls a store off the request path, with contexts that carry a
// deadline, and decides requests from its own memory, which Watch and
// Snapshot keep current. A store's methods are safe for concurrent use and
// return by ctx's deadline, whether or not the store can be reached.
type LatchStore interface {
	// Claim records tr as the open latch of tr.Scope, unless one is
	// already recorded there or tr is stale: tr.Epoch is below the scope's
	// epoch, so a reset happened after the tripping request was sent.
	// claimed reports whether this call recorded tr; across every process
	// sharing the store exactly one Claim per open latch reports true, and
	// only its caller should call OnTrip. A trip whose Epoch is above the
	// scope's epoch (the store lost its state) is recorded and raises the
	// epoch to tr.Epoch. current is the scope's state after the call, when
	// err is nil. A store refuses (with an error) a trip with an empty
	// Scope or an Epoch above MaxEpoch.
	Claim(ctx context.Context, tr Trip) (claimed bool, current ScopeState, err error)

	// Clear closes scope's latch and advances its epoch, if the latch is
	// open. It returns the change it made, a ChangeCleared whose Trip is
	// the latch that was open, and every Watch receives the same change.
	// When scope is not open it writes nothing, and returns a ChangeCleared
	// with the scope's epoch and a zero Trip (empty Scope): resets of
	// scopes that are not open must not grow the store.
	Clear(ctx context.Context, scope string) (Change, error)

	// ClearAll clears every open latch as one atomic step and returns a
	// ChangeCleared for each, sorted by scope; never nil. Epochs of scopes
	// that were not open stay as they are.
	ClearAll(ctx context.Context) ([]Change, error)

	// Snapshot returns every open latch and every scope's epoch, read as
	// of one moment. A store that is still loading its data (Redis after
	// a restart) waits for it, within ctx, rather than answer empty.
	Snapshot(ctx context.Context) (Snapshot, error)

	// Watch calls fn for every change any process makes, until ctx is
	// done; it then returns nil. A non-nil error means that it cannot
	// watch at all. fn is called on Watch's goroutine, one change at a
	// time, and should return promptly.
	//
	// Changes can be lost while the store is unreachable. Watch therefore
	// calls fn with a ChangeResync when it starts watching and again after
	// every reconnection, once changes are flowing again: the caller then
	// takes a Snapshot and reconciles. When it loses the store, it calls
	// fn with a ChangeDisconnected, once. A change it receives but cannot
	// read, or that fails the checks Claim makes, it drops and reports
	// with a ChangeInvalid. Changes can also arrive late (older than a
	// Snapshot taken since), so apply them by epoch: see Change.
	Watch(ctx context.Context, fn func(Change)) error
}

// SpendStore shares the spend of budgets between the Transports of many
// processes, so that a budget counts the fleet's spend and each threshold's
// OnBudget fires once across the fleet. A store given to WithStore that
// implements it too is used for it. Its methods follow LatchStore's rules:
// safe for concurrent use, and bounded by ctx.
type SpendStore interface {
	// AddSpend adds w.Micros (micro-dollars; negative for a refund) to the
	// spend of budget key w.Key in period w.Period and returns the total
	// across every process. It applies a write at most once: see
	// SpendWrite. A store may forget a period's spend some time after
	// its end.
	AddSpend(ctx context.Context, w SpendWrite) (total int64, err error)

	// ClaimThreshold reports whether this call is the first, across every
	// process, to claim threshold pct of budget key in period p: each
	// threshold's hook fires once per period across the fleet.
	ClaimThreshold(ctx context.Context, key string, p Period, pct int) (claimed bool, err error)

	// Spend returns the spend of every budget key in every period the
	// store still holds, sorted by period start and then key; never nil.
	Spend(ctx context.Context) ([]Spend, error)

	// ResetSpend sets the spend of budget key in period p to zero and
	// forgets its claimed thresholds, so that they can fire again.
	ResetSpend(ctx context.Context, key string, p Period) error
}

// ModeStore shares the fleet's Mode between the Transports of many
// processes, so that one switch (from any replica's Handler or SetMode, or
// from redisstore's command) turns enforcement on or off in every replica.
// A store given to WithStore that implements it too is used for it: the
// Transport then follows the mode the store holds (see Transport.SetMode).
// Its methods follow LatchStore's rules: safe for concurrent use, and
// bounded by ctx.
//
// The mode has an epoch of its own, which every SetMode advances, so that
// a late message never undoes a newer switch: apply a mode whose epoch is
// above the one you know, ignore the others. A store must give each SetMode
// an epoch above every one it gave before, even after it lost its data
// (redisstore takes the larger of the last epoch plus one and Redis's clock
// in milliseconds), or processes that remember a higher epoch would ignore
// every later switch. Epoch 0 means that no mode was ever set.
type ModeStore interface {
	// SetMode records m as the fleet's mode at a new epoch, and returns
	// the change it made, a ChangeMode, which every Watch receives too.
	// A store refuses (with an error) a mode other than ModeEnforce and
	// ModeObserve, and an epoch that would pass MaxEpoch.
	SetMode(ctx context.Context, m Mode) (Change, error)
}

// Store is a store of both latches and spend, as redisstore's is.
type Store interface {
	LatchStore
	SpendStore
}

// MaxEpoch is the largest reset epoch a store must hold: 2^53-1, the
// largest integer that Lua (Redis's scripts) and JSON numbers read in
// JavaScript hold exactly. A Trip or Change with a larger Epoch is invalid.
const MaxEpoch = 1<<53 - 1

// SpendWrite is one addition to a budget key's spend in a period.
type SpendWrite struct {
	// Key names the budget and its key (see SplitSpendKey).
	Key    string
	Period Period
	Micros int64
	// Writer and Seq make a write idempotent. Writer names the writing
	// Transport (random, one per Transport) and Seq numbers its writes,
	// ascending for each Key and Period. A store applies a write only if
	// its Seq is above the last it applied for the same Writer, Key and
	// Period, so that a write retried after a timeout, which the store
	// had in fact applied, is not counted twice. An empty Writer turns
	// the check off.
	Writer string
	Seq    uint64
}

// ScopeState is what a Store holds for one scope.
type ScopeState struct {
	Scope string
	// Epoch is the scope's reset epoch: how many times it was cleared.
	Epoch uint64
	// Open reports whether the scope's latch is open; Trip is then the
	// trip that opened it.
	Open bool
	Trip Trip
}

// Snapshot is the state of every scope a Store knows, read as of one moment.
type Snapshot struct {
	// Open holds the open latches, sorted by scope; never nil.
	Open []Trip
	// Epochs holds the epoch of every scope that has one above 0; a scope
	// that is absent has epoch 0.
	Epochs map[string]uint64
	// Mode is the fleet's mode, as a ModeStore holds it, and ModeEpoch
	// the epoch of its last switch. ModeEpoch 0 means that no mode was
	// ever set (or that the store is no ModeStore): then Mode means
	// nothing, and each Transport keeps its own (WithMode's).
	Mode      Mode
	ModeEpoch uint64
}

// ChangeKind says what a Change is.
type ChangeKind int

// The kinds of Change.
const (
	// ChangeOpened: Trip opened Scope's latch.
	ChangeOpened ChangeKind = iota + 1
	// ChangeCleared: Scope's latch was cleared and its epoch advanced to
	// Epoch.
	ChangeCleared
	// ChangeResync: changes may have been lost; take a Snapshot. Watch
	// sends it once changes flow again, so that nothing after the
	// Snapshot is missed.
	ChangeResync
	// ChangeDisconnected: Watch lost the store (or could not reach it
	// when it started); changes may be missed until the next
	// ChangeResync. It comes once per loss, not once per failed attempt.
	ChangeDisconnected
	// ChangeInvalid: Watch received a change it could not read or that
	// failed the checks a write gets (an empty scope, an epoch above
	// MaxEpoch), and dropped it. The Transport counts these in the
	// quotabreaker.store.invalid_changes metric. A ChangeMode with a mode
	// other than ModeEnforce and ModeObserve, or an Epoch of 0 or above
	// MaxEpoch, is invalid too.
	ChangeInvalid
	// ChangeMode: the fleet's mode was switched to Mode at mode epoch
	// Epoch (see ModeStore). Scope and Trip are empty.
	ChangeMode
)

// Change is one change to a Store's state, as Watch, Clear and ClearAll
// report it.
//
// Changes carry epochs so that a late one does no harm. For a scope whose
// known epoch is e: apply a ChangeOpened when Epoch >= e (then e = Epoch),
// and a ChangeCleared when Epoch > e (then e = Epoch); ignore the others.
// The mode has one epoch, apart from the scopes': apply a ChangeMode when
// its Epoch is above the mode epoch you know.
type Change struct {
	Kind ChangeKind
	// Scope is the scope that changed; empty for ChangeResync,
	// ChangeDisconnected, ChangeInvalid and ChangeMode.
	Scope string
	// Epoch is the scope's epoch after the change: the trip's epoch for
	// ChangeOpened, the advanced one for ChangeCleared; for ChangeMode,
	// the mode's new epoch.
	Epoch uint64
	// Mode is the fleet's new mode, for ChangeMode.
	Mode Mode
	// Trip is the trip that opened the latch (ChangeOpened) or the one
	// that was open when it was cleared (ChangeCleared; zero, with an
	// empty Scope, when the latch was not open).
	Trip Trip
}

// SplitSpendKey splits the Key of a SpendWrite or a Spend into the name of
// the budget and the budget key, for a store or a tool that shows them; ok
// is false for a key no Transport wrote. The form, "<length of the
// name>:<name>/<key>", keeps budget "a" with key "b/c" apart from budget
// "a/b" with key "c".
func SplitSpendKey(storeKey string) (budget, key string, ok bool) {
	n, rest, found := strings.Cut(storeKey, ":")
	l, err := strconv.Atoi(n)
	if !found || err != nil || l < 0 || l >= len(rest) || rest[l] != '/' || strconv.Itoa(l) != n {
		return "", "", false
	}
	return rest[:l], rest[l+1:], true
}

// Spend is the spend of one budget key in one period.
type Spend struct {
	// Key names the budget and its key, as SpendWrite.Key does.
	Key    string
	Period Period
	// Micros is the spend in micro-dollars.
	Micros int64
	// Thresholds are the thresholds claimed so far, ascending.
	Thresholds []int
}

// opKind is what a store operation does, for the store's state.
type opKind int

const (
	opRead      opKind = iota // Snapshot, Watch
	opWrite                   // Claim, AddSpend, ClaimThreshold
	opSpendRead               // Spend
)

// storeState is the store's state as the log and the metrics report it.
type storeState int

const (
	stateUp       storeState = iota
	stateReadOnly            // reads work, writes (or spend reads) fail
	stateDown                // reads fail: unreachable
)

func (s storeState) String() string {
	switch s {
	case stateReadOnly:
		return "read-only"
	case stateDown:
		return "down"
	}
	return "up"
}

// health follows the outcomes of store operations and says when the store's
// state changes: once per change, never once per failed call.
type health struct {
	mu    sync.Mutex
	fault [3]bool   // by opKind: the last outcome failed; guarded by mu
	fails int       // failed calls since the state last changed; guarded by mu
	since time.Time // when it last changed; guarded by mu
	back  bool      // it went from down to reachable; the loop takes it; guarded by mu
}

func (h *health) stateLocked() storeState {
	switch {
	case h.fault[opRead]:
		return stateDown
	case h.fault[opWrite] || h.fault[opSpendRead]:
		return stateReadOnly
	}
	return stateUp
}

// takeBack reports, once, that the store came back from being down.
func (h *health) takeBack() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.back
	h.back = false
	return b
}

// observed records the outcome of an operation of kind k. A change of the
// store's state is logged once, with the number of calls that failed in the
// state it leaves, and recorded in the quotabreaker.store.up and
// quotabreaker.store.writable metrics. When the store is reachable again
// after being down, it asks the loop for a resync and an early write.
func (t *Transport) observed(k opKind, err error) {
	f := t.fleet
	h := &f.health
	now := t.cfg.now()
	h.mu.Lock()
	from := h.stateLocked()
	if err != nil {
		h.fails++
	}
	h.fault[k] = err != nil
	to := h.stateLocked()
	if from == to {
		h.mu.Unlock()
		return
	}
	fails, lasted := h.fails, now.Sub(h.since)
	h.fails, h.since = 0, now
	if from == stateDown {
		h.back = true
	}
	f.readsUp.Store(to != stateDown)
	f.writesUp.Store(to == stateUp)
	t.tel.storeState(to != stateDown, to == stateUp)
	h.mu.Unlock()

	// The error says what failed (a connection refused, READONLY, NOPERM,
	// a corrupt value), never a key's contents or a password: stores'
	// errors name operations and budget keys, which are not secrets.
	attrs := []any{"state", to.String(), "previous_state", from.String(),
		"failed_calls", fails, "previous_state_lasted", lasted.Round(time.Millisecond).String()}
	switch to {
	case stateDown:
		f.log.Warn("quotabreaker: store unreachable; deciding from this process's latches and paging from here until it is back",
			append(attrs, "error", errString(err))...)
	case stateReadOnly:
		f.log.Warn("quotabreaker: store answers but refuses writes; latches still follow it, trips page from this process, and trips and spend are kept and retried with backoff",
			append(attrs, "error", errString(err))...)
	default:
		f.log.Info("quotabreaker: store up again", attrs...)
	}
	if from == stateDown {
		signal(f.kick)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Shutdown stops the Transport's work with its store, in the manner of
// http.Server.Shutdown: it stops the background goroutines, writes the
// trips and spend still queued (spend waits up to 100 ms to be batched, so
// the last answers' spend is usually queued), pages from this process for
// every trip whose claim it cannot write, and waits for the hooks already
// due (OnTrip, OnReset, OnBudget) to return. It returns when all that is
// done, or when ctx is done: then it returns ctx's error, or an error that
// says what it could not write, and the hooks still running finish on their
// own goroutine.
//
// Requests can still be sent afterwards, decided by this process alone: a
// trip then pages at once, on the request's goroutine, as without a store,
// and its spend counts only here. Shutdown may be called more than once;
// later calls only wait for the hooks. A hook that shuts the Transport down
// passes its own ctx, so that Shutdown does not wait for the hook that
// called it. Without a store, Shutdown does nothing.
func (t *Transport) Shutdown(ctx context.Context) error {
	f := t.fleet
	if f == nil {
		return nil
	}
	f.shutdown.Do(func() { f.shutdownErr = t.shutdownFleet(ctx) })
	err := f.shutdownErr
	if caller, _ := ctx.Value(hookKey{}).(*Transport); caller != t {
		if herr := f.hooks.wait(ctx); herr != nil && err == nil {
			err = fmt.Errorf("quotabreaker: shutdown: hooks still running: %w", herr)
		}
	}
	return err
}

// Close is Shutdown with a deadline of the store's timeout (see
// WithStoreTimeout): time for the last writes and for the hooks they make.
// From a hook, which Close cannot tell apart, Close waits out that deadline
// for the hook that called it; call Shutdown with the hook's ctx instead.
// Without a store, Close does nothing. It is safe to call more than once.
func (t *Transport) Close() error {
	if t.fleet == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.fleet.timeout)
	defer cancel()
	return t.Shutdown(ctx)
}

// shutdownFleet is Shutdown's work, done once.
func (t *Transport) shutdownFleet(ctx context.Context) error {
	f := t.fleet
	// Calls in flight are interrupted; what they held is queued again.
	f.cancel()
	f.done.Wait()
	for {
		err := t.flush(ctx)
		f.mu.Lock()
		// Trips, spend or a mode arrived while it wrote: once more. Spend
		// closes after the first round (takeDirty(true)), so that traffic
		// cannot keep Shutdown writing: later spend counts here only.
		if err == nil && ctx.Err() == nil && (len(f.claims) > 0 || t.modePending() || f.takeDirty(true)) {
			f.mu.Unlock()
			continue
		}
		f.closed = true
		left := f.claims
		f.claims = nil
		f.takeDirty(true) // after an error too: what it takes is lost
		lost := len(f.unacked)
		for sk := range f.spends {
			if f.unacked[sk] == nil {
				lost++ // a key queued again behind its unacknowledged write counts once
			}
		}
		f.spends, f.unacked = nil, nil
		f.mu.Unlock()
		modeLost := t.dropModeWrite()
		for _, o := range left {
			t.pageAsync(o)
		}
		if err == nil {
			err = ctx.Err()
		}
		if err != nil && (len(left)+lost > 0 || modeLost) {
			what := fmt.Sprintf("%d trips (paged from this process) and %d budget keys' spend", len(left), lost)
			switch {
			case modeLost && len(left)+lost == 0:
				what = "the mode switch (kept in this process)"
			case modeLost:
				what += " and the mode switch (kept in this process)"
			}
			return fmt.Errorf("quotabreaker: shutdown: %s not written: %w", what, err)
		}
		return nil
	}
}

// jitter returns a duration drawn at random between d/2 and d.
func jitter(d time.Duration) time.Duration { return d/2 + mrand.N(d/2+1) }

// signal wakes the loop without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// call runs one store operation with the store's timeout on top of ctx.
func (t *Transport) call(ctx context.Context, op func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, t.fleet.timeout)
	defer cancel()
	start := time.Now()
	err := op(ctx)
	if s := &t.fleet.slow; err == nil {
		s.Store(max(int64(time.Since(start)), s.Load()-s.Load()/8)) // a race loses one sample: it is an estimate
	}
	return err
}
