package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/quotabreaker/quotabreaker/balance"
	"github.com/redis/go-redis/v9"
)

// BalanceShare is a balance.Share in Redis: it lets a fleet of
// balance.Watchers read each provider balance once per interval for all of
// them. A probe's lease is a key set with SET NX PX (the replica that sets
// it polls); the balances read are fields of one hash, a JSON value per
// account, which every replica reads. Both live under the Store's prefix,
// so a hash tag in it keeps them in the Store's slot on a Redis Cluster.
//
// Make it with Store.BalanceShare. It is safe for concurrent use; each call
// costs one round trip to Redis, bounded by the Store's timeout. It holds
// no key: balances are named by scope and key fingerprint.
type BalanceShare struct {
	c       redis.UniversalClient
	timeout time.Duration
	leases  string // prefix of the lease keys
	latest  string // hash: account -> balance JSON
	history string // list: balance JSON, oldest first, the last historyLen
}

// historyLen bounds the readings History keeps, all accounts together:
// at one reading per account every 5 minutes, 4096 cover 6 hours (the
// default forecast window) of 28 accounts.
const historyLen = 4096

var _ balance.Share = (*BalanceShare)(nil)

// balancesTTL is how long the published balances outlive the last
// publication: a fleet that stopped polling leaves no balance older than
// this behind, and a week covers any polling interval.
const balancesTTL = 7 * 24 * time.Hour

// BalanceShare returns the BalanceShare on s's Redis, under s's prefix.
func (s *Store) BalanceShare() *BalanceShare {
	return &BalanceShare{c: s.c, timeout: s.timeout, leases: s.prefix + "balance:lease:",
		latest: s.prefix + "balance:latest", history: s.prefix + "balance:history"}
}

// Lease sets the lease named name for ttl unless it is set, and reports
// whether this call set it. The lease is not released: it expires, so that
// the next interval's poll may fall to any replica.
func (b *BalanceShare) Lease(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	if ttl < time.Millisecond {
		return false, errors.New("redisstore: balance lease: ttl below a millisecond")
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	got, err := b.c.SetArgs(ctx, b.leases+name, "1", redis.SetArgs{Mode: "NX", TTL: ttl}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil // NX: held by another
	case err != nil:
		return false, fmt.Errorf("redisstore: balance lease: %w", err)
	}
	return got == "OK", nil
}

// wireBalance is a balance.Balance as the hash holds it.
type wireBalance struct {
	Provider    string         `json:"provider"`
	Scope       string         `json:"scope"`
	Fingerprint string         `json:"fingerprint"`
	Account     string         `json:"account,omitempty"`
	Currency    string         `json:"currency"`
	Available   balance.Amount `json:"available"` // millionths
	Parts       []wirePart     `json:"parts,omitempty"`
	Usable      bool           `json:"usable"`
	Read        time.Time      `json:"read"`
}

type wirePart struct {
	Name   string         `json:"name"`
	Amount balance.Amount `json:"amount"`
}

func field(b balance.Balance) string {
	return strings.Join([]string{b.Provider, b.Scope, b.Account, strings.ToUpper(b.Currency)}, "\x1f")
}

// Publish records bs, each replacing the balance of its provider, scope,
// account and currency, and appends them to the history, in one
// transaction that also renews both keys' expiry.
func (b *BalanceShare) Publish(ctx context.Context, bs []balance.Balance) error {
	if len(bs) == 0 {
		return nil
	}
	vals := make([]any, 0, 2*len(bs))
	hist := make([]any, 0, len(bs))
	for _, x := range bs {
		w := wireBalance{Provider: x.Provider, Scope: x.Scope, Fingerprint: x.Fingerprint, Account: x.Account,
			Currency: x.Currency, Available: x.Available, Usable: x.Usable, Read: x.Read}
		for _, p := range x.Parts {
			w.Parts = append(w.Parts, wirePart{p.Name, p.Amount})
		}
		j, err := json.Marshal(w)
		if err != nil {
			return fmt.Errorf("redisstore: publish balances: %w", err)
		}
		vals = append(vals, field(x), j)
		hist = append(hist, j)
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	_, err := b.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, b.latest, vals...)
		p.PExpire(ctx, b.latest, balancesTTL)
		p.RPush(ctx, b.history, hist...)
		p.LTrim(ctx, b.history, -historyLen, -1)
		p.PExpire(ctx, b.history, balancesTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisstore: publish balances: %w", err)
	}
	return nil
}

// Latest returns the latest balance published of each account.
func (b *BalanceShare) Latest(ctx context.Context) ([]balance.Balance, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	m, err := b.c.HGetAll(ctx, b.latest).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: latest balances: %w", err)
	}
	vs := make([]string, 0, len(m))
	for _, v := range m {
		vs = append(vs, v)
	}
	return decodeBalances(vs), nil
}

// History returns the balances published recently (the last 4096), oldest
// first: what a forecast from the balances' own decline needs (see
// balance.Watcher.Record).
func (b *BalanceShare) History(ctx context.Context) ([]balance.Balance, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	vs, err := b.c.LRange(ctx, b.history, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: balance history: %w", err)
	}
	return decodeBalances(vs), nil
}

// decodeBalances decodes balance JSON, skipping any value it cannot read
// (written by a later version, say).
func decodeBalances(vs []string) []balance.Balance {
	out := make([]balance.Balance, 0, len(vs))
	for _, v := range vs {
		var w wireBalance
		if json.Unmarshal([]byte(v), &w) != nil || w.Provider == "" || w.Currency == "" {
			continue
		}
		x := balance.Balance{Provider: w.Provider, Scope: w.Scope, Fingerprint: w.Fingerprint, Account: w.Account,
			Currency: w.Currency, Available: w.Available, Usable: w.Usable, Read: w.Read}
		for _, p := range w.Parts {
			x.Parts = append(x.Parts, balance.Part{Name: p.Name, Amount: p.Amount})
		}
		out = append(out, x)
	}
	return out
}
