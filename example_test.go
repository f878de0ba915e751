package quotabreaker_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/quotabreaker/quotabreaker"
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

func ExampleClassify() {
	body := []byte(`{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`)
	c := quotabreaker.Classify(http.StatusTooManyRequests, nil, body)
	fmt.Println(c.Class, c.Code, c.Retryable)

	body = []byte(`{"error":{"message":"Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`)
	c = quotabreaker.Classify(http.StatusTooManyRequests, nil, body)
	fmt.Println(c.Class, c.Code, c.Retryable)
	// Output:
	// quota_exhausted insufficient_quota false
	// rate_limited rate_limit_exceeded true
}

// OnTrip is the hook that pages someone: it fires once per latch, on the
// first quota answer, however many follow.
func ExampleOnTrip() {
	api := outOfQuota()
	defer api.Close()

	qb := quotabreaker.New(http.DefaultTransport, quotabreaker.OnTrip(func(tr quotabreaker.Trip) {
		// Keep this quick: it runs before the tripping request returns.
		fmt.Printf("PAGE: %s (%s, HTTP %d) - calls with these credentials fail until billing is fixed\n",
			tr.Class, tr.Code, tr.Status)
	}))
	defer qb.CloseIdleConnections()
	client := &http.Client{Transport: qb}
	for range 3 {
		resp, _ := post(client, api.URL, "sk-a")
		fmt.Println(resp.StatusCode, "short-circuited:", resp.Header.Get(quotabreaker.HeaderShortCircuit) == "true")
	}
	// Output:
	// PAGE: quota_exhausted (insufficient_quota, HTTP 429) - calls with these credentials fail until billing is fixed
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

	for _, tr := range qb.OpenLatches() {
		fmt.Println("open since a", tr.Class, "answer:", qb.Reset(tr.Scope))
	}
	fmt.Println("open latches:", len(qb.OpenLatches()))
	// Output:
	// open since a quota_exhausted answer: true
	// open latches: 0
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
	resp, _ := client.Do(req)
	resp.Body.Close()
	fmt.Println(qb.OpenLatches()[0].Scope)
	// Output:
	// tenant:acme
}

// For plain net/http callers, WithShortCircuitError turns refused requests
// into errors. (Leave it off for OpenAI's SDKs: they retry transport errors.)
func ExampleWithShortCircuitError() {
	api := outOfQuota()
	defer api.Close()
	qb := quotabreaker.New(http.DefaultTransport, quotabreaker.WithShortCircuitError())
	defer qb.CloseIdleConnections()
	client := &http.Client{Transport: qb}

	resp, err := post(client, api.URL, "sk-a") // reaches the API and trips
	fmt.Println(resp.StatusCode, err)

	_, err = post(client, api.URL, "sk-a") // refused without the network
	var open *quotabreaker.OpenError
	if errors.Is(err, quotabreaker.ErrQuotaExhausted) && errors.As(err, &open) {
		fmt.Println("refused:", open.Class, open.Code)
	}
	// Output:
	// 429 <nil>
	// refused: quota_exhausted insufficient_quota
}
