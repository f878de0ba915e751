package quotabreaker

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/metric"
)

// Cause says what opened a latch.
type Cause string

// The causes of a Trip. New causes may be added.
const (
	// CauseAnswer: an error answer from the provider.
	CauseAnswer Cause = "answer"
	// CauseStream: an error event inside a successful (200) stream.
	CauseStream Cause = "stream"
	// CauseBudget: a budget reached its hard limit.
	CauseBudget Cause = "budget"
)

// Trip describes an open latch: what opened it, when, and in which mode.
// It is a record for people and their tools; its JSON form (the field tags
// below, matching the telemetry's attribute names) is part of the API.
type Trip struct {
	// Scope names the latch, as WithScope or DefaultScope made it; it is
	// what Reset takes.
	Scope string `json:"scope"`
	// Cause says what opened the latch.
	Cause Cause `json:"cause"`
	// Mode is the Transport's mode when the latch opened: in ModeObserve
	// it was recorded and reported, but refused nothing.
	Mode Mode `json:"mode"`
	// classify.Class is the class of the answer or event that opened the latch; it
	// is the error.type attribute of its span.
	Class classify.Class `json:"class"`
	// classify.Provider is the provider that answered, when known.
	Provider classify.Provider `json:"provider,omitempty"`
	// Code and Type are the provider's own error code and type, verbatim
	// (quotabreaker.error.code and quotabreaker.error.type).
	Code string `json:"error_code,omitempty"`
	Type string `json:"error_type,omitempty"`
	// StatusCode is the HTTP status of the tripping answer.
	StatusCode int `json:"status_code,omitempty"`
	// RequestID is the provider's id for the tripping answer (x-request-id,
	// request-id or apim-request-id), for support tickets.
	RequestID string `json:"request_id,omitempty"`
	// At is when the latch opened.
	At time.Time `json:"at"`
	// Epoch is the scope's reset epoch when the tripping request was sent
	// (see Store); 0 without a store.
	Epoch uint64 `json:"epoch,omitempty"`
}

// maxIdleLatches bounds the closed latches kept for scopes with no request
// in flight. A closed latch with nothing in flight holds no information, so
// dropping it is free; open latches are never dropped.
const maxIdleLatches = 4096

// maxIDsPerLatch bounds the ids that find one latch.
const maxIDsPerLatch = 8

// latch is one scope's breaker. It leaves the registry only when it is
// reset (a fresh one replaces it on the next request) or, while closed and
// unused, to bound memory.
type latch struct {
	scope    string
	ids      []uint64                            // the ids that find it; guarded by latches.mu
	cb       *gobreaker.CircuitBreaker[struct{}] // the gate: open refuses
	inflight atomic.Int64                        // requests between acquire and release
	trip     atomic.Pointer[opened]              // set under latches.mu, in the step that opens cb
	reset    atomic.Bool                         // set under latches.mu when Reset removed it
	epoch    atomic.Uint64                       // the scope's reset epoch in the Store
}

func (l *latch) release() { l.inflight.Add(-1) }

// state names l's state for the quotabreaker.breaker.state attribute.
func (l *latch) state() string {
	if l.trip.Load() != nil && !l.reset.Load() {
		return "open"
	}
	return "closed"
}

// opened is an open latch's record: what to report and what to answer,
// prepared once so that refusing a request costs little.
type opened struct {
	Trip
	refusal refusal
	// The short-circuit counter's attributes, by Mode: built on the first
	// refusal (see shortCircuitSets), then kept.
	shortCircuits atomic.Pointer[[2][]metric.AddOption]

	// OnReset must not overtake OnTrip: a pager would resolve an incident
	// before opening it. These fields are guarded by latches.mu.
	announced bool // OnTrip has returned, or will never run here
	resetOwed bool // reset before that: whoever announces calls OnReset
	paging    bool // OnTrip was called for it here
	quiet     bool // another process paged for it: no OnTrip, no OnReset here
	wasReset  bool // its latch was reset here
}

// breakerSettings make a gobreaker breaker into a latch: it is told only
// of tripping outcomes (never of transport errors, successes or panics in
// the base), it opens on the first one, and since its open timeout is about
// 292 years it never goes half-open, so only Reset, which replaces it,
// closes it. Requests ask its State before they are sent.
func breakerSettings(name string) gobreaker.Settings {
	return gobreaker.Settings{
		Name:         name,
		Timeout:      time.Duration(math.MaxInt64),
		ReadyToTrip:  tripOnFirstFailure,
		IsSuccessful: notTripped,
	}
}

func tripOnFirstFailure(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 }

func notTripped(err error) bool { return err != errTripped }

// errTripped is what a latch's breaker is told about a tripping answer.
var errTripped = errors.New("quotabreaker: tripping answer")

// latches is the registry of a Transport's latches. A latch is known by its
// name; ids are a per-request shortcut to it, and several ids may lead to
// one latch (a WithScope name equal to a default scope's, say).
type latches struct {
	mu      sync.RWMutex
	byID    map[uint64]*latch // guarded by mu
	byName  map[string]*latch // guarded by mu
	closed  int               // closed latches in byName; guarded by mu
	evictAt int               // closed count that triggers an eviction; guarded by mu
	epochs  map[string]uint64 // the Store's reset epoch of each scope; guarded by mu
	// open counts the open latches. It is allocated apart from the
	// Transport so that a cleanup can read it once the Transport is gone.
	open *atomic.Int64
}

// acquire returns the latch for id, creating it (named by name) if needed,
// and counts a request in flight on it until release.
func (ls *latches) acquire(id uint64, name func() string) *latch {
	ls.mu.RLock()
	l := ls.byID[id]
	if l != nil {
		l.inflight.Add(1) // under mu, so eviction sees it
	}
	ls.mu.RUnlock()
	if l != nil {
		return l
	}

	// Name outside the lock: it hashes credentials.
	n := name()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l = ls.byID[id]; l == nil {
		if l = ls.byName[n]; l == nil {
			l = ls.newLatchLocked(n)
		}
		// Requests whose ids differ only where the name cannot show it (an
		// overlong or invalid organization header) share one latch; past a
		// few such ids, the others take this slow path every time rather
		// than make an open latch grow without bound.
		if len(l.ids) < maxIDsPerLatch {
			l.ids = append(l.ids, id)
			ls.byID[id] = l
		}
	}
	l.inflight.Add(1)
	return l
}

// newLatchLocked adds a closed latch named n; it requires that ls.mu is
// held for writing.
func (ls *latches) newLatchLocked(n string) *latch {
	if ls.byName == nil {
		ls.byID = make(map[uint64]*latch)
		ls.byName = make(map[string]*latch)
	}
	if ls.closed >= max(ls.evictAt, maxIdleLatches) {
		ls.evictIdleLocked()
	}
	l := &latch{scope: n, cb: gobreaker.NewCircuitBreaker[struct{}](breakerSettings(n))}
	l.epoch.Store(ls.epochs[n])
	ls.byName[n] = l
	ls.closed++
	return l
}

// evictIdleLocked drops closed latches with no request in flight, and sets
// the next eviction at twice what is left, so that a registry full of busy
// latches is not scanned on every new scope. It requires that ls.mu is held
// for writing.
func (ls *latches) evictIdleLocked() {
	for n, l := range ls.byName {
		if l.inflight.Load() == 0 && l.trip.Load() == nil {
			ls.removeLocked(n, l)
			ls.closed--
		}
	}
	ls.evictAt = 2 * ls.closed
}

func (ls *latches) removeLocked(name string, l *latch) {
	delete(ls.byName, name)
	for _, id := range l.ids {
		delete(ls.byID, id)
	}
}

// record stores o as l's trip and opens l's breaker, in one step under
// ls.mu: a request that finds the trip recorded (OpenLatches lists it) also
// finds the breaker open. It reports false, storing nothing, when l already
// tripped or was reset since the request started, so exactly one caller
// per trip sees true.
func (ls *latches) record(l *latch, o *opened) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l.reset.Load() || l.trip.Load() != nil {
		return false
	}
	ls.openLocked(l, o)
	return true
}

// openLocked stores o as l's trip and opens l's breaker by reporting one
// tripping outcome to it; it requires that ls.mu is held for writing.
func (ls *latches) openLocked(l *latch, o *opened) {
	l.trip.Store(o)
	l.cb.Execute(tripped)
	ls.closed--
	ls.open.Add(1)
}

// tripped is the outcome that opens a latch's breaker.
func tripped() (struct{}, error) { return struct{}{}, errTripped }

// openQuiet opens the latch named o.Scope with o, which another process
// recorded and announced, unless the scope was reset since o.Epoch or is
// open already. It reports whether it opened it.
func (ls *latches) openQuiet(o *opened) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	name := o.Scope
	if o.Epoch < ls.epochs[name] {
		return false
	}
	ls.raiseEpochLocked(name, o.Epoch)
	l := ls.byName[name]
	if l == nil {
		l = ls.newLatchLocked(name)
	}
	if l.trip.Load() != nil {
		return false
	}
	o.quiet, o.announced = true, true
	ls.openLocked(l, o)
	return true
}

// raiseEpochLocked records that scope's epoch is at least epoch; it
// requires that ls.mu is held for writing.
func (ls *latches) raiseEpochLocked(scope string, epoch uint64) {
	if epoch <= ls.epochs[scope] {
		return
	}
	if ls.epochs == nil {
		ls.epochs = make(map[string]uint64)
	}
	ls.epochs[scope] = epoch
	if l := ls.byName[scope]; l != nil && l.trip.Load() == nil {
		l.epoch.Store(epoch)
	}
}

// clearEpoch records that the store cleared scope at epoch, and closes its
// latch here if the trip that opened it is older. It returns the trips whose
// reset is due now, as reset does.
func (ls *latches) clearEpoch(scope string, epoch uint64) []*opened {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.raiseEpochLocked(scope, epoch)
	l := ls.byName[scope]
	if l == nil {
		return nil
	}
	if o := l.trip.Load(); o == nil || o.Epoch >= epoch {
		return nil
	}
	return ls.resetLocked(scope, l, nil)
}

// reset removes the open latch named scope (or every open latch when all
// is set). It returns how many it removed and the trips whose reset is due
// now; the others are still being announced, and whoever announces them
// completes their reset.
func (ls *latches) reset(scope string, all bool) (n int, due []*opened) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if !all {
		if l := ls.byName[scope]; l != nil && l.trip.Load() != nil {
			return 1, ls.resetLocked(scope, l, nil)
		}
		return 0, nil
	}
	for name, l := range ls.byName {
		if l.trip.Load() != nil {
			n++
			due = ls.resetLocked(name, l, due)
		}
	}
	return n, due
}

// resetLocked removes the open latch l, named name, and appends its trip to
// due if its reset is due now. It requires that ls.mu is held for writing.
func (ls *latches) resetLocked(name string, l *latch, due []*opened) []*opened {
	o := l.trip.Load()
	ls.removeLocked(name, l)
	l.reset.Store(true)
	o.wasReset = true
	ls.open.Add(-1)
	if o.announced {
		return append(due, o)
	}
	o.resetOwed = true
	return due
}

// recordHeld records o as the trip of the latch that stands for l's scope
// now, and reports whether o opened it; false when it was open already or
// l was reset. A stream outlives its RoundTrip, which released l: closed
// and idle, l may have been evicted since, and a trip recorded on it would
// reach no later request.
func (ls *latches) recordHeld(l *latch, o *opened) bool {
	ls.mu.Lock()
	if l.reset.Load() {
		ls.mu.Unlock()
		return false
	}
	cur := ls.byName[l.scope]
	if cur == nil {
		cur = ls.newLatchLocked(l.scope)
	}
	cur.inflight.Add(1)
	ls.mu.Unlock()
	defer cur.release()
	return ls.record(cur, o)
}

// opened returns the records of the open latches.
func (ls *latches) opened() []*opened {
	ls.mu.RLock()
	defer ls.mu.RUnlock()
	var out []*opened
	for _, l := range ls.byName {
		if o := l.trip.Load(); o != nil {
			out = append(out, o)
		}
	}
	return out
}

// openLatches returns the trips of all open latches, oldest first; never nil.
func (ls *latches) openLatches() []Trip {
	out := []Trip{}
	ls.mu.RLock()
	for _, l := range ls.byName {
		if o := l.trip.Load(); o != nil {
			out = append(out, o.Trip)
		}
	}
	ls.mu.RUnlock()
	sortTrips(out)
	return out
}

func sortTrips(ts []Trip) { slices.SortFunc(ts, compareTrips) }

// compareTrips orders trips oldest first, then by scope.
func compareTrips(a, b Trip) int {
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	return strings.Compare(a.Scope, b.Scope)
}

// admit takes the latch of scope id (name names it when it is new) and
// decides whether the request may be sent. It returns the latch the
// request counts on and, when the latch is open, the trip that opened it.
// The trip record is the latch's state: a latch with none is closed, and
// the request goes without taking a lock. A latch with one asks its
// breaker, which stays the gate: it refuses only while gobreaker is open. A
// latch reset since the request took it is swapped for its fresh successor,
// so that a request is never refused by a latch that was reset.
func (t *Transport) admit(id uint64, name func() string) (*latch, *opened) {
	l := t.latches.acquire(id, name)
	for {
		o := l.trip.Load()
		if o == nil || l.cb.State() != gobreaker.StateOpen {
			return l, nil
		}
		if !l.reset.Load() {
			return l, o
		}
		l.release()
		l = t.latches.acquire(id, name)
	}
}

// Reset closes the open latch named scope (as shown in Trip.Scope) and
// reports whether there was one. Requests of that scope reach the network
// again; an answer to a request sent before the reset cannot reopen it.
// Call it once billing is fixed. OnReset runs before it returns, with ctx.
func (t *Transport) Reset(ctx context.Context, scope string) (bool, error) {
	n, err := t.reset(ctx, scope, false)
	return n > 0, err
}

// ResetAll closes every open latch and returns how many there were.
func (t *Transport) ResetAll(ctx context.Context) (int, error) {
	return t.reset(ctx, "", true)
}

func (t *Transport) reset(ctx context.Context, scope string, all bool) (int, error) {
	if t.base == nil {
		return 0, errNotNew
	}
	var n int
	var due []*opened
	if t.fleet != nil {
		// The store first: a reset the fleet does not see would be undone
		// by the next resync.
		var cleared []Change
		var err error
		if all {
			cleared, err = t.fleet.store.ClearAll(ctx)
		} else {
			var ch Change
			ch, err = t.fleet.store.Clear(ctx, scope)
			cleared = []Change{ch}
		}
		if err != nil {
			return 0, err
		}
		for _, ch := range cleared {
			if ch.Trip.Scope != "" {
				n++
			}
			due = append(due, t.latches.clearEpoch(ch.Scope, ch.Epoch)...)
		}
	}
	// Latches open only here (their claim not written yet) close too,
	// and their claims are not written.
	local, more := t.latches.reset(scope, all)
	if t.fleet != nil && local > 0 {
		t.dropClaims(ctx)
	}
	n = max(n, local)
	due = append(due, more...)
	slices.SortFunc(due, func(a, b *opened) int { return compareTrips(a.Trip, b.Trip) })
	for _, o := range due {
		t.resetDone(ctx, o)
	}
	return n, nil
}

// OpenLatches returns the trips of the open latches, oldest first, and an
// empty slice (never nil) when there are none.
func (t *Transport) OpenLatches(ctx context.Context) ([]Trip, error) {
	if t.base == nil {
		return []Trip{}, errNotNew
	}
	return t.latches.openLatches(), nil
}
