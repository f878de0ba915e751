package balance

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// canary is a key distinctive enough that finding it anywhere is a leak.
const canary = "sk-CANARY-3b9e0d7f6a1c-do-not-print"

func canaryKey() (string, error) { return canary, nil }

// probeCase is one provider: how to build its probe against a server, the
// request it must send, its documented answer and what that answer reads as.
type probeCase struct {
	name string
	new  func(base string, timeout time.Duration) Probe
	path string
	body string
	want []Balance // Provider, Scope, Fingerprint, Read filled in by the test
}

var probeCases = []probeCase{
	{
		name: "deepseek",
		new: func(base string, t time.Duration) Probe {
			return DeepSeek{Key: canaryKey, BaseURL: base, Timeout: t}
		},
		path: "/user/balance",
		body: deepseekDoc,
		want: []Balance{{Currency: "CNY", Available: 110_000000, Usable: true,
			Parts: []Part{{"granted_balance", 10_000000}, {"topped_up_balance", 100_000000}}}},
	},
	{
		name: "openrouter",
		new: func(base string, t time.Duration) Probe {
			return OpenRouter{Key: canaryKey, BaseURL: base, Timeout: t}
		},
		path: "/api/v1/key",
		body: openrouterKeyDoc,
		want: []Balance{{Currency: "USD", Available: 74_500000, Usable: true,
			Parts: []Part{{"limit", 100_000000}, {"usage", 25_500000}, {"usage_daily", 25_500000},
				{"usage_weekly", 25_500000}, {"usage_monthly", 25_500000}}}},
	},
	{
		name: "openrouter credits",
		new: func(base string, t time.Duration) Probe {
			return OpenRouterCredits{Key: canaryKey, BaseURL: base, Timeout: t}
		},
		path: "/api/v1/credits",
		body: openrouterCreditsDoc,
		want: []Balance{{Currency: "USD", Available: 74_750000, Usable: true,
			Parts: []Part{{"total_credits", 100_500000}, {"total_usage", 25_750000}}}},
	},
	{
		name: "moonshot",
		new: func(base string, t time.Duration) Probe {
			return Moonshot{Key: canaryKey, BaseURL: base, Currency: "CNY", Timeout: t}
		},
		path: "/v1/users/me/balance",
		body: moonshotDoc,
		want: []Balance{{Currency: "CNY", Available: 49_588940, Usable: true,
			Parts: []Part{{"voucher_balance", 46_588930}, {"cash_balance", 3_000010}}}},
	},
	{
		name: "siliconflow",
		new: func(base string, t time.Duration) Probe {
			return SiliconFlow{Key: canaryKey, BaseURL: base, Currency: "USD", Timeout: t}
		},
		path: "/v1/user/info",
		body: siliconflowDoc,
		want: []Balance{{Currency: "USD", Available: 88_880000, Usable: true,
			Parts: []Part{{"balance", 880000}, {"chargeBalance", 88_000000}}}},
	},
	{
		name: "xai",
		new: func(base string, t time.Duration) Probe {
			return XAI{Key: canaryKey, TeamID: "team 1/a", BaseURL: base, Timeout: t}
		},
		path: "/v1/billing/teams/team%201%2Fa/prepaid/balance",
		body: xaiLedger,
		want: []Balance{{Currency: "USD", Available: 10_000000, Usable: true, Account: "team 1/a"}},
	},
}

// server answers path, for a request with the canary key, with status and
// body; anything else is a test failure answered 404.
func server(t *testing.T, path string, status int, body string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.EscapedPath() != path || r.Header.Get("Authorization") != "Bearer "+canary {
			t.Errorf("request %s %s (auth %t), want GET %s with the key", r.Method, r.URL.EscapedPath(),
				r.Header.Get("Authorization") != "", path)
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestProbesReadTheDocumentedAnswers(t *testing.T) {
	for _, c := range probeCases {
		t.Run(c.name, func(t *testing.T) {
			s := server(t, c.path, http.StatusOK, c.body)
			p := c.new(s.URL, 0)
			before := time.Now()
			got, err := p.Balances(context.Background(), s.Client())
			if err != nil {
				t.Fatalf("Balances: %v", err)
			}
			host := strings.TrimPrefix(s.URL, "http://")
			for i := range got {
				if got[i].Read.Before(before) || got[i].Read.After(time.Now()) {
					t.Errorf("Read = %v, not the time of the answer", got[i].Read)
				}
				got[i].Read = time.Time{}
			}
			if scope, err := p.Scope(); err != nil || scope != host+"/key:"+Fingerprint(canary) {
				t.Errorf("Scope() = %q, %v", scope, err)
			}
			want := make([]Balance, len(c.want))
			for i, b := range c.want {
				b.Provider = p.Provider()
				b.Scope = host + "/key:" + Fingerprint(canary)
				b.Fingerprint = Fingerprint(canary)
				want[i] = b
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Balances =\n%+v\nwant\n%+v", got, want)
			}
			if s := fmt.Sprintf("%+v %#v", got, got); strings.Contains(s, canary) {
				t.Errorf("a Balance holds the key: %s", s)
			}
		})
	}
}

// TestProbesFailClearly: every way an answer goes wrong gives its own
// error, and none of them, nor the Balance, quotes the key, even when the
// answer echoes it.
func TestProbesFailClearly(t *testing.T) {
	echo := `{"error":{"message":"Incorrect API key provided: ` + canary + `"}}`
	cases := []struct {
		name    string
		status  int
		body    string
		is      error
		status2 int // the *StatusError's status, when one is expected
	}{
		{"401", http.StatusUnauthorized, echo, ErrUnauthorized, 401},
		{"403", http.StatusForbidden, echo, ErrUnauthorized, 403},
		{"500", http.StatusInternalServerError, echo, nil, 500},
		{"429", http.StatusTooManyRequests, echo, nil, 429},
		{"html", http.StatusOK, "<!DOCTYPE html><html><body>Sign in " + canary + "</body></html>", ErrShape, 0},
		{"unknown json", http.StatusOK, `{"object":"error","message":"` + canary + `"}`, ErrShape, 0},
		{"empty", http.StatusOK, ``, ErrShape, 0},
		{"null", http.StatusOK, `null`, ErrShape, 0},
		{"array", http.StatusOK, `[` + echo + `]`, ErrShape, 0},
		{"too large", http.StatusOK, `{"pad":"` + strings.Repeat("x", maxBody) + `"}`, ErrShape, 0},
	}
	for _, pc := range probeCases {
		for _, c := range cases {
			t.Run(pc.name+"/"+c.name, func(t *testing.T) {
				s := server(t, pc.path, c.status, c.body)
				bs, err := pc.new(s.URL, 0).Balances(context.Background(), s.Client())
				if err == nil {
					t.Fatalf("Balances = %+v, want an error", bs)
				}
				if c.is != nil && !errors.Is(err, c.is) {
					t.Errorf("err = %v, want %v", err, c.is)
				}
				var se *StatusError
				if got := errors.As(err, &se); got != (c.status2 != 0) || got && se.StatusCode != c.status2 {
					t.Errorf("err = %#v, want a *StatusError with %d: %t", err, c.status2, got)
				}
				if c.is != ErrUnauthorized && errors.Is(err, ErrUnauthorized) {
					t.Errorf("err = %v Is ErrUnauthorized", err)
				}
				if strings.Contains(err.Error(), canary) || strings.Contains(fmt.Sprintf("%#v", err), canary) {
					t.Errorf("the error quotes the key: %v", err)
				}
			})
		}
	}
}

func TestProbesTimeOut(t *testing.T) {
	for _, pc := range probeCases {
		t.Run(pc.name, func(t *testing.T) {
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			}))
			defer s.Close()
			start := time.Now()
			_, err := pc.new(s.URL, 50*time.Millisecond).Balances(context.Background(), s.Client())
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want context.DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v for a 50ms timeout", d)
			}
			if !strings.Contains(err.Error(), "no answer within 50ms") || strings.Contains(err.Error(), canary) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

// TestProbesHonourTheContext: the caller's cancellation is the caller's,
// not a timeout of the probe.
func TestProbesHonourTheContext(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err := DeepSeek{Key: canaryKey, BaseURL: s.URL}.Balances(ctx, s.Client())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestDeepSeekTwoCurrencies(t *testing.T) {
	got, err := decodeDeepSeek([]byte(deepseekTwoCurrencies))
	if err != nil {
		t.Fatal(err)
	}
	want := []Balance{
		{Currency: "CNY", Parts: []Part{{"granted_balance", 0}, {"topped_up_balance", 0}}},
		{Currency: "USD", Available: 1_500000, Parts: []Part{{"granted_balance", 0}, {"topped_up_balance", 1_500000}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestOpenRouterKey(t *testing.T) {
	got, err := decodeOpenRouterKey([]byte(openrouterKeyCrate))
	if err != nil {
		t.Fatal(err)
	}
	// 4.8984355238 dollars is 4898435.5238 millionths: nearest is 4898436.
	if got[0].Available != 4_898436 || got[0].Currency != "USD" {
		t.Errorf("got %+v, want 4.898436 USD", got[0])
	}
	if u, _ := got[0].Part("usage"); u != 101564 {
		t.Errorf("usage = %d, want 101564", u)
	}
	if strings.Contains(fmt.Sprintf("%+v", got), "sk-or-v1") {
		t.Errorf("the label, part of the key, was kept: %+v", got)
	}

	_, err = decodeOpenRouterKey([]byte(openrouterKeyUnlimited))
	if !errors.Is(err, ErrNoLimit) || errors.Is(err, ErrShape) {
		t.Errorf("unlimited key: err = %v, want ErrNoLimit", err)
	}
	_, err = decodeOpenRouterKey([]byte(`{"data":{"usage":1}}`))
	if !errors.Is(err, ErrShape) {
		t.Errorf("no limit field: err = %v, want ErrShape", err)
	}
}

func TestErrorEnvelopesIn200(t *testing.T) {
	if _, err := decodeMoonshot([]byte(`{"code":5,"data":{"available_balance":1},"scode":"0x5","status":false}`), "CNY"); !errors.Is(err, ErrShape) {
		t.Errorf("moonshot code 5: err = %v", err)
	}
	if _, err := decodeSiliconFlow([]byte(`{"code":50603,"message":"System is too busy now","status":false,"data":null}`), "USD"); !errors.Is(err, ErrShape) {
		t.Errorf("siliconflow code 50603: err = %v", err)
	}
	if _, err := decodeXAI([]byte(`{"total":{}}`)); !errors.Is(err, ErrShape) {
		t.Errorf("xai without total.val: err = %v", err)
	}
	if _, err := decodeDeepSeek([]byte(`{"is_available":true,"balance_infos":[]}`)); !errors.Is(err, ErrShape) {
		t.Errorf("deepseek without balance_infos: err = %v", err)
	}
	if _, err := decodeDeepSeek([]byte(`{"is_available":true,"balance_infos":[{"currency":"C N Y","total_balance":"1"}]}`)); !errors.Is(err, ErrShape) {
		t.Errorf("deepseek with a currency that is no code: err = %v", err)
	}
}

// A ledger in debt reads as a negative balance, never as zero.
func TestXAIDebt(t *testing.T) {
	got, err := decodeXAI([]byte(`{"changes":[],"total":{"val":"250"}}`))
	if err != nil || got[0].Available != -2_500000 || got[0].Usable {
		t.Errorf("got %+v, %v; want -2.50 USD, not usable", got, err)
	}
}

func TestCurrencyByHost(t *testing.T) {
	cases := []struct {
		probe Probe
		want  string // "" for an error
	}{
		{Moonshot{}, "CNY"},
		{Moonshot{BaseURL: "https://api.moonshot.ai"}, "USD"},
		{Moonshot{BaseURL: "https://API.Moonshot.AI:443/"}, "USD"},
		{Moonshot{BaseURL: "https://proxy.example"}, ""},
		{Moonshot{BaseURL: "https://proxy.example", Currency: "CNY"}, "CNY"},
		{Moonshot{BaseURL: "https://evilmoonshot.cn"}, ""},
		{SiliconFlow{}, "USD"},
		{SiliconFlow{BaseURL: "https://api.siliconflow.cn"}, "CNY"},
		{SiliconFlow{BaseURL: "http://127.0.0.1:8080"}, ""},
	}
	for _, c := range cases {
		var got string
		var err error
		switch p := c.probe.(type) {
		case Moonshot:
			e := endpoint{provider: "moonshot", base: p.BaseURL, def: "https://api.moonshot.cn"}
			got, err = e.currency(p.Currency, map[string]string{"moonshot.cn": "CNY", "moonshot.ai": "USD"})
		case SiliconFlow:
			e := endpoint{provider: "siliconflow", base: p.BaseURL, def: "https://api.siliconflow.com"}
			got, err = e.currency(p.Currency, map[string]string{"siliconflow.com": "USD", "siliconflow.cn": "CNY"})
		}
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("%+v: currency %q, %v; want %q", c.probe, got, err, c.want)
		}
	}
	// The probe itself refuses to guess before it sends anything.
	_, err := Moonshot{Key: canaryKey, BaseURL: "http://127.0.0.1:1"}.Balances(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "set Currency") {
		t.Errorf("err = %v, want one that says to set Currency", err)
	}
}

func TestKeys(t *testing.T) {
	t.Setenv("QB_TEST_KEY", canary)
	if k, err := EnvKey("QB_TEST_KEY")(); k != canary || err != nil {
		t.Errorf("EnvKey = %q, %v", k, err)
	}
	t.Setenv("QB_TEST_KEY", "")
	if _, err := EnvKey("QB_TEST_KEY")(); !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), "QB_TEST_KEY") {
		t.Errorf("EnvKey of an empty variable: %v", err)
	}
	for _, p := range []Probe{DeepSeek{}, DeepSeek{Key: func() (string, error) { return "", nil }}} {
		if _, err := p.Balances(context.Background(), nil); !errors.Is(err, ErrNoKey) {
			t.Errorf("no key: err = %v, want ErrNoKey", err)
		}
	}
	boom := errors.New("vault sealed")
	if _, err := (DeepSeek{Key: func() (string, error) { return "", boom }}).Balances(context.Background(), nil); !errors.Is(err, boom) {
		t.Errorf("a failing KeyFunc: err = %v", err)
	}
	if _, err := (XAI{Key: canaryKey}).Balances(context.Background(), nil); err == nil {
		t.Error("xAI without a team id: no error")
	}
	// A key in the base URL would be sent and printed: refused.
	_, err := DeepSeek{Key: canaryKey, BaseURL: "https://user:" + canary + "@api.deepseek.com"}.Balances(context.Background(), nil)
	if err == nil || strings.Contains(err.Error(), canary) {
		t.Errorf("user info in the base URL: err = %v", err)
	}
}

// TestScopeMatchesTheRootPackage: Fingerprint and Scope follow
// quotabreaker.DefaultScope's rule, `printf %s "$KEY" | sha256sum | cut -c1-12`.
func TestScopeMatchesTheRootPackage(t *testing.T) {
	// printf %s sk-proj-example | sha256sum
	const sum = "7eca0b7a12c2" // as the root's ExampleDefaultScope prints
	if got := Fingerprint("sk-proj-example"); got != sum {
		t.Errorf("Fingerprint = %q, want %q", got, sum)
	}
	if got := Scope("API.DeepSeek.com", "sk-proj-example"); got != "api.deepseek.com/key:"+sum {
		t.Errorf("Scope = %q", got)
	}
}

func TestRetryAfter(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer s.Close()
	_, err := DeepSeek{Key: canaryKey, BaseURL: s.URL}.Balances(context.Background(), s.Client())
	var se *StatusError
	if !errors.As(err, &se) || se.RetryAfter != 30*time.Second || se.Provider != "deepseek" {
		t.Errorf("err = %#v, want a 429 with RetryAfter 30s", err)
	}
}

// TestNoRedirect: a redirect is not followed, so no key header (bearer or
// x-api-key) reaches the host it names.
func TestNoRedirect(t *testing.T) {
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the redirect was followed, with headers %v", r.Header)
	}))
	defer elsewhere.Close()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusFound)
	}))
	defer s.Close()
	_, err := DeepSeek{Key: canaryKey, BaseURL: s.URL}.Balances(context.Background(), s.Client())
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusFound {
		t.Errorf("err = %v, want a 302 *StatusError", err)
	}
	_, err = AnthropicCosts{Key: canaryKey, BaseURL: s.URL}.Daily(context.Background(), s.Client(), t0, t0)
	if !errors.As(err, &se) || se.StatusCode != http.StatusFound {
		t.Errorf("err = %v, want a 302 *StatusError", err)
	}
}

// TestKeyReadAtEachPoll: a rotated key is used, and named, at the next read.
func TestKeyReadAtEachPoll(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, deepseekDoc)
	}))
	defer s.Close()
	keys := []string{"sk-old", "sk-new"}
	calls := 0
	p := DeepSeek{Key: func() (string, error) { calls++; return keys[calls-1], nil }, BaseURL: s.URL}
	for _, k := range keys {
		bs, err := p.Balances(context.Background(), s.Client())
		if err != nil || bs[0].Fingerprint != Fingerprint(k) {
			t.Errorf("after rotating to %s: %+v, %v", k, bs, err)
		}
	}
}
