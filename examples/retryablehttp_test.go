package examples_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/examples/internal/fakeopenai"
)

// The README's retryablehttp client, with quotabreaker inside its retry
// loop, retries a rate limit and nothing that cannot succeed later: each
// such answer reaches the server once, and only a quota answer opens a
// latch, which then refuses the next call without reaching the server.
func TestRetryablehttpComposition(t *testing.T) {
	const retryMax = 2
	for _, tt := range []struct {
		name   string
		answer fakeopenai.Answer
		hits   int64 // server hits for one call
		latch  bool  // whether the answer opens a latch
	}{
		{"quota exhausted", fakeopenai.QuotaExhausted, 1, true},
		// Issue 9. Needs the classifier to call it invalid_request.
		{"request too large for the TPM limit", fakeopenai.RequestTooLarge, 1, false},
		{"access terminated", fakeopenai.AccessTerminated, 1, false},
		{"ordinary rate limit", fakeopenai.RateLimited, 1 + retryMax, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			const key = "sk-proj-retryablehttp"
			e.srv.Script(key, nil, tt.answer)

			rc := readmeRetryablehttp()
			rc.HTTPClient.Transport = e.rec // quotabreaker, behind an attempt counter
			rc.RetryMax = retryMax
			// The waits are not under test.
			rc.Backoff = func(time.Duration, time.Duration, int, *http.Response) time.Duration { return 0 }
			rc.ErrorHandler = retryablehttp.PassthroughErrorHandler // the last answer, once retries run out
			rc.Logger = nil

			call := func() *http.Response {
				t.Helper()
				req, err := retryablehttp.NewRequestWithContext(context.Background(), http.MethodPost,
					e.srv.BaseURL()+"/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","messages":[]}`))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := rc.Do(req)
				if err != nil {
					t.Fatalf("Do: %v", err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp
			}

			if resp := call(); resp.StatusCode != http.StatusTooManyRequests {
				t.Errorf("status %d, want 429", resp.StatusCode)
			}
			if got := e.srv.Hits(); got != tt.hits {
				t.Errorf("server hits = %d, want %d", got, tt.hits)
			}
			if got := len(e.openLatches(t)); got != map[bool]int{true: 1}[tt.latch] {
				t.Fatalf("%d open latches, want latch=%v", got, tt.latch)
			}
			if !tt.latch {
				return
			}
			resp := call()
			if got := resp.Header.Get(quotabreaker.HeaderShortCircuit); got != "true" {
				t.Errorf("second call: %s = %q, want true", quotabreaker.HeaderShortCircuit, got)
			}
			if got := e.srv.Hits(); got != tt.hits {
				t.Errorf("server hits after the latch opened = %d, want still %d", got, tt.hits)
			}
			if got := e.rec.attempts(); got != 2 {
				t.Errorf("attempts = %d, want 2 (no retry of either answer)", got)
			}
		})
	}
}
