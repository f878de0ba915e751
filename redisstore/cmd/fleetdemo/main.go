// Command fleetdemo shows two replicas of a service sharing one latch
// through Redis, in a few seconds and without network: each replica has its
// own quotabreaker Transport and its own Redis connection, and both call one
// embedded stand-in for OpenAI's API. When the key's quota runs out, the
// replica that sees it opens the latch and pages once; the other replica
// refuses its next call without sending it; a reset from the operator's
// command closes the latch in both.
//
//	go run ./redisstore/cmd/fleetdemo               starts its own redis-server
//	go run ./redisstore/cmd/fleetdemo -addr HOST:PORT
//
// Without -addr it starts redis-server from PATH on a free loopback port,
// with its data in a temporary directory, and stops it at the end; without
// redis-server it says how to get one and exits with status 2.
//
// Its last line starts with "In short: " and appears only when every step
// went as told; otherwise the demo says what went wrong and exits with
// status 1.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/redis/go-redis/v9"
)

func main() {
	// go-redis logs through one logger for the whole process; a program,
	// never the library, decides where its lines go: here, below the
	// default log level, since the Transport logs the store's state.
	redis.SetLogger(redisstore.RedisLogger{Level: slog.LevelDebug})
	addr := flag.String("addr", "", "Redis address (host:port); empty: start redis-server from PATH")
	flag.Parse()
	if *addr == "" {
		srv, err := startRedis()
		if errors.Is(err, exec.ErrNotFound) {
			fmt.Fprintln(os.Stderr, "fleetdemo: redis-server not found in PATH; install it (Debian: apt-get install redis-server) or pass -addr HOST:PORT")
			os.Exit(2)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleetdemo:", err)
			os.Exit(1)
		}
		defer srv.stop()
		*addr = srv.addr
	}
	if err := run(context.Background(), os.Stdout, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "fleetdemo:", err)
		os.Exit(1)
	}
}

// The provider's answers, byte for byte as OpenAI sent them.
const (
	// From classify/testdata/corpus/openai-insufficient-quota-docs-link-429.json;
	// source: https://github.com/autohandai/code-cli/issues/88.
	quotaBody = "{\n    \"error\": {\n        \"message\": \"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.\",\n        \"type\": \"insufficient_quota\",\n        \"param\": null,\n        \"code\": \"insufficient_quota\"\n    }\n}\n"

	// From testdata/streams/openai-chat-cached.json; source:
	// https://github.com/pydantic/pydantic-ai/blob/4fda38988f2939fa6ea9cdefcf120693e10ef491/tests/models/cassettes/test_openai_prompt_cache/test_openai_chat_prompt_cache_e2e.yaml
	// (interaction 1).
	okBody = `{"choices": [{"finish_reason": "stop", "index": 0, "message": {"annotations": [], "content": "OK", "refusal": null, "role": "assistant"}}], "created": 1784092252, "id": "chatcmpl-E1mBQt42vYTsKNd5wnyJlT0db7v9S", "model": "gpt-5.6-sol", "object": "chat.completion", "service_tier": "default", "system_fingerprint": null, "usage": {"completion_tokens": 4, "completion_tokens_details": {"accepted_prediction_tokens": 0, "audio_tokens": 0, "reasoning_tokens": 0, "rejected_prediction_tokens": 0}, "prompt_tokens": 4020, "prompt_tokens_details": {"audio_tokens": 0, "cache_write_tokens": 0, "cached_tokens": 4012}, "total_tokens": 4024}}` + "\n"
)

// prefix keeps the demo's keys apart from a real fleet's on a Redis given
// with -addr.
const prefix = "quotabreaker-fleetdemo:"

// demoKey is the API key both replicas use.
const demoKey = "sk-proj-fleet-demo"

// maxWait bounds each wait for the fleet to agree.
const maxWait = 5 * time.Second

// provider is the embedded stand-in for OpenAI's API.
type provider struct {
	*httptest.Server
	hits  atomic.Int64
	quota atomic.Bool
}

func newProvider() *provider {
	p := &provider{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req_"+strconv.FormatInt(n, 10))
		if p.quota.Load() {
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, quotaBody)
			return
		}
		_, _ = io.WriteString(w, okBody)
	}))
	return p
}

// replica is one replica's Transport, on a Redis client of its own.
type replica struct {
	name   string
	qb     *quotabreaker.Transport
	client *http.Client
	close  func()
}

// facts are what happened, for the demo's test.
type facts struct {
	Pages         int   // OnTrip calls, across both replicas
	HitsAtTrip    int64 // provider hits once the latch opened
	HitsAfterB    int64 // provider hits after B's refused call
	RefusedB      bool  // B's call was answered by the latch
	Propagation   time.Duration
	BothOKAtReset bool // both replicas reached the provider after the reset
}

// story is one run's state.
type story struct {
	w     io.Writer
	p     *provider
	mu    sync.Mutex
	pages []string // lines not yet printed
	paged int      // OnTrip calls
}

func (s *story) say(format string, args ...any) { fmt.Fprintf(s.w, format+"\n", args...) }

func (s *story) newReplica(name, addr string) (*replica, error) {
	rc := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	store, err := redisstore.New(rc, redisstore.Options{Prefix: prefix})
	if err != nil {
		_ = rc.Close()
		return nil, err
	}
	base := &http.Transport{}
	qb := quotabreaker.New(base,
		quotabreaker.WithStore(store),
		quotabreaker.OnTrip(func(_ context.Context, tr quotabreaker.Trip) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.paged++
			s.pages = append(s.pages, fmt.Sprintf("   PAGE from replica %s: %s is out of quota (%s, HTTP %d, request %s).", name, tr.Scope, tr.Code, tr.StatusCode, tr.RequestID))
		}),
		quotabreaker.OnReset(func(_ context.Context, tr quotabreaker.Trip) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.pages = append(s.pages, fmt.Sprintf("   Resolved by replica %s, which paged: the latch for %s is closed.", name, tr.Scope))
		}),
	)
	return &replica{name: name, qb: qb, client: &http.Client{Transport: qb}, close: func() {
		_ = qb.Close()
		base.CloseIdleConnections()
		_ = rc.Close()
	}}, nil
}

// flushPages prints the pages and resolutions that came since the last
// call.
func (s *story) flushPages() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pages {
		s.say("%s", p)
	}
	s.pages = s.pages[:0]
}

// call makes one chat completion through r and describes it.
func (s *story) call(r *replica) (status int, refused bool, err error) {
	req, err := http.NewRequest(http.MethodPost, s.p.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say OK"}]}`))
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Authorization", "Bearer "+demoKey)
	before := s.p.hits.Load()
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	refused = resp.Header.Get(quotabreaker.HeaderShortCircuit) == "true"
	sent := "reached the provider"
	if refused {
		sent = "refused by the latch, nothing sent"
	}
	s.say("   replica %s: %s (%s; provider hits %d -> %d)", r.name, resp.Status, sent, before, s.p.hits.Load())
	return resp.StatusCode, refused, nil
}

// waitLatches waits until r lists n latches, and says how long it took.
func waitLatches(r *replica, n int) (time.Duration, error) {
	start := time.Now()
	for {
		open, err := r.qb.OpenLatches(context.Background())
		if err != nil {
			return 0, err
		}
		if len(open) == n {
			return time.Since(start), nil
		}
		if time.Since(start) > maxWait {
			return 0, fmt.Errorf("replica %s lists %d latches after %v, want %d", r.name, len(open), maxWait, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func run(ctx context.Context, w io.Writer, addr string) error {
	_, err := tell(ctx, w, addr)
	return err
}

// tell runs the story into w and returns what happened.
func tell(ctx context.Context, w io.Writer, addr string) (facts, error) {
	var f facts
	s := &story{w: w, p: newProvider()}
	defer s.p.Close()

	// The operator's view of the same Redis: what `quotabreaker status`
	// and `quotabreaker reset` use.
	rc := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rc.Close()
	op, err := redisstore.New(rc, redisstore.Options{Prefix: prefix})
	if err != nil {
		return f, err
	}
	if _, err := op.Snapshot(ctx); err != nil {
		return f, fmt.Errorf("no Redis at %s: %w", addr, err)
	}
	if _, err := op.ClearAll(ctx); err != nil { // the demo's own latches, from an earlier run
		return f, err
	}

	s.say("Two replicas of one service, A and B, call an embedded stand-in for OpenAI with one key.")
	s.say("Each has its own quotabreaker Transport and its own connection to Redis at %s.", addr)
	a, err := s.newReplica("A", addr)
	if err != nil {
		return f, err
	}
	defer a.close()
	b, err := s.newReplica("B", addr)
	if err != nil {
		return f, err
	}
	defer b.close()

	s.say("\n1. Both replicas call; the key has credit.")
	for _, r := range []*replica{a, b} {
		if st, _, err := s.call(r); err != nil || st != http.StatusOK {
			return f, fmt.Errorf("replica %s: status %d, %v", r.name, st, err)
		}
	}

	s.say("\n2. The key runs out of credit. Replica A's next call gets OpenAI's insufficient_quota answer.")
	s.p.quota.Store(true)
	if st, refused, err := s.call(a); err != nil || st != http.StatusTooManyRequests || refused {
		return f, fmt.Errorf("replica A's call: status %d, refused %v, %v", st, refused, err)
	}
	f.HitsAtTrip = s.p.hits.Load()
	if f.Propagation, err = waitLatches(b, 1); err != nil {
		return f, err
	}
	s.say("   A opened the latch and wrote it to Redis; B learned of it %v later.", f.Propagation.Round(100*time.Microsecond))
	if err := waitPages(s, 1); err != nil {
		return f, err
	}
	s.flushPages()

	s.say("\n3. Replica B calls: its latch is open too, so the call is answered without reaching the provider.")
	st, refused, err := s.call(b)
	if err != nil {
		return f, err
	}
	f.RefusedB = refused && st == http.StatusTooManyRequests
	f.HitsAfterB = s.p.hits.Load()
	if !f.RefusedB || f.HitsAfterB != f.HitsAtTrip {
		return f, fmt.Errorf("replica B's call: status %d, refused %v, provider hits %d -> %d", st, refused, f.HitsAtTrip, f.HitsAfterB)
	}
	s.say("   The SDK reads this answer as insufficient_quota and does not retry (X-Should-Retry: false). One page for the whole fleet.")

	open, err := op.Snapshot(ctx)
	if err != nil {
		return f, err
	}
	if len(open.Open) != 1 {
		return f, fmt.Errorf("the store holds %d open latches, want 1", len(open.Open))
	}
	scope := open.Open[0].Scope
	s.say("\n4. Billing is fixed. The operator resets the latch once, for every replica:")
	s.say("   $ quotabreaker -addr %s -prefix %s reset %s", addr, prefix, scope)
	if _, err := op.Clear(ctx, scope); err != nil {
		return f, err
	}
	s.p.quota.Store(false)
	for _, r := range []*replica{a, b} {
		if _, err := waitLatches(r, 0); err != nil {
			return f, err
		}
	}
	if err := waitResolved(s); err != nil {
		return f, err
	}
	s.flushPages()
	f.BothOKAtReset = true
	for _, r := range []*replica{a, b} {
		st, refused, err := s.call(r)
		if err != nil {
			return f, err
		}
		f.BothOKAtReset = f.BothOKAtReset && st == http.StatusOK && !refused
	}
	if !f.BothOKAtReset {
		return f, errors.New("a replica did not reach the provider after the reset")
	}
	s.mu.Lock()
	f.Pages = s.paged
	s.mu.Unlock()
	s.say("\nIn short: one replica saw the quota run out and paged once; the other refused its calls without sending them; one reset closed the latch in both.")
	return f, nil
}

// waitPages waits until n pages came.
func waitPages(s *story, n int) error {
	start := time.Now()
	for {
		s.mu.Lock()
		got := s.paged
		s.mu.Unlock()
		if got == n {
			return nil
		}
		if time.Since(start) > maxWait {
			return fmt.Errorf("%d pages after %v, want %d", got, maxWait, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitResolved waits until the paging replica's OnReset ran.
func waitResolved(s *story) error {
	start := time.Now()
	for {
		s.mu.Lock()
		got := len(s.pages)
		s.mu.Unlock()
		if got > 0 {
			return nil
		}
		if time.Since(start) > maxWait {
			return fmt.Errorf("no OnReset after %v", maxWait)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// redisServer is a redis-server the demo started.
type redisServer struct {
	addr string
	dir  string
	cmd  *exec.Cmd
}

// startRedis starts redis-server from PATH on a free loopback port, with
// its data in a temporary directory, and waits until it answers.
func startRedis() (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "fleetdemo-redis-")
	if err != nil {
		return nil, err
	}
	s := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "yes", "--logfile", filepath.Join(dir, "redis.log"))
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ping(s.addr) {
			return s, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("redis-server on %s did not answer within 10s", s.addr)
}

func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

func (s *redisServer) stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	os.RemoveAll(s.dir)
}
