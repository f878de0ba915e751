// Package alerts holds no code to import. Its directory holds quotabreaker's
// Prometheus alerting rules (quotabreaker.rules.yml) and their promtool tests
// (quotabreaker.test.yml); its Go test checks the metric names in the rules
// against what the OpenTelemetry Prometheus exporter makes of a real
// Transport's instruments, and runs promtool.
package alerts
