package main

import (
	"maps"
	"strings"
	"testing"
	"time"
)

// waitMode waits until every replica's Handler shows mode, and returns how
// long each took.
func (f *fleet) waitMode(mode string) map[string]time.Duration {
	f.t.Helper()
	start := time.Now()
	took := map[string]time.Duration{}
	eventually(f.t, "every replica in "+mode, func() bool {
		for _, r := range f.replicas {
			if _, ok := took[r.name]; !ok && r.status().Mode == mode {
				took[r.name] = time.Since(start)
			}
		}
		return len(took) == len(f.replicas)
	})
	return took
}

// modeLogs counts each replica's log lines that say it followed the
// fleet's mode.
func (f *fleet) modeLogs() map[string]int {
	n := map[string]int{}
	for _, r := range f.replicas {
		for _, l := range r.logList() {
			if strings.Contains(l, "the fleet's mode changed") {
				n[r.name]++
			}
		}
	}
	return n
}

// TestFleetMode runs replicas as separate processes on one real Redis: the
// command's mode switch turns enforcement off and on in every replica, a
// replica started afterwards starts in the fleet's mode, and a switch
// through one replica's Handler reaches the others.
func TestFleetMode(t *testing.T) {
	f := newFleet(t, 3)
	step := f.stepper(t)

	var scope string
	step("an open latch refuses in every replica", func(t *testing.T) {
		scope = f.trip(f.replicas[0])
		f.waitOpen(f.replicas, scope)
		f.waitPages(1)
		f.p.quota.Store(false)
		f.callAll(true)
	})

	step("mode observe from the command: every replica sends the latch's requests", func(t *testing.T) {
		code, out, errOut := f.command("mode", "observe")
		if code != 0 || !strings.Contains(out, "Mode: observe, for the whole fleet") {
			t.Fatalf("quotabreaker mode observe: exit %d\n%s%s", code, out, errOut)
		}
		t.Logf("from the command's exit to each replica's Handler showing observe: %v", f.waitMode("observe"))
		f.callAll(false)
		for _, r := range f.replicas {
			if got := r.status().Latches; len(got) != 1 || got[0].Scope != scope {
				t.Errorf("%s lists %+v in observe mode, want the latch still open", r.name, got)
			}
		}
		code, out, _ = f.command("status")
		if code != 1 || !strings.HasPrefix(out, "Mode: observe") || !strings.Contains(out, "the fleet observes") {
			t.Errorf("quotabreaker status: exit %d, %q", code, out)
		}
	})

	step("a replica started now starts in observe", func(t *testing.T) {
		before := f.p.hits.Load()
		d := f.add()
		if a := d.call(); a.Refused || a.Status != 200 {
			t.Errorf("%s's first call: %+v, want it sent (observe)", d.name, a)
		}
		if st := d.status(); st.Mode != "observe" || len(st.Latches) != 1 {
			t.Errorf("%s: mode %q, latches %+v; want observe with the latch listed", d.name, st.Mode, st.Latches)
		}
		if got := f.p.hits.Load(); got != before+1 {
			t.Errorf("provider hits = %d, want %d", got, before+1)
		}
	})

	step("mode enforce from the command: every replica refuses again", func(t *testing.T) {
		code, out, errOut := f.command("mode", "enforce")
		if code != 0 {
			t.Fatalf("quotabreaker mode enforce: exit %d\n%s%s", code, out, errOut)
		}
		t.Logf("from the command's exit to each replica's Handler showing enforce: %v", f.waitMode("enforce"))
		f.callAll(true)
		d := f.add()
		if a := d.call(); !a.Refused {
			t.Errorf("%s, started after the switch back: %+v, want refused (enforce)", d.name, a)
		}
	})

	step("a switch through one replica's Handler reaches the others", func(t *testing.T) {
		b := f.replicas[1]
		if got := b.send("mode observe"); got != "MODE 200 observe" {
			t.Fatalf("%s: %q", b.name, got)
		}
		t.Logf("from %s's Handler answer to each replica showing observe: %v", b.name, f.waitMode("observe"))
		f.callAll(false)
		code, out, _ := f.command("mode")
		if code != 0 || !strings.HasPrefix(out, "Mode: observe, for the whole fleet") {
			t.Errorf("quotabreaker mode: exit %d, %q", code, out)
		}
	})

	// Each replica logged once each switch that changed its mode: the
	// first three followed observe, enforce and observe again; D started
	// in observe (New's Snapshot changed it from enforce, and logs too),
	// then followed two; E started in the fleet's enforce, its own, and
	// followed one.
	want := map[string]int{"A": 3, "B": 3, "C": 3, "D": 3, "E": 1}
	eventually(t, "the log lines", func() bool {
		got := f.modeLogs()
		for k, v := range want {
			if got[k] < v {
				return false
			}
		}
		return true
	})
	if got := f.modeLogs(); !maps.Equal(got, want) {
		t.Errorf("lines saying the mode changed, by replica: %v, want %v", got, want)
	}
	for _, r := range f.replicas {
		r.stop()
	}
}
