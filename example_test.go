package quotabreaker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/classify"
)

// outOfQuota stands in for api.openai.com after the money ran out: it
// answers every request with OpenAI's insufficient_quota body.
func outOfQuota() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`)
	}))
}

// post sends a chat request with key, as an SDK would, and reads the answer.
func post(c *http.Client, url, key string) (*http.Response, error) {
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := c.Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

// The Transport goes under any http.Client, such as the one an
// OpenAI-compatible SDK takes. The first quota answer reaches the caller
// marked so that the SDK does not retry it; the next requests of the same
// credentials get a copy of it without reaching the network.
func Example() {
	api := outOfQuota()
	defer api.Close()

	client := &http.Client{Transport: quotabreaker.New(http.DefaultTransport)}
	for range 3 {
		resp, err := post(client, api.URL, "sk-a")
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s, X-Should-Retry: %s, short-circuited: %t\n", resp.Status,
			resp.Header.Get(quotabreaker.HeaderShouldRetry), resp.Header.Get(quotabreaker.HeaderShortCircuit) == "true")
	}
	// Output:
	// 429 Insufficient Quota, X-Should-Retry: false, short-circuited: false
	// 429 Insufficient Quota, X-Should-Retry: false, short-circuited: true
	// 429 Insufficient Quota, X-Should-Retry: false, short-circuited: true
}

type tenantKey struct{}

// OnTrip is the hook that pages someone: it fires once per latch, on the
// first quota answer, however many follow. Its context is the tripping
// request's, so the page can say whose traffic stopped.
func ExampleOnTrip() {
	api := outOfQuota()
	defer api.Close()

	qb := quotabreaker.New(http.DefaultTransport, quotabreaker.OnTrip(func(ctx context.Context, tr quotabreaker.Trip) {
		// Keep this quick: it runs before the tripping request returns.
		fmt.Printf("PAGE: tenant %s: %s (%s, HTTP %d) - calls with these credentials fail until billing is fixed\n",
			ctx.Value(tenantKey{}), tr.Class, tr.Code, tr.StatusCode)
	}))
	defer qb.CloseIdleConnections()
	client := &http.Client{Transport: qb}
	ctx := context.WithValue(context.Background(), tenantKey{}, "acme")
	for range 3 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, api.URL+"/v1/chat/completions", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer sk-a")
		resp, err := client.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode, "short-circuited:", resp.Header.Get(quotabreaker.HeaderShortCircuit) == "true")
	}
	// Output:
	// PAGE: tenant acme: quota_exhausted (insufficient_quota, HTTP 429) - calls with these credentials fail until billing is fixed
	// 429 short-circuited: false
	// 429 short-circuited: true
	// 429 short-circuited: true
}

// Reset closes a latch once billing is fixed: the scope to give is the one
// OpenLatches, OnTrip and the quotabreaker.scope span attribute show.
func ExampleTransport_Reset() {
	api := outOfQuota()
	defer api.Close()
	qb := quotabreaker.New(http.DefaultTransport)
	defer qb.CloseIdleConnections()
	post(&http.Client{Transport: qb}, api.URL, "sk-a")

	ctx := context.Background()
	open, err := qb.OpenLatches(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, tr := range open {
		closed, err := qb.Reset(ctx, tr.Scope)
		fmt.Println("open since a", tr.Class, tr.Cause, "- reset:", closed, err)
	}
	open, _ = qb.OpenLatches(ctx)
	fmt.Println("open latches:", len(open))
	// Output:
	// open since a quota_exhausted answer - reset: true <nil>
	// open latches: 0
}

// ResetAll closes every open latch at once, calling OnReset for each.
func ExampleTransport_ResetAll() {
	api := outOfQuota()
	defer api.Close()
	qb := quotabreaker.New(http.DefaultTransport, quotabreaker.OnReset(func(ctx context.Context, tr quotabreaker.Trip) {
		fmt.Println("resolved:", tr.Class)
	}))
	defer qb.CloseIdleConnections()
	client := &http.Client{Transport: qb}
	post(client, api.URL, "sk-a")
	post(client, api.URL, "sk-b")

	n, err := qb.ResetAll(context.Background())
	fmt.Println(n, "latches closed", err)
	// Output:
	// resolved: quota_exhausted
	// resolved: quota_exhausted
	// 2 latches closed <nil>
}

// OpenLatches lists the open latches, for an operator's page or endpoint;
// its JSON is [] when none is open.
func ExampleTransport_OpenLatches() {
	api := outOfQuota()
	defer api.Close()
	qb := quotabreaker.New(http.DefaultTransport)
	defer qb.CloseIdleConnections()

	ctx := context.Background()
	open, _ := qb.OpenLatches(ctx)
	b, _ := json.Marshal(open)
	fmt.Println(string(b))

	post(&http.Client{Transport: qb}, api.URL, "sk-a")
	open, _ = qb.OpenLatches(ctx)
	for _, tr := range open {
		fmt.Println(tr.Cause, tr.Mode, tr.Class, tr.Code, tr.StatusCode)
	}
	// Output:
	// []
	// answer enforce quota_exhausted insufficient_quota 429
}

// A Trip's JSON form is part of the API: the names match the telemetry's
// attributes, and empty optional fields are left out.
func ExampleTrip() {
	tr := quotabreaker.Trip{
		Scope:      "api.openai.com/key:3c6e0b8a9c15/project:proj_abc",
		Cause:      quotabreaker.CauseAnswer,
		Mode:       quotabreaker.ModeEnforce,
		Class:      classify.QuotaExhausted,
		Provider:   classify.ProviderOpenAI,
		Code:       "insufficient_quota",
		Type:       "insufficient_quota",
		StatusCode: http.StatusTooManyRequests,
		RequestID:  "req_9f2c1c3b",
		At:         time.Date(2026, 11, 26, 8, 41, 0, 0, time.UTC),
	}
	b, _ := json.MarshalIndent(tr, "", "  ")
	fmt.Println(string(b))
	// Output:
	// {
	//   "scope": "api.openai.com/key:3c6e0b8a9c15/project:proj_abc",
	//   "cause": "answer",
	//   "mode": "enforce",
	//   "class": "quota_exhausted",
	//   "provider": "openai",
	//   "error_code": "insufficient_quota",
	//   "error_type": "insufficient_quota",
	//   "status_code": 429,
	//   "request_id": "req_9f2c1c3b",
	//   "at": "2026-11-26T08:41:00Z"
	// }
}

// In observe mode the Transport classifies, records and pages as it would
// when enforcing, but sends every request and changes no answer: a way to
// watch production before enforcing. SetMode switches at run time.
func ExampleWithMode() {
	api := outOfQuota()
	defer api.Close()
	qb := quotabreaker.New(http.DefaultTransport,
		quotabreaker.WithMode(quotabreaker.ModeObserve),
		quotabreaker.OnTrip(func(ctx context.Context, tr quotabreaker.Trip) {
			fmt.Printf("PAGE (%s): %s\n", tr.Mode, tr.Class)
		}))
	defer qb.CloseIdleConnections()
	client := &http.Client{Transport: qb}
	show := func() {
		resp, err := post(client, api.URL, "sk-a")
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s, short-circuited: %t\n", resp.Status, resp.Header.Get(quotabreaker.HeaderShortCircuit) == "true")
	}
	show()
	show()

	qb.SetMode(quotabreaker.ModeEnforce)
	show()
	// Output:
	// PAGE (observe): quota_exhausted
	// 429 Too Many Requests, short-circuited: false
	// 429 Too Many Requests, short-circuited: false
	// 429 Insufficient Quota, short-circuited: true
}

// A custom scope decides which requests share a latch, here one per tenant
// whatever key it uses. The scope shows in spans and hooks: keep secrets out.
func ExampleWithScope() {
	api := outOfQuota()
	defer api.Close()
	qb := quotabreaker.New(http.DefaultTransport, quotabreaker.WithScope(func(r *http.Request) string {
		return "tenant:" + r.Header.Get("X-Tenant")
	}))
	defer qb.CloseIdleConnections()
	client := &http.Client{Transport: qb}

	req, _ := http.NewRequest(http.MethodPost, api.URL, nil)
	req.Header.Set("X-Tenant", "acme")
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	open, _ := qb.OpenLatches(context.Background())
	fmt.Println(open[0].Scope)
	// Output:
	// tenant:acme
}

// The default scope names the credentials without showing them: a key
// appears as the first 12 hex digits of its SHA-256, which an operator
// finds with printf %s "$KEY" | sha256sum | cut -c1-12.
func ExampleDefaultScope() {
	req, _ := http.NewRequest(http.MethodPost, "https://api.openai.com/v1/chat/completions", nil)
	req.Header.Set("Authorization", "Bearer sk-proj-example")
	req.Header.Set("OpenAI-Project", "proj_abc")
	fmt.Println(quotabreaker.DefaultScope(req))
	fmt.Println(quotabreaker.Fingerprint("sk-proj-example"))
	// Output:
	// api.openai.com/key:7eca0b7a12c2/project:proj_abc
	// 7eca0b7a12c2
}

// For plain net/http callers, WithShortCircuitError turns refused requests
// into errors. (Leave it off for OpenAI's SDKs: they retry transport errors.)
func ExampleWithShortCircuitError() {
	api := outOfQuota()
	defer api.Close()
	qb := quotabreaker.New(http.DefaultTransport, quotabreaker.WithShortCircuitError(true))
	defer qb.CloseIdleConnections()
	client := &http.Client{Transport: qb}

	resp, err := post(client, api.URL, "sk-a") // reaches the API and trips
	fmt.Println(resp.StatusCode, err)

	_, err = post(client, api.URL, "sk-a") // refused without the network
	var open *quotabreaker.OpenError
	if errors.Is(err, quotabreaker.ErrOpen) && errors.As(err, &open) {
		fmt.Println("refused:", open.Trip.Class, open.Trip.Code)
	}
	// Output:
	// 429 <nil>
	// refused: quota_exhausted insufficient_quota
}
