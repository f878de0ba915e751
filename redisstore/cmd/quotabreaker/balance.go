package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/quotabreaker/quotabreaker/balance"
)

// balances prints the provider balances the fleet's Watchers shared (see
// redisstore.BalanceShare) with their forecasts, and exits 1 when one runs
// out within horizon. The forecast comes from the balances' own decline
// over the readings published in the last six hours, which counts the
// whole fleet's spend and every other client's: the command knows nothing
// of what one Transport counted.
func (c *cmd) balances(ctx context.Context, horizon time.Duration) int {
	sh := c.s.BalanceShare()
	hist, err := sh.History(ctx)
	if err != nil {
		return c.fail(err)
	}
	latest, err := sh.Latest(ctx)
	if err != nil {
		return c.fail(err)
	}
	// A Watcher with no probes: it reads nothing, and forecasts from what
	// it is given, in the order it was read.
	w := balance.NewWatcher(balance.Config{Horizon: horizon})
	all := append(hist, latest...)
	slices.SortStableFunc(all, func(a, b balance.Balance) int { return a.Read.Compare(b.Read) })
	for _, b := range all {
		w.Record(ctx, b)
	}
	sts := w.Statuses()
	code := exitOK
	for _, s := range sts {
		if s.HasForecast && s.Forecast.HoursLeft < horizon.Hours() {
			code = exitOpen
		}
	}
	if c.json {
		if err := writeJSON(c.stdout, sts); err != nil {
			return c.fail(err)
		}
		return code
	}
	if len(sts) == 0 {
		fmt.Fprintln(c.stdout, "No balances shared: no Watcher with a BalanceShare has read one.")
		return code
	}
	writeBalances(c.stdout, sts)
	return code
}

func writeBalances(w io.Writer, sts []balance.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROVIDER\tSCOPE\tAVAILABLE\tBELOW\tRUNS OUT\tREAD")
	for _, s := range sts {
		out := "-"
		switch {
		case s.HasForecast && s.Forecast.HoursLeft <= 0:
			out = "now"
		case s.HasForecast:
			out = "in " + balance.About(time.Duration(s.Forecast.HoursLeft*float64(time.Hour))) +
				" (" + s.Forecast.Empty.Local().Format("2006-01-02 15:04 MST") + ")"
		}
		below := ""
		for i, l := range s.Below {
			if i > 0 {
				below += ", "
			}
			below += l.String()
		}
		scope := s.Scope
		if s.Account != "" {
			scope += " (" + s.Account + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\n", clean(s.Provider), clean(scope), s.Available, clean(s.Currency),
			dash(below), out, since(s.Read))
	}
	_ = tw.Flush()
}
