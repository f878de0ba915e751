package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The story happens as told on a real Redis: one page, B refuses without
// sending, the reset reaches both, and the last line sums it up.
func TestTell(t *testing.T) {
	srv := redistest.Start(t)
	var buf bytes.Buffer
	f, err := tell(context.Background(), &buf, srv.Addr)
	out := buf.String()
	if err != nil {
		t.Fatalf("tell: %v\n%s", err, out)
	}
	if f.Pages != 1 {
		t.Errorf("pages = %d, want 1", f.Pages)
	}
	if !f.RefusedB || f.HitsAfterB != f.HitsAtTrip {
		t.Errorf("B: refused %v, provider hits %d -> %d; want refused with no hit", f.RefusedB, f.HitsAtTrip, f.HitsAfterB)
	}
	if !f.BothOKAtReset {
		t.Error("a replica did not reach the provider after the reset")
	}
	if f.Propagation <= 0 || f.Propagation > time.Minute {
		t.Errorf("propagation %v", f.Propagation)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "In short: ") {
		t.Errorf("last line %q, want the summary", last)
	}
	for _, want := range []string{"PAGE from replica A", "refused by the latch, nothing sent", "quotabreaker -addr " + srv.Addr + " -prefix " + prefix + " reset ", "Resolved by replica A"} {
		if !strings.Contains(out, want) {
			t.Errorf("the story does not say %q:\n%s", want, out)
		}
	}
	t.Logf("\n%s", out)
}
