// Command quotabreaker shows and resets the latches, and shows the budget
// spend, that a fleet of quotabreaker Transports shares through Redis.
//
// Usage:
//
//	quotabreaker [flags] status                  list open latches and budgets
//	quotabreaker [flags] budgets                 list budgets only
//	quotabreaker [flags] balance                 list provider balances and forecasts
//	quotabreaker [flags] reset SCOPE             close one latch, everywhere
//	quotabreaker [flags] reset -all              close every latch, everywhere
//	quotabreaker [flags] reset -budget NAME KEY  forget what KEY spent in budget NAME this period
//	quotabreaker [flags] mode                    show the fleet's mode
//	quotabreaker [flags] mode enforce|observe    switch the mode, everywhere
//
// Flags:
//
//	-addr     Redis address, host:port or a redis:// or rediss:// URL
//	          (default $QUOTABREAKER_REDIS, else localhost:6379)
//	-prefix   key prefix the Transports use (default "quotabreaker:")
//	-json     print JSON instead of a table: status prints the open
//	          latches ([] when none), budgets the budgets in the shape of
//	          quotabreaker.BudgetStatus (the limit, the unpriced answers and
//	          the hard limit are the Transports' settings, not in Redis:
//	          zero here), reset the latches it closed, mode the fleet's
//	          mode ({"mode": "observe", "epoch": N}; "mode": null when
//	          none was ever set)
//	-timeout  bound on each call to Redis (default 5s)
//	-horizon  balance: the forecast that exits 1 (default 24h)
//
// Exit status: status exits 1 whenever a latch is open (even when the
// budgets or the mode cannot be read) and 0 when none is; balance exits 1
// when a balance runs out within -horizon (24h); reset exits 1 when there is
// nothing to reset (and then changes nothing); mode exits 0 once it has
// shown or switched the mode (a switch to the mode already set is written
// again, and wins over a replica's switch still waiting for Redis). A usage
// error, or a Redis that cannot be reached or read (a stored mode that is
// not one SetMode writes, too), exits 2. The command never prints the
// password of an -addr URL, and go-redis's own log lines are silenced.
//
// The mode (enforce or observe) is the fleet's: every Transport whose store
// is a redisstore.Store follows the mode held in Redis, as a switch through
// any replica's Handler does. Until a mode is first set, each replica runs
// in the mode it started with (quotabreaker.WithMode; enforce by default).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  quotabreaker [flags] status                  list open latches and budgets
  quotabreaker [flags] budgets                 list budgets only
  quotabreaker [flags] balance                 list provider balances and forecasts
  quotabreaker [flags] reset SCOPE             close one latch, everywhere
  quotabreaker [flags] reset -all              close every latch, everywhere
  quotabreaker [flags] reset -budget NAME KEY  forget what KEY spent in budget NAME this period
  quotabreaker [flags] mode                    show the fleet's mode
  quotabreaker [flags] mode enforce|observe    switch the mode, everywhere

Exit status: 0 nothing open (status) or done (reset, mode); 1 a latch is
open (status), a balance runs out within -horizon (balance) or nothing to
reset (reset); 2 a usage error, or Redis cannot be reached or read.

flags:
`

// Exit statuses.
const (
	exitOK    = 0
	exitOpen  = 1 // status: something is open; reset: nothing to reset
	exitError = 2
)

// run is the command, apart from the process: it takes the arguments after
// the program name and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	// go-redis logs through one process-wide logger, to stderr, a line per
	// failed dial; this command says what failed itself.
	quietRedis.Do(func() { redis.SetLogger(&logging.VoidLogger{}) })
	fs := flag.NewFlagSet("quotabreaker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defAddr := os.Getenv("QUOTABREAKER_REDIS")
	if defAddr == "" {
		defAddr = "localhost:6379"
	}
	addr := fs.String("addr", defAddr, "Redis address, host:port or a redis:// or rediss:// URL ($QUOTABREAKER_REDIS)")
	prefix := fs.String("prefix", redisstore.DefaultPrefix, "key prefix the Transports use")
	asJSON := fs.Bool("json", false, "print JSON")
	all := fs.Bool("all", false, "reset: close every latch")
	budget := fs.String("budget", "", "reset: the budget whose KEY's spend to forget")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on each call to Redis")
	horizon := fs.Duration("horizon", 24*time.Hour, "balance: exit 1 when a balance runs out within this")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	pos, err := parse(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitError
	}
	if len(pos) == 0 {
		fs.Usage()
		return exitError
	}

	ctx := context.Background()
	s, closeClient, err := open(*addr, *prefix, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "quotabreaker: %v\n", err)
		return exitError
	}
	defer closeClient()

	c := &cmd{s: s, stdout: stdout, stderr: stderr, json: *asJSON}
	switch cmdName, rest := pos[0], pos[1:]; cmdName {
	case "status":
		if len(rest) != 0 || *all {
			fs.Usage()
			return exitError
		}
		return c.status(ctx)
	case "budgets":
		if len(rest) != 0 || *all {
			fs.Usage()
			return exitError
		}
		return c.budgets(ctx)
	case "balance":
		if len(rest) != 0 || *all {
			fs.Usage()
			return exitError
		}
		return c.balances(ctx, *horizon)
	case "reset":
		// Everything only when asked by name: no scope is not "all".
		switch {
		case *budget != "" && !*all && len(rest) == 1:
			return c.resetBudget(ctx, *budget, rest[0])
		case *budget != "":
		case *all && len(rest) == 0:
			return c.resetAll(ctx)
		case !*all && len(rest) == 1:
			return c.reset(ctx, rest[0])
		}
		fmt.Fprintln(stderr, "quotabreaker: reset takes one SCOPE, -all alone, or -budget NAME and one KEY")
		return exitError
	case "mode":
		switch {
		case *all || *budget != "" || len(rest) > 1:
		case len(rest) == 0:
			return c.mode(ctx)
		default:
			var m quotabreaker.Mode
			if err := m.UnmarshalText([]byte(rest[0])); err != nil {
				fmt.Fprintf(stderr, "quotabreaker: unknown mode %s (want enforce or observe)\n", clean(rest[0]))
				return exitError
			}
			return c.setMode(ctx, m)
		}
		fmt.Fprintln(stderr, "quotabreaker: mode takes nothing (show it) or one of enforce and observe (switch it)")
		return exitError
	}
	fmt.Fprintf(stderr, "quotabreaker: unknown command %q\n", pos[0])
	fs.Usage()
	return exitError
}

// parse parses flags wherever they are among the arguments ("reset -all",
// "-json status"); after "--" everything is an argument, so a scope may
// start with "-".
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, tail = args[:i], args[i+1:]
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return append(pos, tail...), nil
}

// open connects a Store to addr.
func open(addr, prefix string, timeout time.Duration) (*redisstore.Store, func(), error) {
	var opt *redis.Options
	if strings.Contains(addr, "://") {
		var err error
		if opt, err = redis.ParseURL(addr); err != nil {
			// The parser's error quotes the URL, password and all.
			return nil, nil, fmt.Errorf("-addr %s is not a valid redis:// or rediss:// URL", redactURL(addr))
		}
	} else {
		opt = &redis.Options{Addr: addr}
	}
	opt.ContextTimeoutEnabled = true
	client := redis.NewClient(opt)
	s, err := redisstore.New(client, redisstore.Options{Prefix: prefix, Timeout: timeout})
	if err != nil {
		_ = client.Close()
		return nil, nil, err
	}
	return s, func() { _ = client.Close() }, nil
}

// redactURL shows addr with its password replaced, or nothing of it when it
// does not parse.
func redactURL(addr string) string {
	u, err := url.Parse(addr)
	if err != nil {
		return "(not shown: it may hold a password)"
	}
	return strconv.Quote(u.Redacted())
}

var quietRedis sync.Once

type cmd struct {
	s              *redisstore.Store
	stdout, stderr io.Writer
	json           bool
}

func (c *cmd) fail(err error) int {
	fmt.Fprintf(c.stderr, "quotabreaker: %v\n", err)
	return exitError
}

func (c *cmd) status(ctx context.Context) int {
	snap, err := c.s.Snapshot(ctx)
	if err != nil {
		return c.fail(err)
	}
	code := exitOK
	if len(snap.Open) > 0 {
		code = exitOpen
	}
	if c.json {
		if err := writeJSON(c.stdout, snap.Open); err != nil {
			return c.fail(err)
		}
		return code
	}
	// Latches first: a budget or a mode that cannot be read (a corrupt
	// field) must not hide an open latch, nor its exit status.
	mode, epoch, modeErr := c.s.Mode(ctx)
	spends, spendErr := c.s.Spend(ctx)
	observe := false
	if modeErr != nil {
		fmt.Fprintf(c.stderr, "quotabreaker: %v\n", modeErr)
	} else {
		fmt.Fprintln(c.stdout, modeLine(mode, epoch))
		observe = epoch > 0 && mode == quotabreaker.ModeObserve
	}
	switch {
	case len(snap.Open) == 0:
		fmt.Fprintln(c.stdout, "No open latches.")
	case observe:
		fmt.Fprintf(c.stdout, "%d open latch(es): the fleet observes, so requests of these scopes still reach the provider; in enforce mode they are refused until a reset.\n\n", len(snap.Open))
		writeTrips(c.stdout, snap.Open)
	default:
		fmt.Fprintf(c.stdout, "%d open latch(es): requests of these scopes are refused until a reset.\n\n", len(snap.Open))
		writeTrips(c.stdout, snap.Open)
	}
	if modeErr != nil && code == exitOK {
		code = exitError
	}
	if spendErr != nil {
		fmt.Fprintf(c.stderr, "quotabreaker: budgets: %v\n", spendErr)
		if code == exitOK {
			return exitError
		}
		return code
	}
	if len(spends) > 0 {
		fmt.Fprintln(c.stdout)
		writeSpends(c.stdout, spends)
	}
	return code
}

// modeJSON is what mode -json prints: Mode is null when no mode was ever
// set, and Epoch then 0.
type modeJSON struct {
	Mode  *quotabreaker.Mode `json:"mode"`
	Epoch uint64             `json:"epoch"`
}

// modeLine says what the fleet's mode is, and since when.
func modeLine(m quotabreaker.Mode, epoch uint64) string {
	if epoch == 0 {
		return "Mode: not set for the fleet; each replica runs in the mode it started with (enforce unless WithMode says otherwise)."
	}
	at := ""
	// redisstore's epochs are Redis's clock in milliseconds: when the
	// switch was made. An epoch that is not (written by another store) is
	// not shown as a time.
	if epoch >= 1e12 {
		at = ", switched " + since(time.UnixMilli(int64(epoch)))
	}
	if m == quotabreaker.ModeObserve {
		return "Mode: observe, for the whole fleet" + at + ": open latches refuse nothing, they are recorded and reported."
	}
	return "Mode: enforce, for the whole fleet" + at + ": open latches refuse their requests."
}

func (c *cmd) mode(ctx context.Context) int {
	m, epoch, err := c.s.Mode(ctx)
	if err != nil {
		return c.fail(err)
	}
	return c.reportMode(m, epoch)
}

// setMode switches the fleet's mode: every Transport watching the store
// takes it within moments, and one started later starts in it.
func (c *cmd) setMode(ctx context.Context, m quotabreaker.Mode) int {
	ch, err := c.s.SetMode(ctx, m)
	if err != nil {
		return c.fail(err)
	}
	if !c.json {
		fmt.Fprintf(c.stdout, "Switched the fleet to %s; every replica watching the store switches too, and one started later starts in it.\n", m)
	}
	return c.reportMode(ch.Mode, ch.Epoch)
}

func (c *cmd) reportMode(m quotabreaker.Mode, epoch uint64) int {
	if c.json {
		out := modeJSON{Epoch: epoch}
		if epoch > 0 {
			out.Mode = &m
		}
		if err := writeJSON(c.stdout, out); err != nil {
			return c.fail(err)
		}
		return exitOK
	}
	fmt.Fprintln(c.stdout, modeLine(m, epoch))
	return exitOK
}

func (c *cmd) budgets(ctx context.Context) int {
	spends, err := c.s.Spend(ctx)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		out := make([]quotabreaker.BudgetStatus, 0, len(spends))
		for _, sp := range spends {
			out = append(out, budgetStatus(sp))
		}
		if err := writeJSON(c.stdout, out); err != nil {
			return c.fail(err)
		}
		return exitOK
	}
	if len(spends) == 0 {
		fmt.Fprintln(c.stdout, "No budget spend recorded.")
		return exitOK
	}
	writeSpends(c.stdout, spends)
	return exitOK
}

// budgetKey splits the key under which a Transport shares a budget key's
// spend into the budget's name and the key (see
// quotabreaker.SplitSpendKey). A key in another form is shown whole, as
// the key of a budget with no name.
func budgetKey(storeKey string) (name, key string) {
	if name, key, ok := quotabreaker.SplitSpendKey(storeKey); ok {
		return name, key
	}
	return "", storeKey
}

// budgetStatus is what Redis holds of a budget key, in the shape the
// Transport's Budgets and Handler show. The limit, the unpriced answers and
// the hard limit are the Transports' settings, not in Redis; a key that
// claimed its limit (threshold 100%) is exhausted.
func budgetStatus(sp redisstore.Spend) quotabreaker.BudgetStatus {
	name, key := budgetKey(sp.Key)
	st := quotabreaker.BudgetStatus{
		Budget:      name,
		Key:         key,
		PeriodStart: sp.Period.Start,
		PeriodEnd:   sp.Period.End,
		Spent:       float64(sp.Micros) / 1e6,
	}
	for _, pct := range sp.Thresholds {
		st.Threshold = max(st.Threshold, float64(pct)/100)
		st.Exhausted = st.Exhausted || pct >= 100
	}
	return st
}

// resetBudget forgets what key spent in budget name in the periods Redis
// holds that contain now, as the Transport's ResetBudget does for its own
// period; the replicas take it at their next resync.
func (c *cmd) resetBudget(ctx context.Context, name, key string) int {
	spends, err := c.s.Spend(ctx)
	if err != nil {
		return c.fail(err)
	}
	now := time.Now()
	reset := []quotabreaker.BudgetStatus{}
	for _, sp := range spends {
		n, k := budgetKey(sp.Key)
		if n != name || k != key || now.Before(sp.Period.Start) || !now.Before(sp.Period.End) {
			continue
		}
		if err := c.s.ResetSpend(ctx, sp.Key, sp.Period); err != nil {
			return c.fail(err)
		}
		reset = append(reset, budgetStatus(sp))
	}
	if c.json {
		if err := writeJSON(c.stdout, reset); err != nil {
			return c.fail(err)
		}
	}
	if len(reset) == 0 {
		fmt.Fprintf(c.stderr, "quotabreaker: budget %s has no spend for key %s this period; nothing reset\n", clean(name), clean(key))
		return exitOpen
	}
	if !c.json {
		for _, st := range reset {
			fmt.Fprintf(c.stdout, "Reset budget %s for key %s (%s spent); every replica takes it at its next resync, within 10 seconds.\n",
				clean(st.Budget), clean(st.Key), dollars(int64(math.Round(st.Spent*1e6))))
		}
	}
	return exitOK
}

func (c *cmd) reset(ctx context.Context, scope string) int {
	// Look first, so that a misspelt scope changes nothing. A latch that
	// opens between the look and Clear stays open, which is what a person
	// who saw it closed expects.
	snap, err := c.s.Snapshot(ctx)
	if err != nil {
		return c.fail(err)
	}
	if !slices.ContainsFunc(snap.Open, func(tr redisstore.Trip) bool { return tr.Scope == scope }) {
		fmt.Fprintf(c.stderr, "quotabreaker: no open latch for scope %s; nothing reset\n", clean(scope))
		if c.json {
			_ = writeJSON(c.stdout, []redisstore.Trip{})
		}
		return exitOpen
	}
	ch, err := c.s.Clear(ctx, scope)
	if err != nil {
		return c.fail(err)
	}
	var closed []redisstore.Trip
	if ch.Trip.Scope != "" {
		closed = append(closed, ch.Trip)
	}
	return c.reportReset(closed, exitOK)
}

func (c *cmd) resetAll(ctx context.Context) int {
	chs, err := c.s.ClearAll(ctx)
	if err != nil {
		return c.fail(err)
	}
	closed := make([]redisstore.Trip, 0, len(chs))
	for _, ch := range chs {
		closed = append(closed, ch.Trip)
	}
	return c.reportReset(closed, exitOK)
}

func (c *cmd) reportReset(closed []redisstore.Trip, code int) int {
	if closed == nil {
		closed = []redisstore.Trip{}
	}
	if c.json {
		if err := writeJSON(c.stdout, closed); err != nil {
			return c.fail(err)
		}
		return code
	}
	if len(closed) == 0 {
		fmt.Fprintln(c.stdout, "No open latches; nothing reset.")
		return code
	}
	for _, tr := range closed {
		fmt.Fprintf(c.stdout, "Reset %s (%s %s, open since %s); every replica watching the store closes it too.\n",
			clean(tr.Scope), dash(string(tr.Class)), dash(tr.Code), since(tr.At))
	}
	return code
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func writeTrips(w io.Writer, trips []redisstore.Trip) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tCLASS\tCODE\tPROVIDER\tSTATUS\tMODE\tSINCE\tREQUEST ID")
	for _, tr := range trips {
		status := "-"
		if tr.StatusCode != 0 {
			status = strconv.Itoa(tr.StatusCode)
		}
		mode, err := tr.Mode.MarshalText()
		if err != nil {
			mode = []byte("?")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			clean(tr.Scope), dash(string(tr.Class)), dash(tr.Code), dash(string(tr.Provider)),
			status, mode, since(tr.At), dash(tr.RequestID))
	}
	_ = tw.Flush()
}

func writeSpends(w io.Writer, spends []redisstore.Spend) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BUDGET\tKEY\tPERIOD (UTC)\tSPENT (USD)\tTHRESHOLDS CROSSED")
	for _, sp := range spends {
		name, key := budgetKey(sp.Key)
		var crossed []string
		for _, pct := range sp.Thresholds {
			crossed = append(crossed, strconv.Itoa(pct)+"%")
		}
		th := strings.Join(crossed, ", ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", dash(name), clean(key), period(sp.Period), dollars(sp.Micros), dash(th))
	}
	_ = tw.Flush()
}

// period prints a period as its first and last day when it is whole days,
// and as its bounds otherwise.
func period(p redisstore.Period) string {
	start, end := p.Start.UTC(), p.End.UTC()
	midnight := func(t time.Time) bool { return t.Equal(t.Truncate(24 * time.Hour)) }
	if midnight(start) && midnight(end) {
		return start.Format(time.DateOnly) + " to " + end.AddDate(0, 0, -1).Format(time.DateOnly)
	}
	return start.Format("2006-01-02 15:04") + " to " + end.Format("2006-01-02 15:04")
}

// dollars prints micro-dollars as dollars, to the cent unless finer.
func dollars(micros int64) string {
	sign := ""
	u := uint64(micros)
	if micros < 0 {
		sign, u = "-", uint64(-micros) // -MinInt64 wraps to its own magnitude as a uint64
	}
	whole, frac := u/1e6, u%1e6
	s := fmt.Sprintf("%s$%d.%06d", sign, whole, frac)
	for range 4 { // keep two decimals at least
		if !strings.HasSuffix(s, "0") {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}

// since prints when a latch opened, in the local time zone, with the date
// and the zone.
func since(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05 -0700 MST")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return clean(s)
}

// clean makes a value safe to print on a terminal: one that is not
// printable UTF-8 (a control character, an escape sequence, a tab that
// would break the table) is printed quoted, in Go syntax.
func clean(s string) string {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}
