package quotabreaker

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/quotabreaker/quotabreaker/balance"
)

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
// balances, with WithBalances once a balance is read, are the watched
// balances and their forecasts, named by scope and key fingerprint.
//
// POST takes exactly one action, as form values (a URL query or a
// form-encoded body), and answers with the state after it:
//
//	scope=SCOPE           reset the latch named SCOPE; 404 if it is not open
//	all=true              reset every open latch
//	budget=NAME&key=KEY   reset what KEY spent in budget NAME this period; 404 if nothing
//	mode=enforce|observe  switch the Transport's mode
//
// A POST with none of these, or with more than one, is refused with 400:
// a misspelled field never resets all latches. A store that cannot be
// reached makes a reset answer 503.
func (t *Transport) Handler() http.Handler {
	return http.HandlerFunc(t.serveHTTP)
}

type handlerState struct {
	Mode    Mode           `json:"mode"`
	Store   string         `json:"store"`
	Latches []Trip         `json:"latches"`
	Budgets []BudgetStatus `json:"budgets"`
	// Balances holds no key: see balance.Status.MarshalJSON.
	Balances []balance.Status `json:"balances,omitempty"`
}

func (t *Transport) serveHTTP(w http.ResponseWriter, r *http.Request) {
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
		st.Store = "down"
		if t.fleet.up.Load() {
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

// act performs a POST's one action and returns the status of a failure.
func (t *Transport) act(r *http.Request) (int, error) {
	if err := r.ParseForm(); err != nil {
		return http.StatusBadRequest, err
	}
	f := r.Form
	actions := 0
	for _, k := range [...]string{"scope", "all", "budget", "mode"} {
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
		t.SetMode(m)
	}
	return 0, nil
}
