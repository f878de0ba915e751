package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The embedded story happens as told, and the text tells it in order: the
// page follows the call that caused it, times carry a date and a zone, spans
// are described in plain words, and one last line sums it up.
func TestRunEmbedded(t *testing.T) {
	var buf bytes.Buffer
	f, err := run(context.Background(), &buf, config{Model: "gpt-4o-mini"})
	out := buf.String()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}

	// The facts. 2 normal calls + the rate limit and its retry + the quota
	// answer reached the server before the latch opened.
	if f.HitsBefore != 5 {
		t.Errorf("hits before the refused calls = %d, want 5", f.HitsBefore)
	}
	if f.HitsAfter != f.HitsBefore {
		t.Errorf("hits after the refused calls = %d, want %d: a call reached the server while the latch was open", f.HitsAfter, f.HitsBefore)
	}
	if f.Pages != 1 {
		t.Errorf("OnTrip fired %d times, want 1", f.Pages)
	}
	if f.Refused != refusedCalls || f.ShortCircuits != refusedCalls {
		t.Errorf("%d calls refused, short_circuits metric %d; want %d and %d", f.Refused, f.ShortCircuits, refusedCalls, refusedCalls)
	}
	if f.Resets != 1 {
		t.Errorf("%d latches reset, want 1", f.Resets)
	}
	if !f.FinalOK || f.TotalHits != f.HitsAfter+1 {
		t.Errorf("after the reset: ok=%v, total hits %d; want ok and %d", f.FinalOK, f.TotalHits, f.HitsAfter+1)
	}

	// The page is printed once, right after the line of the call that
	// tripped, and before the next call's line.
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	pages := 0
	for i, line := range lines {
		if !strings.HasPrefix(line, "   PAGE to on-call: ") {
			continue
		}
		pages++
		if prev := lines[i-1]; !strings.HasPrefix(prev, "   call 4: failed with 429 Insufficient Quota") || !strings.Contains(prev, "answered by the server") {
			t.Errorf("the page follows %q, want the line of call 4, the quota answer from the server", prev)
		}
		if !strings.Contains(strings.Join(lines[i+1:], "\n"), "   call 5: ") {
			t.Errorf("no call 5 after the page")
		}
	}
	if pages != 1 {
		t.Errorf("%d pages printed, want 1", pages)
	}

	// The balance's forecast warned once, before the quota answer.
	if f.Warnings != 1 || strings.Count(out, "   WARNING to on-call: at this rate, DeepSeek key ") != 1 {
		t.Errorf("%d warnings, want 1:\n%s", f.Warnings, out)
	}
	if w, q := strings.Index(out, "WARNING to on-call"), strings.Index(out, "call 4: failed with 429 Insufficient Quota"); w < 0 || w > q {
		t.Errorf("the warning does not come before the quota answer")
	}
	if strings.Contains(out, demoKey) {
		t.Errorf("the demo printed its key")
	}

	// Times say the date and the zone.
	when := regexp.MustCompile(`since \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [A-Z+\-0-9]+\)`)
	if got := len(when.FindAllString(out, -1)); got != 1 {
		t.Errorf("%d \"open since\" times with a date and a zone, want 1 (in the reset line)", got)
	}

	// Spans in plain words, with the attributes a dashboard selects on.
	for _, jargon := range []string{"Unset", "STATUS_CODE", "SpanKind"} {
		if strings.Contains(out, jargon) {
			t.Errorf("the output says %q", jargon)
		}
	}
	for text, want := range map[string]int{
		"error.type=quota_exhausted":              1 + refusedCalls,
		"error.type=rate_limited":                 1,
		"quotabreaker.short_circuit=true":         refusedCalls,
		"refused by the open latch, not sent":     refusedCalls,
		"the server asked to wait 250 ms":         1,
		"this answer opened the latch":            1,
		"quotabreaker.trip.class=quota_exhausted": 1, // the reset's span
		"answered by the open latch":              refusedCalls,
	} {
		if got := strings.Count(out, text); got != want {
			t.Errorf("%q appears %d times, want %d", text, got, want)
		}
	}

	// One summing-up line, the last: CI greps for it.
	if got := strings.Count(out, "\nIn short: "); got != 1 {
		t.Errorf("%d lines start with \"In short: \", want 1", got)
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "In short: the quota answer reached the server once") {
		t.Errorf("last line %q, want the summing-up sentence", last)
	}
}

func TestRunRealNeedsKey(t *testing.T) {
	var buf bytes.Buffer
	_, err := run(context.Background(), &buf, config{Real: true})
	if err == nil || !strings.Contains(err.Error(), "OPENAI_API_KEY") {
		t.Errorf("run -real without a key: err = %v, want one naming OPENAI_API_KEY", err)
	}
}
