package quotabreaker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// ErrOpen is the error a Transport made with WithShortCircuitError returns,
// wrapped in an *OpenError, for a request it refuses. It is the only
// sentinel, as gobreaker has only ErrOpenState: the *OpenError's Trip says
// what opened the latch (its Class, Cause and Code).
var ErrOpen = errors.New("quotabreaker: latch open")

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
	// Class is the class of the answer or event that opened the latch; it
	// is the error.type attribute of its span.
	Class Class `json:"class"`
	// Provider is the provider that answered, when known.
	Provider Provider `json:"provider,omitempty"`
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
}

// OpenError is the error returned for a request refused by an open latch
// when the Transport was made with WithShortCircuitError. It unwraps to
// ErrOpen.
type OpenError struct {
	Trip Trip
}

func (e *OpenError) Error() string {
	tr := &e.Trip
	return fmt.Sprintf("quotabreaker: latch open for %s since %s: %s (code %q, HTTP %d); reset it once fixed",
		tr.Scope, tr.At.Format(time.RFC3339), tr.Class, tr.Code, tr.StatusCode)
}

// ErrorType returns the class that opened the latch, which OpenTelemetry's
// instrumentations (otelhttp among them) record as error.type.
func (e *OpenError) ErrorType() string { return string(e.Trip.Class) }

func (e *OpenError) Unwrap() error { return ErrOpen }

// maxIdleLatches bounds the closed latches kept for scopes with no request
// in flight. A closed latch with nothing in flight holds no information, so
// dropping it is free; open latches are never dropped.
const maxIdleLatches = 4096

// latch is one scope's breaker. It leaves the registry only when it is
// reset (a fresh one replaces it on the next request) or, while closed and
// unused, to bound memory.
type latch struct {
	scope    string
	ids      []uint64 // the ids that find it; guarded by latches.mu
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	inflight atomic.Int64           // requests between acquire and release
	trip     atomic.Pointer[opened] // set under latches.mu, in the step that opens cb
	reset    atomic.Bool            // set under latches.mu when Reset removed it
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
	answer        answer
	shortCircuits [2]metric.MeasurementOption // the short-circuit counter's attributes, by Mode

	// OnReset must not overtake OnTrip: a pager would resolve an incident
	// before opening it. Both fields are guarded by latches.mu.
	announced bool // OnTrip has returned
	resetOwed bool // reset before that: the tripping goroutine calls OnReset
}

// breakerSettings make a gobreaker breaker into a latch: only a tripping
// answer is a failure (not a transport error, nor a panic in the base), it
// opens on the first one, and since its open timeout is about 292 years it
// never goes half-open, so only Reset, which replaces it, closes it.
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
		if ls.byID == nil {
			ls.byID = make(map[uint64]*latch)
			ls.byName = make(map[string]*latch)
		}
		if l = ls.byName[n]; l == nil {
			if ls.closed >= max(ls.evictAt, maxIdleLatches) {
				ls.evictIdleLocked()
			}
			l = &latch{scope: n, cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](breakerSettings(n))}
			ls.byName[n] = l
			ls.closed++
		}
		l.ids = append(l.ids, id)
		ls.byID[id] = l
	}
	l.inflight.Add(1)
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

// record stores o as l's trip and opens l's breaker by reporting the
// tripping answer through done, in one step under ls.mu: a request that
// finds the trip recorded (OpenLatches lists it) also finds the breaker
// open. It reports false, storing nothing, when l already tripped or was
// reset since the request started, so exactly one caller per trip sees true.
func (ls *latches) record(l *latch, o *opened, done func(error)) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l.reset.Load() || l.trip.Load() != nil {
		return false
	}
	l.trip.Store(o)
	done(errTripped)
	ls.closed--
	ls.open.Add(1)
	return true
}

// announced records that OnTrip for o has returned, and reports whether a
// reset came first and left its OnReset to the caller.
func (ls *latches) announced(o *opened) (resetOwed bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	o.announced = true
	return o.resetOwed
}

// reset removes the open latch named scope (or every open latch when all
// is set). It returns how many it removed and the trips whose OnReset is due
// now; the others are still announcing their trip, and will call OnReset
// themselves once OnTrip returns.
func (ls *latches) reset(scope string, all bool) (n int, due []Trip) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	resetOne := func(name string, l *latch) {
		o := l.trip.Load()
		if o == nil {
			return
		}
		ls.removeLocked(name, l)
		l.reset.Store(true)
		ls.open.Add(-1)
		n++
		if o.announced {
			due = append(due, o.Trip)
		} else {
			o.resetOwed = true
		}
	}
	if !all {
		if l := ls.byName[scope]; l != nil {
			resetOne(scope, l)
		}
		return n, due
	}
	for name, l := range ls.byName {
		resetOne(name, l)
	}
	return n, due
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

func sortTrips(ts []Trip) {
	slices.SortFunc(ts, func(a, b Trip) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(a.Scope, b.Scope)
	})
}

// callHook runs a user's hook. A panic in it is an ordinary bug in the
// user's code (a pager client, say) that must not leave a latch, a span or a
// metric half-updated, so it is recovered and reported to otel.Handle, as
// OpenTelemetry reports its own errors.
func callHook[T any](name string, fn func(context.Context, T), ctx context.Context, v T) {
	if fn == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			otel.Handle(fmt.Errorf("quotabreaker: %s panicked: %v", name, r))
		}
	}()
	fn(ctx, v)
}
