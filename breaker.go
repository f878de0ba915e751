package quotabreaker

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/metric"
)

// ErrOpen is the error a Transport made with WithShortCircuitError returns,
// wrapped in an *OpenError, for a request whose scope has an open latch.
var ErrOpen = errors.New("quotabreaker: latch open")

// ErrQuotaExhausted matches an *OpenError whose latch was opened by a
// ClassQuotaExhausted answer. errors.Is(err, ErrOpen) holds for it too.
var ErrQuotaExhausted = fmt.Errorf("quotabreaker: quota exhausted: %w", ErrOpen)

// Trip describes an open latch: the answer that opened it, and when.
type Trip struct {
	// Scope names the latch, as WithScope or the default scope made it; it
	// is what Reset takes. The default scope shows the host, a one-way
	// fingerprint of the credentials and the OpenAI organization and project.
	Scope string
	// Classification is what Classify made of the tripping answer.
	Classification
	// Status is the HTTP status of the tripping answer.
	Status int
	// RequestID is the provider's id for the tripping answer (x-request-id,
	// request-id or apim-request-id), for support tickets.
	RequestID string
	// At is when the latch opened.
	At time.Time
}

// OpenError is the error returned for a request refused by an open latch
// when the Transport was made with WithShortCircuitError. It unwraps to
// ErrQuotaExhausted for a quota trip and to ErrOpen for any other class.
type OpenError struct {
	Trip
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("quotabreaker: latch open for %s since %s: %s (code %q, HTTP %d); reset it once fixed",
		e.Scope, e.At.Format(time.RFC3339), e.Class, e.Code, e.Status)
}

// ErrorType returns the class that opened the latch, which OpenTelemetry's
// instrumentations (otelhttp among them) record as error.type.
func (e *OpenError) ErrorType() string { return string(e.Class) }

func (e *OpenError) Unwrap() error {
	if e.Class == ClassQuotaExhausted {
		return ErrQuotaExhausted
	}
	return ErrOpen
}

// maxIdleLatches bounds the closed latches kept for scopes with no request in
// flight. A closed latch with nothing in flight holds no information, so
// dropping it is free; open latches are never dropped.
const maxIdleLatches = 4096

// A latch's id is a 64-bit hash of its scope, keyed with a seed of the
// Transport's own: the registry keeps neither credentials nor anything an
// outsider can steer into a collision, and a lookup hashes no strings twice.

// latch is one scope's breaker. A latch leaves the registry only when it is
// reset (then a fresh one replaces it on the next request) or, while closed
// and unused, to bound memory.
type latch struct {
	id       uint64
	scope    string
	cb       *gobreaker.CircuitBreaker[struct{}]
	inflight atomic.Int64           // requests between acquire and release
	trip     atomic.Pointer[opened] // set once, under latches.mu, before cb opens
	reset    atomic.Bool            // set under latches.mu when Reset removed it
}

// isOpen reports whether l refuses requests now.
func (l *latch) isOpen() bool { return l.trip.Load() != nil && !l.reset.Load() }

func (l *latch) state() string {
	if l.isOpen() {
		return "open"
	}
	return "closed"
}

// opened is an open latch's record: what to report and what to answer,
// prepared once so that refusing a request costs little.
type opened struct {
	Trip
	answer        answer
	shortCircuits []metric.AddOption // attributes of the short-circuit counter

	// OnReset must not overtake OnTrip: a pager would resolve an incident
	// before opening it. Both fields are guarded by latches.mu.
	announced bool // OnTrip has returned
	resetOwed bool // reset before that: the tripping goroutine calls OnReset
}

// answer is the stored tripping answer that short-circuited requests receive.
type answer struct {
	status      int
	statusLine  string
	contentType string
	scope       string
	body        []byte
}

func (l *latch) release() { l.inflight.Add(-1) }

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

// latches is the registry of a Transport's latches.
type latches struct {
	mu sync.RWMutex
	m  map[uint64]*latch // guarded by mu
	// open counts the open latches. It is allocated apart from the
	// Transport so that a cleanup can read it once the Transport is gone.
	open *atomic.Int64
}

// acquire returns the latch for id, creating it (named by name) if needed,
// and counts a request in flight on it until release.
func (ls *latches) acquire(id uint64, name func() string) *latch {
	ls.mu.RLock()
	l := ls.m[id]
	if l != nil {
		l.inflight.Add(1) // under mu, so eviction sees it
	}
	ls.mu.RUnlock()
	if l != nil {
		return l
	}

	// Build outside the lock: naming hashes credentials.
	n := name()
	fresh := &latch{id: id, scope: n, cb: gobreaker.NewCircuitBreaker[struct{}](breakerSettings(n))}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l = ls.m[id]; l == nil {
		if ls.m == nil {
			ls.m = make(map[uint64]*latch)
		}
		if len(ls.m) >= maxIdleLatches {
			ls.evictIdleLocked()
		}
		l = fresh
		ls.m[id] = l
	}
	l.inflight.Add(1)
	return l
}

// evictIdleLocked drops closed latches with no request in flight; it
// requires that ls.mu is held for writing.
func (ls *latches) evictIdleLocked() {
	for k, l := range ls.m {
		if l.inflight.Load() == 0 && l.trip.Load() == nil {
			delete(ls.m, k)
		}
	}
}

// record stores o as l's trip. It reports false, storing nothing, when l
// already tripped or was reset since the request started, so exactly one
// caller per trip sees true.
func (ls *latches) record(l *latch, o *opened) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.m[l.id] != l || l.trip.Load() != nil {
		return false
	}
	l.trip.Store(o)
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

// reset removes the open latches named scope (or every open latch when all
// is set). It returns how many it removed and the trips whose OnReset is due
// now; the others are still announcing their trip, and will call OnReset
// themselves once OnTrip returns.
func (ls *latches) reset(scope string, all bool) (n int, due []Trip) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for k, l := range ls.m {
		o := l.trip.Load()
		if o == nil || (!all && l.scope != scope) {
			continue
		}
		delete(ls.m, k)
		l.reset.Store(true)
		ls.open.Add(-1)
		n++
		if o.announced {
			due = append(due, o.Trip)
		} else {
			o.resetOwed = true
		}
	}
	return n, due
}

// openLatches returns the trips of all open latches, oldest first.
func (ls *latches) openLatches() []Trip {
	ls.mu.RLock()
	var out []Trip
	for _, l := range ls.m {
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

// Headers that carry credentials, hashed into the default scope, in their
// canonical form: indexing the map directly saves canonicalizing per request.
var credentialHeaders = [...]string{"Authorization", "Api-Key", "X-Api-Key", "X-Goog-Api-Key"}

// scope returns the id of req's latch and, when WithScope named it, its
// custom name. The default scope hashes the host, the credentials and
// OpenAI's organization and project.
func (t *Transport) scope(req *http.Request) (id uint64, custom string) {
	var h maphash.Hash
	h.SetSeed(t.seed)
	if t.cfg.scope != nil {
		if custom = t.cfg.scope(req); custom != "" {
			h.WriteByte('c')
			h.WriteString(custom)
			return h.Sum64(), custom
		}
	}
	h.WriteByte('d')
	h.WriteString(requestHost(req))
	h.WriteByte(0)
	eachCredential(req.Header, func(i int, v string) {
		h.WriteByte(byte(i))
		h.WriteString(v)
		h.WriteByte(0)
	})
	h.WriteByte(0xff)
	h.WriteString(queryKey(req))
	h.WriteByte(0)
	h.WriteString(firstValue(req.Header, "Openai-Organization"))
	h.WriteByte(0)
	h.WriteString(firstValue(req.Header, "Openai-Project"))
	return h.Sum64(), ""
}

// eachCredential calls fn with the index in credentialHeaders and the value
// of every credential header of h. Headers set through Header.Set are
// canonical; one written into the map by hand in another case is found by a
// slower scan, so it cannot merge two tenants' scopes.
func eachCredential(h http.Header, fn func(i int, v string)) {
	found := false
	for i, name := range credentialHeaders {
		for _, v := range h[name] {
			fn(i, v)
			found = true
		}
	}
	if found {
		return
	}
	for k, vs := range h {
		for i, name := range credentialHeaders {
			if k != name && strings.EqualFold(k, name) {
				for _, v := range vs {
					fn(i, v)
				}
			}
		}
	}
}

func firstValue(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// queryKey returns the API key of Google's ?key= form, the one credential
// that travels in the URL.
func queryKey(req *http.Request) string {
	if req.URL == nil || !strings.Contains(req.URL.RawQuery, "key=") {
		return ""
	}
	return req.URL.Query().Get("key")
}

func requestHost(req *http.Request) string {
	if req.URL != nil && req.URL.Host != "" {
		return req.URL.Host
	}
	return req.Host
}

// scopeName is the printable name of req's default scope. Credentials show
// only as the first 12 hex digits of their SHA-256: enough to tell keys
// apart in a trace, useless for recovering one.
func scopeName(req *http.Request, custom string) string {
	if custom != "" {
		return custom
	}
	var b strings.Builder
	b.WriteString(requestHost(req))
	sum := sha256.New()
	found := false
	eachCredential(req.Header, func(i int, v string) {
		sum.Write([]byte{byte(i)})
		sum.Write([]byte(v))
		sum.Write([]byte{0})
		found = true
	})
	if k := queryKey(req); k != "" {
		sum.Write([]byte(k))
		found = true
	}
	if found {
		b.WriteString("/key:")
		b.WriteString(hex.EncodeToString(sum.Sum(nil))[:12])
	}
	if org := firstValue(req.Header, "Openai-Organization"); org != "" {
		b.WriteString("/org:")
		b.WriteString(org)
	}
	if project := firstValue(req.Header, "Openai-Project"); project != "" {
		b.WriteString("/project:")
		b.WriteString(project)
	}
	return b.String()
}
