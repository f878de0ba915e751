package redisstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Budget spend lives in two keys per period, named by the period's id
// ("<start>/<end>", RFC 3339 in UTC):
//
//	<prefix>spend:<id>       hash: budget key -> micro-dollars
//	<prefix>thresholds:<id>  set: "<pct>:<budget key>" per claimed threshold
//	<prefix>writes:<id>      hash: "<writer>/<budget key>" -> last applied write
//
// Both expire one period length after the period ends, so the last period
// stays readable for a while and old ones go by themselves. The sorted set
// <prefix>periods lists the ids, scored by their expiry, for Spend.

// periodID names p. It fails for a period that does not end after it
// starts.
func periodID(p Period) (string, error) {
	if !p.End.After(p.Start) {
		return "", fmt.Errorf("period %v to %v does not end after it starts", p.Start, p.End)
	}
	return p.Start.UTC().Format(time.RFC3339Nano) + "/" + p.End.UTC().Format(time.RFC3339Nano), nil
}

// parsePeriodID is the inverse of periodID.
func parsePeriodID(id string) (Period, error) {
	a, b, ok := strings.Cut(id, "/")
	if !ok {
		return Period{}, fmt.Errorf("bad period id %q", id)
	}
	start, err := time.Parse(time.RFC3339Nano, a)
	if err != nil {
		return Period{}, err
	}
	end, err := time.Parse(time.RFC3339Nano, b)
	if err != nil {
		return Period{}, err
	}
	return Period{Start: start, End: end}, nil
}

// expiry is when the keys of p expire: one period length after its end.
func expiry(p Period) time.Time { return p.End.Add(p.End.Sub(p.Start)) }

func (s *Store) spendKey(id string) string      { return s.prefix + "spend:" + id }
func (s *Store) thresholdsKey(id string) string { return s.prefix + "thresholds:" + id }
func (s *Store) writesKey(id string) string     { return s.prefix + "writes:" + id }

// AddSpend adds w.Micros to w.Key's spend in w.Period and returns the
// total across every process, in one script that also sets the period's
// expiry. A write whose Writer is set is applied at most once: the script
// records each writer's last Seq per key and period (in
// <prefix>writes:<period>, which expires with the period), and a write
// whose Seq is not above it only reads the total.
func (s *Store) AddSpend(ctx context.Context, w SpendWrite) (total int64, err error) {
	id, err := periodID(w.Period)
	if err != nil {
		return 0, fmt.Errorf("redisstore: add spend: %w", err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	exp := expiry(w.Period)
	field := ""
	if w.Writer != "" {
		field = w.Writer + "/" + w.Key
	}
	err = retryLoading(ctx, func() (err error) {
		total, err = s.addSpend.Run(ctx, s.c, []string{s.spendKey(id), s.writesKey(id), s.periods},
			w.Key, w.Micros, field, strconv.FormatUint(w.Seq, 10), exp.Unix(), id).Int64()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("redisstore: add spend: %w", err)
	}
	return total, nil
}

// ClaimThreshold adds threshold pct of key in p to the period's set of
// claimed thresholds; only the call that adds it reports true.
func (s *Store) ClaimThreshold(ctx context.Context, key string, p Period, pct int) (claimed bool, err error) {
	id, err := periodID(p)
	if err != nil {
		return false, fmt.Errorf("redisstore: claim threshold: %w", err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	k, exp := s.thresholdsKey(id), expiry(p)
	var add *redis.IntCmd
	err = retryLoading(ctx, func() error {
		_, err := s.c.TxPipelined(ctx, func(pl redis.Pipeliner) error {
			add = pl.SAdd(ctx, k, strconv.Itoa(pct)+":"+key)
			pl.ExpireAt(ctx, k, exp)
			pl.ZAdd(ctx, s.periods, redis.Z{Score: float64(exp.Unix()), Member: id})
			return nil
		})
		if err != nil && isLoading(add.Err()) {
			return add.Err()
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("redisstore: claim threshold: %w", err)
	}
	return add.Val() == 1, nil
}

// ResetSpend zeroes key's spend in p and forgets its claimed thresholds, in
// one script.
func (s *Store) ResetSpend(ctx context.Context, key string, p Period) error {
	id, err := periodID(p)
	if err != nil {
		return fmt.Errorf("redisstore: reset spend: %w", err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err = retryLoading(ctx, func() error {
		return s.resetSpend.Run(ctx, s.c, []string{s.spendKey(id), s.thresholdsKey(id)}, key).Err()
	})
	if err != nil {
		return fmt.Errorf("redisstore: reset spend: %w", err)
	}
	return nil
}

// Spend lists every key's spend in every period still held. It reads the
// period index and then, in one pipeline, each period's keys; periods whose
// keys have expired leave the index.
func (s *Store) Spend(ctx context.Context) ([]Spend, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var ids []string
	err := retryLoading(ctx, func() (err error) {
		ids, err = s.c.ZRange(ctx, s.periods, 0, -1).Result()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redisstore: spend: %w", err)
	}
	spends := make([]Spend, 0)
	if len(ids) == 0 {
		return spends, nil
	}
	totals := make([]*redis.MapStringStringCmd, len(ids))
	claimed := make([]*redis.StringSliceCmd, len(ids))
	_, err = s.c.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, id := range ids {
			totals[i] = pl.HGetAll(ctx, s.spendKey(id))
			claimed[i] = pl.SMembers(ctx, s.thresholdsKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redisstore: spend: %w", err)
	}
	var gone []any
	for i, id := range ids {
		p, err := parsePeriodID(id)
		if err != nil {
			return nil, fmt.Errorf("redisstore: spend: %w", err)
		}
		if len(totals[i].Val()) == 0 && len(claimed[i].Val()) == 0 {
			gone = append(gone, id)
			continue
		}
		byKey := make(map[string]*Spend)
		get := func(key string) *Spend {
			sp := byKey[key]
			if sp == nil {
				sp = &Spend{Key: key, Period: p}
				byKey[key] = sp
			}
			return sp
		}
		for key, v := range totals[i].Val() {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("redisstore: spend of %q: %w", key, err)
			}
			get(key).Micros = n
		}
		for _, m := range claimed[i].Val() {
			pct, key, ok := strings.Cut(m, ":")
			n, err := strconv.Atoi(pct)
			if !ok || err != nil {
				return nil, fmt.Errorf("redisstore: spend: bad threshold %q", m)
			}
			sp := get(key)
			sp.Thresholds = append(sp.Thresholds, n)
		}
		for _, sp := range byKey {
			slices.Sort(sp.Thresholds)
			spends = append(spends, *sp)
		}
	}
	if len(gone) > 0 {
		// Only tidying: a failure leaves entries that the next call drops,
		// and a period written meanwhile returns to the index with its
		// next write, since every write adds its period.
		_ = s.c.ZRem(ctx, s.periods, gone...).Err()
	}
	slices.SortFunc(spends, func(a, b Spend) int {
		if c := a.Period.Start.Compare(b.Period.Start); c != 0 {
			return c
		}
		if c := a.Period.End.Compare(b.Period.End); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return spends, nil
}
