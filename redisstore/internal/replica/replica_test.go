package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
)

// fleet is the replicas of one test and what they share.
type fleet struct {
	root     *testing.T
	t        *testing.T // the test or subtest running now
	srv      *redistest.Server
	p        *provider
	key      string
	replicas []*replica
	store    *redisstore.Store // the test's own view of Redis
}

// stepper returns a function that runs one step of t as a subtest, with f
// reporting to it, and stops t at the first step that fails: later steps
// build on the earlier ones.
func (f *fleet) stepper(t *testing.T) func(name string, fn func(t *testing.T)) {
	return func(name string, fn func(t *testing.T)) {
		if !t.Run(name, func(t *testing.T) { f.t = t; fn(t) }) {
			t.FailNow()
		}
		f.t = t
	}
}

func newFleet(t *testing.T, n int) *fleet {
	srv := redistest.Start(t)
	s, err := redisstore.New(srv.Client(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{root: t, t: t, srv: srv, p: newProvider(t), key: "sk-proj-fleet-test", store: s}
	for range n {
		f.add()
	}
	return f
}

// add starts one more replica.
func (f *fleet) add() *replica {
	f.t.Helper()
	r := startReplica(f.root, &f.t, string(rune('A'+len(f.replicas))), f.srv.Addr, f.p, f.key)
	f.replicas = append(f.replicas, r)
	return r
}

// pages returns every page of every replica.
func (f *fleet) pages() []string {
	var ids []string
	for _, r := range f.replicas {
		for _, tr := range r.pageList() {
			ids = append(ids, r.name+":"+tr.RequestID)
		}
	}
	return ids
}

// waitPages waits until the fleet has paged n times in all, then checks
// that it has not paged more.
func (f *fleet) waitPages(n int) {
	f.t.Helper()
	eventually(f.t, "pages", func() bool { return len(f.pages()) >= n })
	if got := f.pages(); len(got) != n {
		f.t.Fatalf("pages = %v, want %d in all", got, n)
	}
}

// waitOpen waits until every replica lists scope's latch open, and returns
// how long each took.
func (f *fleet) waitOpen(rs []*replica, scope string) map[string]time.Duration {
	f.t.Helper()
	start := time.Now()
	took := map[string]time.Duration{}
	eventually(f.t, "every replica lists the latch", func() bool {
		for _, r := range rs {
			if _, ok := took[r.name]; ok {
				continue
			}
			if slices.ContainsFunc(r.status().Latches, func(tr redisstore.Trip) bool { return tr.Scope == scope }) {
				took[r.name] = time.Since(start)
			}
		}
		return len(took) == len(rs)
	})
	return took
}

// waitClosed waits until no replica lists a latch.
func (f *fleet) waitClosed() {
	f.t.Helper()
	eventually(f.t, "every replica closed", func() bool {
		for _, r := range f.replicas {
			if len(r.status().Latches) > 0 {
				return false
			}
		}
		return true
	})
}

// callAll makes one call in each replica and checks that each was refused
// (from the latch, sending nothing) or reached the provider.
func (f *fleet) callAll(refused bool) {
	f.t.Helper()
	before := f.p.hits.Load()
	for _, r := range f.replicas {
		a := r.call()
		switch {
		case refused && !(a.Refused && a.Status == 429 && a.ShouldRetry == "false" && a.Code == "insufficient_quota"):
			f.t.Errorf("%s: %+v, want a refusal the SDK reads as insufficient_quota and does not retry", r.name, a)
		case !refused && (a.Refused || a.Status != 200):
			f.t.Errorf("%s: %+v, want 200 from the provider", r.name, a)
		}
	}
	want := before
	if !refused {
		want += int64(len(f.replicas))
	}
	if got := f.p.hits.Load(); got != want {
		f.t.Errorf("provider hits = %d, want %d", got, want)
	}
}

// command runs the quotabreaker command against the fleet's Redis.
func (f *fleet) command(args ...string) (code int, stdout, stderr string) {
	f.t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, "quotabreaker"), append([]string{"-addr", f.srv.Addr}, args...)...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		f.t.Fatal(err)
	}
	return code, o.String(), e.String()
}

// reset resets scope with the command and waits until every replica
// closed it.
func (f *fleet) reset(scope string) {
	f.t.Helper()
	if code, out, errOut := f.command("reset", scope); code != 0 {
		f.t.Fatalf("quotabreaker reset %s: exit %d\n%s%s", scope, code, out, errOut)
	}
	f.waitClosed()
}

// trip makes r's next call trip its latch and returns the scope.
func (f *fleet) trip(r *replica) string {
	f.t.Helper()
	f.p.quota.Store(true)
	if a := r.call(); a.Refused || a.Status != 429 || a.ShouldRetry != "false" {
		f.t.Fatalf("%s: tripping call: %+v", r.name, a)
	}
	latches := r.status().Latches
	if len(latches) != 1 {
		f.t.Fatalf("%s: latches after a trip: %+v", r.name, latches)
	}
	return latches[0].Scope
}

// storeOpen returns the trips open in Redis.
func (f *fleet) storeOpen() []redisstore.Trip {
	f.t.Helper()
	snap, err := f.store.Snapshot(f.t.Context())
	if err != nil {
		f.t.Fatal(err)
	}
	return snap.Open
}

// TestFleet runs replicas as separate processes, each with its own
// connection to one real Redis, and checks the fleet's promises one after
// the other, on one Redis that persists its data.
func TestFleet(t *testing.T) {
	f := newFleet(t, 3)
	pages := 0
	step := f.stepper(t)

	var scope string
	step("all reach the provider", func(t *testing.T) {
		f.callAll(false)
	})

	step("a trip in one opens every replica, with one page", func(t *testing.T) {
		a := f.replicas[0]
		scope = f.trip(a)
		took := f.waitOpen(f.replicas, scope)
		t.Logf("propagation of the trip (from the tripping call's return to each replica's status listing it): %v", took)
		f.callAll(true)
		pages++
		f.waitPages(pages)
		if got := a.pageList(); len(got) != 1 || got[0].Scope != scope {
			t.Errorf("%s paged %+v, want the trip it made", a.name, got)
		}
	})

	step("a replica started while the latch is open refuses its first request", func(t *testing.T) {
		before := f.p.hits.Load()
		d := f.add()
		if a := d.call(); !a.Refused || a.Status != 429 || a.Code != "insufficient_quota" {
			t.Errorf("%s's first call: %+v, want refused", d.name, a)
		}
		if got := f.p.hits.Load(); got != before {
			t.Errorf("provider hits = %d, want %d: the new replica sent its request", got, before)
		}
	})

	step("a reset from the command reaches every replica", func(t *testing.T) {
		f.p.quota.Store(false)
		f.reset(scope)
		f.callAll(false)
		// OnReset runs where OnTrip ran, and only there.
		eventually(t, "OnReset in the paging replica", func() bool { return len(f.replicas[0].resetList()) == 1 })
		for _, r := range f.replicas[1:] {
			if got := r.resetList(); len(got) != 0 {
				t.Errorf("%s: OnReset %+v, but it did not page", r.name, got)
			}
		}
	})

	step("the latch survives a Redis crash", func(t *testing.T) {
		scope = f.trip(f.replicas[1])
		f.waitOpen(f.replicas, scope)
		pages++
		f.waitPages(pages)
		f.srv.Kill()
		f.srv.Restart()
		if open := f.storeOpen(); len(open) != 1 || open[0].Scope != scope {
			t.Fatalf("Redis holds %+v after its restart, want the latch of %s", open, scope)
		}
		// Every replica reconnects and resyncs; the latch stays open in
		// each, and in a replica started now.
		f.add()
		eventually(t, "every replica sees the store again", func() bool {
			for _, r := range f.replicas {
				if r.status().Store != "up" {
					return false
				}
			}
			return true
		})
		f.waitOpen(f.replicas, scope)
		f.callAll(true)
	})

	step("with Redis down, requests flow, a trip latches and pages locally, and the fleet converges when it is back", func(t *testing.T) {
		f.p.quota.Store(false)
		f.reset(scope)
		logs := map[string]int{}
		for _, r := range f.replicas {
			logs[r.name] = len(r.logList())
		}
		f.srv.Kill()
		eventually(t, "every replica sees the store down", func() bool {
			for _, r := range f.replicas {
				if r.status().Store != "down" {
					return false
				}
			}
			return true
		})
		f.callAll(false)

		a := f.replicas[2]
		scope = f.trip(a)
		before := f.p.hits.Load()
		if got := a.call(); !got.Refused {
			t.Errorf("%s: %+v after its trip with Redis down, want refused", a.name, got)
		}
		if f.p.hits.Load() != before {
			t.Errorf("%s sent a request through its open latch", a.name)
		}
		pages++
		f.waitPages(pages) // paged at once, by the replica that tripped
		for _, r := range f.replicas {
			if r != a && len(r.status().Latches) != 0 {
				t.Errorf("%s lists a latch while Redis is down", r.name)
			}
		}

		f.srv.Restart()
		took := f.waitOpen(f.replicas, scope)
		t.Logf("convergence after Redis came back: %v", took)
		open := f.storeOpen()
		paged := a.pageList()
		if len(open) != 1 || open[0].Scope != scope || len(paged) == 0 || open[0].RequestID != paged[len(paged)-1].RequestID {
			t.Errorf("Redis holds %+v, want the trip %s made while it was down", open, a.name)
		}
		f.callAll(true)
		f.waitPages(pages) // the trip written late pages nobody again

		// One log line when the store went, one when it came back. A
		// replica whose claim went through at once may still be resyncing:
		// it logs the store up when it reads it again.
		eventually(t, "every replica logs the store up", func() bool {
			for _, r := range f.replicas {
				if !slices.ContainsFunc(r.logList()[logs[r.name]:], func(l string) bool { return strings.Contains(l, "store up again") }) {
					return false
				}
			}
			return true
		})
		for _, r := range f.replicas {
			var down, up int
			for _, l := range r.logList()[logs[r.name]:] {
				switch {
				case strings.Contains(l, "store unreachable"):
					down++
				case strings.Contains(l, "store up again"):
					up++
				}
			}
			if down != 1 || up != 1 {
				t.Errorf("%s logged %d unreachable and %d reachable lines across one outage, want 1 and 1: %q", r.name, down, up, r.logList()[logs[r.name]:])
			}
		}
	})

	step("several replicas see the quota answer at once: one page", func(t *testing.T) {
		f.p.quota.Store(false)
		f.reset(scope)
		f.p.quota.Store(true)
		f.p.holdUntil(len(f.replicas))
		var wg sync.WaitGroup
		answers := make([]string, len(f.replicas))
		for i, r := range f.replicas {
			wg.Go(func() {
				// t.Fatal is not for this goroutine: read the raw reply.
				_, _ = r.stdin.Write([]byte("call\n"))
				select {
				case answers[i] = <-r.replies:
				case <-time.After(30 * time.Second):
				}
			})
		}
		wg.Wait()
		for i, a := range answers {
			if !strings.HasPrefix(a, "CALL 429 reached false insufficient_quota") {
				t.Errorf("%s: %q, want the provider's quota answer", f.replicas[i].name, a)
			}
		}
		f.waitOpen(f.replicas, f.replicas[0].status().Latches[0].Scope)
		pages++
		f.waitPages(pages)
	})

	// Every replica closes; no page was lost or doubled meanwhile.
	for _, r := range f.replicas {
		r.stop()
	}
	if got := f.pages(); len(got) != pages {
		t.Errorf("pages = %v, want %d: one per trip", got, pages)
	}
}
