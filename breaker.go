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

// scopeKey identifies a latch. The default scope keeps a keyed 64-bit hash
// of the credentials rather than the credentials themselves.
type scopeKey struct {
	host, org, project string
	cred               uint64
	custom             string
	isCustom           bool
}

// latch is one scope's breaker. A latch leaves the registry only when it is
// reset (then a fresh one replaces it on the next request) or, while closed
// and unused, to bound memory.
type latch struct {
	key      scopeKey
	scope    string
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	inflight atomic.Int64           // requests between acquire and release
	trip     atomic.Pointer[opened] // set once, under latches.mu, before cb opens
}

// opened is an open latch's record: what to report and what to answer.
type opened struct {
	Trip
	answer answer
}

// answer is the stored tripping answer that short-circuited requests receive.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (l *latch) release() { l.inflight.Add(-1) }

// breakerSettings make a gobreaker breaker into a latch: it opens on the
// first failure, and since its open timeout is about 292 years it never goes
// half-open, so only Reset, which replaces it, closes it.
func breakerSettings(name string) gobreaker.Settings {
	return gobreaker.Settings{
		Name:        name,
		Timeout:     time.Duration(math.MaxInt64),
		ReadyToTrip: tripOnFirstFailure,
	}
}

func tripOnFirstFailure(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 }

// errTripped is what a latch's breaker is told about a tripping answer.
var errTripped = errors.New("quotabreaker: tripping answer")

// latches is the registry of a Transport's latches.
type latches struct {
	mu   sync.RWMutex
	m    map[scopeKey]*latch // guarded by mu
	open atomic.Int64        // latches with a trip, for the gauge
}

// acquire returns the latch for key, creating it (named by name) if needed,
// and counts a request in flight on it until release.
func (ls *latches) acquire(key scopeKey, name func() string) *latch {
	ls.mu.RLock()
	l := ls.m[key]
	if l != nil {
		l.inflight.Add(1) // under mu, so eviction sees it
	}
	ls.mu.RUnlock()
	if l != nil {
		return l
	}

	// Build outside the lock: naming hashes credentials.
	n := name()
	fresh := &latch{key: key, scope: n, cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](breakerSettings(n))}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l = ls.m[key]; l == nil {
		if ls.m == nil {
			ls.m = make(map[scopeKey]*latch)
		}
		if len(ls.m) >= maxIdleLatches {
			ls.evictIdleLocked()
		}
		l = fresh
		ls.m[key] = l
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
	if ls.m[l.key] != l || l.trip.Load() != nil {
		return false
	}
	l.trip.Store(o)
	ls.open.Add(1)
	return true
}

// reset removes the open latches named scope (or every open latch when all
// is set) and returns their trips.
func (ls *latches) reset(scope string, all bool) []Trip {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out []Trip
	for k, l := range ls.m {
		o := l.trip.Load()
		if o == nil || (!all && l.scope != scope) {
			continue
		}
		delete(ls.m, k)
		ls.open.Add(-1)
		out = append(out, o.Trip)
	}
	return out
}

// tripped returns the trips of all open latches, oldest first.
func (ls *latches) tripped() []Trip {
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

// Headers that carry credentials, hashed into the default scope.
var credentialHeaders = [...]string{"Authorization", "Api-Key", "X-Api-Key", "X-Goog-Api-Key"}

// scopeKey returns the key of req's latch: the custom scope, or the host
// plus a hash of the credentials plus OpenAI's organization and project.
func (t *Transport) scopeKey(req *http.Request) scopeKey {
	if t.cfg.scope != nil {
		if s := t.cfg.scope(req); s != "" {
			return scopeKey{custom: s, isCustom: true}
		}
	}
	var h maphash.Hash
	h.SetSeed(t.seed)
	for _, name := range credentialHeaders {
		for _, v := range req.Header[name] {
			h.WriteString(v)
			h.WriteByte(0)
		}
		h.WriteByte(1)
	}
	if key := queryKey(req); key != "" {
		h.WriteString(key)
	}
	return scopeKey{
		host:    requestHost(req),
		org:     req.Header.Get("OpenAI-Organization"),
		project: req.Header.Get("OpenAI-Project"),
		cred:    h.Sum64(),
	}
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
func scopeName(req *http.Request, key scopeKey) string {
	if key.isCustom {
		return key.custom
	}
	var b strings.Builder
	b.WriteString(key.host)
	sum := sha256.New()
	found := false
	for _, name := range credentialHeaders {
		for _, v := range req.Header[name] {
			sum.Write([]byte(v))
			sum.Write([]byte{0})
			found = true
		}
		sum.Write([]byte{1})
	}
	if k := queryKey(req); k != "" {
		sum.Write([]byte(k))
		found = true
	}
	if found {
		b.WriteString("/key:")
		b.WriteString(hex.EncodeToString(sum.Sum(nil))[:12])
	}
	if key.org != "" {
		b.WriteString("/org:")
		b.WriteString(key.org)
	}
	if key.project != "" {
		b.WriteString("/project:")
		b.WriteString(key.project)
	}
	return b.String()
}
