package quotabreaker

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"
)

// modeMem is a latch-less ModeStore in memory whose Watch delivers only
// what the test sends on its changes channel, so that a test decides when
// (and whether) each change arrives.
type modeMem struct {
	mu      sync.Mutex
	mode    Mode
	epoch   uint64
	fail    bool
	writes  []Mode
	changes chan Change
	// echo: SetMode publishes its change to Watch and answers only after
	// hold, as a reply that comes after the message would; failAfter:
	// writes after this many fail.
	echo      bool
	hold      time.Duration
	failAfter int
	gate      chan struct{} // when set, SetMode publishes once it is closed
}

func newModeMem() *modeMem { return &modeMem{changes: make(chan Change, 16)} }

func (s *modeMem) Claim(context.Context, Trip) (bool, ScopeState, error) {
	return false, ScopeState{}, errors.New("no latches here")
}
func (s *modeMem) Clear(context.Context, string) (Change, error) {
	return Change{Kind: ChangeCleared}, nil
}
func (s *modeMem) ClearAll(context.Context) ([]Change, error) { return []Change{}, nil }

func (s *modeMem) Snapshot(context.Context) (Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return Snapshot{}, errors.New("down")
	}
	return Snapshot{Open: []Trip{}, Epochs: map[string]uint64{}, Mode: s.mode, ModeEpoch: s.epoch}, nil
}

func (s *modeMem) Watch(ctx context.Context, fn func(Change)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ch := <-s.changes:
			fn(ch)
		}
	}
}

func (s *modeMem) SetMode(_ context.Context, m Mode) (Change, error) {
	s.mu.Lock()
	if s.fail {
		s.mu.Unlock()
		return Change{}, errors.New("down")
	}
	s.epoch++
	s.mode = m
	s.writes = append(s.writes, m)
	s.fail = s.failAfter > 0 && len(s.writes) >= s.failAfter
	ch := Change{Kind: ChangeMode, Mode: m, Epoch: s.epoch}
	echo, hold, gate := s.echo, s.hold, s.gate
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if echo {
		s.changes <- ch
		time.Sleep(hold)
	}
	return ch, nil
}

func (s *modeMem) setFail(b bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = b
}

func (s *modeMem) state() (Mode, uint64, []Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode, s.epoch, append([]Mode(nil), s.writes...)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newModeTransport(t *testing.T, s *modeMem, opts ...Option) *Transport {
	t.Helper()
	tr := New(roundTripperFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("unused") }),
		append([]Option{WithStore(s), WithStoreTimeout(200 * time.Millisecond)}, opts...)...)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// The echo of this process's own write, which arrives before the write's
// reply, while a later SetMode waits: it is not a switch made elsewhere, so
// when the later SetMode's write fails, it is still written (not dropped as
// superseded) once the store takes writes again.
func TestModeOwnEchoDoesNotSupersede(t *testing.T) {
	s := newModeMem()
	s.echo, s.hold, s.failAfter = true, 100*time.Millisecond, 1
	s.gate = make(chan struct{})
	tr := newModeTransport(t, s)
	tr.SetMode(ModeObserve)
	waitUntil(t, "the first write", func() bool { _, _, w := s.state(); return len(w) == 1 })
	tr.SetMode(ModeEnforce) // after the first write, before its echo and reply
	close(s.gate)
	time.Sleep(400 * time.Millisecond)
	if m, _, w := s.state(); m != ModeObserve || len(w) != 1 || tr.Mode() != ModeEnforce {
		t.Fatalf("store %v after %v, here %v; want observe, one write, enforce here", m, w, tr.Mode())
	}
	s.setFail(false)
	waitUntil(t, "the second write", func() bool { m, _, _ := s.state(); return m == ModeEnforce })
	if _, _, w := s.state(); len(w) != 2 {
		t.Errorf("writes %v, want observe then enforce", w)
	}
	if tr.Mode() != ModeEnforce {
		t.Errorf("mode %v after its write", tr.Mode())
	}
}

// SetMode called again while its first write is in flight: the last call
// wins, here and in the store.
func TestModeLastSetModeWins(t *testing.T) {
	s := newModeMem()
	tr := newModeTransport(t, s)
	for range 50 {
		tr.SetMode(ModeObserve)
		tr.SetMode(ModeEnforce)
	}
	tr.SetMode(ModeObserve)
	waitUntil(t, "the writes", func() bool { m, _, _ := s.state(); return m == ModeObserve && !tr.modePending() })
	// Echoes of every write, in order, change nothing.
	_, epoch, _ := s.state()
	for e := uint64(1); e <= epoch; e++ {
		s.changes <- Change{Kind: ChangeMode, Mode: []Mode{ModeEnforce, ModeObserve}[e%2], Epoch: e}
	}
	time.Sleep(50 * time.Millisecond)
	if tr.Mode() != ModeObserve {
		t.Errorf("mode %v, want the last SetMode's observe", tr.Mode())
	}
}

// Without a store, or with one that does not share the mode, SetMode and
// SetModeContext switch this Transport alone, as before; an unknown mode is
// refused.
func TestModeWithoutModeStore(t *testing.T) {
	tr := New(nil, WithMode(ModeObserve))
	if tr.Mode() != ModeObserve {
		t.Fatalf("WithMode: %v", tr.Mode())
	}
	if err := tr.SetModeContext(context.Background(), ModeEnforce); err != nil || tr.Mode() != ModeEnforce {
		t.Errorf("SetModeContext: %v, %v", err, tr.Mode())
	}
	if err := tr.SetModeContext(context.Background(), Mode(9)); err == nil || tr.Mode() != ModeEnforce {
		t.Errorf("SetModeContext(9): %v, %v", err, tr.Mode())
	}
	tr.SetMode(Mode(9))
	if tr.Mode() != ModeEnforce {
		t.Errorf("SetMode(9) changed the mode to %v", tr.Mode())
	}
	var zero Transport
	if err := zero.SetModeContext(context.Background(), ModeObserve); err == nil {
		t.Error("SetModeContext on a zero Transport succeeded")
	}
}

// A store that answers SetMode with a mode it was not asked for, or an
// invalid change, is not believed.
func TestModeStoreAnswerChecked(t *testing.T) {
	s := &lyingModeStore{modeMem: newModeMem()}
	tr := newModeTransport(t, s.modeMem)
	tr.fleet.mode.store = s
	if err := tr.SetModeContext(context.Background(), ModeObserve); err == nil || tr.Mode() != ModeEnforce {
		t.Errorf("a lying store: %v, mode %v", err, tr.Mode())
	}
}

type lyingModeStore struct{ *modeMem }

func (s *lyingModeStore) SetMode(context.Context, Mode) (Change, error) {
	return Change{Kind: ChangeMode, Mode: ModeEnforce, Epoch: MaxEpoch + 1}, nil
}
