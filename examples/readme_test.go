package examples_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	goopenai "github.com/sashabaranov/go-openai"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/quotabreaker/quotabreaker"
)

// The functions below hold the README's Go blocks verbatim, so that the
// compiler checks them; TestREADMECodeCompiles checks that each block is
// still here. Only readmeRetryablehttp is called (by
// TestRetryablehttpComposition); the runnable versions of the others,
// against a fake API, are the Example functions.

func readmeOpenAIGo(ctx context.Context, params openai.ChatCompletionNewParams) {
	qb := quotabreaker.New(http.DefaultTransport,
		quotabreaker.OnTrip(func(ctx context.Context, tr quotabreaker.Trip) {
			log.Printf("PAGE: %s (%s) for %s, request %s", tr.Class, tr.Code, tr.Scope, tr.RequestID)
		}))
	client := openai.NewClient(option.WithHTTPClient(&http.Client{Transport: qb}))

	_, err := client.Chat.Completions.New(ctx, params)
	var apiErr *openai.Error
	if errors.As(err, &apiErr) && apiErr.Code == "insufficient_quota" {
		// Not retried; later calls with this key fail at once until qb.Reset.
		// apiErr.Response.Status says "429 Insufficient Quota"; err.Error() only "429 Too Many Requests".
	}
}

func readmeGoOpenAI(ctx context.Context, apiKey string, req goopenai.ChatCompletionRequest) {
	cfg := goopenai.DefaultConfig(apiKey)
	cfg.HTTPClient = &http.Client{Transport: quotabreaker.New(http.DefaultTransport)}
	client := goopenai.NewClientWithConfig(cfg)

	_, err := client.CreateChatCompletion(ctx, req)
	var apiErr *goopenai.APIError
	if errors.As(err, &apiErr) && apiErr.Code == "insufficient_quota" {
		// The first such answer came from OpenAI; the rest never left the process.
	}
}

func readmeNetHTTP(req *http.Request) (*http.Response, error) {
	client := &http.Client{Transport: quotabreaker.New(nil, quotabreaker.WithShortCircuitError())}
	resp, err := client.Do(req)
	var open *quotabreaker.OpenError
	if errors.As(err, &open) {
		log.Printf("refused: %s since %s (scope %s)", open.Trip.Class, open.Trip.At, open.Trip.Scope)
	}
	return resp, err
}

func readmeOperations(mux *http.ServeMux, qb *quotabreaker.Transport) {
	mux.HandleFunc("GET /quotabreaker", func(w http.ResponseWriter, r *http.Request) {
		trips, err := qb.OpenLatches(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(trips) // [] when no latch is open
	})
	mux.HandleFunc("POST /quotabreaker/reset", func(w http.ResponseWriter, r *http.Request) {
		if scope := r.FormValue("scope"); scope != "" {
			ok, err := qb.Reset(r.Context(), scope)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			fmt.Fprintln(w, ok)
			return
		}
		n, err := qb.ResetAll(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, n)
	})
}

func readmeOtelhttp() http.RoundTripper {
	transport := quotabreaker.New(otelhttp.NewTransport(http.DefaultTransport))
	return transport
}

func readmeRetryablehttp() *retryablehttp.Client {
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: quotabreaker.New(http.DefaultTransport)}
	rc.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if resp != nil && resp.Header.Get(quotabreaker.HeaderShouldRetry) == "false" {
			return false, nil // out of quota, or an answer no retry can change
		}
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	return rc
}

var _ = []any{readmeOpenAIGo, readmeGoOpenAI, readmeNetHTTP, readmeOperations, readmeOtelhttp, readmeRetryablehttp}

// normalize drops indentation and blank lines, which differ between a
// README block and the function body holding it.
func normalize(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func TestREADMECodeCompiles(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 6 {
		t.Fatalf("found %d Go blocks in the README, want at least 6", len(blocks))
	}
	code := normalize(string(self))
	for _, b := range blocks {
		if !strings.Contains(code, normalize(b[1])) {
			t.Errorf("README block not compiled in readme_test.go:\n%s", b[1])
		}
	}
}
