package quotabreaker

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// tenantServer answers a quota exhaustion to every request that carries
// "sk-A" anywhere in its headers, and 200 to the others, counting the
// requests of each tenant that reached it.
type tenantServer struct {
	*httptest.Server
	a, b atomic.Int64
}

func newTenantServer(t *testing.T) *tenantServer {
	t.Helper()
	quota := quotaAnswer(t)
	s := &tenantServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		var all strings.Builder
		for _, vs := range r.Header {
			all.WriteString(strings.Join(vs, " "))
		}
		if strings.Contains(all.String(), "sk-A") {
			s.a.Add(1)
			quota.write(w)
			return
		}
		s.b.Add(1)
		ok().write(w)
	}))
	t.Cleanup(s.Close)
	return s
}

// TestScopeSeesEveryCredential sends tenant A's key, then tenant B's, the
// way each variant writes them: A's first answer trips, A's second request
// never reaches the server, and B's requests all do.
func TestScopeSeesEveryCredential(t *testing.T) {
	set := func(name string) func(h http.Header, key string) {
		return func(h http.Header, key string) { h.Set(name, key) }
	}
	tests := []struct {
		name string
		set  func(h http.Header, key string)
		opts []Option
	}{
		{"LiteLLM's X-Litellm-Api-Key", set("X-Litellm-Api-Key"), nil},
		{"Portkey's X-Portkey-Virtual-Key", set("X-Portkey-Virtual-Key"), nil},
		{"Portkey's X-Portkey-Api-Key", set("X-Portkey-Api-Key"), nil},
		{"Cloudflare AI Gateway's Cf-Aig-Authorization", func(h http.Header, key string) { h.Set("Cf-Aig-Authorization", "Bearer "+key) }, nil},
		{"a lower-case map key", func(h http.Header, key string) { h["x-api-key"] = []string{key} }, nil},
		{"a lower-case Authorization", func(h http.Header, key string) { h["authorization"] = []string{"Bearer " + key} }, nil},
		{"an unknown header named a secret", set("X-Gateway-Secret"), nil},
		{"an unknown header in camel case", func(h http.Header, key string) { h["xAccessToken"] = []string{key} }, nil},
		{"a header named by WithCredentialHeaders", set("X-Tenant-Pass"), []Option{WithCredentialHeaders("x-tenant-pass")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTenantServer(t)
			tr := New(nil, tt.opts...)
			send := func(key string) *http.Response {
				req := chatRequest(t, srv.URL, "")
				tt.set(req.Header, key)
				resp, _ := sendReq(t, tr, req)
				return resp
			}
			send("sk-A")
			if len(openLatches(t, tr)) != 1 {
				t.Fatal("tenant A's quota answer opened no latch")
			}
			if resp := send("sk-A"); !shortCircuited(resp) {
				t.Errorf("tenant A reached the server after its trip: %d", resp.StatusCode)
			}
			for i := 0; i < 2; i++ {
				if resp := send("sk-B"); resp.StatusCode != 200 {
					t.Errorf("tenant B got %d after A tripped", resp.StatusCode)
				}
			}
			if srv.a.Load() != 1 || srv.b.Load() != 2 {
				t.Errorf("server saw A %d times (want 1) and B %d times (want 2)", srv.a.Load(), srv.b.Load())
			}
			if trips := openLatches(t, tr); len(trips) != 1 || strings.Contains(trips[0].Scope, "sk-") {
				t.Errorf("OpenLatches() = %+v, want one latch naming no key", trips)
			}
		})
	}
}

// TestScopeOneKeyWrittenTwoWays: the same key, however it is written, is
// one scope; a trip under one spelling refuses the others, and one latch
// opens.
func TestScopeOneKeyWrittenTwoWays(t *testing.T) {
	spellings := []func(h http.Header){
		func(h http.Header) { h.Set("Authorization", "Bearer sk-A") },
		func(h http.Header) { h.Set("Authorization", "Bearer sk-A ") },
		func(h http.Header) { h.Set("Authorization", "Bearer\tsk-A") },
		func(h http.Header) { h.Set("Authorization", " Bearer  sk-A\t") },
		func(h http.Header) { h.Set("Authorization", "bearer sk-A") },
		func(h http.Header) { h["authorization"] = []string{"Bearer sk-A"} },
		func(h http.Header) { h.Set("X-Api-Key", "sk-A") },
		func(h http.Header) { h["x-api-key"] = []string{" sk-A"} },
		func(h http.Header) { h.Set("Authorization", "Bearer sk-A"); h.Set("X-Api-Key", "sk-A") },
		func(h http.Header) {
			h.Set("Authorization", "Bearer sk-A")
			h.Set("Idempotency-Key", "stainless-retry-1")
		},
		func(h http.Header) {
			h.Set("Authorization", "Bearer sk-A")
			h.Set("Idempotency-Key", "stainless-retry-2")
		},
	}
	for i, tripWith := range spellings {
		srv := newTenantServer(t)
		tr := New(nil)
		send := func(spell func(http.Header)) *http.Response {
			req := chatRequest(t, srv.URL, "")
			spell(req.Header)
			resp, _ := sendReq(t, tr, req)
			return resp
		}
		send(tripWith)
		for j, other := range spellings {
			if resp := send(other); !shortCircuited(resp) {
				t.Errorf("tripped with spelling %d, spelling %d reached the server (%d)", i, j, resp.StatusCode)
			}
		}
		if n := len(openLatches(t, tr)); n != 1 || srv.a.Load() != 1 {
			t.Errorf("tripped with spelling %d: %d latches, %d requests reached the server; want 1 and 1", i, n, srv.a.Load())
		}
	}
}

// TestScopeWithoutCredential: a request with no credential the Transport
// can find is scoped by its host alone, which the span says, and the
// logger says once.
func TestScopeWithoutCredential(t *testing.T) {
	srv := newTenantServer(t)
	rec := newRecording(t)
	var logs syncBuffer
	tr := New(nil, append(rec.options(), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))...)
	for i := 0; i < 3; i++ {
		req := chatRequest(t, srv.URL, "")
		req.Header.Set("X-Tenant", "acme") // says nothing of a credential
		sendReq(t, tr, req)
	}
	send(t, tr, srv.URL, "sk-B")
	spans := rec.ours()
	if len(spans) != 4 {
		t.Fatalf("%d spans, want 4", len(spans))
	}
	for i, s := range spans {
		got, has := attrs(s)[attrScopeCredential]
		if want := i < 3; has != want || (has && got.AsString() != "none") {
			t.Errorf("span %d: quotabreaker.scope.credential = %v (present %v), want none on the 3 requests without a credential only", i, got.AsString(), has)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "no credential"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, out)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	if !strings.Contains(out, "host="+host) {
		t.Errorf("the log line does not name the host %s:\n%s", host, out)
	}
}

// syncBuffer is a bytes.Buffer safe for the Transport's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestScopeQueryCredentials: a key in any credential parameter scopes the
// request, so that two tenants of one gateway are two scopes.
func TestScopeQueryCredentials(t *testing.T) {
	for _, param := range []string{"key", "code", "jwt", "session", "sas", "Api%5FKey"} {
		a := DefaultScope(chatRequest(t, "https://gw.example/v1/chat?api-version=1&"+param+"=sk-A", ""))
		b := DefaultScope(chatRequest(t, "https://gw.example/v1/chat?api-version=1&"+param+"=sk-B", ""))
		same := DefaultScope(chatRequest(t, "https://gw.example/v1/chat?"+param+"=sk-A;api-version=2", ""))
		if a == b || a != same || !strings.Contains(a, "/key:"+Fingerprint("sk-A")) {
			t.Errorf("?%s=: scopes %q, %q, %q; want A's fingerprint, B apart, A the same", param, a, b, same)
		}
	}
}
