package balance_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/quotabreaker/quotabreaker/balance"
)

// A DeepSeek probe reads the key from a KeyFunc at each read; the Balance
// names the key by its fingerprint only. The server here answers what
// https://api-docs.deepseek.com/api/get-user-balance documents.
func ExampleDeepSeek() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"is_available":true,"balance_infos":[{"currency":"CNY",
			"total_balance":"110.00","granted_balance":"10.00","topped_up_balance":"100.00"}]}`)
	}))
	defer srv.Close()

	p := balance.DeepSeek{
		Key:     func() (string, error) { return "sk-proj-example", nil }, // or balance.EnvKey("DEEPSEEK_API_KEY")
		BaseURL: srv.URL,                                                  // default https://api.deepseek.com
	}
	bs, err := p.Balances(context.Background(), srv.Client())
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, b := range bs {
		fmt.Println(b.Provider, b.Currency, b.Available, "usable:", b.Usable, "key:", b.Fingerprint)
		for _, part := range b.Parts {
			fmt.Println(" ", part.Name, part.Amount)
		}
	}
	// Output:
	// deepseek CNY 110.00 usable: true key: 7eca0b7a12c2
	//   granted_balance 10.00
	//   topped_up_balance 100.00
}

// The forecast of a balance from the spend a Transport counted for its
// scope: cumulative samples over a recent window give a rate, and the rate
// the hours left. Time is a parameter: nothing here reads a clock.
func ExamplePredict() {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	b := balance.Balance{Provider: "deepseek", Currency: "CNY", Available: 45_000000, Read: now.Add(-time.Hour)}

	// Six hours of spend counted in dollars: $0.75 an hour.
	var samples []balance.Sample
	for h := 6; h >= 0; h-- {
		samples = append(samples, balance.Sample{At: now.Add(-time.Duration(h) * time.Hour), Spent: balance.Amount(6-h) * 750000})
	}
	r := balance.SpendRate("USD", samples, 6*time.Hour, now)

	if _, err := balance.Predict(b, r, now); err != nil {
		fmt.Println(err)
	}
	// The caller's rate of exchange: 7.2 yuan a dollar.
	f, err := balance.Predict(b, r.Convert("CNY", 7.2), now)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s CNY left, about %.1f hours, until %s\n", f.Left, f.HoursLeft, f.Empty.Format(time.DateTime))
	// Output:
	// balance: spend and balance in different currencies: spend in "USD", balance in "CNY"
	// 39.60 CNY left, about 7.3 hours, until 2026-12-02 19:20:00
}

// Thresholds pages once per crossing, and again after a top-up.
func ExampleThresholds() {
	th := balance.NewThresholds(50_000000, 10_000000)
	for _, available := range []balance.Amount{80_000000, 45_000000, 40_000000, 9_000000, 100_000000, 30_000000} {
		fmt.Println(available, th.Observe(available))
	}
	// Output:
	// 80.00 []
	// 45.00 [50.00]
	// 40.00 []
	// 9.00 [10.00]
	// 100.00 []
	// 30.00 [50.00]
}

// Drifts compares what the Transport counted with what the provider
// billed (OpenAICosts, AnthropicCosts), per UTC day, in micro-dollars.
func ExampleDrifts() {
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	counted := []balance.Day{{Start: day, USD: 10_000000}}
	billed := []balance.Day{{Start: day, USD: 12_500000}}
	for _, d := range balance.Drifts(counted, billed) {
		fmt.Println(d.Day.Format(time.DateOnly), "counted", d.Counted, "billed", d.Billed, "drift", d.Diff)
	}
	// Output:
	// 2026-12-01 counted 10.00 billed 12.50 drift -2.50
}

// What an answer says it cost, in micro-dollars: xAI in ticks of 10^-10
// USD, OpenRouter in credits (dollars).
func ExampleUsageCost() {
	xai := `{"prompt_tokens":37,"completion_tokens":530,"cost_in_usd_ticks":37756000}`
	openrouter := `{"prompt_tokens":194,"completion_tokens":2,"cost":0.95}`
	for _, u := range []string{xai, openrouter, `{"prompt_tokens":3}`} {
		micros, ok := balance.UsageCost([]byte(u))
		fmt.Println(micros, ok)
	}
	// Output:
	// 3776 true
	// 950000 true
	// 0 false
}
