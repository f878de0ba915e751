package redisstore

import (
	"strconv"
	"testing"
)

// FuzzDecodeChange: any message on the channel decodes or fails; it never
// panics, a decoded one keeps its scope's bytes, and it passes the checks
// Claim and SetMode make (a scope, an epoch within 2^53-1, a known mode) and
// what the scripts write (a clear advances the epoch past 0, so does a mode
// switch); a mode message decodes only as SetMode writes it.
func FuzzDecodeChange(f *testing.F) {
	for _, s := range []string{
		`open 3 5:a b:c{"scope":"x","epoch":3}`,
		`clear 4 1:a`,
		`clear 4 1:a{"scope":"a"}`,
		"open 1 2:\xff\n{}",
		`open 1 99:a{}`,
		`open -1 1:a{}`,
		`open 0 0:{}`,
		`open 9007199254740992 1:a{}`,
		`clear 9007199254740991 1:a`,
		`clear 0 1:a`,
		`mode 1764720000000 observe`,
		`mode 1 enforce`,
		`mode 9007199254740991 enforce`,
		`mode 9007199254740992 enforce`,
		`mode 0 observe`,
		`mode 01 observe`,
		`mode 5 Observe`,
		`mode 5 observe `,
		`mode 5 observe{"scope":"a"}`,
		`mode 5 3`,
		`mode -5 observe`,
		`mode 5`,
		``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		ch, err := decodeChange(msg)
		if err != nil {
			return
		}
		if ch.Kind == ChangeMode {
			name, err := ch.Mode.MarshalText()
			if err != nil || ch.Epoch == 0 || ch.Epoch > maxEpoch || ch.Scope != "" || ch.Trip.Scope != "" {
				t.Fatalf("accepted %q as %+v, which SetMode never writes", msg, ch)
			}
			if want := "mode " + strconv.FormatUint(ch.Epoch, 10) + " " + string(name); msg != want {
				t.Fatalf("accepted %q as %+v, which SetMode writes as %q", msg, ch, want)
			}
			return
		}
		if ch.Kind != ChangeOpened && ch.Kind != ChangeCleared {
			t.Fatalf("kind %d", ch.Kind)
		}
		if ch.Trip.Scope != "" && ch.Trip.Scope != ch.Scope {
			t.Fatalf("trip scope %q, change scope %q", ch.Trip.Scope, ch.Scope)
		}
		if ch.Scope == "" || ch.Epoch > maxEpoch || (ch.Kind == ChangeCleared && ch.Epoch == 0) {
			t.Fatalf("accepted %q as %+v, which Claim or the scripts never write", msg, ch)
		}
	})
}
