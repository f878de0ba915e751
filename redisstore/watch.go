package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// Backoff between subscription attempts while Redis cannot be reached.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// Watch calls fn for every change made through any Store with the same
// prefix, until ctx is done; then it returns nil. It returns an error only
// when it cannot watch at all: fn is nil, or the client is closed. fn is
// called on Watch's goroutine, one change at a time.
//
// Watch subscribes to the changes channel on a connection of its own. It
// calls fn with a ChangeResync each time the subscription is confirmed: at
// the start and after every reconnection, since Redis keeps no message for a
// subscriber that was away. It reconnects when the connection fails or when
// a ping goes unanswered for Options.PingInterval, so a Redis that hangs is
// noticed too, and then calls fn with a ChangeDisconnected (once, however
// many attempts fail after it). A message it cannot read, or that fails the
// checks Claim and SetMode make (an empty scope, an epoch above MaxEpoch, a
// clear to epoch 0, a mode other than enforce and observe, a mode epoch of
// 0), is dropped and reported with a ChangeInvalid. A fn that is slow to
// return delays later changes; if Redis
// drops the subscription because of it (its client-output-buffer-limit for
// pubsub), a ChangeDisconnected and a ChangeResync follow.
func (s *Store) Watch(ctx context.Context, fn func(Change)) error {
	if fn == nil {
		return errors.New("redisstore: watch: nil func")
	}
	w := watcher{s: s, fn: fn}
	backoff := minBackoff
	for ctx.Err() == nil {
		confirmed, err := w.once(ctx)
		if err != nil {
			return err
		}
		if confirmed {
			backoff = minBackoff
		}
		if ctx.Err() != nil {
			break
		}
		if !w.down {
			w.down = true
			fn(Change{Kind: ChangeDisconnected})
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, maxBackoff)
	}
	return nil
}

// watcher is one Watch call's state.
type watcher struct {
	s    *Store
	fn   func(Change)
	down bool // ChangeDisconnected sent, and no ChangeResync since
}

// once holds one subscription until it fails or ctx is done, and reports
// whether it was ever confirmed. Its error is for what no retry can mend: a
// closed client.
func (w *watcher) once(ctx context.Context) (confirmed bool, err error) {
	s := w.s
	// Every step gets a deadline: while Redis hangs, a dial or a handshake
	// would otherwise wait for the client's own timeouts, and Close, which
	// waits for them, could not interrupt it.
	sctx, cancel := s.bound(ctx)
	ps := s.c.Subscribe(sctx, s.channel) // an error here shows in the receive
	cancel()
	defer ps.Close()
	// Closing the subscription is what interrupts a blocked receive.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()

	pinged := false
	for {
		rctx, cancel := context.WithTimeout(ctx, s.pingInterval+s.timeout)
		msg, err := ps.ReceiveTimeout(rctx, s.pingInterval)
		cancel()
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, redis.ErrClosed) {
				// Only the client's Close makes this, since the
				// subscription is closed only once ctx is done.
				return confirmed, fmt.Errorf("redisstore: watch: %w", err)
			}
			if ctx.Err() != nil || !isTimeout(err) || pinged {
				return confirmed, nil
			}
			// Silence: ask for a pong; if none comes within another
			// interval, the connection is dead even if TCP says not.
			pctx, cancel := s.bound(ctx)
			err := ps.Ping(pctx)
			cancel()
			if err != nil {
				return confirmed, nil
			}
			pinged = true
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			// go-redis resubscribes by itself after some failures; every
			// confirmation is a point after which nothing is missed.
			if m.Kind == "subscribe" && m.Channel == s.channel {
				confirmed = true
				w.down = false
				w.fn(Change{Kind: ChangeResync})
			}
		case *redis.Message:
			if m.Channel != s.channel {
				continue
			}
			ch, err := decodeChange(m.Payload)
			if err != nil {
				// Someone else wrote on the channel. It is dropped and
				// reported, not answered with a resync: a flood of
				// garbage must not become a flood of snapshots, and the
				// periodic resync still reads the truth from Redis.
				ch = Change{Kind: ChangeInvalid}
			}
			w.fn(ch)
		}
	}
}

// isTimeout reports whether err is a read that ran out of time, not a
// failed connection.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
