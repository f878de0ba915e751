package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker"
	"go.uber.org/goleak"
)

// bin holds the binaries TestMain builds: the replica and the quotabreaker
// command.
var bin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "quotabreaker-replica-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = dir
	for _, b := range []struct{ out, pkg string }{
		{"replica", "."},
		{"quotabreaker", "github.com/quotabreaker/quotabreaker/redisstore/cmd/quotabreaker"},
	} {
		args := []string{"build", "-o", filepath.Join(dir, b.out)}
		if raceEnabled {
			// A race in the replicas' Transports fails the test too.
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", b.pkg, err)
			return 1
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	return code
}

// maxWait bounds every wait for the fleet to converge. It is a limit that
// catches a replica that never converges, not a speed requirement: the
// times observed are logged.
const maxWait = 5 * time.Second

// The provider's answers: real bodies, as OpenAI sent them.
var (
	// classify/testdata/corpus/openai-insufficient-quota-docs-link-429.json, from
	// https://github.com/autohandai/code-cli/issues/88.
	quotaBody = corpusBody("../../../classify/testdata/corpus/openai-insufficient-quota-docs-link-429.json")
	// testdata/streams/openai-chat-cached.json, recorded by pydantic-ai:
	// see testdata/streams/SOURCES.md.
	okBody = mustRead("../../../testdata/streams/openai-chat-cached.json")
)

func mustRead(name string) []byte {
	b, err := os.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

func corpusBody(name string) []byte {
	var c struct {
		Body string `json:"body"`
	}
	if err := json.Unmarshal(mustRead(name), &c); err != nil {
		panic(err)
	}
	return []byte(c.Body)
}

// provider is a stand-in for OpenAI's API, shared by every replica: one
// httptest server in the test process.
type provider struct {
	*httptest.Server
	hits  atomic.Int64
	quota atomic.Bool // answer insufficient_quota instead of a completion

	mu   sync.Mutex
	hold *barrier // when set, holds requests until n have arrived
}

type barrier struct {
	n   int
	all chan struct{}
}

func newProvider(t *testing.T) *provider {
	p := &provider{}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

// BaseURL is what an SDK takes as its base URL.
func (p *provider) BaseURL() string { return p.URL + "/v1" }

func (p *provider) serve(w http.ResponseWriter, r *http.Request) {
	n := p.hits.Add(1)
	_, _ = io.Copy(io.Discard, r.Body)
	p.mu.Lock()
	if b := p.hold; b != nil {
		if b.n--; b.n == 0 {
			close(b.all)
			p.hold = nil
		}
		p.mu.Unlock()
		<-b.all
	} else {
		p.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", "req_"+strconv.FormatInt(n, 10))
	if p.quota.Load() {
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write(quotaBody)
		return
	}
	_, _ = w.Write(okBody)
}

// holdUntil makes the next n requests wait for each other, so that they are
// all in flight before any is answered.
func (p *provider) holdUntil(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = &barrier{n: n, all: make(chan struct{})}
}

// replica is a replica process.
type replica struct {
	name    string
	cur     **testing.T // the test or subtest running now
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan string
	stderr  bytes.Buffer
	exited  chan struct{}
	stopped sync.Once

	mu     sync.Mutex
	pages  []quotabreaker.Trip
	resets []quotabreaker.Trip
	logs   []string
	bad    []string // lines that did not parse
}

// startReplica starts a replica for the test *cur, which stops it when it
// ends, and waits until its Transport is made. Failures are reported to
// *cur: the test or subtest running at the time.
func startReplica(root *testing.T, cur **testing.T, name, redisAddr string, p *provider, key string) *replica {
	t := *cur
	t.Helper()
	r := &replica{name: name, cur: cur, replies: make(chan string, 16), exited: make(chan struct{})}
	r.cmd = exec.Command(filepath.Join(bin, "replica"),
		"-redis", redisAddr, "-provider", p.BaseURL(), "-key", key, "-timeout", "500ms")
	r.cmd.Stderr = &r.stderr
	var err error
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go r.read(stdout)
	root.Cleanup(r.stop)
	if got := r.reply(); got != "READY" {
		t.Fatalf("%s: started with %q, want READY", name, got)
	}
	return r
}

func (r *replica) t() *testing.T { return *r.cur }

func (r *replica) read(stdout io.Reader) {
	defer close(r.exited)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "PAGE", "RESET":
			var tr quotabreaker.Trip
			err := json.Unmarshal([]byte(rest), &tr)
			r.mu.Lock()
			if err != nil {
				r.bad = append(r.bad, line)
			}
			if kind == "PAGE" {
				r.pages = append(r.pages, tr)
			} else {
				r.resets = append(r.resets, tr)
			}
			r.mu.Unlock()
		case "LOG":
			r.mu.Lock()
			r.logs = append(r.logs, rest)
			r.mu.Unlock()
		default:
			r.replies <- line
		}
	}
}

// reply waits for the replica's next reply.
func (r *replica) reply() string {
	r.t().Helper()
	select {
	case line := <-r.replies:
		return line
	case <-r.exited:
		r.t().Fatalf("%s exited; stderr:\n%s", r.name, r.stderr.String())
	case <-time.After(30 * time.Second):
		r.t().Fatalf("%s did not reply within 30s", r.name)
	}
	return ""
}

func (r *replica) send(cmd string) string {
	r.t().Helper()
	if _, err := io.WriteString(r.stdin, cmd+"\n"); err != nil {
		r.t().Fatalf("%s: %v", r.name, err)
	}
	return r.reply()
}

// answer is what a call got.
type answer struct {
	Status      int
	Refused     bool   // made by the Transport from an open latch
	ShouldRetry string // X-Should-Retry, "-" when absent
	Code        string // the error code in the body, "-" when none
}

func (r *replica) call() answer {
	r.t().Helper()
	line := r.send("call")
	var a answer
	var how string
	if _, err := fmt.Sscanf(line, "CALL %d %s %s %s", &a.Status, &how, &a.ShouldRetry, &a.Code); err != nil {
		r.t().Fatalf("%s: call: %q", r.name, line)
	}
	a.Refused = how == "refused"
	return a
}

// state is the Handler's GET.
type state struct {
	Mode    string              `json:"mode"`
	Store   string              `json:"store"`
	Latches []quotabreaker.Trip `json:"latches"`
}

func (r *replica) status() state {
	r.t().Helper()
	line := r.send("status")
	rest, ok := strings.CutPrefix(line, "STATUS ")
	var st state
	if !ok || json.Unmarshal([]byte(rest), &st) != nil || st.Latches == nil {
		r.t().Fatalf("%s: status: %q", r.name, line)
	}
	return st
}

func (r *replica) pageList() []quotabreaker.Trip {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]quotabreaker.Trip(nil), r.pages...)
}

func (r *replica) resetList() []quotabreaker.Trip {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]quotabreaker.Trip(nil), r.resets...)
}

func (r *replica) logList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.logs...)
}

// stop asks the replica to Close its Transport and exit, and fails the
// test if it does not, or if the race detector found a race in it.
func (r *replica) stop() { r.stopped.Do(r.doStop) }

func (r *replica) doStop() {
	select {
	case <-r.exited:
	default:
		_, _ = io.WriteString(r.stdin, "quit\n")
		_ = r.stdin.Close()
		select {
		case <-r.exited:
		case <-time.After(30 * time.Second):
			r.t().Errorf("%s did not exit within 30s of quit", r.name)
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
	}
	err := r.cmd.Wait()
	if err != nil {
		r.t().Errorf("%s: %v; stderr:\n%s", r.name, err, r.stderr.String())
	}
	if len(r.bad) > 0 {
		r.t().Errorf("%s: lines that did not parse: %q", r.name, r.bad)
	}
	if strings.Contains(r.stderr.String(), "DATA RACE") {
		r.t().Errorf("%s: race detected:\n%s", r.name, r.stderr.String())
	}
}

// eventually polls cond until it holds or maxWait passes, and reports how
// long it took.
func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > maxWait {
			t.Fatalf("%s: not within %v", what, maxWait)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}
