package quotabreaker

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/quotabreaker/quotabreaker/internal/corpus"
)

// operator drives a Transport's Handler as an operator's tool would.
type operator struct {
	tb testing.TB
	h  http.Handler
}

// do sends method with form values, as a form-encoded body or, without
// inBody, as a JSON object ("true" and "false" as booleans), and returns
// the status and body of the answer.
func (o operator) do(method string, form url.Values, inBody bool) (int, http.Header, string) {
	o.tb.Helper()
	target := "/quotabreaker"
	var req *http.Request
	switch {
	case method == http.MethodGet || method == http.MethodHead:
		req = httptest.NewRequest(method, target, nil)
	case inBody:
		req = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	default:
		obj := map[string]any{}
		for k := range form {
			switch v := form.Get(k); v {
			case "true", "false":
				obj[k] = v == "true"
			default:
				obj[k] = v
			}
		}
		b, _ := json.Marshal(obj)
		req = httptest.NewRequest(method, target, strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	o.h.ServeHTTP(w, req)
	return w.Code, w.Header(), w.Body.String()
}

// state is the Handler's GET answer, decoded.
func (o operator) state() handlerState {
	o.tb.Helper()
	code, h, body := o.do(http.MethodGet, nil, false)
	if code != 200 || h.Get("Content-Type") != "application/json" {
		o.tb.Fatalf("GET: %d %s %s", code, h.Get("Content-Type"), body)
	}
	var st handlerState
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		o.tb.Fatalf("GET: %v in %s", err, body)
	}
	return st
}

// handlerEnv is a Transport in front of a provider that answers the key
// "sk-broke" with OpenAI's insufficient_quota and every other key with a
// priced success, plus a budget of one answer.
func handlerEnv(t *testing.T) (*Transport, *provider, operator) {
	t.Helper()
	quota := quotaAnswer(t)
	body, h := corpus.ReadStream(t, "openai-chat-reasoning.json")
	p := newProvider(func(r *http.Request) corpusAnswer {
		if strings.HasPrefix(bearerKey(r), "sk-broke") {
			return quota
		}
		return corpusAnswer{200, h, string(body)}
	})
	tr := New(p, WithBudget(Budget{Name: "tiny", Limit: 0.000001, HardLimit: true}))
	return tr, p, operator{t, tr.Handler()}
}

func TestHandlerEmptyLists(t *testing.T) {
	_, _, op := handlerEnv(t)
	code, h, body := op.do(http.MethodGet, nil, false)
	if code != 200 || h.Get("Cache-Control") != "no-store" {
		t.Errorf("GET: %d, Cache-Control %q", code, h.Get("Cache-Control"))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"mode": `"enforce"`, "store": `"none"`, "latches": `[]`, "budgets": `[]`} {
		if got := string(raw[k]); got != want {
			t.Errorf("%s = %s, want %s (in %s)", k, got, want, body)
		}
	}
	// A server drops a HEAD answer's body itself.
	if code, h, _ := op.do(http.MethodHead, nil, false); code != 200 || h.Get("Content-Type") != "application/json" {
		t.Errorf("HEAD: %d %s", code, h.Get("Content-Type"))
	}
}

// Resetting one scope closes that latch only; the next request of that
// scope reaches the provider again.
func TestHandlerResetScope(t *testing.T) {
	for _, inBody := range []bool{false, true} {
		t.Run(map[bool]string{false: "JSON body", true: "form body"}[inBody], func(t *testing.T) {
			tr, p, op := handlerEnv(t)
			send(t, tr, budgetURL, "sk-broke-1")
			send(t, tr, budgetURL, "sk-broke-2")
			st := op.state()
			if len(st.Latches) != 2 {
				t.Fatalf("latches %+v, want 2", st.Latches)
			}
			scope := st.Latches[0].Scope

			if code, _, body := op.do(http.MethodPost, url.Values{"scope": {"api.openai.com/key:000000000000"}}, inBody); code != http.StatusNotFound {
				t.Errorf("reset of an unknown scope: %d %s, want 404", code, body)
			}
			if n := len(op.state().Latches); n != 2 {
				t.Errorf("%d latches after a 404, want 2", n)
			}

			code, _, body := op.do(http.MethodPost, url.Values{"scope": {scope}}, inBody)
			var after handlerState
			if code != 200 || json.Unmarshal([]byte(body), &after) != nil {
				t.Fatalf("reset of %q: %d %s, want 200 and the state", scope, code, body)
			}
			if len(after.Latches) != 1 || after.Latches[0].Scope == scope {
				t.Errorf("latches after the reset %+v, want only the other one", after.Latches)
			}
			before := p.hits.Load()
			if resp, _ := send(t, tr, budgetURL, "sk-broke-1"); shortCircuited(resp) {
				t.Error("the reset scope's next request was refused")
			}
			if got := p.hits.Load(); got != before+1 {
				t.Errorf("provider hits %d -> %d, want the next request to reach it", before, got)
			}
		})
	}
}

// Only all=true resets every latch: a POST without an action, with a
// misspelled field, with all=false or with two actions is refused with 400
// and resets nothing.
func TestHandlerResetAllOnlyWhenExplicit(t *testing.T) {
	tr, _, op := handlerEnv(t)
	send(t, tr, budgetURL, "sk-broke-1")
	send(t, tr, budgetURL, "sk-broke-2")
	for _, form := range []url.Values{
		nil,
		{"al": {"true"}},
		{"All": {"true"}},
		{"scopes": {"x"}},
		{"all": {"false"}},
		{"all": {""}},
		{"all": {"yes"}},
		{"all": {"true"}, "scope": {"x"}},
		{"all": {"true"}, "mode": {"observe"}},
	} {
		for _, inBody := range []bool{false, true} {
			if code, _, body := op.do(http.MethodPost, form, inBody); code != http.StatusBadRequest {
				t.Errorf("POST %v (in body %v): %d %s, want 400", form, inBody, code, body)
			}
			if n := len(op.state().Latches); n != 2 {
				t.Fatalf("POST %v reset latches: %d left, want 2", form, n)
			}
		}
	}
	if op.state().Mode != ModeEnforce {
		t.Error("a refused POST switched the mode")
	}
	code, _, body := op.do(http.MethodPost, url.Values{"all": {"true"}}, true)
	if code != 200 || len(op.state().Latches) != 0 {
		t.Errorf("all=true: %d %s, want 200 and no latch", code, body)
	}
}

func TestHandlerResetBudget(t *testing.T) {
	tr, p, op := handlerEnv(t)
	send(t, tr, budgetURL, "sk-spender")
	if resp, _ := send(t, tr, budgetURL, "sk-spender"); resp.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("%s, want the budget to refuse", resp.Status)
	}
	st := op.state()
	if len(st.Budgets) != 1 || !st.Budgets[0].Exhausted {
		t.Fatalf("budgets %+v, want one exhausted", st.Budgets)
	}
	key := st.Budgets[0].Key
	for _, tt := range []struct {
		form url.Values
		code int
	}{
		{url.Values{"budget": {"nope"}, "key": {key}}, http.StatusNotFound},
		{url.Values{"budget": {"tiny"}, "key": {"someone-else"}}, http.StatusNotFound},
		{url.Values{"budget": {"tiny"}}, http.StatusNotFound},
		{url.Values{"budget": {"tiny"}, "key": {key}, "scope": {key}}, http.StatusBadRequest},
	} {
		if code, _, body := op.do(http.MethodPost, tt.form, false); code != tt.code {
			t.Errorf("POST %v: %d %s, want %d", tt.form, code, body, tt.code)
		}
	}
	if st := op.state(); len(st.Budgets) != 1 {
		t.Fatalf("budgets after refused resets %+v, want the spend kept", st.Budgets)
	}
	code, _, body := op.do(http.MethodPost, url.Values{"budget": {"tiny"}, "key": {key}}, true)
	var after handlerState
	if code != 200 || json.Unmarshal([]byte(body), &after) != nil || len(after.Budgets) != 0 {
		t.Fatalf("budget reset: %d %s, want 200 and no spend", code, body)
	}
	before := p.hits.Load()
	if resp, _ := send(t, tr, budgetURL, "sk-spender"); resp.StatusCode != 200 || p.hits.Load() != before+1 {
		t.Errorf("after the budget reset: %s, hits %d -> %d; want the request sent", resp.Status, before, p.hits.Load())
	}
}

func TestHandlerMode(t *testing.T) {
	tr, p, op := handlerEnv(t)
	send(t, tr, budgetURL, "sk-broke")
	for _, bad := range []string{"", "Observe", "off"} {
		if code, _, body := op.do(http.MethodPost, url.Values{"mode": {bad}}, false); code != http.StatusBadRequest {
			t.Errorf("mode=%q: %d %s, want 400", bad, code, body)
		}
	}
	if code, _, _ := op.do(http.MethodPost, url.Values{"mode": {"observe"}}, true); code != 200 || tr.Mode() != ModeObserve || op.state().Mode != ModeObserve {
		t.Fatalf("mode=observe: %d, Mode() %v", code, tr.Mode())
	}
	before := p.hits.Load()
	if resp, _ := send(t, tr, budgetURL, "sk-broke"); shortCircuited(resp) || p.hits.Load() != before+1 {
		t.Error("observe mode refused a request of the open latch")
	}
	if code, _, _ := op.do(http.MethodPost, url.Values{"mode": {"enforce"}}, false); code != 200 || tr.Mode() != ModeEnforce {
		t.Fatalf("mode=enforce: %d, Mode() %v", code, tr.Mode())
	}
	if resp, _ := send(t, tr, budgetURL, "sk-broke"); !shortCircuited(resp) {
		t.Error("enforce mode let a request of the open latch through")
	}
}

func TestHandlerMethodNotAllowed(t *testing.T) {
	_, _, op := handlerEnv(t)
	for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch, "RESET"} {
		code, h, _ := op.do(m, url.Values{"all": {"true"}}, false)
		if code != http.StatusMethodNotAllowed || h.Get("Allow") != "GET, HEAD, POST" {
			t.Errorf("%s: %d, Allow %q; want 405 and GET, HEAD, POST", m, code, h.Get("Allow"))
		}
	}
}

// A Transport not made with New answers every operator request with an
// error, without a panic.
func TestHandlerZeroTransport(t *testing.T) {
	var tr Transport
	op := operator{t, tr.Handler()}
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		form := url.Values{"all": {"true"}}
		if code, _, body := op.do(m, form, false); code < 500 || !strings.Contains(body, "quotabreaker.New") {
			t.Errorf("%s: %d %s, want a server error naming quotabreaker.New", m, code, body)
		}
	}
}

// A web page an operator visits cannot act through the operator's
// browser: the cross-site "simple" POSTs (text/plain, the action in the
// query string) and a cross-origin form POST are refused, and nothing
// changes; a POST with its action in the query is refused from any client.
func TestHandlerRefusesCrossSiteAndQueryActions(t *testing.T) {
	tr, _, op := handlerEnv(t)
	send(t, tr, budgetURL, "sk-broke-1")
	for _, tt := range []struct {
		name, target, contentType, body string
		headers                         map[string]string
		code                            int
	}{
		{"cross-site simple POST, mode in the query", "/quotabreaker?mode=observe", "text/plain", "x",
			map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"cross-site simple POST, all in the query", "/quotabreaker?all=true", "text/plain", "",
			map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"cross-site form POST", "/quotabreaker", "application/x-www-form-urlencoded", "all=true",
			map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"same-site form POST from another origin", "/quotabreaker", "application/x-www-form-urlencoded", "mode=observe",
			map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"an old browser's cross-origin POST", "/quotabreaker", "application/x-www-form-urlencoded", "all=true",
			map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"a tool's POST, action in the query", "/quotabreaker?all=true", "", "", nil, http.StatusBadRequest},
		{"a tool's POST, mode in the query", "/quotabreaker?mode=observe", "application/x-www-form-urlencoded", "", nil, http.StatusBadRequest},
		{"a text/plain body", "/quotabreaker", "text/plain", "all=true", nil, http.StatusUnsupportedMediaType},
	} {
		req := httptest.NewRequest(http.MethodPost, tt.target, strings.NewReader(tt.body))
		if tt.contentType != "" {
			req.Header.Set("Content-Type", tt.contentType)
		}
		for k, v := range tt.headers {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		op.h.ServeHTTP(w, req)
		if w.Code != tt.code {
			t.Errorf("%s: %d %s, want %d", tt.name, w.Code, w.Body.String(), tt.code)
		}
		if st := op.state(); st.Mode != ModeEnforce || len(st.Latches) != 1 {
			t.Fatalf("%s changed the state: mode %v, %d latches", tt.name, st.Mode, len(st.Latches))
		}
	}
	// The operator's own page (same origin) still works.
	req := httptest.NewRequest(http.MethodPost, "/quotabreaker", strings.NewReader("mode=observe"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	w := httptest.NewRecorder()
	op.h.ServeHTTP(w, req)
	if w.Code != http.StatusOK || tr.Mode() != ModeObserve {
		t.Errorf("same-origin form POST: %d %s, mode %v", w.Code, w.Body.String(), tr.Mode())
	}
}
