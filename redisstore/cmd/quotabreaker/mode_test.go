package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/redisstore"
)

// mode shows and switches the fleet's mode, in a table's words or as JSON;
// status shows it above the latches.
func TestMode(t *testing.T) {
	srv, s := fleet(t)
	addr := "-addr=" + srv.Addr
	ctx := context.Background()

	code, out, errOut := runCmd(t, "mode", addr)
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "Mode: not set for the fleet") {
		t.Errorf("mode, never set: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = runCmd(t, "mode", "-json", addr)
	if code != 0 || strings.Join(strings.Fields(out), " ") != `{ "mode": null, "epoch": 0 }` {
		t.Errorf("mode -json, never set: exit %d, %q", code, out)
	}

	before := time.Now()
	code, out, errOut = runCmd(t, "mode", "observe", addr)
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "Switched the fleet to observe; every replica") ||
		!strings.Contains(out, "\nMode: observe, for the whole fleet, switched "+before.Local().Format("2006-01-02 ")) {
		t.Errorf("mode observe: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	m, epoch, err := s.Mode(ctx)
	if err != nil || m != redisstore.ModeObserve || epoch == 0 {
		t.Fatalf("Redis after mode observe: %v at %d, %v", m, epoch, err)
	}

	code, out, _ = runCmd(t, "-json", "mode", addr)
	var got struct {
		Mode  *string `json:"mode"`
		Epoch uint64  `json:"epoch"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || got.Mode == nil || *got.Mode != "observe" || got.Epoch != epoch {
		t.Errorf("mode -json: exit %d, %v, %q; want observe at %d", code, err, out, epoch)
	}

	// status says the latches refuse nothing now; its exit status still
	// says that a latch is open.
	claim(t, s, tripA)
	code, out, _ = runCmd(t, "status", addr)
	lines := strings.Split(out, "\n")
	if code != 1 || !strings.HasPrefix(lines[0], "Mode: observe, for the whole fleet") ||
		!strings.HasPrefix(lines[1], "1 open latch(es): the fleet observes, so requests of these scopes still reach the provider") {
		t.Errorf("status in observe mode: exit %d, %q", code, out)
	}

	// A switch to the mode already set is written again, at a newer
	// epoch: it wins over a switch a replica still waits to write.
	code, out, _ = runCmd(t, "mode", "observe", "-json", addr)
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || got.Epoch <= epoch {
		t.Errorf("mode observe again: exit %d, %v, %q; want an epoch above %d", code, err, out, epoch)
	}
	code, out, _ = runCmd(t, "mode", "enforce", addr)
	if m, _, _ := s.Mode(ctx); code != 0 || m != redisstore.ModeEnforce || !strings.Contains(out, "Mode: enforce, for the whole fleet") {
		t.Errorf("mode enforce: exit %d, %q, Redis holds %v", code, out, m)
	}
	code, out, _ = runCmd(t, "status", addr)
	if code != 1 || !strings.Contains(out, "1 open latch(es): requests of these scopes are refused until a reset") {
		t.Errorf("status in enforce mode: exit %d, %q", code, out)
	}

	// A stored mode SetMode did not write is an error for mode (2); status
	// reports it without hiding the open latch (1).
	if err := srv.Client().HSet(ctx, redisstore.DefaultPrefix+"mode", "mode", "panic").Err(); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCmd(t, "mode", addr)
	if code != 2 || out != "" || !strings.Contains(errOut, `stored mode "panic" is not enforce or observe`) {
		t.Errorf("mode, corrupt: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCmd(t, "status", addr)
	if code != 1 || !strings.HasPrefix(out, "1 open latch(es)") || !strings.Contains(errOut, "stored mode") {
		t.Errorf("status, corrupt mode: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := s.ClearAll(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := runCmd(t, "status", addr); code != 2 {
		t.Errorf("status, corrupt mode, no latch: exit %d, want 2", code)
	}
	// The command mends it: a switch writes a good mode.
	if err := srv.Client().HSet(ctx, redisstore.DefaultPrefix+"mode", "mode", "enforce", "epoch", strconv.Itoa(12)).Err(); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd(t, "mode", "observe", addr); code != 0 {
		t.Errorf("mode observe over a mended epoch: exit %d, %q", code, errOut)
	}
}
