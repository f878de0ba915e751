package examples_test

import (
	"context"
	"errors"
	"io/fs"
	"log"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/redis/go-redis/v9"
	goopenai "github.com/sashabaranov/go-openai"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/balance"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/usage"
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
	client := &http.Client{Transport: quotabreaker.New(nil, quotabreaker.WithShortCircuitError(true))}
	resp, err := client.Do(req)
	var open *quotabreaker.OpenError
	if errors.As(err, &open) {
		log.Printf("refused: %s since %s (scope %s)", open.Trip.Class, open.Trip.At, open.Trip.Scope)
	}
	return resp, err
}

func readmeObserve() *quotabreaker.Transport {
	qb := quotabreaker.New(http.DefaultTransport, quotabreaker.WithMode(quotabreaker.ModeObserve))
	// A week of quotabreaker.trips and spans later:
	qb.SetMode(quotabreaker.ModeEnforce)
	return qb
}

func readmeBudget() *quotabreaker.Transport {
	qb := quotabreaker.New(http.DefaultTransport,
		quotabreaker.WithBudget(quotabreaker.Budget{
			Name:       "monthly",
			Limit:      500, // dollars per key and calendar month (UTC)
			Thresholds: []float64{0.5, 0.8, 0.95},
			HardLimit:  true,
		}),
		quotabreaker.OnBudget(func(ctx context.Context, st quotabreaker.BudgetStatus) {
			log.Printf("budget %s for %s: %.0f%% spent ($%.2f of $%.2f)", st.Budget, st.Key, st.Threshold*100, st.Spent, st.Limit)
		}))
	return qb
}

func readmeUsage(bill func(context.Context, string, usage.Tokens, float64)) *quotabreaker.Transport {
	qb := quotabreaker.New(http.DefaultTransport,
		quotabreaker.OnUsage(func(ctx context.Context, u quotabreaker.Usage) {
			if u.Priced {
				bill(ctx, u.Model, u.Tokens, u.Cost) // ctx carries the request's own values
			}
		}))
	return qb
}

func readmeFleet() {
	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", ContextTimeoutEnabled: true})
	store, err := redisstore.New(rdb, redisstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	qb := quotabreaker.New(http.DefaultTransport, quotabreaker.WithStore(store))
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		qb.Shutdown(ctx) // writes the last trips and spend, waits for the pages
	}()
}

func readmeBalances(ctx context.Context, store *redisstore.Store, page func(string)) {
	w := balance.NewWatcher(balance.Config{
		Probes:   []balance.Probe{balance.DeepSeek{Key: balance.EnvKey("DEEPSEEK_API_KEY")}},
		Interval: 5 * time.Minute, // with jitter; errors back off
		// OnLow below 100 CNY; OnRunOut when the forecast falls under 24 hours.
		Levels:   map[string][]balance.Amount{"CNY": {100_000000}},
		OnRunOut: func(ctx context.Context, a balance.Alert) { page(a.Message) },
		// To count the dollars the Transport counts against a balance in yuan.
		PerUSD: map[string]float64{"CNY": 7.1},
		// Optional, with a fleet on Redis: one poll per interval for all replicas.
		Share: store.BalanceShare(),
	})
	w.Start(ctx)
	defer w.Close() // the caller owns the Watcher: the Transport's Close leaves it running
	qb := quotabreaker.New(http.DefaultTransport, quotabreaker.WithBalances(w))
	_ = qb
}

func readmeOperations(mux *http.ServeMux, qb *quotabreaker.Transport, requireOperator func(http.Handler) http.Handler) {
	mux.Handle("/admin/quotabreaker", requireOperator(qb.Handler()))
}

func readmeOtelhttp() http.RoundTripper {
	transport := quotabreaker.New(otelhttp.NewTransport(http.DefaultTransport))
	return transport
}

func readmeRetryablehttp() *retryablehttp.Client {
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: quotabreaker.New(http.DefaultTransport)}
	rc.CheckRetry = quotabreaker.RetryPolicy(retryablehttp.DefaultRetryPolicy)
	return rc
}

var _ = []any{readmeOpenAIGo, readmeGoOpenAI, readmeNetHTTP, readmeObserve, readmeBudget, readmeUsage, readmeFleet, readmeBalances, readmeOperations, readmeOtelhttp, readmeRetryablehttp}

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
	if errors.Is(err, fs.ErrNotExist) {
		// The module as published (go test in the module cache) has no
		// README beside it; the repository's CI runs this test.
		t.Skip("no ../README.md: the examples module outside its repository")
	}
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
