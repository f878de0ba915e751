package quotabreaker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"strings"
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
// slow pager holds up neither the fleet nor Shutdown.

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

	// spendMu is held while spend is taken from the queue and written, so
	// that ResetBudget, which takes it, never sees a write land after it.
	spendMu sync.Mutex

	health health // what the log and the metrics last said; loop and Watch goroutines

	shutdown    sync.Once
	shutdownErr error // set once shutdown is done
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

// spendWrite is spend sent to the store, kept until the store
// acknowledges it.
type spendWrite struct {
	sk spendKey
	k  *budgetKey
	w  SpendWrite
}

// storeKey is the key under which a budget key's spend is shared: budgets
// of one Transport may count the same key.
// The budget's name goes first with its length, so that budget "a" with key
// "b/c" and budget "a/b" with key "c" never share a spend.
func (sk spendKey) storeKey() string { return budgetPrefix(sk.budget.Name) + sk.key }

func budgetPrefix(name string) string { return strconv.Itoa(len(name)) + ":" + name + "/" }

// newFleet links a Transport to store.
func newFleet(store LatchStore, cfg *config) *fleet {
	f := &fleet{store: store, timeout: cfg.storeTimeout, resync: cfg.storeResync, log: cfg.logger}
	f.spend, _ = store.(SpendStore)
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
		if err == nil && ctx.Err() == nil && len(f.claims)+len(f.spends)+len(f.unacked) > 0 {
			// Trips or spend arrived while it wrote: once more.
			f.mu.Unlock()
			continue
		}
		f.closed = true
		left := f.claims
		f.claims = nil
		lost := len(f.spends) + len(f.unacked)
		f.spends, f.unacked = nil, nil
		f.mu.Unlock()
		for _, o := range left {
			t.pageAsync(o)
		}
		if err == nil {
			err = ctx.Err()
		}
		if err != nil && len(left)+lost > 0 {
			return fmt.Errorf("quotabreaker: shutdown: %d trips (paged from this process) and %d budget keys' spend not written: %w", len(left), lost, err)
		}
		return nil
	}
}

// hookKey marks the context of a hook run by a hookRunner, with the
// Transport it belongs to.
type hookKey struct{}

// hookRunner runs hooks on a goroutine of its own, one at a time and in the
// order given, so that OnTrip runs before OnReset for one trip, and so that
// neither the store's goroutines nor Shutdown wait on user code. The
// goroutine exists only while there are hooks to run.
type hookRunner struct {
	mu    sync.Mutex
	queue []func()      // guarded by mu
	idle  chan struct{} // guarded by mu; nil while no goroutine runs, closed when it stops
}

// run queues fn; it never blocks.
func (h *hookRunner) run(fn func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queue = append(h.queue, fn)
	if h.idle == nil {
		h.idle = make(chan struct{})
		go h.drain(h.idle)
	}
}

func (h *hookRunner) drain(idle chan struct{}) {
	for {
		h.mu.Lock()
		if len(h.queue) == 0 {
			h.idle = nil
			h.mu.Unlock()
			close(idle)
			return
		}
		fn := h.queue[0]
		h.queue[0] = nil
		h.queue = h.queue[1:]
		h.mu.Unlock()
		fn()
	}
}

// wait waits until every hook queued has returned, or ctx is done.
func (h *hookRunner) wait(ctx context.Context) error {
	h.mu.Lock()
	idle := h.idle
	h.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hookContext is the context of a hook run on the runner.
func (t *Transport) hookContext() context.Context {
	return context.WithValue(context.Background(), hookKey{}, t)
}

// pageAsync has OnTrip called for o on the hook goroutine, unless it was
// called (or is due) already.
func (t *Transport) pageAsync(o *opened) {
	if t.latches.markPaging(o) {
		t.fleet.hooks.run(func() { t.page(t.hookContext(), o) })
	}
}

// resetAsync completes o's reset (telemetry, OnReset) on the hook
// goroutine, after any OnTrip queued before it.
func (t *Transport) resetAsync(o *opened) {
	t.fleet.hooks.run(func() { t.resetDone(t.hookContext(), o) })
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

// jitter returns a duration drawn at random between d/2 and d.
func jitter(d time.Duration) time.Duration {
	return d/2 + mrand.N(d/2+1)
}

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
	if err == nil {
		d := int64(time.Since(start))
		s := &t.fleet.slow
		s.Store(max(d, s.Load()-s.Load()/8)) // a race loses one sample: it is an estimate
	}
	return err
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

// claim queues a trip recorded here for the store; OnTrip waits for the
// claim, so that one process in the fleet pages, unless the store is not
// taking writes now: then it pages at once (the claim, written later,
// pages nobody twice). After Shutdown it pages on the caller's goroutine,
// as without a store.
func (t *Transport) claim(ctx context.Context, o *opened) {
	f := t.fleet
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		t.latches.markPaging(o)
		t.page(ctx, o)
		return
	}
	f.claims = append(f.claims, o)
	f.mu.Unlock()
	if !f.writesUp.Load() {
		t.pageAsync(o)
	}
	signal(f.wake)
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

// addSpend queues micros of spend of key's budget for the store.
func (t *Transport) addSpend(b *budget, key string, k *budgetKey, micros int64) {
	f := t.fleet
	sk := spendKey{budget: b, key: key, period: Period{Start: k.start, End: k.end}}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return // counted here only: see Shutdown
	}
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
	// left after a failed write goes with the next retry.
	if first {
		signal(f.spent)
	}
}

// dropSpend forgets the spend queued, or sent without an acknowledgement,
// for sk: ResetBudget zeroes it in the store. It requires that f.spendMu
// is held, so that no write of it is under way.
func (f *fleet) dropSpend(sk spendKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.spends, sk)
	delete(f.unacked, sk)
}

// flush writes the queued trips and spend, and returns the first error.
// What the store does not take stays queued for the next try; a trip whose
// claim fails pages from this process. A flush that wrote anything
// records whether the store takes writes.
func (t *Transport) flush(ctx context.Context) error {
	wrote, err := t.flushClaims(ctx)
	// A store that refused a claim refuses spend too: one failed call per
	// attempt is enough.
	if err == nil && ctx.Err() == nil {
		w, serr := t.flushSpend(ctx)
		wrote = wrote || w
		if err == nil {
			err = serr
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

func (t *Transport) flushSpend(ctx context.Context) (wrote bool, err error) {
	f := t.fleet
	if f.spend == nil {
		return false, nil
	}
	f.spendMu.Lock()
	defer f.spendMu.Unlock()
	f.mu.Lock()
	writes := make([]*spendWrite, 0, len(f.unacked)+len(f.spends))
	for _, w := range f.unacked {
		writes = append(writes, w)
	}
	for sk, s := range f.spends {
		if f.unacked[sk] != nil {
			continue // after its unacknowledged write
		}
		f.seq++
		w := &spendWrite{sk: sk, k: s.k, w: SpendWrite{Key: sk.storeKey(), Period: sk.period, Micros: s.micros, Writer: f.writer, Seq: f.seq}}
		writes = append(writes, w)
		f.unacked[sk] = w
		delete(f.spends, sk)
	}
	f.mu.Unlock()
	for _, w := range writes {
		if ctx.Err() != nil {
			break
		}
		wrote = true
		var total int64
		if werr := t.call(ctx, func(ctx context.Context) (err error) {
			total, err = f.spend.AddSpend(ctx, w.w)
			return err
		}); werr != nil {
			if err == nil {
				err = werr
			}
			continue
		}
		f.mu.Lock()
		delete(f.unacked, w.sk)
		f.mu.Unlock()
		// The store's total is the truth, lower too after a reset in
		// another process.
		addSat(&w.k.flushed, w.w.Micros)
		w.k.fleet.Store(total)
		if terr := t.claimThresholds(ctx, w.sk, w.k); terr != nil && err == nil {
			err = terr
		}
	}
	return wrote, err
}

// claimThresholds fires OnBudget for the thresholds the fleet's total has
// crossed that no process has claimed yet.
func (t *Transport) claimThresholds(ctx context.Context, sk spendKey, k *budgetKey) error {
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
		if err := t.call(ctx, func(ctx context.Context) (err error) {
			claimed, err = t.fleet.spend.ClaimThreshold(ctx, sk.storeKey(), sk.period, int(math.Round(th*100)))
			return err
		}); err != nil {
			return err
		}
		if k.fired.Or(bit)&bit == 0 && claimed {
			st := b.status(sk.key, k, th)
			t.fleet.hooks.run(func() { callHook("OnBudget", t.cfg.onBudget, t.hookContext(), st) })
		}
	}
	return nil
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
