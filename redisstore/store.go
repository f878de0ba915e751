package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quotabreaker/quotabreaker"
	"github.com/redis/go-redis/v9"
)

// DefaultPrefix starts the name of every key and of the channel a Store uses
// when Options.Prefix is empty.
const DefaultPrefix = "quotabreaker:"

// Options configure a Store. The zero value is ready to use.
type Options struct {
	// Prefix starts the name of every key and of the channel; default
	// DefaultPrefix. Stores with different prefixes share nothing. On a
	// Redis Cluster, put a hash tag in it ("{quotabreaker}:") so that
	// every key lives in one slot, as the scripts require.
	Prefix string
	// Timeout bounds each call to Redis, on top of the caller's context;
	// default 2s.
	Timeout time.Duration
	// PingInterval is how long Watch waits on a silent subscription
	// before it pings Redis; a ping unanswered for as long again makes it
	// reconnect. Default 1s.
	PingInterval time.Duration
}

// Store keeps latches and budget spend in Redis, shared by every process
// that uses the same Redis and prefix.
//
// An open latch is a field of a hash with no expiry, so it survives the
// restart of every process; to survive the restart of Redis, Redis must
// persist its data (appendonly yes, ideally with appendfsync always or
// everysec) and must not evict keys that have no expiry (a maxmemory-policy
// of noeviction or volatile-*). Budget spend expires one period length after
// its period ends.
//
// A Store must be made with New. It is safe for concurrent use. Each call
// costs one round trip to Redis, bounded by Options.Timeout; Watch holds one
// connection of its own while it runs.
type Store struct {
	c            redis.UniversalClient
	timeout      time.Duration
	pingInterval time.Duration

	prefix  string
	open    string // hash: scope -> trip JSON
	epochs  string // hash: scope -> decimal epoch
	channel string // pub/sub channel of changes
	periods string // sorted set: budget period ids, scored by expiry
	mode    string // hash: mode -> the fleet's mode, epoch -> its epoch

	claim, clear, clearAll, resetSpend, addSpend, setMode *redis.Script
}

// maxEpoch bounds the epochs a Store accepts: the scripts compare epochs as
// Lua numbers, which are exact up to 2^53.
const maxEpoch = quotabreaker.MaxEpoch

// New returns a Store that talks to Redis through client, which it does not
// own: closing the client is the caller's job, after every Watch returned.
//
// The client must be made with ContextTimeoutEnabled, or a call could
// outlast its timeout by the client's own read and write timeouts; New
// reports an error when it can tell that the option is off.
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	switch c := client.(type) {
	case *redis.Client:
		if !c.Options().ContextTimeoutEnabled {
			return nil, errors.New("redisstore: the client needs ContextTimeoutEnabled: true")
		}
	case *redis.ClusterClient:
		if !c.Options().ContextTimeoutEnabled {
			return nil, errors.New("redisstore: the client needs ContextTimeoutEnabled: true")
		}
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if _, ok := client.(*redis.ClusterClient); ok && !hasHashTag(opts.Prefix) {
		// The scripts touch several keys, which a cluster serves only
		// from one slot: without a tag every call would fail CROSSSLOT.
		return nil, fmt.Errorf("redisstore: a cluster client needs a hash tag in the prefix, such as %q", "{quotabreaker}:")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = time.Second
	}
	p := opts.Prefix
	return &Store{
		c:            client,
		timeout:      opts.Timeout,
		pingInterval: opts.PingInterval,
		prefix:       p,
		open:         p + "open",
		epochs:       p + "epochs",
		channel:      p + "changes",
		periods:      p + "periods",
		mode:         p + "mode",
		claim:        redis.NewScript(claimScript),
		clear:        redis.NewScript(clearScript),
		clearAll:     redis.NewScript(clearAllScript),
		resetSpend:   redis.NewScript(resetSpendScript),
		addSpend:     redis.NewScript(addSpendScript),
		setMode:      redis.NewScript(setModeScript),
	}, nil
}

// bound limits ctx to the Store's timeout.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Claim records tr as the open latch of tr.Scope unless one is already
// recorded or tr.Epoch is below the scope's epoch; see quotabreaker.Store.
// The check and the write are one atomic script, which also publishes the
// change, so exactly one Claim per open latch reports true across every
// process.
func (s *Store) Claim(ctx context.Context, tr Trip) (claimed bool, current ScopeState, err error) {
	if tr.Scope == "" {
		return false, ScopeState{}, errors.New("redisstore: claim: empty scope")
	}
	if tr.Epoch > maxEpoch {
		return false, ScopeState{}, fmt.Errorf("redisstore: claim: epoch %d out of range", tr.Epoch)
	}
	b, err := json.Marshal(tr)
	if err != nil {
		return false, ScopeState{}, fmt.Errorf("redisstore: claim: %w", err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var res []any
	err = retryLoading(ctx, func() (err error) {
		res, err = s.claim.Run(ctx, s.c, []string{s.open, s.epochs},
			tr.Scope, strconv.FormatUint(tr.Epoch, 10), b, s.channel).Slice()
		return err
	})
	if err != nil {
		return false, ScopeState{}, fmt.Errorf("redisstore: claim: %w", err)
	}
	if len(res) != 3 {
		return false, ScopeState{}, fmt.Errorf("redisstore: claim: unexpected reply %v", res)
	}
	epoch, err := replyUint(res[1])
	if err != nil {
		return false, ScopeState{}, fmt.Errorf("redisstore: claim: epoch: %w", err)
	}
	current = ScopeState{Scope: tr.Scope, Epoch: epoch}
	if raw, ok := res[2].(string); ok {
		current.Open = true
		current.Trip = decodeTrip(tr.Scope, []byte(raw))
	}
	claimed = res[0] == int64(1)
	return claimed, current, nil
}

// Clear closes scope's latch and advances its epoch, if it is open, as one
// atomic script that also publishes the change. A scope that is not open
// is left as it is: nothing is written or published.
func (s *Store) Clear(ctx context.Context, scope string) (Change, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var res []any
	err := retryLoading(ctx, func() (err error) {
		res, err = s.clear.Run(ctx, s.c, []string{s.open, s.epochs}, scope, s.channel).Slice()
		return err
	})
	if err != nil {
		return Change{}, fmt.Errorf("redisstore: clear: %w", err)
	}
	if len(res) != 2 {
		return Change{}, fmt.Errorf("redisstore: clear: unexpected reply %v", res)
	}
	epoch, err := replyUint(res[0])
	if err != nil {
		return Change{}, fmt.Errorf("redisstore: clear: epoch: %w", err)
	}
	ch := Change{Kind: ChangeCleared, Scope: scope, Epoch: epoch}
	if raw, ok := res[1].(string); ok {
		ch.Trip = decodeTrip(scope, []byte(raw))
	}
	return ch, nil
}

// ClearAll clears every open latch in one atomic script.
func (s *Store) ClearAll(ctx context.Context) ([]Change, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var res []any
	err := retryLoading(ctx, func() (err error) {
		res, err = s.clearAll.Run(ctx, s.c, []string{s.open, s.epochs}, s.channel).Slice()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redisstore: clear all: %w", err)
	}
	if len(res)%3 != 0 {
		return nil, fmt.Errorf("redisstore: clear all: unexpected reply of %d values", len(res))
	}
	changes := make([]Change, 0, len(res)/3)
	for i := 0; i < len(res); i += 3 {
		scope, _ := res[i].(string)
		raw, _ := res[i+2].(string)
		epoch, err := replyUint(res[i+1])
		if err != nil {
			return nil, fmt.Errorf("redisstore: clear all: epoch: %w", err)
		}
		changes = append(changes, Change{Kind: ChangeCleared, Scope: scope, Epoch: epoch, Trip: decodeTrip(scope, []byte(raw))})
	}
	slices.SortFunc(changes, func(a, b Change) int { return strings.Compare(a.Scope, b.Scope) })
	return changes, nil
}

// Snapshot reads the open latches, the epochs and the fleet's mode in one
// MULTI/EXEC transaction, so that they agree. A mode that fails the checks
// SetMode makes (a corrupt field, written by hand) is left out, with
// ModeEpoch 0: the latches still sync, each Transport keeps the mode it has,
// and Mode reports the corruption.
func (s *Store) Snapshot(ctx context.Context) (Snapshot, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var open, epochs *redis.MapStringStringCmd
	var mode *redis.SliceCmd
	// A Redis still loading its data after a restart answers -LOADING
	// (and EXEC, -EXECABORT): an empty answer would start a replica
	// without the fleet's open latches, so wait for it.
	err := retryLoading(ctx, func() error {
		_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			open = p.HGetAll(ctx, s.open)
			epochs = p.HGetAll(ctx, s.epochs)
			mode = p.HMGet(ctx, s.mode, "mode", "epoch")
			return nil
		})
		if err != nil && open != nil && isLoading(open.Err()) {
			return open.Err()
		}
		return err
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("redisstore: snapshot: %w", err)
	}
	snap := Snapshot{Open: make([]Trip, 0, len(open.Val())), Epochs: make(map[string]uint64, len(epochs.Val()))}
	for scope, v := range epochs.Val() {
		e, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return Snapshot{}, fmt.Errorf("redisstore: snapshot: epoch of %q: %w", scope, err)
		}
		if e > 0 {
			snap.Epochs[scope] = e
		}
	}
	for scope, raw := range open.Val() {
		snap.Open = append(snap.Open, decodeTrip(scope, []byte(raw)))
	}
	slices.SortFunc(snap.Open, func(a, b Trip) int { return strings.Compare(a.Scope, b.Scope) })
	if m, epoch, err := decodeMode(mode.Val()); err == nil {
		snap.Mode, snap.ModeEpoch = m, epoch
	}
	return snap, nil
}

// SetMode records m as the fleet's mode at a new mode epoch, in one atomic
// script that also publishes the change; see quotabreaker.ModeStore. The
// epoch is the larger of the last one plus one and Redis's clock in
// milliseconds (TIME), so that a switch after Redis lost its data is still
// newer than every switch a Transport remembers.
func (s *Store) SetMode(ctx context.Context, m Mode) (Change, error) {
	name, err := m.MarshalText()
	if err != nil {
		return Change{}, fmt.Errorf("redisstore: set mode: %w", err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var res any
	err = retryLoading(ctx, func() (err error) {
		res, err = s.setMode.Run(ctx, s.c, []string{s.mode}, name, s.channel, strconv.FormatUint(maxEpoch, 10)).Result()
		return err
	})
	if err != nil {
		return Change{}, fmt.Errorf("redisstore: set mode: %w", err)
	}
	epoch, err := replyUint(res)
	if err != nil || epoch == 0 || epoch > maxEpoch {
		return Change{}, fmt.Errorf("redisstore: set mode: unexpected epoch %v", res)
	}
	return Change{Kind: ChangeMode, Epoch: epoch, Mode: m}, nil
}

// Mode returns the fleet's mode and the epoch of its last switch; epoch 0,
// with ModeEnforce, when no mode was ever set, and then each Transport keeps
// its own (its WithMode). Unlike Snapshot, which leaves out a mode it cannot
// read, it reports one with an error.
func (s *Store) Mode(ctx context.Context) (m Mode, epoch uint64, err error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var vals []any
	err = retryLoading(ctx, func() (err error) {
		vals, err = s.c.HMGet(ctx, s.mode, "mode", "epoch").Result()
		return err
	})
	if err != nil {
		return ModeEnforce, 0, fmt.Errorf("redisstore: mode: %w", err)
	}
	m, epoch, err = decodeMode(vals)
	if err != nil {
		return ModeEnforce, 0, fmt.Errorf("redisstore: mode: %w", err)
	}
	return m, epoch, nil
}

// decodeMode reads the mode hash's fields (mode, epoch), as HMGET returns
// them: both absent when no mode was ever set; otherwise what SetMode
// writes, a known mode at an epoch from 1 to MaxEpoch.
func decodeMode(vals []any) (Mode, uint64, error) {
	if len(vals) != 2 {
		return ModeEnforce, 0, fmt.Errorf("unexpected reply of %d values", len(vals))
	}
	if vals[0] == nil && vals[1] == nil {
		return ModeEnforce, 0, nil
	}
	name, _ := vals[0].(string)
	ep, _ := vals[1].(string)
	var m Mode
	if err := m.UnmarshalText([]byte(name)); err != nil {
		return ModeEnforce, 0, fmt.Errorf("stored mode %q is not enforce or observe", name)
	}
	epoch, err := strconv.ParseUint(ep, 10, 64)
	if err != nil || epoch == 0 || epoch > maxEpoch {
		return ModeEnforce, 0, fmt.Errorf("stored mode epoch %q out of range", ep)
	}
	return m, epoch, nil
}

// decodeTrip reads a stored trip. The hash field, not the JSON, names the
// scope: JSON cannot hold every byte a scope may. A trip that does not
// decode (written by a later version, or by hand) still counts as open, with
// the fields that did decode: a latch fails closed.
func decodeTrip(scope string, raw []byte) Trip {
	var tr Trip
	_ = json.Unmarshal(raw, &tr)
	tr.Scope = scope
	return tr
}

// replyUint reads an epoch from a script's reply: an integer, or a decimal
// string.
func replyUint(v any) (uint64, error) {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return 0, fmt.Errorf("negative epoch %d", v)
		}
		return uint64(v), nil
	case string:
		return strconv.ParseUint(v, 10, 64)
	}
	return 0, fmt.Errorf("unexpected epoch %v (%T)", v, v)
}

// decodeChange reads a message from the changes channel; see scripts.go for
// its format.
func decodeChange(msg string) (Change, error) {
	op, rest, ok := strings.Cut(msg, " ")
	if !ok {
		return Change{}, errors.New("no operation")
	}
	var kind ChangeKind
	switch op {
	case "open":
		kind = ChangeOpened
	case "clear":
		kind = ChangeCleared
	case "mode":
		return decodeModeChange(rest)
	default:
		return Change{}, fmt.Errorf("unknown operation %q", op)
	}
	ep, rest, ok := strings.Cut(rest, " ")
	if !ok {
		return Change{}, errors.New("no epoch")
	}
	epoch, err := strconv.ParseUint(ep, 10, 64)
	if err != nil {
		return Change{}, fmt.Errorf("epoch: %w", err)
	}
	// The checks Claim makes, and what the scripts write: a clear always
	// advances the epoch past 0.
	switch {
	case epoch > maxEpoch:
		return Change{}, fmt.Errorf("epoch %d out of range", epoch)
	case kind == ChangeCleared && epoch == 0:
		return Change{}, errors.New("clear to epoch 0")
	}
	ln, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return Change{}, errors.New("no scope")
	}
	n, err := strconv.Atoi(ln)
	if err != nil || n < 0 || n > len(rest) {
		return Change{}, fmt.Errorf("bad scope length %q", ln)
	}
	if n == 0 {
		return Change{}, errors.New("empty scope")
	}
	ch := Change{Kind: kind, Scope: rest[:n], Epoch: epoch}
	raw := []byte(rest[n:])
	switch {
	case kind == ChangeOpened && len(raw) == 0:
		return Change{}, errors.New("open without a trip")
	case len(raw) > 0:
		if !json.Valid(raw) || !bytes.HasPrefix(raw, []byte("{")) {
			return Change{}, errors.New("trip is not a JSON object")
		}
		ch.Trip = decodeTrip(ch.Scope, raw)
	}
	return ch, nil
}

// decodeModeChange reads the rest of a mode message, "<epoch> <mode>", as
// strictly as SetMode writes it: a decimal epoch from 1 to MaxEpoch, one
// space, and "enforce" or "observe" with nothing after it.
func decodeModeChange(rest string) (Change, error) {
	ep, name, ok := strings.Cut(rest, " ")
	if !ok {
		return Change{}, errors.New("no mode")
	}
	epoch, err := strconv.ParseUint(ep, 10, 64)
	switch {
	case err != nil:
		return Change{}, fmt.Errorf("mode epoch: %w", err)
	case strconv.FormatUint(epoch, 10) != ep:
		return Change{}, fmt.Errorf("mode epoch %q is not as SetMode writes it", ep)
	case epoch == 0 || epoch > maxEpoch:
		return Change{}, fmt.Errorf("mode epoch %d out of range", epoch)
	}
	var m Mode
	if err := m.UnmarshalText([]byte(name)); err != nil {
		return Change{}, err
	}
	return Change{Kind: ChangeMode, Epoch: epoch, Mode: m}, nil
}

// hasHashTag reports whether prefix has a Redis Cluster hash tag: a "{"
// followed by a non-empty name and a "}". Every key then hashes by the tag
// alone, so that they all share one slot.
func hasHashTag(prefix string) bool {
	i := strings.IndexByte(prefix, '{')
	if i < 0 {
		return false
	}
	j := strings.IndexByte(prefix[i+1:], '}')
	return j > 0
}

// retryLoading runs op until it succeeds, fails with anything but Redis's
// -LOADING (a restarted Redis still reading its data), or ctx is done.
// go-redis retries LOADING a few times by itself, within about a second;
// loading a large file takes longer.
func retryLoading(ctx context.Context, op func() error) error {
	wait := 20 * time.Millisecond
	for {
		err := op()
		if err == nil || !isLoading(err) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

func isLoading(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "LOADING")
}
