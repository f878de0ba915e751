package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// summary parses the "summary: k=v ..." line run prints last.
func summary(t *testing.T, out string) map[string]string {
	t.Helper()
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(line, "summary: "); ok {
			m := map[string]string{}
			for _, f := range strings.Fields(rest) {
				k, v, _ := strings.Cut(f, "=")
				m[k] = v
			}
			return m
		}
	}
	t.Fatalf("no summary line in:\n%s", out)
	return nil
}

func atoi(t *testing.T, m map[string]string, key string) int {
	t.Helper()
	n, err := strconv.Atoi(m[key])
	if err != nil {
		t.Fatalf("summary %s=%q: %v", key, m[key], err)
	}
	return n
}

func TestRunEmbedded(t *testing.T) {
	var buf bytes.Buffer
	if err := run(context.Background(), &buf, config{Model: "gpt-4o-mini"}); err != nil {
		t.Fatalf("run: %v\n%s", err, buf.String())
	}
	out := buf.String()
	s := summary(t, out)

	// 2 normal calls + the rate limit and its retry + the quota answer.
	if got := atoi(t, s, "hits_before"); got != 5 {
		t.Errorf("hits_before = %d, want 5", got)
	}
	if before, after := atoi(t, s, "hits_before"), atoi(t, s, "hits_after"); after != before {
		t.Errorf("hits_after = %d, want %d: a call reached the server while the latch was open", after, before)
	}
	if got := atoi(t, s, "ontrip"); got != 1 {
		t.Errorf("ontrip = %d, want 1", got)
	}
	if got := strings.Count(out, "PAGE on-call:"); got != 1 {
		t.Errorf("%d pages printed, want 1", got)
	}
	if got := atoi(t, s, "short_circuits"); got != 5 {
		t.Errorf("short_circuits (from the metric) = %d, want 5", got)
	}
	if got := atoi(t, s, "reset"); got != 1 {
		t.Errorf("reset = %d, want 1 latch closed", got)
	}
	if s["final_ok"] != "true" {
		t.Errorf("final_ok = %q, want true: the call after Reset failed", s["final_ok"])
	}
	if got, want := atoi(t, s, "total_hits"), atoi(t, s, "hits_after")+1; got != want {
		t.Errorf("total_hits = %d, want %d: the call after Reset did not reach the server", got, want)
	}

	// The spans tell quota and rate limits apart, and mark short circuits.
	for attr, want := range map[string]int{
		"error.type=quota_exhausted":      7, // the trip, 5 short circuits, the reset
		"error.type=rate_limited":         1,
		"quotabreaker.short_circuit=true": 5,
		"quotabreaker.retry_after_ms=250": 1,
		"[event quotabreaker.trip]":       1,
	} {
		if got := strings.Count(out, attr); got != want {
			t.Errorf("%q appears %d times, want %d", attr, got, want)
		}
	}
}

func TestRunRealNeedsKey(t *testing.T) {
	var buf bytes.Buffer
	err := run(context.Background(), &buf, config{Real: true})
	if err == nil || !strings.Contains(err.Error(), "OPENAI_API_KEY") {
		t.Errorf("run -real without a key: err = %v, want one naming OPENAI_API_KEY", err)
	}
}
