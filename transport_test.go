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
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/quotabreaker/quotabreaker/classify"
)

func TestQuotaOpensLatchAndShortCircuits(t *testing.T) {
	quota := quotaAnswer(t)
	srv := newServer(t, func(string, int) corpusAnswer { return quota })
	var trips []Trip
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tr := New(nil, OnTrip(func(_ context.Context, tp Trip) { trips = append(trips, tp) }), WithClock(func() time.Time { return at }))

	resp, body := send(t, tr, srv.URL, "sk-a")
	if resp.StatusCode != 429 || string(body) != quota.body {
		t.Fatalf("tripping answer changed: %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get(HeaderShouldRetry); got != "false" {
		t.Errorf("tripping answer X-Should-Retry = %q, want false", got)
	}
	if shortCircuited(resp) {
		t.Error("tripping answer came from the network but is marked short-circuited")
	}
	if len(trips) != 1 {
		t.Fatalf("OnTrip fired %d times, want 1", len(trips))
	}

	for i := 0; i < 5; i++ {
		resp, body := send(t, tr, srv.URL, "sk-a")
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
		Scope:      DefaultScope(chatRequest(t, srv.URL, "sk-a")),
		Cause:      CauseAnswer,
		Mode:       ModeEnforce,
		Class:      classify.QuotaExhausted,
		Code:       "insufficient_quota",
		Type:       "insufficient_quota",
		StatusCode: 429,
		At:         at,
	}
	if trips[0] != want {
		t.Errorf("trip = %+v, want %+v", trips[0], want)
	}
	if !strings.HasPrefix(trips[0].Scope, strings.TrimPrefix(srv.URL, "http://")+"/key:") {
		t.Errorf("scope %q does not name host and key fingerprint", trips[0].Scope)
	}
	if got := openLatches(t, tr); len(got) != 1 || got[0] != want {
		t.Errorf("OpenLatches() = %+v", got)
	}

	if !reset(t, tr, trips[0].Scope) {
		t.Fatal("Reset found no open latch")
	}
	if reset(t, tr, trips[0].Scope) {
		t.Error("second Reset found an open latch")
	}
	send(t, tr, srv.URL, "sk-a")
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("after Reset the server saw %d requests in all, want 2", n)
	}
}

func TestRetryableAnswersPassThrough(t *testing.T) {
	t.Parallel() // local state only; no global provider, handler or heap measure
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
			bare, _ := send(t, http.DefaultTransport, srv.URL, "sk-a")
			tr := New(nil)
			for i := 0; i < 20; i++ {
				resp, body := send(t, tr, srv.URL, "sk-a")
				if resp.StatusCode != a.status || string(body) != a.body {
					t.Fatalf("answer changed: %d %q", resp.StatusCode, body)
				}
				if resp.Status != bare.Status {
					t.Errorf("status line %q, want %q as sent", resp.Status, bare.Status)
				}
				for k, v := range a.header {
					if k == "Content-Length" {
						continue
					}
					if got := resp.Header.Values(k); strings.Join(got, ",") != strings.Join(v, ",") {
						t.Errorf("header %s = %q, want %q", k, got, v)
					}
				}
				if resp.Header.Get(HeaderShouldRetry) != a.header.Get(HeaderShouldRetry) || shortCircuited(resp) {
					t.Errorf("retryable answer got our headers: %v", resp.Header)
				}
			}
			if trips := openLatches(t, tr); srv.hits.Load() != 1+20 || len(trips) != 0 {
				t.Errorf("hits %d, tripped %v: a retryable answer counted towards the latch", srv.hits.Load(), trips)
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

func TestGzipErrorBody(t *testing.T) {
	quota := quotaAnswer(t)
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
	get := func() (*http.Response, []byte) {
		req := chatRequest(t, srv.URL, "")
		req.Header.Set("Accept-Encoding", "gzip") // so Go does not decode it
		return sendReq(t, tr, req)
	}
	resp, body := get()
	if !bytes.Equal(body, zipped.Bytes()) || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("caller got %d bytes (encoding %q), want the %d gzip bytes sent", len(body), resp.Header.Get("Content-Encoding"), zipped.Len())
	}
	if got := openLatches(t, tr); len(got) != 1 || got[0].Code != "insufficient_quota" {
		t.Fatalf("gzip quota answer did not trip: %+v", got)
	}
	// The replayed answer is decoded: the next request may not accept gzip.
	resp, body = get()
	if !shortCircuited(resp) || string(body) != quota.body || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("short-circuited answer = %q (encoding %q)", body, resp.Header.Get("Content-Encoding"))
	}
}

func TestSuccessBodyUntouched(t *testing.T) {
	const sent = "data: {\"usage\":{\"prompt_tokens\":3}}\n\n"
	var status int
	var body io.ReadCloser
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		body = io.NopCloser(strings.NewReader(sent))
		return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: body, Request: r}, nil
	})
	for _, status = range []int{200, 204, 301, 304, 399} {
		// With usage off and no tracer, nothing reads a success body.
		resp, err := New(base, WithUsage(false)).RoundTrip(httptest.NewRequest("POST", "http://x/", nil))
		if err != nil {
			t.Fatal(err)
		}
		if status/100 != 2 && resp.Body != body {
			t.Errorf("status %d: body %T was replaced; with no tracer it must be the base's own", status, resp.Body)
		}
		// With usage on (the default), a 2xx body is read as it passes,
		// and reaches the caller byte for byte.
		resp, err = New(base).RoundTrip(httptest.NewRequest("POST", "http://x/", nil))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || string(got) != sent {
			t.Errorf("status %d: caller read %q, %v; want %q", status, got, err, sent)
		}
		if status/100 != 2 && resp.Body != body {
			t.Errorf("status %d: body %T was replaced; only 2xx answers are observed", status, resp.Body)
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
	resp, err := New(nil).RoundTrip(chatRequest(t, srv.URL, "sk-a"))
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
	quota := quotaAnswer(t)
	srv := newServer(t, func(string, int) corpusAnswer { return quota })
	tr := New(nil, WithShortCircuitError(true))
	send(t, tr, srv.URL, "sk-a") // trips

	body := &closeCounter{Reader: strings.NewReader("{}")}
	req := chatRequest(t, srv.URL, "sk-a")
	req.Body, req.ContentLength = body, 2
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		t.Fatalf("got a response %d, want an error", resp.StatusCode)
	}
	if !errors.Is(err, ErrOpen) {
		t.Fatalf("err = %v, want ErrOpen", err)
	}
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Trip.Code != "insufficient_quota" || oe.Trip.Class != classify.QuotaExhausted || oe.Trip != openLatches(t, tr)[0] {
		t.Fatalf("errors.As: %+v", oe)
	}
	if oe.ErrorType() != "quota_exhausted" {
		t.Errorf("ErrorType() = %q", oe.ErrorType())
	}
	if strings.Contains(err.Error(), "sk-a") {
		t.Errorf("error text %q shows the key", err)
	}
	if body.closed.Load() == 0 {
		t.Error("the refused request's body was not closed")
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
	if len(openLatches(t, tr)) != 0 {
		t.Error("transport errors tripped the latch")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	srv := newServer(t, func(string, int) corpusAnswer { return ok() })
	req := chatRequest(t, srv.URL, "sk-a").WithContext(ctx)
	if _, err := New(nil).RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: %v, want context.Canceled", err)
	}
}

func TestScopes(t *testing.T) {
	quota := quotaAnswer(t)
	srv := newServer(t, func(key string, _ int) corpusAnswer {
		if key == "sk-poor" {
			return quota
		}
		return ok()
	})

	t.Run("one exhausted key does not stop another", func(t *testing.T) {
		tr := New(nil)
		send(t, tr, srv.URL, "sk-poor")
		for i := 0; i < 3; i++ {
			if resp, _ := send(t, tr, srv.URL, "sk-rich"); resp.StatusCode != 200 {
				t.Fatalf("other key got %d", resp.StatusCode)
			}
			if resp, _ := send(t, tr, srv.URL, "sk-poor"); !shortCircuited(resp) {
				t.Fatal("exhausted key reached the network")
			}
		}
		if srv.hitsFor("sk-poor") != 1 {
			t.Errorf("exhausted key reached the server %d times", srv.hitsFor("sk-poor"))
		}
	})

	t.Run("project and organization split scopes", func(t *testing.T) {
		tr := New(nil)
		sendProject := func(project string) *http.Response {
			req := chatRequest(t, srv.URL, "sk-poor")
			req.Header.Set("OpenAI-Organization", "org-1")
			req.Header.Set("OpenAI-Project", project)
			resp, _ := sendReq(t, tr, req)
			return resp
		}
		sendProject("proj_a")
		trips := openLatches(t, tr)
		if len(trips) != 1 || !strings.HasSuffix(trips[0].Scope, "/org:org-1/project:proj_a") {
			t.Fatalf("trips = %+v", trips)
		}
		if shortCircuited(sendProject("proj_b")) {
			t.Error("another project's requests were refused")
		}
	})

	t.Run("custom scope", func(t *testing.T) {
		tr := New(nil, WithScope(func(r *http.Request) string { return r.Header.Get("X-Tenant") }))
		sendTenant := func(tenant, key string) *http.Response {
			req := chatRequest(t, srv.URL, key)
			req.Header.Set("X-Tenant", tenant)
			resp, _ := sendReq(t, tr, req)
			return resp
		}
		sendTenant("acme", "sk-poor")
		if got := openLatches(t, tr); len(got) != 1 || got[0].Scope != "acme" {
			t.Fatalf("OpenLatches() = %+v, want scope acme", got)
		}
		if !shortCircuited(sendTenant("acme", "sk-rich")) {
			t.Error("same tenant, other key: custom scope ignored")
		}
		if sendTenant("globex", "sk-rich").StatusCode != 200 {
			t.Error("other tenant refused")
		}
		if sendTenant("", "sk-rich").StatusCode != 200 {
			t.Error("empty custom scope did not fall back to the default scope")
		}
	})
}

func TestTripClasses(t *testing.T) {
	auth := answerFrom(t, "openai-invalid-api-key-401")
	srv := newServer(t, func(string, int) corpusAnswer { return auth })

	tr := New(nil)
	send(t, tr, srv.URL, "sk-a")
	send(t, tr, srv.URL, "sk-a")
	if srv.hits.Load() != 2 || len(openLatches(t, tr)) != 0 {
		t.Fatal("authentication tripped with default classes")
	}

	tr = New(nil, WithTripClasses(classify.QuotaExhausted, classify.Authentication, classify.RateLimited))
	resp, _ := send(t, tr, srv.URL, "sk-a")
	if resp.Header.Get(HeaderShouldRetry) != "false" {
		t.Error("tripping 401 not marked X-Should-Retry: false")
	}
	send(t, tr, srv.URL, "sk-a")
	if srv.hits.Load() != 3 {
		t.Errorf("revoked key reached the server %d times after its trip", srv.hits.Load()-2)
	}
	trips := openLatches(t, tr)
	if len(trips) != 1 || trips[0].Class != classify.Authentication {
		t.Fatalf("trips = %+v", trips)
	}

	// The retryable class given to WithTripClasses is ignored.
	rate := newProvider(func(*http.Request) corpusAnswer { return answerFrom(t, "openai-rate-limit-tokens-tpm") })
	tr = New(rate, WithTripClasses(classify.QuotaExhausted, classify.Authentication, classify.RateLimited))
	for i := 0; i < 3; i++ {
		if resp, _ := send(t, tr, "https://api.openai.com/v1/chat/completions", "sk-a"); resp.StatusCode != 429 || shortCircuited(resp) {
			t.Fatalf("rate-limited answer %d %v", resp.StatusCode, resp.Header)
		}
	}
	if n := rate.hits.Load(); n != 3 || len(openLatches(t, tr)) != 0 {
		t.Errorf("WithTripClasses accepted a retryable class: %d hits, %v", n, openLatches(t, tr))
	}

	var oe error = &OpenError{Trip: trips[0]}
	if !errors.Is(oe, ErrOpen) {
		t.Error("authentication trip error does not match ErrOpen")
	}
}

func TestRequestUnchangedAndBodyClosed(t *testing.T) {
	quota := quotaAnswer(t)
	srv := newServer(t, func(string, int) corpusAnswer { return quota })
	tr := New(nil)
	for i := 0; i < 2; i++ {
		body := &closeCounter{Reader: strings.NewReader(`{"prompt":"x"}`)}
		req := chatRequest(t, srv.URL, "sk-a")
		req.Body, req.ContentLength = body, int64(len(`{"prompt":"x"}`))
		before := req.Header.Clone()
		ctx := req.Context()
		sendReq(t, tr, req)
		if fmt.Sprint(req.Header) != fmt.Sprint(before) || req.Context() != ctx {
			t.Errorf("request %d changed: %v", i, req.Header)
		}
		if body.closed.Load() == 0 {
			t.Errorf("request %d body not closed", i)
		}
	}
}

// TestResetDropsAnswersFromBefore checks that an answer to a request sent
// before a Reset cannot reopen the latch.
func TestResetDropsAnswersFromBefore(t *testing.T) {
	quota := quotaAnswer(t)
	arrived, release := make(chan struct{}), make(chan struct{})
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if r.Header.Get("X-Slow") != "" {
			arrived <- struct{}{}
			<-release
		}
		return quota.response(r), nil
	})
	tr := New(base)
	const url = "https://api.openai.com/v1/chat/completions"
	// The slow request goes out, the latch trips while it is in flight, and
	// the latch is reset before its quota answer arrives.
	done := make(chan *http.Response)
	go func() {
		req := chatRequest(t, url, "sk-a")
		req.Header.Set("X-Slow", "1")
		resp, _, err := trySend(tr, req)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	<-arrived
	send(t, tr, url, "sk-a")
	if resetAll(t, tr) != 1 {
		t.Fatal("ResetAll found no open latch")
	}
	close(release)
	if resp := <-done; resp == nil || resp.Header.Get(HeaderShouldRetry) != "false" {
		t.Error("stale quota answer not marked X-Should-Retry: false")
	}
	if got := openLatches(t, tr); len(got) != 0 {
		t.Errorf("an answer from before the reset reopened the latch: %+v", got)
	}
}

func TestOnTripOncePerTripUnderConcurrency(t *testing.T) {
	quota := quotaAnswer(t)
	var inflight sync.WaitGroup
	gate := make(chan struct{})
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		inflight.Done()
		<-gate // hold every request until all are in flight: they trip together
		return quota.response(r), nil
	})
	rec := newRecording(t)
	var onTrip, onReset atomic.Int64
	tr := New(base, append(rec.options(),
		OnTrip(func(context.Context, Trip) { onTrip.Add(1) }),
		OnReset(func(context.Context, Trip) { onReset.Add(1) }))...)

	const rounds, workers, keys = 5, 50, 5
	for round := 1; round <= rounds; round++ {
		inflight.Add(workers)
		gate = make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < workers; i++ {
			wg.Go(func() {
				resp, _, err := trySend(tr, chatRequest(t, "https://api.openai.com/v1/chat/completions", fmt.Sprintf("sk-%d", i%keys)))
				if err != nil {
					t.Error(err)
					return
				}
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
		if n := len(openLatches(t, tr)); n != keys {
			t.Fatalf("round %d: %d open latches, want %d", round, n, keys)
		}
		if got := collect(t, rec)["quotabreaker.open_latches"]; got != keys {
			t.Fatalf("round %d: open_latches = %d, want %d", round, got, keys)
		}
		// Resets race with each other: every latch is closed exactly once.
		var rg sync.WaitGroup
		var resets atomic.Int64
		for _, tp := range openLatches(t, tr) {
			for j := 0; j < 3; j++ {
				rg.Go(func() {
					if ok, err := tr.Reset(context.Background(), tp.Scope); err != nil {
						t.Error(err)
					} else if ok {
						resets.Add(1)
					}
				})
			}
		}
		rg.Wait()
		open := collect(t, rec)["quotabreaker.open_latches"]
		if resets.Load() != keys || onReset.Load() != int64(round*keys) || open != 0 || len(openLatches(t, tr)) != 0 {
			t.Fatalf("round %d: %d resets, OnReset %d, open_latches %d, OpenLatches %v", round, resets.Load(), onReset.Load(), open, openLatches(t, tr))
		}
	}
}

// TestIdleScopesBounded checks that many tenants do not grow memory without
// bound, and that an open latch survives any number of them.
func TestIdleScopesBounded(t *testing.T) {
	quota := quotaAnswer(t)
	var hits atomic.Int64
	tr := New(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		hits.Add(1)
		if bearerKey(r) == "sk-poor" {
			return quota.response(r), nil
		}
		return ok().response(r), nil
	}))
	const url = "https://api.openai.com/v1/chat/completions"
	send(t, tr, url, "sk-poor")
	tenants := func(from, to int) {
		req := chatRequest(t, url, "")
		for i := from; i < to; i++ {
			req.Header.Set("Authorization", "Bearer sk-tenant-"+strconv.Itoa(i))
			req.Body = http.NoBody
			sendReq(t, tr, req)
		}
	}
	// The registry may keep a few thousand idle scopes (a few hundred bytes
	// each); past that, a new tenant must not cost memory that stays.
	const warm, more = 3 * 4096, 16 * 4096
	tenants(0, warm)
	before := heapAlloc()
	tenants(warm, warm+more)
	after := heapAlloc()
	if perTenant := (int64(after) - int64(before)) / more; perTenant > 100 {
		t.Errorf("each idle tenant keeps %d bytes (%d tenants, heap %d -> %d)", perTenant, more, before, after)
	}
	before = uint64(hits.Load())
	if resp, _ := send(t, tr, url, "sk-poor"); !shortCircuited(resp) || uint64(hits.Load()) != before {
		t.Error("the open latch was evicted: the exhausted key reached the network")
	}
}

func TestScopeNeverShowsKey(t *testing.T) {
	const key = "sk-proj-CANARYCANARYCANARY1234567890"
	const url = "https://api.openai.com/v1/chat/completions?key=AIzaCANARYQUERY"
	newReq := func(key string) *http.Request {
		req := chatRequest(t, url, key)
		req.Header.Set("Api-Key", "azureCANARY")
		return req
	}
	name := DefaultScope(newReq(key))
	for _, secret := range []string{"CANARY", key[:12], "AIza"} {
		if strings.Contains(name, secret) {
			t.Errorf("scope %q shows %q", name, secret)
		}
	}
	if DefaultScope(newReq("sk-other")) == name {
		t.Error("two keys share a scope name")
	}
	base := newProvider(func(r *http.Request) corpusAnswer {
		if bearerKey(r) == key {
			return quotaAnswer(t)
		}
		return ok()
	})
	tr := New(base)
	sendReq(t, tr, newReq(key))
	if trips := openLatches(t, tr); len(trips) != 1 || trips[0].Scope != name {
		t.Fatalf("OpenLatches() = %+v, want one trip of scope %q", trips, name)
	}
	if resp, _ := sendReq(t, tr, newReq("sk-other")); resp.StatusCode != 200 || base.hitsFor("sk-other") != 1 {
		t.Error("two keys share a latch")
	}
}

// heapAlloc is the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestNilBaseIsDefaultTransport(t *testing.T) {
	// A request through New(nil) leaves its connection in
	// http.DefaultTransport's pool, so closing that pool's idle connections
	// closes it.
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
	send(t, New(nil), srv.URL, "sk-a")
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	waitOrFail(t, conns.Wait, "the connection is not in http.DefaultTransport's pool")
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
	waitOrFail(t, conns.Wait, "the idle connection was not closed")
}

// waitOrFail runs wait, failing the test if it has not returned after a
// generous while: a guard against a hang, not a measure of speed.
func waitOrFail(t *testing.T, wait func(), msg string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal(msg)
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
	if _, got := send(t, tr, srv.URL, "sk-a"); string(got) != body {
		t.Fatalf("tripping answer changed: %d bytes", len(got))
	}
	resp, got := send(t, tr, srv.URL, "sk-a")
	if !shortCircuited(resp) {
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
	var events []string
	var tr *Transport
	tr = New(fakeBase(quotaAnswer(t)),
		OnTrip(func(ctx context.Context, tp Trip) {
			if ok, err := tr.Reset(ctx, tp.Scope); !ok || err != nil {
				t.Errorf("Reset inside OnTrip = %v, %v; want an open latch", ok, err)
			}
			events = append(events, "trip")
		}),
		OnReset(func(context.Context, Trip) { events = append(events, "reset") }))
	send(t, tr, "https://api.openai.com/v1/chat/completions", "sk-a")
	if strings.Join(events, ",") != "trip,reset" {
		t.Errorf("hooks ran as %v, want trip then reset", events)
	}
	if len(openLatches(t, tr)) != 0 {
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
		quota := quotaAnswer(t)
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
		if len(openLatches(t, tr)) != 0 {
			t.Error("a panic tripped the latch")
		}
	})
}

// TestCredentialHeaderCase: a header written into the map by hand, not
// through Set, still tells tenants apart.
func TestCredentialHeaderCase(t *testing.T) {
	quota := quotaAnswer(t)
	tr := New(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		a := ok()
		//lint:ignore SA1008 the header is non-canonical on purpose
		if r.Header["api-key"][0] == "poor" {
			a = quota
		}
		return a.response(r), nil
	}))
	sendKey := func(key string) *http.Response {
		req := chatRequest(t, "https://x.openai.azure.com/openai/deployments/d/chat/completions", "")
		req.Header["api-key"] = []string{key}
		resp, _ := sendReq(t, tr, req)
		return resp
	}
	sendKey("poor")
	if resp := sendKey("rich"); resp.StatusCode != 200 {
		t.Errorf("another tenant's key was refused: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := sendKey("poor"); !shortCircuited(resp) {
		t.Error("the exhausted key was not refused")
	}
}

// TestObserverReleasedOnceDone closes observed streams while another
// goroutine reads them: the observer a closed body gave back for reuse is
// written no more (the race detector watches), and the answers that reuse
// it read their usage whole.
func TestObserverReleasedOnceDone(t *testing.T) {
	const stream = "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n" +
		"data: {\"model\":\"m1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"
	h := http.Header{"Content-Type": {"text/event-stream"}}
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		// One byte per read, so that a Read is likely under way when
		// Close comes.
		body := io.NopCloser(iotest.OneByteReader(strings.NewReader(strings.Repeat(stream, 20))))
		return &http.Response{StatusCode: 200, Header: h, Body: body, Request: r}, nil
	})
	var mu sync.Mutex
	var got []Usage
	tr := New(base, OnUsage(func(_ context.Context, u Usage) {
		mu.Lock()
		got = append(got, u)
		mu.Unlock()
	}))
	for range 20 {
		resp, err := tr.RoundTrip(benchRequest())
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 16)
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					return
				}
			}
		}()
		resp.Body.Close()
		<-done
		// A whole answer after it, through an observer likely reused.
		resp, err = tr.RoundTrip(benchRequest())
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		mu.Lock()
		u := got[len(got)-1]
		mu.Unlock()
		if !u.Metered || u.Tokens.InputTokens != 3 || u.Tokens.OutputTokens != 2 || u.Model != "m1" {
			t.Fatalf("after a close racing a read: %+v", u)
		}
	}
}
