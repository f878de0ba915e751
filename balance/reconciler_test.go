package balance

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestReconcilerDrift: what the Transport counted against what OpenAI
// billed (its documented answer: $0.06 on 2024-11-01), per day.
func TestReconcilerDrift(t *testing.T) {
	var fail atomic.Bool
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() || r.URL.Path != "/v1/organization/costs" || r.Header.Get("Authorization") != "Bearer "+canary {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		w.Write([]byte(openaiCostsDoc))
	}))
	defer s.Close()
	clk := &clock{t: time.Date(2024, 11, 2, 12, 0, 0, 0, time.UTC)}
	var logs bytes.Buffer
	r := NewReconciler(ReconcileConfig{
		Readers: []CostReader{OpenAICosts{Key: canaryKey, BaseURL: s.URL}},
		Client:  s.Client(),
		Now:     clk.Now,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	r.Counted("openai", 0.02, time.Date(2024, 11, 1, 9, 0, 0, 0, time.UTC))
	r.Counted("openai", 0.03, time.Date(2024, 11, 1, 23, 0, 0, 0, time.UTC))
	r.Counted("openai", 0.04, time.Date(2024, 11, 2, 1, 0, 0, 0, time.UTC)) // today: billed nothing yet
	r.Counted("anthropic", 1, time.Date(2024, 11, 1, 9, 0, 0, 0, time.UTC)) // no reader: no drift
	r.Counted("openai", 5, time.Date(2024, 10, 1, 9, 0, 0, 0, time.UTC))    // before the window
	if err := r.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []ProviderDrift{
		{"openai", Drift{Day: day("2024-11-01"), Counted: 50000, Billed: 60000, Diff: -10000}},
		{"openai", Drift{Day: day("2024-11-02"), Counted: 40000, Diff: 40000}},
	}
	if got := r.Drifts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Drifts = %v\nwant %v", got, want)
	}
	// A failed read keeps the last good drifts, and says so without the key.
	fail.Store(true)
	if err := r.Read(context.Background()); err == nil {
		t.Fatal("Read of a 500: no error")
	}
	if got := r.Drifts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Drifts after a failure = %v", got)
	}
	if strings.Contains(logs.String(), canary) || !strings.Contains(logs.String(), "answered 500") {
		t.Errorf("log: %s", logs.String())
	}
}

func TestReconcilerStops(t *testing.T) {
	r := NewReconciler(ReconcileConfig{Interval: time.Minute})
	r.Start(context.Background())
	r.Close()
	r.Close()
	// Close returns once the goroutine has closed its done channel; it
	// exits a moment later.
	if !gone("balance.(*Reconciler).Start") {
		t.Error("the goroutine runs after Close")
	}
}
