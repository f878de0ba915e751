// Command replica is one replica of a service that calls an LLM provider
// through a quotabreaker Transport whose latches live in Redis. The fleet
// tests start several of them as separate processes, each with its own
// Redis connection, and drive them through a line protocol:
//
// On stdin, one command a line:
//
//	call    send one chat completion request through the Transport
//	status  show the Transport's state, as its Handler's GET does
//	mode M  switch the mode to M (enforce or observe) through the Handler's POST
//	quit    Close the Transport and exit (so does the end of stdin)
//
// On stdout, one line per reply or event:
//
//	READY                                      the Transport is made (New has returned)
//	CALL <status> reached|refused <x-should-retry> <error code>
//	CALL error <message>
//	STATUS <JSON of the Handler's GET>
//	MODE <HTTP status> <mode after the POST, or the error>
//	PAGE <Trip JSON>                           OnTrip ran in this process
//	RESET <Trip JSON>                          OnReset ran in this process
//	LOG <slog text record>                     the Transport logged (the store's reachability)
//
// "refused" means the answer carries Quotabreaker-Short-Circuit: true: the
// Transport made it from an open latch without reaching the network.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/redis/go-redis/v9"
)

func main() {
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	provider := flag.String("provider", "", "the provider's base URL (…/v1)")
	key := flag.String("key", "", "API key sent as a bearer token")
	timeout := flag.Duration("timeout", time.Second, "bound on each call to Redis")
	flag.Parse()
	if err := run(*redisAddr, *provider, *key, *timeout, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		os.Exit(1)
	}
}

// out serialises lines on stdout: hooks run on the Transport's goroutines.
type out struct {
	mu sync.Mutex
	w  io.Writer
}

func (o *out) line(kind, text string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	text = strings.ReplaceAll(text, "\n", " ")
	if text == "" {
		fmt.Fprintln(o.w, kind)
		return
	}
	fmt.Fprintln(o.w, kind, text)
}

func (o *out) trip(kind string, tr quotabreaker.Trip) {
	b, _ := json.Marshal(tr)
	o.line(kind, string(b))
}

// logWriter turns the Transport's log records into LOG lines.
type logWriter struct{ o *out }

func (w logWriter) Write(p []byte) (int, error) {
	w.o.line("LOG", strings.TrimSpace(string(p)))
	return len(p), nil
}

func run(redisAddr, provider, key string, timeout time.Duration, stdin io.Reader, stdout io.Writer) error {
	o := &out{w: stdout}
	client := redis.NewClient(&redis.Options{Addr: redisAddr, ContextTimeoutEnabled: true})
	defer client.Close()
	store, err := redisstore.New(client, redisstore.Options{Timeout: timeout})
	if err != nil {
		return err
	}
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	t := quotabreaker.New(base,
		quotabreaker.WithStore(store),
		quotabreaker.WithStoreTimeout(timeout),
		quotabreaker.WithLogger(slog.New(slog.NewTextHandler(logWriter{o}, nil))),
		quotabreaker.OnTrip(func(_ context.Context, tr quotabreaker.Trip) { o.trip("PAGE", tr) }),
		quotabreaker.OnReset(func(_ context.Context, tr quotabreaker.Trip) { o.trip("RESET", tr) }),
	)
	defer t.Close()
	hc := &http.Client{Transport: t}
	o.line("READY", "")

	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		switch cmd := strings.TrimSpace(sc.Text()); cmd {
		case "call":
			o.line("CALL", call(hc, provider, key))
		case "status":
			rec := httptest.NewRecorder()
			t.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			var compact bytes.Buffer
			if err := json.Compact(&compact, rec.Body.Bytes()); err != nil {
				o.line("STATUS", fmt.Sprintf(`{"error":%q}`, err.Error()))
				continue
			}
			o.line("STATUS", compact.String())
		case "mode enforce", "mode observe":
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("mode="+strings.TrimPrefix(cmd, "mode ")))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			t.Handler().ServeHTTP(rec, req)
			var st struct {
				Mode string `json:"mode"`
			}
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &st) != nil {
				o.line("MODE", fmt.Sprintf("%d %s", rec.Code, strings.TrimSpace(rec.Body.String())))
				continue
			}
			o.line("MODE", fmt.Sprintf("%d %s", rec.Code, st.Mode))
		case "quit":
			return nil
		default:
			o.line("ERROR", fmt.Sprintf("unknown command %q", cmd))
		}
	}
	return sc.Err()
}

// call sends one request and describes its answer.
func call(hc *http.Client, provider, key string) string {
	req, err := http.NewRequest(http.MethodPost, provider+"/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say OK"}]}`))
	if err != nil {
		return "error " + err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "error " + err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "error " + err.Error()
	}
	how := "reached"
	if resp.Header.Get(quotabreaker.HeaderShortCircuit) == "true" {
		how = "refused"
	}
	var e struct {
		Error struct {
			Code *string `json:"code"`
		} `json:"error"`
	}
	code := "-"
	if json.Unmarshal(body, &e) == nil && e.Error.Code != nil {
		code = *e.Error.Code
	}
	retry := resp.Header.Get(quotabreaker.HeaderShouldRetry)
	if retry == "" {
		retry = "-"
	}
	return fmt.Sprintf("%d %s %s %s", resp.StatusCode, how, retry, code)
}
