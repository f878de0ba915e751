// Package redisstore keeps quotabreaker's latches, and the spend of its
// budgets, in Redis, so that every replica of a service shares them: a trip
// in one replica opens the scope in all of them, a reset anywhere closes it
// everywhere, and exactly one replica pages for each trip.
//
// It lives in a module of its own so that the quotabreaker package keeps its
// small import graph. A Store implements the quotabreaker.Store contract
// (latches and spend; quotabreaker.LatchStore is the part a latch-only store
// needs):
//
//	client := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
//	store, err := redisstore.New(client, redisstore.Options{})
//
// # What it keeps in Redis
//
// Under a prefix ("quotabreaker:" by default):
//
//	open                 hash: scope -> the open trip's JSON; no expiry
//	epochs               hash: scope -> its reset epoch; no expiry
//	changes              pub/sub channel of opens and clears
//	spend:<period>       hash: budget key -> micro-dollars
//	thresholds:<period>  set: "<pct>:<budget key>" per claimed threshold
//	writes:<period>      hash: "<writer>/<budget key>" -> last applied write
//	periods              sorted set of the periods held
//	mode                 hash: mode -> "enforce" or "observe", epoch -> its mode epoch; no expiry
//
// The changes channel carries "open", "clear" and "mode <epoch> <mode>"
// messages (see scripts.go). The Store is a quotabreaker.ModeStore: the
// fleet's mode lives in Redis, every Transport follows it, and SetMode (or
// the command's mode enforce|observe) switches it everywhere. A mode epoch
// is the larger of the last one plus one and Redis's clock in milliseconds,
// so that a switch made after Redis lost its data is still newer than any a
// Transport remembers. A mode hash that SetMode did not write is left out of
// Snapshot (each Transport keeps its mode) and reported by Mode; SetMode
// refuses to build on a corrupt epoch: DEL the key to mend it.
//
// Claim, Clear, ClearAll, SetMode and AddSpend are Lua scripts (EVALSHA,
// falling back to EVAL after a restart emptied the script cache): each
// compares, writes and publishes in one atomic step; AddSpend applies each write at most once
// (see quotabreaker.SpendWrite). Snapshot and the other budget calls are
// MULTI/EXEC transactions. Every call is bounded by Options.Timeout on top
// of the caller's context, so it returns when Redis is down or hung, and
// waits out a Redis that answers -LOADING (still reading its data after a
// restart) within that bound, rather than take it as empty. A change
// message on the channel that fails the checks Claim makes is dropped and
// reported as a ChangeInvalid, and so is a mode message that is not as
// SetMode writes it (an unknown mode, a mode epoch of 0 or above MaxEpoch).
//
// # What Redis must be
//
// Latches never expire, so that they survive restarts: run Redis with
// persistence (appendonly yes; appendfsync always or everysec) and with a
// maxmemory-policy that never evicts keys without expiry (noeviction or a
// volatile-* policy). On a Redis Cluster, put a hash tag in the prefix
// ("{quotabreaker}:") so that the scripts' keys share a slot: New refuses a
// cluster client whose prefix has none. Sentinel failover clients
// (redis.NewFailoverClient) need nothing more; after a failover, writes that
// reach the old primary fail with READONLY, and the Transport retries them
// with backoff until the client follows the new primary. go-redis retries
// such a refused write itself (MaxRetries, 3 by default) before the Store
// sees it.
//
// go-redis logs through one logger for the whole process (redis.SetLogger);
// the Store never changes it. See RedisLogger to send its lines to the
// Transport's slog.Logger.
//
// The command in cmd/quotabreaker lists and resets the latches, shows the
// budgets, and shows and switches the fleet's mode from a shell.
package redisstore
