package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/balance"
)

func TestBalance(t *testing.T) {
	srv, s := fleet(t)
	addr := "-addr=" + srv.Addr
	code, out, errOut := runCmd(t, "balance", addr)
	if code != 0 || !strings.HasPrefix(out, "No balances shared") || errOut != "" {
		t.Errorf("balance with nothing shared: exit %d, %q, %q", code, out, errOut)
	}

	// A fleet's Watchers published these readings: a DeepSeek balance
	// falling 10 CNY an hour (100 CNY left: 10 hours), and an OpenRouter
	// one falling $1 a day ($50 left: 50 days).
	now := time.Now()
	ds := balance.Balance{Provider: "deepseek", Scope: "api.deepseek.com/key:1f0c3a9e52b7", Fingerprint: "1f0c3a9e52b7",
		Currency: "CNY", Usable: true}
	or := balance.Balance{Provider: "openrouter", Scope: "openrouter.ai/key:fedcba987654", Fingerprint: "fedcba987654",
		Currency: "USD", Usable: true}
	sh := s.BalanceShare()
	publish := func(b balance.Balance, ago time.Duration, avail balance.Amount) {
		b.Read, b.Available = now.Add(-ago), avail
		if err := sh.Publish(context.Background(), []balance.Balance{b}); err != nil {
			t.Fatal(err)
		}
	}
	publish(or, 4*time.Hour, 50_166666)
	publish(ds, 2*time.Hour, 120_000000)
	publish(ds, time.Hour, 110_000000)
	publish(or, 0, 50_000000)
	publish(ds, 0, 100_000000)

	code, out, errOut = runCmd(t, "balance", addr)
	if code != 1 || errOut != "" {
		t.Errorf("balance with one running out: exit %d, stderr %q; want 1", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "PROVIDER") ||
		!strings.Contains(lines[1], "deepseek") || !strings.Contains(lines[1], "100.00 CNY") || !strings.Contains(lines[1], "in about 10 hours") ||
		!strings.Contains(lines[2], "openrouter") || !strings.Contains(lines[2], "in about 50 days") {
		t.Errorf("balance:\n%s", out)
	}

	code, out, _ = runCmd(t, "-json", "balance", addr)
	var sts []struct {
		Provider  string   `json:"provider"`
		Available string   `json:"available"`
		HoursLeft *float64 `json:"hours_left"`
	}
	if err := json.Unmarshal([]byte(out), &sts); err != nil || code != 1 || len(sts) != 2 || sts[0].HoursLeft == nil ||
		*sts[0].HoursLeft < 9.99 || *sts[0].HoursLeft > 10 {
		t.Errorf("balance -json: exit %d, %v:\n%s", code, err, out)
	}
	// With a horizon of 9 hours, nothing runs out within it.
	if code, _, _ := runCmd(t, "-horizon=9h", "balance", addr); code != 0 {
		t.Errorf("balance -horizon=9h: exit %d, want 0", code)
	}
	if code, _, _ := runCmd(t, "balance", "extra", addr); code != 2 {
		t.Errorf("balance extra: exit %d, want 2", code)
	}
}
