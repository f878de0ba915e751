package quotabreaker

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// corpusAnswer is one real answer from testdata/corpus, served as sent.
type corpusAnswer struct {
	status int
	header http.Header
	body   string
}

func answerFrom(tb testing.TB, name string) corpusAnswer {
	tb.Helper()
	for _, s := range loadCorpus(tb) {
		if s.name == name {
			return corpusAnswer{s.Status, s.header(), s.Body}
		}
	}
	tb.Fatalf("no corpus sample %q", name)
	return corpusAnswer{}
}

func (a corpusAnswer) write(w http.ResponseWriter) {
	for k, v := range a.header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

const okBody = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`

// server is an httptest server that answers each request with what script
// returns for its key, and counts what reached it.
type server struct {
	*httptest.Server
	hits  atomic.Int64
	mu    sync.Mutex
	byKey map[string]int
}

func newServer(t *testing.T, script func(key string, n int) corpusAnswer) *server {
	t.Helper()
	s := &server{byKey: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		io.Copy(io.Discard, r.Body)
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		s.byKey[key]++
		n := s.byKey[key]
		s.mu.Unlock()
		script(key, n).write(w)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) hitsFor(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byKey[key]
}

func ok() corpusAnswer {
	return corpusAnswer{200, http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"req_ok"}}, okBody}
}

// call sends one chat request with the given key and returns status, body
// and headers as the caller sees them.
func call(t *testing.T, c *http.Client, url, key string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func newClient(t *testing.T, tr *Transport) *http.Client {
	t.Cleanup(func() { http.DefaultTransport.(*http.Transport).CloseIdleConnections() })
	return &http.Client{Transport: tr}
}

func TestQuotaOpensLatchAndShortCircuits(t *testing.T) {
	quota := answerFrom(t, "openai-insufficient-quota-429-status-shown")
	srv := newServer(t, func(string, int) corpusAnswer { return quota })
	var trips []Trip
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tr := New(nil, OnTrip(func(tp Trip) { trips = append(trips, tp) }), WithClock(func() time.Time { return at }))
	c := newClient(t, tr)

	resp, body := call(t, c, srv.URL, "sk-a")
	if resp.StatusCode != 429 || string(body) != quota.body {
		t.Fatalf("tripping answer changed: %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get(HeaderShouldRetry); got != "false" {
		t.Errorf("tripping answer X-Should-Retry = %q, want false", got)
	}
	if resp.Header.Get(HeaderShortCircuit) != "" {
		t.Error("tripping answer came from the network but is marked short-circuited")
	}

	for i := 0; i < 5; i++ {
		resp, body := call(t, c, srv.URL, "sk-a")
		if resp.StatusCode != 429 || string(body) != quota.body {
			t.Fatalf("short-circuited answer = %d %q, want the tripping one", resp.StatusCode, body)
		}
		for h, want := range map[string]string{
			HeaderShouldRetry:  "false",
			HeaderShortCircuit: "true",
			"Content-Type":     "application/json",
			HeaderScope:        trips[0].Scope,
		} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("short-circuited %s = %q, want %q", h, got, want)
			}
		}
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
	if len(trips) != 1 {
		t.Fatalf("OnTrip fired %d times, want 1", len(trips))
	}
	want := Trip{
		Scope:          trips[0].Scope,
		Classification: Classification{ClassQuotaExhausted, "", "insufficient_quota", "insufficient_quota", false},
		Status:         429,
		At:             at,
	}
	if trips[0] != want {
		t.Errorf("trip = %+v, want %+v", trips[0], want)
	}
	if !strings.HasPrefix(trips[0].Scope, strings.TrimPrefix(srv.URL, "http://")+"/key:") {
		t.Errorf("scope %q does not name host and key fingerprint", trips[0].Scope)
	}
	if got := tr.OpenLatches(); len(got) != 1 || got[0] != want {
		t.Errorf("OpenLatches() = %+v", got)
	}

	if !tr.Reset(trips[0].Scope) {
		t.Fatal("Reset found no open latch")
	}
	if tr.Reset(trips[0].Scope) {
		t.Error("second Reset found an open latch")
	}
	call(t, c, srv.URL, "sk-a")
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("after Reset the server saw %d requests in all, want 2", n)
	}
}

func TestRetryableAnswersPassThrough(t *testing.T) {
	for _, name := range []string{
		"openai-rate-limit-tokens-tpm",
		"openai-rate-limit-requests-collapsed",
		"gemini-429-free-tier-quotafailure",
		"azure-token-rate-limit-429",
		"anthropic-overloaded-529-headers",
		"openai-server-error-500",
		"openai-model-overloaded-503",
		"openai-context-length-exceeded",
		"openai-invalid-api-key-401",
	} {
		t.Run(name, func(t *testing.T) {
			a := answerFrom(t, name)
			a.header.Set("Retry-After", "2")
			a.header.Set("Retry-After-Ms", "2000")
			a.header.Set("X-Ratelimit-Reset-Tokens", "1.2s")
			srv := newServer(t, func(string, int) corpusAnswer { return a })
			tr := New(nil)
			c := newClient(t, tr)
			for i := 0; i < 20; i++ {
				resp, body := call(t, c, srv.URL, "sk-a")
				if resp.StatusCode != a.status || string(body) != a.body {
					t.Fatalf("answer changed: %d %q", resp.StatusCode, body)
				}
				for k, v := range a.header {
					if k == "Content-Length" {
						continue
					}
					if got := resp.Header.Values(k); strings.Join(got, ",") != strings.Join(v, ",") {
						t.Errorf("header %s = %q, want %q", k, got, v)
					}
				}
				if resp.Header.Get(HeaderShouldRetry) != a.header.Get(HeaderShouldRetry) || resp.Header.Get(HeaderShortCircuit) != "" {
					t.Errorf("retryable answer got our headers: %v", resp.Header)
				}
			}
			if srv.hits.Load() != 20 || len(tr.OpenLatches()) != 0 {
				t.Errorf("hits %d, tripped %v: a retryable answer counted towards the latch", srv.hits.Load(), tr.OpenLatches())
			}
		})
	}
}

// TestErrorBodyIdentical checks the caller reads exactly the bytes the
// server sent, whatever their length, and that closing releases the
// connection for reuse.
func TestErrorBodyIdentical(t *testing.T) {
	for _, size := range []int{0, 1, 100, 64<<10 - 1, 64 << 10, 64<<10 + 1, 3 << 20} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			payload := make([]byte, size)
			rand.Read(payload)
			var conns atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusBadGateway)
				w.Write(payload)
			}))
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			defer srv.Close()
			base := &http.Transport{}
			defer base.CloseIdleConnections()
			c := &http.Client{Transport: New(base)}
			for i := 0; i < 3; i++ {
				resp, err := c.Get(srv.URL)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Equal(got, payload) {
					t.Fatalf("body: %d bytes, err %v; want %d identical bytes", len(got), err, size)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("%d connections for 3 requests: the body did not release its connection", n)
			}
		})
	}
}

func TestErrorBodyReadErrorSurvives(t *testing.T) {
	boom := errors.New("connection reset mid-body")
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{
			StatusCode: 500,
			Header:     http.Header{},
			Body:       io.NopCloser(io.MultiReader(strings.NewReader(`{"error":`), errReader{boom})),
			Request:    r,
		}, nil
	})
	resp, err := New(base).RoundTrip(httptest.NewRequest("GET", "http://x/", nil))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if string(got) != `{"error":` || !errors.Is(err, boom) {
		t.Errorf("read %q, %v; want the prefix then the original error", got, err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestGzipErrorBody(t *testing.T) {
	quota := answerFrom(t, "openai-insufficient-quota-429-status-shown")
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write([]byte(quota.body))
	zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(429)
		w.Write(zipped.Bytes())
	}))
	defer srv.Close()
	tr := New(nil)
	c := newClient(t, tr)
	get := func() (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", srv.URL, nil)
		req.Header.Set("Accept-Encoding", "gzip") // so Go does not decode it
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, body := get()
	if !bytes.Equal(body, zipped.Bytes()) || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("caller got %d bytes (encoding %q), want the %d gzip bytes sent", len(body), resp.Header.Get("Content-Encoding"), zipped.Len())
	}
	if got := tr.OpenLatches(); len(got) != 1 || got[0].Code != "insufficient_quota" {
		t.Fatalf("gzip quota answer did not trip: %+v", got)
	}
	// The replayed answer is decoded: the next request may not accept gzip.
	resp, body = get()
	if resp.Header.Get(HeaderShortCircuit) != "true" || string(body) != quota.body || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("short-circuited answer = %q (encoding %q)", body, resp.Header.Get("Content-Encoding"))
	}
}

func TestSuccessBodyUntouched(t *testing.T) {
	body := io.NopCloser(strings.NewReader("data: {}\n\n"))
	var status int
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: status, Header: http.Header{}, Body: body, Request: r}, nil
	})
	for _, status = range []int{200, 204, 301, 304, 399} {
		resp, err := New(base).RoundTrip(httptest.NewRequest("POST", "http://x/", nil))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Body != body {
			t.Errorf("status %d: body %T was replaced; with no tracer it must be the base's own", status, resp.Body)
		}
	}
}

func TestStreamPassesChunkByChunk(t *testing.T) {
	next := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "data: {\"chunk\":%d}\n\n", i)
			w.(http.Flusher).Flush()
			<-next // the client must have read this chunk before the next is written
		}
	}))
	defer srv.Close()
	defer close(next)
	c := newClient(t, New(nil))
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	for i := 0; i < 3; i++ {
		n, err := resp.Body.Read(buf)
		if err != nil || !strings.Contains(string(buf[:n]), fmt.Sprintf(`"chunk":%d`, i)) {
			t.Fatalf("chunk %d: read %q, %v", i, buf[:n], err)
		}
		if i < 2 {
			next <- struct{}{}
		}
	}
}

func TestShortCircuitError(t *testing.T) {
	quota := answerFrom(t, "openai-insufficient-quota-429-status-shown")
	srv := newServer(t, func(string, int) corpusAnswer { return quota })
	tr := New(nil, WithShortCircuitError())
	c := newClient(t, tr)
	call(t, c, srv.URL, "sk-a") // trips

	req, _ := http.NewRequest("POST", srv.URL, strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer sk-a")
	resp, err := c.Do(req)
	if resp != nil {
		t.Fatalf("got a response %d, want an error", resp.StatusCode)
	}
	if !errors.Is(err, ErrQuotaExhausted) || !errors.Is(err, ErrOpen) {
		t.Fatalf("err = %v, want ErrQuotaExhausted and ErrOpen", err)
	}
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Code != "insufficient_quota" || oe.Class != ClassQuotaExhausted || oe.Scope != tr.OpenLatches()[0].Scope {
		t.Fatalf("errors.As: %+v", oe)
	}
	if strings.Contains(err.Error(), "sk-a") {
		t.Errorf("error text %q shows the key", err)
	}
	if srv.hits.Load() != 1 {
		t.Errorf("server saw %d requests, want 1", srv.hits.Load())
	}
}

func TestTransportErrorPassesThrough(t *testing.T) {
	boom := errors.New("dial tcp: connection refused")
	tr := New(roundTripperFunc(func(*http.Request) (*http.Response, error) { return nil, boom }))
	for i := 0; i < 10; i++ {
		resp, err := tr.RoundTrip(httptest.NewRequest("POST", "http://api.openai.com/v1/chat/completions", nil))
		if resp != nil || err != boom {
			t.Fatalf("RoundTrip = %v, %v; want the base's error unchanged", resp, err)
		}
	}
	if len(tr.OpenLatches()) != 0 {
		t.Error("transport errors tripped the latch")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	srv := newServer(t, func(string, int) corpusAnswer { return ok() })
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	if _, err := newClient(t, New(nil)).Do(req); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: %v, want context.Canceled", err)
	}
}

func TestScopes(t *testing.T) {
	quota := answerFrom(t, "openai-insufficient-quota-429-status-shown")
	srv := newServer(t, func(key string, _ int) corpusAnswer {
		if key == "sk-poor" {
			return quota
		}
		return ok()
	})

	t.Run("one exhausted key does not stop another", func(t *testing.T) {
		tr := New(nil)
		c := newClient(t, tr)
		call(t, c, srv.URL, "sk-poor")
		for i := 0; i < 3; i++ {
			if resp, _ := call(t, c, srv.URL, "sk-rich"); resp.StatusCode != 200 {
				t.Fatalf("other key got %d", resp.StatusCode)
			}
			if resp, _ := call(t, c, srv.URL, "sk-poor"); resp.Header.Get(HeaderShortCircuit) != "true" {
				t.Fatal("exhausted key reached the network")
			}
		}
		if srv.hitsFor("sk-poor") != 1 {
			t.Errorf("exhausted key reached the server %d times", srv.hitsFor("sk-poor"))
		}
	})

	t.Run("project and organization split scopes", func(t *testing.T) {
		tr := New(nil)
		send := func(project string) *http.Response {
			req, _ := http.NewRequest("POST", srv.URL, nil)
			req.Header.Set("Authorization", "Bearer sk-poor")
			req.Header.Set("OpenAI-Organization", "org-1")
			req.Header.Set("OpenAI-Project", project)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		send("proj_a")
		trips := tr.OpenLatches()
		if len(trips) != 1 || !strings.HasSuffix(trips[0].Scope, "/org:org-1/project:proj_a") {
			t.Fatalf("trips = %+v", trips)
		}
		if send("proj_b").Header.Get(HeaderShortCircuit) != "" {
			t.Error("another project's requests were refused")
		}
	})

	t.Run("custom scope", func(t *testing.T) {
		tr := New(nil, WithScope(func(r *http.Request) string { return r.Header.Get("X-Tenant") }))
		send := func(tenant, key string) *http.Response {
			req, _ := http.NewRequest("POST", srv.URL, nil)
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("X-Tenant", tenant)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		send("acme", "sk-poor")
		if got := tr.OpenLatches(); len(got) != 1 || got[0].Scope != "acme" {
			t.Fatalf("OpenLatches() = %+v, want scope acme", got)
		}
		if send("acme", "sk-rich").Header.Get(HeaderShortCircuit) != "true" {
			t.Error("same tenant, other key: custom scope ignored")
		}
		if send("globex", "sk-rich").StatusCode != 200 {
			t.Error("other tenant refused")
		}
		if send("", "sk-rich").StatusCode != 200 {
			t.Error("empty custom scope did not fall back to the default scope")
		}
	})
}

func TestTripClasses(t *testing.T) {
	auth := answerFrom(t, "openai-invalid-api-key-401")
	srv := newServer(t, func(string, int) corpusAnswer { return auth })

	tr := New(nil)
	call(t, newClient(t, tr), srv.URL, "sk-a")
	call(t, newClient(t, tr), srv.URL, "sk-a")
	if srv.hits.Load() != 2 || len(tr.OpenLatches()) != 0 {
		t.Fatal("authentication tripped with default classes")
	}

	tr = New(nil, WithTripClasses(ClassQuotaExhausted, ClassAuthentication, ClassRateLimited))
	c := newClient(t, tr)
	resp, _ := call(t, c, srv.URL, "sk-a")
	if resp.Header.Get(HeaderShouldRetry) != "false" {
		t.Error("tripping 401 not marked X-Should-Retry: false")
	}
	call(t, c, srv.URL, "sk-a")
	if srv.hits.Load() != 3 {
		t.Errorf("revoked key reached the server %d times after its trip", srv.hits.Load()-2)
	}
	if trips := tr.OpenLatches(); len(trips) != 1 || trips[0].Class != ClassAuthentication {
		t.Fatalf("trips = %+v", trips)
	}
	if got := tr.trips(ClassRateLimited); got {
		t.Error("WithTripClasses accepted a retryable class")
	}

	var oe error = &OpenError{Trip: tr.OpenLatches()[0]}
	if errors.Is(oe, ErrQuotaExhausted) || !errors.Is(oe, ErrOpen) {
		t.Error("authentication trip error matches ErrQuotaExhausted")
	}
}

func TestRequestUnchangedAndBodyClosed(t *testing.T) {
	quota := answerFrom(t, "openai-insufficient-quota-429-status-shown")
	srv := newServer(t, func(string, int) corpusAnswer { return quota })
	tr := New(nil)
	for i := 0; i < 2; i++ {
		body := &closeCounter{Reader: strings.NewReader(`{"prompt":"x"}`)}
		req, _ := http.NewRequest("POST", srv.URL, body)
		req.Header.Set("Authorization", "Bearer sk-a")
		before := req.Header.Clone()
		ctx := req.Context()
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if fmt.Sprint(req.Header) != fmt.Sprint(before) || req.Context() != ctx {
			t.Errorf("request %d changed: %v", i, req.Header)
		}
		if body.closed.Load() == 0 {
			t.Errorf("request %d body not closed", i)
		}
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

type closeCounter struct {
	io.Reader
	closed atomic.Int32
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

// TestResetDropsAnswersFromBefore checks that an answer to a request sent
// before a Reset cannot reopen the latch.
func TestResetDropsAnswersFromBefore(t *testing.T) {
	quota := answerFrom(t, "openai-insufficient-quota-429-status-shown")
	arrived, release := make(chan struct{}), make(chan struct{})
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if r.Header.Get("X-Slow") != "" {
			arrived <- struct{}{}
			<-release
		}
		return &http.Response{StatusCode: quota.status, Header: quota.header.Clone(), Body: io.NopCloser(strings.NewReader(quota.body)), Request: r}, nil
	})
	tr := New(base)
	send := func(slow bool) *http.Response {
		req := httptest.NewRequest("POST", "https://api.openai.com/v1/chat/completions", nil)
		req.Header.Set("Authorization", "Bearer sk-a")
		if slow {
			req.Header.Set("X-Slow", "1")
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Error(err)
			return nil
		}
		resp.Body.Close()
		return resp
	}
	// The slow request goes out, the latch trips while it is in flight, and
	// the latch is reset before its quota answer arrives.
	done := make(chan *http.Response)
	go func() { done <- send(true) }()
	<-arrived
	send(false)
	if tr.ResetAll() != 1 {
		t.Fatal("ResetAll found no open latch")
	}
	close(release)
	if resp := <-done; resp.Header.Get(HeaderShouldRetry) != "false" {
		t.Error("stale quota answer not marked X-Should-Retry: false")
	}
	if got := tr.OpenLatches(); len(got) != 0 {
		t.Errorf("an answer from before the reset reopened the latch: %+v", got)
	}
}

func TestOnTripOncePerTripUnderConcurrency(t *testing.T) {
	quota := answerFrom(t, "openai-insufficient-quota-429-status-shown")
	var inflight sync.WaitGroup
	gate := make(chan struct{})
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		inflight.Done()
		<-gate // hold every request until all are in flight: they trip together
		return &http.Response{StatusCode: 429, Header: quota.header.Clone(), Body: io.NopCloser(strings.NewReader(quota.body)), Request: r}, nil
	})
	var onTrip, onReset atomic.Int64
	tr := New(base, OnTrip(func(Trip) { onTrip.Add(1) }), OnReset(func(Trip) { onReset.Add(1) }))

	const rounds, workers, keys = 5, 50, 5
	for round := 1; round <= rounds; round++ {
		inflight.Add(workers)
		gate = make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < workers; i++ {
			wg.Go(func() {
				req := httptest.NewRequest("POST", "https://api.openai.com/v1/chat/completions", nil)
				req.Header.Set("Authorization", fmt.Sprintf("Bearer sk-%d", i%keys))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 429 || resp.Header.Get(HeaderShouldRetry) != "false" {
					t.Errorf("answer %d %v", resp.StatusCode, resp.Header)
				}
			})
		}
		inflight.Wait()
		close(gate)
		wg.Wait()
		if got := onTrip.Load(); got != int64(round*keys) {
			t.Fatalf("round %d: OnTrip fired %d times in all, want %d", round, got, round*keys)
		}
		if n := len(tr.OpenLatches()); n != keys {
			t.Fatalf("round %d: %d open latches, want %d", round, n, keys)
		}
		// Resets race with each other: every latch is closed exactly once.
		var rg sync.WaitGroup
		var resets atomic.Int64
		for _, tp := range tr.OpenLatches() {
			for j := 0; j < 3; j++ {
				rg.Go(func() {
					if tr.Reset(tp.Scope) {
						resets.Add(1)
					}
				})
			}
		}
		rg.Wait()
		if resets.Load() != keys || onReset.Load() != int64(round*keys) || tr.latches.open.Load() != 0 {
			t.Fatalf("round %d: %d resets, OnReset %d, open %d", round, resets.Load(), onReset.Load(), tr.latches.open.Load())
		}
	}
}

// TestIdleScopesBounded checks that many tenants do not grow memory without
// bound, and that an open latch survives any number of them.
func TestIdleScopesBounded(t *testing.T) {
	quota := answerFrom(t, "openai-insufficient-quota-429-status-shown")
	var hits atomic.Int64
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		hits.Add(1)
		a := ok()
		if r.Header.Get("Authorization") == "Bearer sk-poor" {
			a = quota
		}
		return fakeBase(a).RoundTrip(r)
	})
	tr := New(base)
	const url = "https://api.openai.com/v1/chat/completions"
	send(t, tr, url, "sk-poor")
	for i := 0; i < 3*maxIdleLatches; i++ {
		send(t, tr, url, fmt.Sprintf("sk-tenant-%d", i))
	}
	tr.latches.mu.RLock()
	n := len(tr.latches.m)
	tr.latches.mu.RUnlock()
	if n > maxIdleLatches+1 {
		t.Errorf("%d latches kept after %d tenants, want at most %d", n, 3*maxIdleLatches, maxIdleLatches+1)
	}
	before := hits.Load()
	if send(t, tr, url, "sk-poor").Header.Get(HeaderShortCircuit) != "true" || hits.Load() != before {
		t.Error("the open latch was evicted: the exhausted key reached the network")
	}
}

func TestScopeNeverShowsKey(t *testing.T) {
	const key = "sk-proj-CANARYCANARYCANARY1234567890"
	req := httptest.NewRequest("POST", "https://api.openai.com/v1/chat/completions?key=AIzaCANARYQUERY", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Api-Key", "azureCANARY")
	tr := New(nil)
	name := scopeName(req, "")
	for _, secret := range []string{"CANARY", key[:12], "AIza"} {
		if strings.Contains(name, secret) {
			t.Errorf("scope %q shows %q", name, secret)
		}
	}
	other := req.Clone(context.Background())
	other.Header.Set("Authorization", "Bearer sk-other")
	id, _ := tr.scope(req)
	otherID, _ := tr.scope(other)
	if scopeName(other, "") == name || otherID == id {
		t.Error("two keys share a scope")
	}
}

func TestNilBaseIsDefaultTransport(t *testing.T) {
	if New(nil).base != http.DefaultTransport {
		t.Error("nil base is not http.DefaultTransport")
	}
}

func TestCloseIdleConnectionsReachesBase(t *testing.T) {
	var conns sync.WaitGroup
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			conns.Add(1)
		case http.StateClosed:
			conns.Done()
		}
	}
	srv.Start()
	defer srv.Close()
	c := &http.Client{Transport: New(&http.Transport{})}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c.CloseIdleConnections()
	closed := make(chan struct{})
	go func() { conns.Wait(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle connection was not closed")
	}
}

func TestOversizedTrippingAnswerReplaysItsCode(t *testing.T) {
	// Code first, as OpenAI sometimes orders it, so the 1 KiB prefix holds it.
	long := strings.Repeat("x", 4<<10)
	body := `{"error":{"code":"insufficient_quota","type":"insufficient_quota","param":null,"message":"` + long + `"}}`
	srv := newServer(t, func(string, int) corpusAnswer {
		return corpusAnswer{429, http.Header{"Content-Type": {"application/json"}}, body}
	})
	tr := New(nil, WithMaxErrorBody(1<<10))
	c := newClient(t, tr)
	if _, got := call(t, c, srv.URL, "sk-a"); string(got) != body {
		t.Fatalf("tripping answer changed: %d bytes", len(got))
	}
	resp, got := call(t, c, srv.URL, "sk-a")
	if resp.Header.Get(HeaderShortCircuit) != "true" {
		t.Fatal("not short-circuited")
	}
	var e struct {
		Error struct{ Code, Type string }
	}
	if err := json.Unmarshal(got, &e); err != nil || e.Error.Code != "insufficient_quota" || e.Error.Type != "insufficient_quota" {
		t.Errorf("replayed body %q (%v): want OpenAI's shape with the tripping code", got, err)
	}
	if resp.ContentLength != int64(len(got)) {
		t.Errorf("Content-Length %d for %d bytes", resp.ContentLength, len(got))
	}
}

// TestOnResetNeverBeforeOnTrip resets the latch from inside OnTrip, the
// tightest race there is: OnReset must still come second.
func TestOnResetNeverBeforeOnTrip(t *testing.T) {
	quota := answerFrom(t, "openai-insufficient-quota-429-status-shown")
	var events []string
	var tr *Transport
	tr = New(fakeBase(quota),
		OnTrip(func(tp Trip) {
			if !tr.Reset(tp.Scope) {
				t.Error("Reset inside OnTrip found no open latch")
			}
			events = append(events, "trip")
		}),
		OnReset(func(Trip) { events = append(events, "reset") }))
	send(t, tr, "https://api.openai.com/v1/chat/completions", "sk-a")
	if strings.Join(events, ",") != "trip,reset" {
		t.Errorf("hooks ran as %v, want trip then reset", events)
	}
	if len(tr.OpenLatches()) != 0 {
		t.Error("latch still open")
	}
}

func TestBaseMisbehaving(t *testing.T) {
	t.Run("nil response and nil error", func(t *testing.T) {
		tr := New(roundTripperFunc(func(*http.Request) (*http.Response, error) { return nil, nil }))
		resp, err := tr.RoundTrip(httptest.NewRequest("GET", "http://x/", nil))
		if resp != nil || err == nil {
			t.Errorf("RoundTrip = %v, %v; want an error", resp, err)
		}
	})
	t.Run("nil header on a tripping answer", func(t *testing.T) {
		quota := answerFrom(t, "openai-insufficient-quota-429-status-shown")
		tr := New(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 429, Body: io.NopCloser(strings.NewReader(quota.body)), Request: r}, nil
		}))
		resp, err := tr.RoundTrip(httptest.NewRequest("GET", "http://x/", nil))
		if err != nil || resp.Header.Get(HeaderShouldRetry) != "false" {
			t.Errorf("RoundTrip = %v, %v", resp, err)
		}
	})
	t.Run("panic ends the span", func(t *testing.T) {
		rec := newRecording(t)
		tr := New(roundTripperFunc(func(*http.Request) (*http.Response, error) { panic("base bug") }), rec.options()...)
		func() {
			defer func() {
				if recover() == nil {
					t.Error("the base's panic was swallowed")
				}
			}()
			tr.RoundTrip(httptest.NewRequest("GET", "http://x/", nil))
		}()
		if n := len(rec.spans.Ended()); n != 1 {
			t.Errorf("%d spans ended after a panic, want 1", n)
		}
		if len(tr.OpenLatches()) != 0 {
			t.Error("a panic tripped the latch")
		}
	})
}

// TestCredentialHeaderCase: a header written into the map by hand, not
// through Set, still tells tenants apart.
func TestCredentialHeaderCase(t *testing.T) {
	quota := answerFrom(t, "openai-insufficient-quota-429-status-shown")
	tr := New(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		a := ok()
		//lint:ignore SA1008 the header is non-canonical on purpose
		if r.Header["api-key"][0] == "poor" {
			a = quota
		}
		return fakeBase(a).RoundTrip(r)
	}))
	send := func(key string) *http.Response {
		req := httptest.NewRequest("POST", "https://x.openai.azure.com/openai/deployments/d/chat/completions", nil)
		req.Header["api-key"] = []string{key}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	send("poor")
	if resp := send("rich"); resp.StatusCode != 200 {
		t.Errorf("another tenant's key was refused: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := send("poor"); resp.Header.Get(HeaderShortCircuit) != "true" {
		t.Error("the exhausted key was not refused")
	}
}
