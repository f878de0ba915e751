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
	"slices"
	"strconv"

	"github.com/quotabreaker/quotabreaker/balance"
)

// This file holds what operators act on: resets of latches, the open
// latches, and the Handler that serves them over HTTP; the mode they switch
// is in mode.go.

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
