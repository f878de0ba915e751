package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The test binary stands for the command when asked to, so that a
	// test sees all the process prints, go-redis's own lines included.
	if os.Getenv("QUOTABREAKER_TEST_RUN_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// runProcess runs the command as a process of its own and returns its exit
// status and everything it printed.
func runProcess(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "QUOTABREAKER_TEST_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// runCmd runs the command and returns its exit status and output.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// fleet is a Redis with the Store a Transport of the fleet would have.
func fleet(t *testing.T) (*redistest.Server, *redisstore.Store) {
	t.Helper()
	srv := redistest.Start(t)
	s, err := redisstore.New(srv.Client(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return srv, s
}

var (
	tripA = redisstore.Trip{
		Scope: "api.openai.com/key:0123456789ab", Cause: redisstore.CauseAnswer,
		Class: classify.QuotaExhausted, Provider: "openai",
		Code: "insufficient_quota", Type: "insufficient_quota", StatusCode: 429,
		RequestID: "req_abc", At: time.Date(2026, 11, 29, 9, 57, 3, 0, time.UTC),
	}
	tripB = redisstore.Trip{
		Scope: "api.anthropic.com/key:fedcba987654", Cause: redisstore.CauseAnswer,
		Class: classify.QuotaExhausted, Provider: "anthropic",
		Code: "invalid_request_error", StatusCode: 400,
		At: time.Date(2026, 11, 28, 23, 0, 0, 0, time.UTC), Epoch: 2,
	}
)

func claim(t *testing.T, s *redisstore.Store, trs ...redisstore.Trip) {
	t.Helper()
	for _, tr := range trs {
		if claimed, _, err := s.Claim(context.Background(), tr); err != nil || !claimed {
			t.Fatalf("Claim(%s) = %v, %v", tr.Scope, claimed, err)
		}
	}
}

func TestStatus(t *testing.T) {
	srv, s := fleet(t)
	addr := "-addr=" + srv.Addr

	code, out, errOut := runCmd(t, "status", addr)
	if code != 0 || out != modeLine(redisstore.ModeEnforce, 0)+"\nNo open latches.\n" || errOut != "" {
		t.Errorf("status with nothing open: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = runCmd(t, "-json", "status", addr)
	if code != 0 || out != "[]\n" {
		t.Errorf("status -json with nothing open: exit %d, %q; want 0, []", code, out)
	}

	claim(t, s, tripA, tripB)
	code, out, errOut = runCmd(t, "status", addr)
	if code != 1 || errOut != "" {
		t.Errorf("status with latches open: exit %d, stderr %q; want 1", code, errOut)
	}
	lines := strings.Split(out, "\n")
	if lines[0] != modeLine(redisstore.ModeEnforce, 0) {
		t.Errorf("status mode line %q", lines[0])
	}
	lines = lines[1:]
	if !strings.HasPrefix(lines[0], "2 open latch(es): requests of these scopes are refused") {
		t.Errorf("status headline %q", lines[0])
	}
	header := strings.Fields(lines[2])
	if want := []string{"SCOPE", "CLASS", "CODE", "PROVIDER", "STATUS", "MODE", "SINCE", "REQUEST", "ID"}; strings.Join(header, " ") != strings.Join(want, " ") {
		t.Errorf("header %q", lines[2])
	}
	// Sorted by scope; every column filled, "-" where the trip has nothing.
	wantRows := [][]string{
		{tripB.Scope, "quota_exhausted", "invalid_request_error", "anthropic", "400", "enforce", since(tripB.At), "-"},
		{tripA.Scope, "quota_exhausted", "insufficient_quota", "openai", "429", "enforce", since(tripA.At), "req_abc"},
	}
	for i, want := range wantRows {
		row := lines[3+i]
		pos := 0
		for _, cell := range want {
			j := strings.Index(row[pos:], cell)
			if j < 0 {
				t.Errorf("row %d %q lacks %q after column %d", i, row, cell, pos)
				break
			}
			pos += j + len(cell)
		}
	}
	if !strings.Contains(out, "2026-11-29") {
		t.Errorf("no date in %q", out)
	}

	code, out, _ = runCmd(t, "status", "-json", addr)
	var got []redisstore.Trip
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 1 || len(got) != 2 ||
		got[0].Scope != tripB.Scope || got[1].RequestID != "req_abc" || got[1].Epoch != 0 || got[0].Epoch != 2 {
		t.Errorf("status -json: exit %d, %v, %q", code, err, out)
	}
	// Field names are the Trip's JSON.
	if !strings.Contains(out, `"error_code": "insufficient_quota"`) || !strings.Contains(out, `"at": "2026-11-29T09:57:03Z"`) {
		t.Errorf("status -json does not print the trips' JSON: %s", out)
	}
}

// A zone-less clock still prints the date and a zone.
func TestSince(t *testing.T) {
	got := since(time.Date(2026, 11, 29, 9, 57, 3, 0, time.UTC))
	if !strings.HasPrefix(got, "2026-11-29 ") && !strings.HasPrefix(got, "2026-11-30 ") && !strings.HasPrefix(got, "2026-11-28 ") {
		t.Errorf("since = %q", got)
	}
	if fields := strings.Fields(got); len(fields) != 4 {
		t.Errorf("since = %q; want date, time, offset and zone", got)
	}
}

func TestStatusBudgets(t *testing.T) {
	srv, s := fleet(t)
	nov := redisstore.Period{Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	ctx := context.Background()
	if _, err := s.AddSpend(ctx, redisstore.SpendWrite{Key: "7:monthly/team-a", Period: nov, Micros: 41_250_000}); err != nil {
		t.Fatal(err)
	}
	for _, pct := range []int{80, 50} {
		if _, err := s.ClaimThreshold(ctx, "7:monthly/team-a", nov, pct); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AddSpend(ctx, redisstore.SpendWrite{Key: "7:monthly/team-b", Period: nov, Micros: 1_234_567}); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd(t, "status", "-addr", srv.Addr)
	for _, want := range []string{"No open latches.", "BUDGET", "KEY", "monthly  team-a", "2026-11-01 to 2026-11-30", "$41.25", "50%, 80%", "team-b", "$1.234567"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Errorf("status exit %d with budgets and no latch; want 0", code)
	}
	code, out, _ = runCmd(t, "budgets", "-json", "-addr", srv.Addr)
	// The shape of quotabreaker.BudgetStatus, with the budget's name and
	// key apart, as the Handler shows them.
	want := `[
  {
    "budget": "monthly",
    "key": "team-a",
    "period_start": "2026-11-01T00:00:00Z",
    "period_end": "2026-12-01T00:00:00Z",
    "spent_usd": 41.25,
    "limit_usd": 0,
    "estimated_spent_usd": 0,
    "threshold": 0.8,
    "priced_answers": 0,
    "unpriced_answers": 0,
    "unmetered_answers": 0,
    "estimated_answers": 0,
    "exhausted": false,
    "hard_limit": false
  },
  {
    "budget": "monthly",
    "key": "team-b",
    "period_start": "2026-11-01T00:00:00Z",
    "period_end": "2026-12-01T00:00:00Z",
    "spent_usd": 1.234567,
    "limit_usd": 0,
    "estimated_spent_usd": 0,
    "threshold": 0,
    "priced_answers": 0,
    "unpriced_answers": 0,
    "unmetered_answers": 0,
    "estimated_answers": 0,
    "exhausted": false,
    "hard_limit": false
  }
]
`
	if code != 0 || out != want {
		t.Errorf("budgets -json: exit %d\n%s\nwant\n%s", code, out, want)
	}
}

func TestReset(t *testing.T) {
	srv, s := fleet(t)
	addr := "-addr=" + srv.Addr
	claim(t, s, tripA, tripB)
	ctx := context.Background()

	// A misspelt scope changes nothing, and says so.
	code, out, errOut := runCmd(t, "reset", addr, "api.openai.com/key:0123456789")
	if code != 1 || out != "" || !strings.Contains(errOut, "no open latch for scope api.openai.com/key:0123456789; nothing reset") {
		t.Errorf("reset of an unknown scope: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if snap, err := s.Snapshot(ctx); err != nil || len(snap.Open) != 2 || len(snap.Epochs) != 1 {
		t.Errorf("after resetting an unknown scope: %+v, %v", snap, err)
	}

	code, out, errOut = runCmd(t, "reset", tripA.Scope, addr)
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "Reset "+tripA.Scope+" (quota_exhausted insufficient_quota, open since ") {
		t.Errorf("reset SCOPE: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil || len(snap.Open) != 1 || snap.Open[0].Scope != tripB.Scope || snap.Epochs[tripA.Scope] != 1 {
		t.Errorf("after reset SCOPE: %+v, %v", snap, err)
	}

	// Resetting everything needs -all: no scope at all is a usage error.
	for _, args := range [][]string{{"reset"}, {"reset", "-all", tripB.Scope}, {"reset", "a", "b"}, {"reset", "-al"}} {
		code, _, errOut := runCmd(t, append(args, addr)...)
		if code != 2 || errOut == "" {
			t.Errorf("%q: exit %d, stderr %q; want 2 with a message", args, code, errOut)
		}
	}
	if snap, err := s.Snapshot(ctx); err != nil || len(snap.Open) != 1 {
		t.Errorf("a usage error reset something: %+v, %v", snap, err)
	}

	claim(t, s, redisstore.Trip{Scope: "-dash", Class: classify.QuotaExhausted, At: time.Now()})
	if code, _, errOut := runCmd(t, addr, "reset", "--", "-dash"); code != 0 {
		t.Errorf("reset -- -dash: exit %d, %q", code, errOut)
	}

	code, out, _ = runCmd(t, "reset", "--all", "-json", addr)
	var closed []redisstore.Trip
	if err := json.Unmarshal([]byte(out), &closed); err != nil || code != 0 || len(closed) != 1 || closed[0].Scope != tripB.Scope {
		t.Errorf("reset --all -json: exit %d, %v, %q", code, err, out)
	}
	code, out, _ = runCmd(t, "reset", "-all", addr)
	if code != 0 || out != "No open latches; nothing reset.\n" {
		t.Errorf("reset -all with nothing open: exit %d, %q", code, out)
	}
	if code, _, _ := runCmd(t, "status", addr); code != 0 {
		t.Errorf("status after reset -all: exit %d, want 0", code)
	}
}

// A reset from the command reaches a Transport's Watch, as it would in
// every replica.
func TestResetReachesWatch(t *testing.T) {
	srv, s := fleet(t)
	claim(t, s, tripA)
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan redisstore.Change, 16)
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, func(ch redisstore.Change) { changes <- ch }) }()
	defer func() {
		cancel()
		<-done
	}()
	next := func() redisstore.Change {
		select {
		case ch := <-changes:
			return ch
		case <-time.After(30 * time.Second):
			t.Fatal("no change within 30s")
		}
		return redisstore.Change{}
	}
	if ch := next(); ch.Kind != redisstore.ChangeResync {
		t.Fatalf("first change %+v", ch)
	}
	if code, _, errOut := runCmd(t, "reset", tripA.Scope, "-addr", srv.Addr); code != 0 {
		t.Fatalf("reset: exit %d, %q", code, errOut)
	}
	if ch := next(); ch.Kind != redisstore.ChangeCleared || ch.Scope != tripA.Scope || ch.Epoch != 1 {
		t.Errorf("Watch saw %+v, want the clear of %s", ch, tripA.Scope)
	}
}

func TestAddress(t *testing.T) {
	srv, s := fleet(t)
	claim(t, s, tripA)
	t.Setenv("QUOTABREAKER_REDIS", srv.Addr)
	if code, _, errOut := runCmd(t, "status"); code != 1 {
		t.Errorf("status with $QUOTABREAKER_REDIS: exit %d, %q; want 1", code, errOut)
	}
	if code, _, errOut := runCmd(t, "status", "-addr", "redis://"+srv.Addr+"/0"); code != 1 {
		t.Errorf("status with a redis:// URL: exit %d, %q; want 1", code, errOut)
	}
	// Another prefix is another fleet.
	if code, _, _ := runCmd(t, "status", "-prefix", "other:"); code != 0 {
		t.Errorf("status under another prefix: exit %d; want 0", code)
	}
}

func TestErrors(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	for _, args := range [][]string{
		{"status"}, {"status", "-json"}, {"budgets"}, {"reset", "x"}, {"reset", "-all"}, {"mode"}, {"mode", "observe"}, {"mode", "-json"},
	} {
		code, out, errOut := runCmd(t, append(args, "-addr", srv.Addr, "-timeout", "200ms")...)
		if code != 2 || !strings.HasPrefix(errOut, "quotabreaker: ") || out != "" {
			t.Errorf("%q with Redis down: exit %d, stdout %q, stderr %q; want 2", args, code, out, errOut)
		}
	}
	for _, args := range [][]string{{}, {"stat"}, {"status", "extra"}, {"-bogus", "status"}, {"-addr", "redis://[bad", "status"},
		{"mode", "Observe"}, {"mode", "enforce", "observe"}, {"mode", "-all"}, {"mode", "-budget", "b", "observe"}} {
		if code, _, errOut := runCmd(t, args...); code != 2 || errOut == "" {
			t.Errorf("%q: exit %d, stderr %q; want 2 with a message", args, code, errOut)
		}
	}
	if code, _, errOut := runCmd(t, "-h"); code != 0 || !strings.Contains(errOut, "usage:") {
		t.Errorf("-h: exit %d, %q", code, errOut)
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"api.openai.com/key:ab12", "api.openai.com/key:ab12"},
		{"é/中 with space", "é/中 with space"},
		{"tab\there", `"tab\there"`},
		{"\x1b[31mred", `"\x1b[31mred"`},
		{"\xff", `"\xff"`},
	}
	for _, tt := range tests {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestDollars(t *testing.T) {
	tests := []struct {
		micros int64
		want   string
	}{
		{0, "$0.00"}, {41_250_000, "$41.25"}, {1_234_567, "$1.234567"}, {10, "$0.00001"}, {-1_500_000, "-$1.50"},
		{-9223372036854775808, "-$9223372036854.775808"},
	}
	for _, tt := range tests {
		if got := dollars(tt.micros); got != tt.want {
			t.Errorf("dollars(%d) = %s, want %s", tt.micros, got, tt.want)
		}
	}
}

// The password of a malformed -addr URL is never printed, nor are
// go-redis's own log lines when Redis is down.
func TestNoSecretsNoRedisLogs(t *testing.T) {
	for _, addr := range []string{"redis://admin:hunter2-secret@[::1", "redis://:hunter2-secret@localhost:notaport", "rediss://u:hunter2-secret@host:1/notadb"} {
		code, out, errOut := runCmd(t, "status", "-addr", addr)
		if code != 2 || strings.Contains(out+errOut, "hunter2") {
			t.Errorf("-addr %q: exit %d, printed %q %q; want 2 and no password", addr, code, out, errOut)
		}
	}
	srv := redistest.Start(t)
	srv.Kill()
	code, out := runProcess(t, "status", "-addr", "redis://:hunter2-secret@"+srv.Addr, "-timeout", "2s")
	if code != 2 || strings.Contains(out, "hunter2") || strings.Contains(out, "redis: ") || strings.Count(out, "\n") != 1 {
		t.Errorf("Redis down: exit %d, printed %q; want 2 and one line of ours, none of go-redis's", code, out)
	}
}

// A corrupt spend field does not hide an open latch: status lists it and
// exits 1, and says on stderr that the budgets cannot be read.
func TestStatusCorruptSpend(t *testing.T) {
	srv, s := fleet(t)
	claim(t, s, tripA)
	nov := redisstore.Period{Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := s.AddSpend(context.Background(), redisstore.SpendWrite{Key: "7:monthly/team-a", Period: nov, Micros: 1}); err != nil {
		t.Fatal(err)
	}
	c := srv.Client()
	keys, err := c.Keys(context.Background(), "quotabreaker:spend:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("spend keys %v, %v", keys, err)
	}
	if err := c.HSet(context.Background(), keys[0], "7:monthly/team-a", "lots").Err(); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "status", "-addr", srv.Addr)
	if code != 1 || !strings.Contains(out, tripA.Scope) || !strings.Contains(errOut, "budgets") {
		t.Errorf("status with a corrupt spend field: exit %d\n%s\n%s\nwant 1, the latch listed, the budget error on stderr", code, out, errOut)
	}
	claimNone := redistest.Start(t)
	s2, err := redisstore.New(claimNone.Client(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.AddSpend(context.Background(), redisstore.SpendWrite{Key: "7:monthly/team-a", Period: nov, Micros: 1}); err != nil {
		t.Fatal(err)
	}
	keys, _ = claimNone.Client().Keys(context.Background(), "quotabreaker:spend:*").Result()
	_ = claimNone.Client().HSet(context.Background(), keys[0], "7:monthly/team-a", "lots").Err()
	if code, _, _ := runCmd(t, "status", "-addr", claimNone.Addr); code != 2 {
		t.Errorf("status with no latch and unreadable budgets: exit %d, want 2", code)
	}
}

// reset -budget forgets a key's spend in the current period, by the
// budget's name, as the Handler's budget=NAME&key=KEY does.
func TestResetBudget(t *testing.T) {
	srv, s := fleet(t)
	now := time.Now().UTC()
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	cur := redisstore.Period{Start: start, End: start.AddDate(0, 1, 0)}
	ctx := context.Background()
	for _, k := range []string{"7:monthly/team-a", "7:monthly/team-b", "5:daily/team-a"} {
		if _, err := s.AddSpend(ctx, redisstore.SpendWrite{Key: k, Period: cur, Micros: 3_000_000}); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, errOut := runCmd(t, "reset", "-budget", "monthly", "team-z", "-addr", srv.Addr); code != 1 || !strings.Contains(errOut, "nothing reset") {
		t.Errorf("reset of a key with no spend: exit %d, %q; want 1", code, errOut)
	}
	code, out, errOut := runCmd(t, "reset", "-budget", "monthly", "team-a", "-addr", srv.Addr)
	if code != 0 || !strings.Contains(out, "Reset budget monthly for key team-a") {
		t.Errorf("reset -budget: exit %d\n%s%s", code, out, errOut)
	}
	spends, err := s.Spend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]int64{}
	for _, sp := range spends {
		left[sp.Key] = sp.Micros
	}
	if len(left) != 2 || left["7:monthly/team-b"] != 3e6 || left["5:daily/team-a"] != 3e6 {
		t.Errorf("spend after the reset: %v, want team-b's and the other budget's only", left)
	}
	for _, args := range [][]string{{"reset", "-budget", "monthly"}, {"reset", "-budget", "monthly", "a", "b"}, {"reset", "-budget", "monthly", "-all", "a"}} {
		if code, _, _ := runCmd(t, append(args, "-addr", srv.Addr)...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}
