package quotabreaker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/internal/corpus"
	"github.com/quotabreaker/quotabreaker/usage"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
)

// New(New(base)) against a quota answer acts once: one OnTrip, one trip
// counted, one CLIENT span per attempt, one cost; resetting the outer
// Transport lets the next request through.
func TestDoubleWrapActsOnce(t *testing.T) {
	t.Run("direct", func(t *testing.T) {
		testDoubleWrap(t, func(inner *Transport) http.RoundTripper { return inner })
	})
	// A layer between the two (otelhttp, a retry layer) hides the inner
	// Transport from New: the request's context tells it.
	t.Run("through another layer", func(t *testing.T) {
		testDoubleWrap(t, func(inner *Transport) http.RoundTripper {
			return roundTripperFunc(func(r *http.Request) (*http.Response, error) { return inner.RoundTrip(r) })
		})
	})
}

func testDoubleWrap(t *testing.T, between func(*Transport) http.RoundTripper) {
	quota := quotaAnswer(t)
	body, h := corpus.ReadStream(t, "openai-chat-reasoning.json")
	priced := corpusAnswer{200, h, string(body)}
	var tripped atomic.Bool
	srv := newServer(t, func(key string, n int) corpusAnswer {
		if key == "sk-A" && tripped.Load() {
			return quota
		}
		return priced
	})
	rec := newRecording(t)
	var trips, usages atomic.Int64
	var costs sync.Map
	opts := append(rec.options(),
		OnTrip(func(context.Context, Trip) { trips.Add(1) }),
		OnUsage(func(_ context.Context, u Usage) { usages.Add(1); costs.Store(u.Cost, true) }))
	inner := New(nil, opts...)
	outer := New(between(inner), opts...)

	send(t, outer, srv.URL, "sk-A")
	if got := usages.Load(); got != 1 {
		t.Errorf("OnUsage ran %d times for one answer, want 1", got)
	}
	tripped.Store(true)
	resp, _ := send(t, outer, srv.URL, "sk-A")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	resp, _ = send(t, outer, srv.URL, "sk-A")
	if !shortCircuited(resp) || srv.hitsFor("sk-A") != 2 {
		t.Fatalf("after the trip: short-circuited %v, hits %d, want true and 2", shortCircuited(resp), srv.hitsFor("sk-A"))
	}
	if got := trips.Load(); got != 1 {
		t.Errorf("OnTrip ran %d times, want 1", got)
	}
	var tripCount int64
	for _, sm := range rec.metrics(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "quotabreaker.trips" {
				for _, p := range d.DataPoints {
					tripCount += p.Value
				}
			}
		}
	}
	if tripCount != 1 {
		t.Errorf("quotabreaker.trips = %d, want 1", tripCount)
	}
	client := 0
	for _, s := range rec.ours() {
		if s.SpanKind() == trace.SpanKindClient {
			client++
		}
	}
	if client != 3 {
		t.Errorf("%d CLIENT spans for 3 attempts, want 3", client)
	}
	if len(openLatches(t, inner)) != 0 {
		t.Errorf("the inner Transport opened a latch too")
	}
	if !reset(t, outer, openLatches(t, outer)[0].Scope) {
		t.Fatal("reset of the outer found no latch")
	}
	tripped.Store(false)
	if resp, _ := send(t, outer, srv.URL, "sk-A"); shortCircuited(resp) || resp.StatusCode != 200 {
		t.Errorf("after reset: status %d, short-circuited %v", resp.StatusCode, shortCircuited(resp))
	}
	if got := usages.Load(); got != 2 {
		t.Errorf("OnUsage ran %d times for two successful answers, want 2", got)
	}
}

// OnUsage sees what the span records, once per answer, on the request's
// context; a body closed unread is reported as unmetered.
func TestOnUsage(t *testing.T) {
	body, h := corpus.ReadStream(t, "openai-chat-reasoning.json")
	priced := corpusAnswer{200, h, string(body)}
	srv := newServer(t, func(string, int) corpusAnswer { return priced })
	rec := newRecording(t)
	type tenant struct{}
	var mu sync.Mutex
	var got []Usage
	var tenants []any
	tr := New(nil, append(rec.options(), OnUsage(func(ctx context.Context, u Usage) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, u)
		tenants = append(tenants, ctx.Value(tenant{}))
	}))...)

	req := chatRequest(t, srv.URL, "sk-A")
	req = req.WithContext(context.WithValue(req.Context(), tenant{}, "acme"))
	sendReq(t, tr, req)
	// The same answer, closed unread.
	resp, err := tr.RoundTrip(chatRequest(t, srv.URL, "sk-A"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp.Body.Close()

	if len(got) != 2 {
		t.Fatalf("OnUsage ran %d times for 2 answers", len(got))
	}
	want := usage.Read(h, body)
	u := got[0]
	if !u.Metered || u.Tokens != want.Tokens || u.Model != want.Model || u.Provider != "" || !u.Priced || u.Cost <= 0 {
		t.Errorf("read answer: %+v, want tokens %+v of %s, priced", u, want.Tokens, want.Model)
	}
	if tenants[0] != "acme" {
		t.Errorf("OnUsage's context carried %v, want the request's", tenants[0])
	}
	spans := rec.ours()
	a := attrs(spans[0])
	if a["gen_ai.usage.input_tokens"].AsInt64() != u.Tokens.InputTokens ||
		a["gen_ai.usage.output_tokens"].AsInt64() != u.Tokens.OutputTokens ||
		a[attrCostUSD].AsFloat64() != u.Cost {
		t.Errorf("span says %v, OnUsage %+v", a, u)
	}
	if u := got[1]; u.Metered || u.Priced || u.Tokens != (usage.Tokens{}) || u.Scope != got[0].Scope {
		t.Errorf("closed unread: %+v, want unmetered in scope %q", u, got[0].Scope)
	}
}

// RetryPolicy never retries what the Transport refused or marked, and
// leaves the rest to the policy it wraps.
func TestRetryPolicy(t *testing.T) {
	quota := quotaAnswer(t)
	rate := answerFrom(t, "openai-rate-limit-tokens-tpm")
	srv := newServer(t, func(key string, _ int) corpusAnswer {
		if key == "sk-rate" {
			return rate
		}
		return quota
	})
	always := func(context.Context, *http.Response, error) (bool, error) { return true, nil }
	policy := RetryPolicy(always)
	tr := New(nil)
	ctx := context.Background()

	resp, _ := send(t, tr, srv.URL, "sk-quota")
	if retry, err := policy(ctx, resp, nil); retry || err != nil {
		t.Errorf("quota answer: retry %v, %v", retry, err)
	}
	resp, _ = send(t, tr, srv.URL, "sk-quota")
	if retry, _ := policy(ctx, resp, nil); retry || !shortCircuited(resp) {
		t.Errorf("refused answer: retry %v", retry)
	}
	resp, _ = send(t, tr, srv.URL, "sk-rate")
	if retry, _ := policy(ctx, resp, nil); !retry {
		t.Errorf("rate limit: not retried")
	}
	withErr := New(nil, WithShortCircuitError(true))
	send(t, withErr, srv.URL, "sk-quota")
	_, err := withErr.RoundTrip(chatRequest(t, srv.URL, "sk-quota"))
	if retry, _ := policy(ctx, nil, err); retry || !errors.Is(err, ErrOpen) {
		t.Errorf("refusal as error %v: retry %v", err, retry)
	}
	if retry, _ := policy(ctx, nil, errors.New("connection reset")); !retry {
		t.Errorf("a transport error is the wrapped policy's to decide")
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if retry, err := policy(canceled, nil, nil); retry || err == nil {
		t.Errorf("canceled context: retry %v, %v", retry, err)
	}
}

// The mark that tells an inner Transport that the outer one handles the
// request (see markHandled) keeps the caller's context: its values, its
// cancellation and deadline, traced or not.
func TestHandledMarkKeepsContext(t *testing.T) {
	type key struct{}
	for _, traced := range []bool{false, true} {
		t.Run(fmt.Sprint("traced=", traced), func(t *testing.T) {
			var opts []Option
			if traced {
				opts = newRecording(t).options()
			}
			ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), key{}, "v"), time.Hour)
			defer cancel()
			var outer *Transport
			var checked bool
			base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				c := r.Context()
				d, _ := c.Deadline()
				want, _ := ctx.Deadline()
				if c.Value(key{}) != "v" || c.Value(handledKey{}) != outer || c.Done() != ctx.Done() || !d.Equal(want) {
					t.Errorf("the base's context lost the caller's: value %v, handled by %p (want %p), deadline %v", c.Value(key{}), c.Value(handledKey{}), outer, d)
				}
				checked = true
				return ok().response(r), nil
			})
			outer = New(base, opts...)
			if !outer.mark {
				t.Fatal("the base is not marked for: the test proves nothing")
			}
			sendReq(t, outer, chatRequest(t, "https://api.openai.com/v1/chat/completions", "sk-a").WithContext(ctx))
			if !checked {
				t.Fatal("the base was not reached")
			}
		})
	}
}
