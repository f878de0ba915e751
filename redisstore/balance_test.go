package redisstore_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/balance"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// balanceKey is the key the balance replicas send; it must appear nowhere
// in Redis.
const balanceKey = "sk-FLEET-0c3a9e52b7d1-never-stored"

func TestBalanceShare(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{Prefix: "{qb}:"})
	sh := s.BalanceShare()
	other := newStore(t, srv, redisstore.Options{Prefix: "{other}:"}).BalanceShare()
	ctx := ctxT(t)

	// One lease holder per TTL.
	for i, want := range []bool{true, false} {
		got, err := sh.Lease(ctx, "balance:deepseek:x", 200*time.Millisecond)
		if err != nil || got != want {
			t.Fatalf("Lease %d = %v, %v; want %v", i, got, err, want)
		}
	}
	if got, _ := other.Lease(ctx, "balance:deepseek:x", time.Second); !got {
		t.Error("another prefix shares the lease")
	}
	time.Sleep(300 * time.Millisecond)
	if got, err := sh.Lease(ctx, "balance:deepseek:x", time.Second); err != nil || !got {
		t.Errorf("Lease after expiry = %v, %v", got, err)
	}

	read := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	b1 := balance.Balance{Provider: "deepseek", Scope: "api.deepseek.com/key:1f0c3a9e52b7", Fingerprint: "1f0c3a9e52b7",
		Currency: "CNY", Available: 110_000000, Usable: true, Read: read,
		Parts: []balance.Part{{Name: "granted_balance", Amount: 10_000000}, {Name: "topped_up_balance", Amount: 100_000000}}}
	b2 := b1
	b2.Currency, b2.Available, b2.Parts = "USD", 1_500000, nil
	if err := sh.Publish(ctx, []balance.Balance{b1, b2}); err != nil {
		t.Fatal(err)
	}
	b1.Available, b1.Read = 100_000000, read.Add(time.Minute) // replaces the CNY balance
	if err := sh.Publish(ctx, []balance.Balance{b1}); err != nil {
		t.Fatal(err)
	}
	got, err := sh.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b balance.Balance) int { return strings.Compare(a.Currency, b.Currency) })
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", []balance.Balance{b1, b2}) {
		t.Errorf("Latest = %+v\nwant %+v", got, []balance.Balance{b1, b2})
	}
	old := b1
	old.Available, old.Read = 110_000000, read
	if h, err := sh.History(ctx); err != nil || fmt.Sprintf("%+v", h) != fmt.Sprintf("%+v", []balance.Balance{old, b2, b1}) {
		t.Errorf("History = %+v, %v", h, err)
	}
	if got, _ := other.Latest(ctx); len(got) != 0 {
		t.Errorf("another prefix sees %+v", got)
	}
	// Every key under the prefix, with an expiry on the balances.
	c := srv.Client()
	keys, _ := c.Keys(ctx, "*").Result()
	for _, k := range keys {
		if !strings.HasPrefix(k, "{qb}:") && !strings.HasPrefix(k, "{other}:") {
			t.Errorf("key %q outside the prefixes", k)
		}
	}
	if ttl, _ := c.PTTL(ctx, "{qb}:balance:latest").Result(); ttl <= 0 {
		t.Errorf("balances TTL = %v", ttl)
	}
}

// TestBalanceReplicaProcess is not a test: TestBalanceFleetOnePoll runs
// the test binary with QB_BALANCE_REPLICA set, and it is then one replica:
// a balance.Watcher polling a DeepSeek balance every second with a
// BalanceShare. It prints READY, polls until stdin closes, then prints the
// Watcher's statuses as JSON and exits.
func TestBalanceReplicaProcess(t *testing.T) {
	if os.Getenv("QB_BALANCE_REPLICA") == "" {
		t.Skip("a replica process of TestBalanceFleetOnePoll")
	}
	client := redis.NewClient(&redis.Options{Addr: os.Getenv("QB_REDIS"), ContextTimeoutEnabled: true})
	defer client.Close()
	s, err := redisstore.New(client, redisstore.Options{})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	hc := &http.Client{Transport: &http.Transport{}}
	w := balance.NewWatcher(balance.Config{
		Probes:   []balance.Probe{balance.DeepSeek{Key: balance.EnvKey("QB_KEY"), BaseURL: os.Getenv("QB_URL")}},
		Client:   hc,
		Interval: time.Second,
		Share:    s.BalanceShare(),
	})
	w.Start(context.Background())
	fmt.Println("READY")
	_, _ = io.Copy(io.Discard, os.Stdin)
	w.Close()
	hc.CloseIdleConnections()
	j, _ := json.Marshal(w.Statuses())
	fmt.Println("STATUS", string(j))
	os.Exit(0)
}

// TestBalanceFleetOnePoll: three replicas, as processes on one Redis,
// read the balance once per interval between them, and each knows it.
func TestBalanceFleetOnePoll(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds")
	}
	srv := redistest.Start(t)
	var hits atomic.Int64
	var mu sync.Mutex
	var at []time.Time
	bal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/user/balance" || r.Header.Get("Authorization") != "Bearer "+balanceKey {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		hits.Add(1)
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		// https://api-docs.deepseek.com/api/get-user-balance (example answer)
		io.WriteString(w, `{"is_available":true,"balance_infos":[{"currency":"CNY","total_balance":"110.00","granted_balance":"10.00","topped_up_balance":"100.00"}]}`)
	}))
	defer bal.Close()

	type replica struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Scanner
	}
	var rs []replica
	for range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBalanceReplicaProcess$", "-test.v=false")
		cmd.Env = append(os.Environ(), "QB_BALANCE_REPLICA=1", "QB_REDIS="+srv.Addr, "QB_URL="+bal.URL, "QB_KEY="+balanceKey)
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		rs = append(rs, replica{cmd, stdin, bufio.NewScanner(stdout)})
	}
	for i, r := range rs {
		if !r.out.Scan() || r.out.Text() != "READY" {
			t.Fatalf("replica %d: %q", i, r.out.Text())
		}
	}
	const run = 5 * time.Second
	time.Sleep(run)
	for _, r := range rs {
		r.stdin.Close()
	}
	for i, r := range rs {
		var status string
		for r.out.Scan() {
			if s, ok := strings.CutPrefix(r.out.Text(), "STATUS "); ok {
				status = s
			}
		}
		if err := r.cmd.Wait(); err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
		if !strings.Contains(status, `"available":"110.00"`) || !strings.Contains(status, `"fingerprint":"`+balance.Fingerprint(balanceKey)+`"`) {
			t.Errorf("replica %d knows %s", i, status)
		}
	}
	// Each replica waits an interval (1s) and up to 10% more between its
	// reads; the lease lasts 0.9s. One reader per lease: at most one read
	// per 0.9s between the first read and the last, where three replicas
	// polling for themselves would make three a second.
	mu.Lock()
	defer mu.Unlock()
	n := hits.Load()
	span := at[len(at)-1].Sub(at[0])
	t.Logf("%d reads in %v: %v", n, span, at)
	if max := int64(span/(900*time.Millisecond)) + 1; n > max || n < 4 {
		t.Errorf("%d reads in %v, want from 4 to %d: one per interval for the fleet", n, span, max)
	}
	for i := 1; i < len(at); i++ {
		if d := at[i].Sub(at[i-1]); d < 800*time.Millisecond {
			t.Errorf("reads %d and %d only %v apart", i-1, i, d)
		}
	}
	// No key in Redis.
	keys, _ := srv.Client().Keys(ctxT(t), "*").Result()
	for _, k := range keys {
		v, _ := srv.Client().Dump(ctxT(t), k).Result()
		if strings.Contains(k+v, balanceKey) {
			t.Errorf("the key is stored under %q", k)
		}
	}
}
