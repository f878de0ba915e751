package classify

import (
	"net/http"
	"testing"
)

// TestCodeTableIsTheOneHome adds a made-up code to the table and sees the
// classification, the stream error's status and the metric allow-list all
// follow: a provider code has one home.
func TestCodeTableIsTheOneHome(t *testing.T) {
	const code = "zz_made_up_wallet_dry"
	body := []byte(`{"error":{"message":"Something happened.","type":"zz_vendor","code":"` + code + `"}}`)
	stream := []byte(`{"error":{"message":"Something happened.","code":"` + code + `"}}`)

	check := func(wantClass, wantStream Class, wantStatus int, wantMetric string) {
		t.Helper()
		if got := Answer(http.StatusBadRequest, nil, body).Class; got != wantClass {
			t.Errorf("Answer class = %q, want %q", got, wantClass)
		}
		if c, status := StreamError(nil, stream); c.Class != wantStream || status != wantStatus {
			t.Errorf("StreamError = %q at %d, want %q at %d", c.Class, status, wantStream, wantStatus)
		}
		if got := MetricCode(code); got != wantMetric {
			t.Errorf("MetricCode = %q, want %q", got, wantMetric)
		}
	}
	check(InvalidRequest, ServerError, http.StatusInternalServerError, OtherCode)

	codes[code] = QuotaExhausted
	defer delete(codes, code)
	check(QuotaExhausted, QuotaExhausted, http.StatusTooManyRequests, code)
}

// TestCodesAgreeWithTheirWords: a code the table gives a class must not
// contradict what its own words say, or the table would hide a rule.
func TestCodesAgreeWithTheirWords(t *testing.T) {
	for code, want := range codes {
		if want == "" {
			continue
		}
		var tk token
		tk.set([]byte(code), false)
		// Read the words without the table.
		saved := codes
		codes = nil
		got := tk.meaning()
		codes = saved
		if got != "" && got != want {
			t.Errorf("code %q: table says %q, its words %q", code, want, got)
		}
	}
}
