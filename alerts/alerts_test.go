package alerts_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/balance"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// promtool returns the path of promtool. Without it the test is skipped,
// unless CI is set: CI must run it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("promtool not found in PATH, and CI is set: %v", err)
		}
		t.Skip("promtool not found in PATH: install it to test the alerting rules (Debian: apt-get install prometheus)")
	}
	return p
}

// TestRules checks the rules and runs their unit tests with promtool.
func TestRules(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "quotabreaker.rules.yml"},
		{"test", "rules", "quotabreaker.test.yml"},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			out, err := exec.Command(bin, args...).CombinedOutput()
			if err != nil {
				t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

// TestMetricNames checks that every metric and label the rules name is one
// that the OpenTelemetry Prometheus exporter produces: from a real
// Transport that trips on a real answer, and, for the instruments still to
// come, from instruments made with the names, units and attributes the
// rules expect.
func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	defer func() { _ = mp.Shutdown(context.Background()) }()

	// OpenAI's answer when the credit is gone.
	var sample struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
		Source  string            `json:"source"`
	}
	b, err := os.ReadFile("../classify/testdata/corpus/openai-insufficient-quota-429-status-shown.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sample); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range sample.Headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(sample.Status)
		_, _ = w.Write([]byte(sample.Body))
	}))
	defer srv.Close()
	// A balance watched (quotabreaker.WithBalances) that fell 10 CNY in an
	// hour, below its level of 150: the three balance gauges.
	w := balance.NewWatcher(balance.Config{Levels: map[string][]balance.Amount{"CNY": {150_000000}}})
	now := time.Now()
	for i, left := range []balance.Amount{110_000000, 100_000000} {
		w.Record(context.Background(), balance.Balance{Provider: "deepseek", Scope: "api.deepseek.com/key:1f0c3a9e52b7",
			Fingerprint: "1f0c3a9e52b7", Currency: "CNY", Available: left, Read: now.Add(time.Duration(i-1) * time.Hour)})
	}
	client := &http.Client{Transport: quotabreaker.New(srv.Client().Transport, quotabreaker.WithMeterProvider(mp), quotabreaker.WithBalances(w))}
	for range 2 { // the trip, then a request the open latch refuses
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer sk-test-not-a-real-key")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	client.CloseIdleConnections()

	// The instruments the fleet work adds, as the rules expect them: the
	// spent share with unit "1", the store's reachability with no unit.
	meter := mp.Meter("github.com/quotabreaker/quotabreaker")
	ratio, err := meter.Float64Gauge("quotabreaker.budget.spent_ratio", metric.WithUnit("1"))
	if err != nil {
		t.Fatal(err)
	}
	ratio.Record(context.Background(), 0.5, metric.WithAttributes(attribute.String("quotabreaker.budget.key", "team-a")))
	up, err := meter.Int64Gauge("quotabreaker.store.up")
	if err != nil {
		t.Fatal(err)
	}
	up.Record(context.Background(), 1)

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]dto.MetricType{}
	labels := map[string]bool{}
	for _, f := range families {
		types[f.GetName()] = f.GetType()
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
	}
	want := map[string]dto.MetricType{
		"quotabreaker_open_latches":            dto.MetricType_GAUGE,
		"quotabreaker_trips_total":             dto.MetricType_COUNTER,
		"quotabreaker_budget_spent_ratio":      dto.MetricType_GAUGE,
		"quotabreaker_store_up":                dto.MetricType_GAUGE,
		"quotabreaker_balance":                 dto.MetricType_GAUGE,
		"quotabreaker_balance_hours_left":      dto.MetricType_GAUGE,
		"quotabreaker_balance_below_threshold": dto.MetricType_GAUGE,
	}
	for name, typ := range want {
		switch got, ok := types[name]; {
		case !ok:
			t.Errorf("the exporter produced no %s", name)
		case got != typ:
			t.Errorf("the exporter has %s as a %v, want a %v", name, got, typ)
		}
	}

	// Every quotabreaker_ name in an expression or a label template is a
	// metric or a label the exporter produced.
	rules, err := os.ReadFile("quotabreaker.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`\bquotabreaker_[a-z_]+\b`)
	var used []string
	for line := range strings.Lines(string(rules)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || !(strings.HasPrefix(line, "expr:") || strings.Contains(line, "$labels.")) {
			continue
		}
		for _, n := range names.FindAllString(line, -1) {
			if !slices.Contains(used, n) {
				used = append(used, n)
			}
		}
	}
	if len(used) < len(want) {
		t.Fatalf("found only %v in the rules", used)
	}
	for _, n := range used {
		if _, isMetric := types[n]; !isMetric && !labels[n] {
			t.Errorf("the rules use %s, which the exporter produced neither as a metric nor as a label", n)
		}
	}
	for _, l := range []string{"error_type", "quotabreaker_error_code", "quotabreaker_budget_key",
		"gen_ai_provider_name", "quotabreaker_scope", "quotabreaker_currency"} {
		if !labels[l] {
			t.Errorf("no label %s in the exporter's output", l)
		}
	}
}
