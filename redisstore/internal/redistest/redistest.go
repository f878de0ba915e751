// Package redistest runs a real redis-server for tests: on a free loopback
// port, persisting to a temporary directory, stopped when the test ends.
package redistest

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process that a test started. Its data persists
// to Dir with appendonly yes and appendfsync always, so that a write Redis
// has acknowledged survives Kill.
type Server struct {
	Addr string // host:port on the loopback interface
	Dir  string

	t    testing.TB
	bin  string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	args []string      // extra arguments of every start
	once []string      // extra arguments of the next start only
	conf string        // a configuration file to start with (a sentinel's)
}

// Start starts a redis-server for t and stops it when t ends. Without a
// redis-server in PATH it skips t, unless the environment variable CI is
// set: then it fails t, because CI must run these tests.
func Start(t testing.TB) *Server { t.Helper(); return StartWith(t) }

// StartWith is Start with extra redis-server arguments, for every start
// of the server ("--cluster-enabled", "yes", say).
func StartWith(t testing.TB, args ...string) *Server {
	t.Helper()
	s := newServer(t)
	s.args = args
	s.launch()
	return s
}

func newServer(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found in PATH, and CI is set: %v", err)
		}
		t.Skip("redis-server not found in PATH: these tests need a real Redis (Debian: apt-get install redis-server)")
	}
	s := &Server{Dir: t.TempDir(), t: t, bin: bin}
	t.Cleanup(s.Kill)
	return s
}

// StartSentinel starts a Redis Sentinel that monitors the primary at
// primaryAddr under the name master, with a quorum of quorum sentinels and
// a primary taken as down after one silent second.
func StartSentinel(t testing.TB, master, primaryAddr string, quorum int) *Server {
	t.Helper()
	s := newServer(t)
	host, port, _ := net.SplitHostPort(primaryAddr)
	s.conf = filepath.Join(s.Dir, "sentinel.conf")
	conf := "sentinel monitor " + master + " " + host + " " + port + " " + strconv.Itoa(quorum) + "\n" +
		"sentinel down-after-milliseconds " + master + " 1000\n" +
		"sentinel failover-timeout " + master + " 10000\n" +
		"sentinel parallel-syncs " + master + " 1\n"
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.launch()
	return s
}

// launch starts the server on a free port.
func (s *Server) launch() {
	t := s.t
	t.Helper()
	// Another process can take the port between its discovery and the
	// server's bind: try a few.
	for range 3 {
		s.port = freePort(t)
		if s.start(true) {
			s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
			return
		}
	}
	t.Fatalf("redis-server did not start; its log:\n%s", s.log())
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs redis-server on s.port and waits until it answers PING,
// which it does only once it has loaded its data, or, without loaded, until
// it answers at all (-LOADING, say). It reports false if the server exits
// first.
func (s *Server) start(loaded bool) bool {
	s.t.Helper()
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.Dir,
		"--daemonize", "no",
		"--logfile", filepath.Join(s.Dir, "redis.log"),
	}
	if s.conf != "" {
		args = append([]string{s.conf, "--sentinel"}, args...)
	} else {
		args = append(args, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	}
	args = append(append(args, s.args...), s.once...)
	s.cmd = exec.Command(s.bin, args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	done := make(chan struct{})
	s.done = done
	go func(cmd *exec.Cmd) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd)

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return false
		default:
		}
		if reply := ping(addr); strings.HasPrefix(reply, "+PONG") || (!loaded && reply != "") {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on %s did not answer PING within 30s; its log:\n%s", addr, s.log())
	return false
}

// ping returns the first line of the server's answer to PING ("+PONG",
// or "-LOADING ..." while it loads its data), "" when it does not answer.
func ping(addr string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return ""
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return ""
	}
	return line
}

func (s *Server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	return string(b)
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it to
// exit. It does nothing if the server is not running.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart starts the server again, on the same port and directory, after
// Kill, and waits until it has loaded its data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if !s.start(true) {
		s.t.Fatalf("redis-server did not restart on port %d; its log:\n%s", s.port, s.log())
	}
}

// Pause freezes the server with SIGSTOP: its port still accepts
// connections, but nothing answers, as with a hung Redis.
func (s *Server) Pause() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatal(err)
	}
}

// Resume undoes Pause.
func (s *Server) Resume() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.t.Fatal(err)
	}
}

// Client returns a new client of the server, with a pool of its own and
// ContextTimeoutEnabled, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, ContextTimeoutEnabled: true})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// RestartLoading starts the server again after Kill, like Restart, with
// extra redis-server arguments (for this start only), and returns as soon
// as it answers, which may be -LOADING while it still loads its data.
func (s *Server) RestartLoading(args ...string) {
	s.t.Helper()
	s.Kill()
	s.once = args
	defer func() { s.once = nil }()
	if !s.start(false) {
		s.t.Fatalf("redis-server did not restart on port %d; its log:\n%s", s.port, s.log())
	}
}

// Port is the server's port.
func (s *Server) Port() int { return s.port }
