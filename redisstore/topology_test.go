package redisstore_test

// The fleet where users outgrow one Redis: a Redis Cluster of three
// masters, and a primary with a replica watched by three Sentinels, failed
// over while the fleet runs. Every server is a redis-server process from
// PATH; redis-cli builds the cluster.

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// waitLong polls cond for up to limit: cluster and failover steps take
// seconds.
func waitLong(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// transportOn makes a Transport on client with prefix, closed when the
// test ends.
func transportOn(t testing.TB, client redis.UniversalClient, prefix string, opts ...quotabreaker.Option) *replica {
	t.Helper()
	s, err := redisstore.New(client, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	base := &http.Transport{}
	tr := quotabreaker.New(base, append([]quotabreaker.Option{quotabreaker.WithStore(s)}, opts...)...)
	t.Cleanup(func() {
		_ = tr.Close()
		base.CloseIdleConnections()
	})
	return &replica{Transport: tr, hc: &http.Client{Transport: tr}}
}

// fleetWorks checks, on two Transports of one store, that a trip in a
// opens b, a budget counts both, and a reset in b closes a.
func fleetWorks(t *testing.T, p *fakeProvider, a, b *replica, key string) {
	t.Helper()
	p.quota.Store(false)
	a.call(t, p, key)
	b.call(t, p, key)
	// The Transport that wrote last has read the fleet's total back.
	waitLong(t, "the fleet's spend", 10*time.Second, func() bool {
		sa, _ := budgetStatus(t, a, "fleet")
		sb, _ := budgetStatus(t, b, "fleet")
		return max(sa.Spent, sb.Spent) == 2
	})
	p.quota.Store(true)
	a.call(t, p, key)
	p.quota.Store(false)
	scope := a.scope(t, p, key)
	waitLong(t, "the trip reaches the other Transport", 10*time.Second, func() bool { return contains(openScopes(t, b), scope) })
	if ok, err := b.Reset(context.Background(), scope); !ok || err != nil {
		t.Fatalf("Reset = %v, %v", ok, err)
	}
	waitLong(t, "the reset reaches the first Transport", 10*time.Second, func() bool { return !contains(openScopes(t, a), scope) })
}

func fleetOptions(pages *atomic.Int64) []quotabreaker.Option {
	return []quotabreaker.Option{
		quotabreaker.WithPrices(dollarAnswer),
		quotabreaker.WithBudget(quotabreaker.Budget{Name: "fleet", Limit: 1000}),
		quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) { pages.Add(1) }),
	}
}

// A Redis Cluster of three masters: the store needs a hash tag in its
// prefix, and with one the fleet shares latches and budgets.
func TestCluster(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-cli not found in PATH, and CI is set: %v", err)
		}
		t.Skip("redis-cli not found in PATH: this test builds a Redis Cluster with it (Debian: apt-get install redis-tools)")
	}
	var nodes []*redistest.Server
	var addrs []string
	for range 3 {
		n := redistest.StartWith(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr)
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range nodes {
		c := n.Client()
		waitLong(t, "the cluster is ok", 30*time.Second, func() bool {
			info, err := c.ClusterInfo(context.Background()).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
	}
	newClient := func() *redis.ClusterClient {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	if _, err := redisstore.New(newClient(), redisstore.Options{}); err == nil || !strings.Contains(err.Error(), "hash tag") {
		t.Errorf("New with a cluster client and the default prefix = %v, want an error asking for a hash tag", err)
	}
	if _, err := redisstore.New(newClient(), redisstore.Options{Prefix: "{}:"}); err == nil {
		t.Error("New accepted an empty hash tag, which Redis Cluster ignores")
	}

	p := newFakeProvider(t)
	var pages atomic.Int64
	const prefix = "{quotabreaker}:"
	a := transportOn(t, newClient(), prefix, fleetOptions(&pages)...)
	b := transportOn(t, newClient(), prefix, fleetOptions(&pages)...)
	fleetWorks(t, p, a, b, "sk-cluster")
	if n := pages.Load(); n != 1 {
		t.Errorf("OnTrip ran %d times across the cluster's fleet, want 1", n)
	}
	if sa, sb := storeState(t, a), storeState(t, b); sa != "up" || sb != "up" {
		t.Errorf("store states %s, %s; want up", sa, sb)
	}
}

// A primary, a replica and three Sentinels; the fleet runs on failover
// clients. SENTINEL FAILOVER promotes the replica and turns the old primary
// into a read-only replica: latches and budgets keep working on the new
// primary, and no replica of the fleet loops on the old one.
func TestSentinelFailover(t *testing.T) {
	t.Parallel() // its own processes; it waits out a failover
	primary := redistest.Start(t)
	replicaSrv := redistest.StartWith(t, "--replicaof", "127.0.0.1", portOf(primary))
	waitLong(t, "the replica syncs", 30*time.Second, func() bool {
		info, err := replicaSrv.Client().Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	const master = "qbmaster"
	var sentinels []string
	for range 3 {
		sentinels = append(sentinels, redistest.StartSentinel(t, master, primary.Addr, 2).Addr)
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinels[0]})
	t.Cleanup(func() { _ = sc.Close() })
	waitLong(t, "the sentinels know each other and the replica", 30*time.Second, func() bool {
		m, err := sc.Master(context.Background(), master).Result()
		return err == nil && m["num-other-sentinels"] == "2" && m["num-slaves"] == "1"
	})
	newClient := func() *redis.Client {
		c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: master, SentinelAddrs: sentinels, ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	p := newFakeProvider(t)
	var pages atomic.Int64
	log := &countingHandler{}
	opts := append(fleetOptions(&pages), quotabreaker.WithLogger(slog.New(log)))
	a := transportOn(t, newClient(), redisstore.DefaultPrefix, opts...)
	b := transportOn(t, newClient(), redisstore.DefaultPrefix, opts...)
	fleetWorks(t, p, a, b, "sk-before")

	start := time.Now()
	if err := sc.Failover(context.Background(), master).Err(); err != nil {
		t.Fatal(err)
	}
	waitLong(t, "the replica is promoted", 30*time.Second, func() bool {
		addr, err := sc.GetMasterAddrByName(context.Background(), master).Result()
		return err == nil && len(addr) == 2 && addr[1] == portOf(replicaSrv)
	})
	waitLong(t, "the old primary is a read-only replica", 30*time.Second, func() bool {
		info, err := primary.Client().Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "role:slave")
	})
	t.Logf("failover done in %v", time.Since(start).Round(time.Millisecond))

	fleetWorks(t, p, a, b, "sk-after")
	rate := commandRate(t, primary.Client(), 5*time.Second)
	t.Logf("after the failover: %.1f commands/s reach the old primary (now a replica) from the fleet of two; %d log lines: %q",
		rate, len(log.lines()), log.lines())
	if rate > 10 {
		t.Errorf("%.1f commands/s on the old primary after the failover, want at most 10", rate)
	}
	if n := pages.Load(); n != 2 {
		t.Errorf("OnTrip ran %d times for two trips, want 2", n)
	}
}

func portOf(s *redistest.Server) string {
	_, port, _ := strings.Cut(s.Addr, ":")
	return port
}
