package quotabreaker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/quotabreaker/quotabreaker/balance"
)

// This file holds what operators act on: the Mode, how a Transport
// switches it and how a fleet shares it through a store that implements
// ModeStore, so that one switch (SetMode, the Handler, redisstore's
// command) turns enforcement on or off in every replica; and the Handler,
// which shows the state and takes the operators' actions over HTTP (resets,
// in breaker.go, and mode switches). Precedence: WithMode gives the mode a
// Transport starts in; once the store holds a mode (any switch ever made
// through it), the store's wins, from the Snapshot New takes on.

// Handler returns an http.Handler for operators: it shows the Transport's
// state and resets latches and budgets. Mount it wherever the application
// keeps its admin endpoints. It does no authorization: that is the
// mounting application's job, since it alone knows its operators (wrap it
// in your authentication middleware; see the example).
//
// GET (or HEAD) answers with JSON:
//
//	{"mode": "enforce", "store": "up", "latches": [Trip...], "budgets": [BudgetStatus...],
//	 "balances": [balance.Status...]}
//
// where store is "up", "down" or "none", and both lists are [] when empty.
// mode is the one this Transport applies: with a store that shares the mode,
// the fleet's, unless "mode_pending": true says that a SetMode of this
// process still waits to be written to the store.
// balances, with WithBalances once a balance is read, are the watched
// balances and their forecasts, named by scope and key fingerprint.
//
// POST takes exactly one action, from its body, form-encoded
// (application/x-www-form-urlencoded) or JSON (application/json, such as
// {"scope": "SCOPE"} or {"all": true}), and answers with the state after it:
//
//	scope=SCOPE           reset the latch named SCOPE; 404 if it is not open
//	all=true              reset every open latch
//	budget=NAME&key=KEY   reset what KEY spent in budget NAME this period; 404 if nothing
//	mode=enforce|observe  switch the mode: the fleet's, with a store that shares it
//
// A POST with none of these, or with more than one, is refused with 400:
// a misspelled field never resets all latches. So is a POST with an action
// in its URL's query, and a body of another type is refused with 415. A
// cross-origin browser request (Sec-Fetch-Site cross-site or same-site, or
// an Origin that is not the Host) is refused with 403, by Go's
// http.CrossOriginProtection; tools that send neither header (curl, scripts)
// are not browsers and pass. A store that cannot be reached makes a reset,
// or a mode switch with a store that shares the mode, answer 503, and
// changes nothing (see SetModeContext).
func (t *Transport) Handler() http.Handler {
	// A browser that holds an operator's cookie must not act for another
	// site: CrossOriginProtection refuses a cross-origin POST (by
	// Sec-Fetch-Site, or Origin against Host), and actions come only
	// from a body a cross-site "simple" request cannot send (a form or
	// JSON, never text/plain or the URL's query).
	return http.NewCrossOriginProtection().Handler(http.HandlerFunc(t.serveHTTP))
}

type handlerState struct {
	Mode Mode `json:"mode"`
	// ModePending: a SetMode waits to be written to a store that shares
	// the mode; Mode is this process's alone until then.
	ModePending bool           `json:"mode_pending,omitempty"`
	Store       string         `json:"store"`
	Latches     []Trip         `json:"latches"`
	Budgets     []BudgetStatus `json:"budgets"`
	// Balances holds no key: see balance.Status.MarshalJSON.
	Balances []balance.Status `json:"balances,omitempty"`
}

func (t *Transport) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if t.base == nil {
		http.Error(w, errNotNew.Error(), http.StatusInternalServerError)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		if code, err := t.act(r); err != nil {
			http.Error(w, err.Error(), code)
			return
		}
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "quotabreaker: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	st := handlerState{Mode: t.Mode(), Store: "none"}
	if t.fleet != nil {
		st.ModePending = t.modePending()
		switch {
		case !t.fleet.readsUp.Load():
			st.Store = "down"
		case !t.fleet.writesUp.Load():
			st.Store = "read-only"
		default:
			st.Store = "up"
		}
	}
	var err error
	if st.Latches, err = t.OpenLatches(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if st.Budgets, err = t.Budgets(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if t.cfg.balances != nil {
		st.Balances = t.cfg.balances.Statuses()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(st)
}

// handlerActions are the fields that name a POST's action.
var handlerActions = [...]string{"scope", "all", "budget", "mode"}

// maxActionBody bounds the body of a POST.
const maxActionBody = 64 << 10

// actionForm reads a POST's action from its body, never from the query.
func actionForm(r *http.Request) (url.Values, int, error) {
	q := r.URL.Query()
	for _, k := range handlerActions {
		if q.Has(k) {
			return nil, http.StatusBadRequest, errors.New("quotabreaker: a POST takes its action from its body (a form or JSON), never from the URL's query")
		}
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-www-form-urlencoded":
		r.Body = http.MaxBytesReader(nil, r.Body, maxActionBody)
		if err := r.ParseForm(); err != nil {
			return nil, http.StatusBadRequest, err
		}
		return r.PostForm, 0, nil
	case "application/json":
		var fields map[string]json.RawMessage
		dec := json.NewDecoder(io.LimitReader(r.Body, maxActionBody))
		if err := dec.Decode(&fields); err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("quotabreaker: JSON body: %w", err)
		}
		f := url.Values{}
		for k, raw := range fields {
			var s string
			var b bool
			switch {
			case json.Unmarshal(raw, &s) == nil:
				f.Set(k, s)
			case json.Unmarshal(raw, &b) == nil:
				f.Set(k, strconv.FormatBool(b))
			default:
				return nil, http.StatusBadRequest, fmt.Errorf("quotabreaker: JSON body: %s must be a string or a boolean", strconv.Quote(k))
			}
		}
		return f, 0, nil
	}
	return nil, http.StatusUnsupportedMediaType, errors.New("quotabreaker: a POST's body must be application/x-www-form-urlencoded or application/json")
}

// act performs a POST's one action and returns the status of a failure.
func (t *Transport) act(r *http.Request) (int, error) {
	f, code, err := actionForm(r)
	if err != nil {
		return code, err
	}
	actions := 0
	for _, k := range handlerActions {
		if f.Has(k) {
			actions++
		}
	}
	if actions != 1 {
		return http.StatusBadRequest, errors.New("quotabreaker: POST exactly one of scope=SCOPE, all=true, budget=NAME&key=KEY or mode=enforce|observe")
	}
	switch {
	case f.Has("scope"):
		ok, err := t.Reset(r.Context(), f.Get("scope"))
		if err != nil {
			return http.StatusServiceUnavailable, err
		}
		if !ok {
			return http.StatusNotFound, errors.New("quotabreaker: no open latch named " + strconv.Quote(f.Get("scope")))
		}
	case f.Has("all"):
		if all, err := strconv.ParseBool(f.Get("all")); err != nil || !all {
			return http.StatusBadRequest, errors.New("quotabreaker: all must be true to reset every latch")
		}
		if _, err := t.ResetAll(r.Context()); err != nil {
			return http.StatusServiceUnavailable, err
		}
	case f.Has("budget"):
		ok, err := t.ResetBudget(r.Context(), f.Get("budget"), f.Get("key"))
		switch {
		case errors.Is(err, ErrUnknownBudget):
			return http.StatusNotFound, err
		case err != nil:
			return http.StatusServiceUnavailable, err
		case !ok:
			return http.StatusNotFound, errors.New("quotabreaker: budget " + strconv.Quote(f.Get("budget")) + " has no spend for key " + strconv.Quote(f.Get("key")))
		}
	case f.Has("mode"):
		var m Mode
		if err := m.UnmarshalText([]byte(f.Get("mode"))); err != nil {
			return http.StatusBadRequest, err
		}
		if err := t.SetModeContext(r.Context(), m); err != nil {
			return http.StatusServiceUnavailable, err
		}
	}
	return 0, nil
}

// Mode says whether a Transport enforces its latches.
type Mode int32

const (
	// ModeEnforce refuses the requests of an open latch's scope, and marks
	// answers that cannot succeed so that SDKs do not retry them.
	ModeEnforce Mode = iota
	// ModeObserve classifies, records, pages and reports exactly as
	// ModeEnforce does, but refuses nothing and changes no answer: a
	// request that ModeEnforce would refuse is sent, its span says
	// quotabreaker.breaker.state=open with quotabreaker.mode=observe, and
	// quotabreaker.short_circuits counts it with quotabreaker.mode=observe.
	// It is for watching production before enforcing.
	ModeObserve
)

// String returns "enforce" or "observe".
func (m Mode) String() string {
	switch m {
	case ModeEnforce:
		return "enforce"
	case ModeObserve:
		return "observe"
	}
	return fmt.Sprintf("Mode(%d)", int32(m))
}

// MarshalText encodes m as its String form.
func (m Mode) MarshalText() ([]byte, error) {
	if m != ModeEnforce && m != ModeObserve {
		return nil, fmt.Errorf("quotabreaker: unknown mode %d", int32(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText decodes "enforce" or "observe".
func (m *Mode) UnmarshalText(b []byte) error {
	switch string(b) {
	case "enforce":
		*m = ModeEnforce
	case "observe":
		*m = ModeObserve
	default:
		return fmt.Errorf("quotabreaker: unknown mode %q (want enforce or observe)", b)
	}
	return nil
}

// Mode returns the Transport's current mode: with a store that shares the
// mode (a ModeStore, as redisstore's), the fleet's, as this process last
// heard it, or this process's own switch while it waits to be written.
func (t *Transport) Mode() Mode { return Mode(t.mode.Load()) }

// SetMode switches the Transport between ModeEnforce and ModeObserve; other
// values are ignored. It takes effect from the next request: latches opened
// while observing refuse requests as soon as the mode is ModeEnforce, and
// open latches stay open (and listed) while observing.
//
// With a store that shares the mode (WithStore with a ModeStore, such as
// redisstore's), it switches the fleet: it applies here at once, and the
// store's background loop writes it to the store, from which every replica
// takes it within the time a change takes to reach them (pub/sub; at the
// latest the next resync). While the store does not take the write (it is
// down or read-only), this process keeps the mode it was given and the
// write is retried with the backoff of trips' claims (250 ms doubling to
// 10 s); before each retry it reads the store, and a switch made elsewhere
// meanwhile (at an epoch above the one this process knew when SetMode was
// called) wins: the waiting write is dropped and the fleet's mode taken.
// The Handler's GET says "mode_pending": true meanwhile. Shutdown writes a
// switch still waiting, and says so if it cannot; after Shutdown, SetMode
// switches this Transport alone. SetMode has no error to return; to know
// whether the fleet took the switch, call SetModeContext.
func (t *Transport) SetMode(m Mode) {
	if m != ModeEnforce && m != ModeObserve {
		return
	}
	f := t.fleet
	if f == nil || f.mode.store == nil {
		t.mode.Store(int32(m))
		return
	}
	// Under f.mu, so that Shutdown either writes this switch or finds it
	// closed: then the switch is this process's alone.
	f.mu.Lock()
	closed := f.closed
	f.mode.mu.Lock()
	t.mode.Store(int32(m))
	if !closed {
		f.mode.want = &modeWrite{mode: m, base: f.mode.epoch}
	}
	f.mode.mu.Unlock()
	f.mu.Unlock()
	if !closed {
		signal(f.wake)
	}
}

// SetModeContext is SetMode for callers that want to know whether the
// fleet took the switch, as the Handler does. With a store that shares the
// mode, it writes the mode to the store first, within ctx and the store's
// timeout, and applies it here once the store took it: when the store
// cannot be reached or refuses the write, it returns the store's error and
// changes nothing here or elsewhere (as Reset does), and a SetMode still
// waiting to be written is kept. Without such a store it switches this
// Transport alone. It returns an error for a mode other than ModeEnforce
// and ModeObserve.
func (t *Transport) SetModeContext(ctx context.Context, m Mode) error {
	if m != ModeEnforce && m != ModeObserve {
		return fmt.Errorf("quotabreaker: unknown mode %d", int32(m))
	}
	if t.base == nil {
		return errNotNew
	}
	f := t.fleet
	if f == nil || f.mode.store == nil {
		t.mode.Store(int32(m))
		return nil
	}
	var ch Change
	err := t.call(ctx, func(ctx context.Context) (err error) {
		ch, err = f.mode.store.SetMode(ctx, m)
		return err
	})
	if err != nil {
		return err
	}
	if ch.Kind != ChangeMode || !validMode(ch.Mode, ch.Epoch) || ch.Mode != m {
		return fmt.Errorf("quotabreaker: the store answered SetMode(%v) with %+v", m, ch)
	}
	f.mode.mu.Lock()
	// This switch is newer than any waiting to be written.
	f.mode.want = nil
	f.mode.mu.Unlock()
	t.applyMode(ch.Mode, ch.Epoch)
	return nil
}

// modeState is the fleet's mode as a Transport with a ModeStore knows it:
// the last switch heard from the store, and a SetMode not yet written to it.
type modeState struct {
	store ModeStore // nil when the store does not share the mode
	mu    sync.Mutex
	mode  Mode       // the fleet's, switched at epoch; guarded by mu
	epoch uint64     // guarded by mu
	want  *modeWrite // guarded by mu
}

// modeWrite is a SetMode waiting to be written to the store.
type modeWrite struct {
	mode Mode
	// base is the mode epoch this process knew when SetMode was called,
	// raised by this process's own writes since: a store holding a higher
	// one was switched elsewhere, after it.
	base   uint64
	failed bool // a write was tried and failed: look before trying again
}

// applyMode takes the fleet's mode m, switched at epoch, from the store
// (a Watch change, a Snapshot, or this process's own write): unless this
// process knows a newer switch, or holds one of its own still waiting to be
// written, it becomes this process's mode. A switch that changes the mode
// here is logged once, as the operator's endpoint and every span's
// quotabreaker.mode attribute then show it.
func (t *Transport) applyMode(m Mode, epoch uint64) {
	f := t.fleet
	f.mode.mu.Lock()
	if epoch <= f.mode.epoch {
		f.mode.mu.Unlock()
		return
	}
	f.mode.epoch, f.mode.mode = epoch, m
	if f.mode.want != nil {
		// This process's own, later switch decides here until it is
		// written (or found superseded before a retry).
		f.mode.mu.Unlock()
		return
	}
	prev := Mode(t.mode.Swap(int32(m)))
	f.mode.mu.Unlock()
	if prev != m {
		f.log.Info("quotabreaker: the fleet's mode changed; this process follows it",
			"mode", m.String(), "previous_mode", prev.String(), "mode_epoch", epoch)
	}
}

// flushMode writes a SetMode waiting for the store. A write that failed
// before is preceded by a look at the store, so that a switch made
// elsewhere while this one waited is not undone by it.
func (t *Transport) flushMode(ctx context.Context) (wrote bool, err error) {
	f := t.fleet
	if f.mode.store == nil {
		return false, nil
	}
	f.mode.mu.Lock()
	w := f.mode.want
	failed := w != nil && w.failed
	f.mode.mu.Unlock()
	if w == nil {
		return false, nil
	}
	if failed {
		var snap Snapshot
		err := t.call(ctx, func(ctx context.Context) (err error) {
			snap, err = f.store.Snapshot(ctx)
			return err
		})
		if err != nil {
			return true, err
		}
		t.applySnapshotMode(snap)
		f.mode.mu.Lock()
		if f.mode.want == w && f.mode.epoch > w.base {
			// Switched elsewhere since SetMode: that switch wins.
			f.mode.want = nil
			prev := Mode(t.mode.Swap(int32(f.mode.mode)))
			f.log.Info("quotabreaker: a mode switch waiting for the store was dropped: the fleet was switched since",
				"dropped_mode", w.mode.String(), "mode", f.mode.mode.String(), "previous_mode", prev.String(), "mode_epoch", f.mode.epoch)
		}
		w = f.mode.want
		f.mode.mu.Unlock()
		if w == nil {
			return true, nil
		}
	}
	var ch Change
	err = t.call(ctx, func(ctx context.Context) (err error) {
		ch, err = f.mode.store.SetMode(ctx, w.mode)
		return err
	})
	f.mode.mu.Lock()
	switch {
	case err != nil:
		if f.mode.want == w {
			w.failed = true
		}
		f.mode.mu.Unlock()
		return true, err
	case f.mode.want == w:
		f.mode.want = nil
	case f.mode.want != nil:
		// SetMode was called again while this was written: that one is
		// newer than this write, not superseded by it.
		f.mode.want.base = max(f.mode.want.base, ch.Epoch)
	}
	f.mode.mu.Unlock()
	if validMode(ch.Mode, ch.Epoch) {
		t.applyMode(ch.Mode, ch.Epoch)
	}
	return true, nil
}

// modePending reports whether a SetMode waits to be written.
func (t *Transport) modePending() bool {
	f := t.fleet
	f.mode.mu.Lock()
	defer f.mode.mu.Unlock()
	return f.mode.want != nil
}

// dropModeWrite forgets a SetMode still waiting to be written, at
// Shutdown, and reports whether there was one. The mode stays here.
func (t *Transport) dropModeWrite() bool {
	f := t.fleet
	f.mode.mu.Lock()
	defer f.mode.mu.Unlock()
	w := f.mode.want
	f.mode.want = nil
	return w != nil
}
