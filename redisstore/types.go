package redisstore

// This file mirrors the root package's store types (store.go) while the
// root's Trip is being reshaped: Trip here has the fields and the JSON of
// the new quotabreaker.Trip. Once the root's Trip has them, each type below
// becomes an alias of the root's (type Trip = quotabreaker.Trip, and so on)
// and Store satisfies quotabreaker.Store.

import (
	"fmt"
	"time"

	"github.com/quotabreaker/quotabreaker"
)

// Cause says why a latch opened.
type Cause string

// The causes of a trip.
const (
	CauseAnswer Cause = "answer" // an error answer
	CauseStream Cause = "stream" // an error inside a stream
	CauseBudget Cause = "budget" // a budget's hard limit
)

// Mode says whether a latch refuses requests (ModeEnforce) or only reports
// (ModeObserve).
type Mode int

// The modes.
const (
	ModeEnforce Mode = iota
	ModeObserve
)

// MarshalText encodes m as "enforce" or "observe".
func (m Mode) MarshalText() ([]byte, error) {
	switch m {
	case ModeEnforce:
		return []byte("enforce"), nil
	case ModeObserve:
		return []byte("observe"), nil
	}
	return nil, fmt.Errorf("quotabreaker: unknown mode %d", int(m))
}

// UnmarshalText decodes "enforce" or "observe".
func (m *Mode) UnmarshalText(b []byte) error {
	switch string(b) {
	case "enforce":
		*m = ModeEnforce
	case "observe":
		*m = ModeObserve
	default:
		return fmt.Errorf("quotabreaker: unknown mode %q", b)
	}
	return nil
}

// Provider is the OpenTelemetry gen_ai.provider.name of a provider.
type Provider string

// Trip describes an open latch; its JSON is what the store keeps.
type Trip struct {
	Scope      string             `json:"scope"`
	Cause      Cause              `json:"cause"`
	Mode       Mode               `json:"mode"`
	Class      quotabreaker.Class `json:"class"`
	Provider   Provider           `json:"provider,omitempty"`
	Code       string             `json:"error_code,omitempty"`
	Type       string             `json:"error_type,omitempty"`
	StatusCode int                `json:"status_code,omitempty"`
	RequestID  string             `json:"request_id,omitempty"`
	At         time.Time          `json:"at"`
	Epoch      uint64             `json:"epoch"`
}

// ScopeState is what the store holds for one scope.
type ScopeState struct {
	Scope string
	// Epoch is the scope's reset epoch: how many times it was cleared.
	Epoch uint64
	// Open reports whether the scope's latch is open; Trip is then the
	// trip that opened it.
	Open bool
	Trip Trip
}

// Snapshot is the state of every scope the store knows, read as of one
// moment.
type Snapshot struct {
	// Open holds the open latches, sorted by scope; never nil.
	Open []Trip
	// Epochs holds the epoch of every scope that has one above 0; a scope
	// that is absent has epoch 0.
	Epochs map[string]uint64
}

// ChangeKind says what a Change is.
type ChangeKind int

// The kinds of Change.
const (
	// ChangeOpened: Trip opened Scope's latch.
	ChangeOpened ChangeKind = iota + 1
	// ChangeCleared: Scope's latch was cleared and its epoch advanced to
	// Epoch.
	ChangeCleared
	// ChangeResync: changes may have been lost; take a Snapshot. Watch
	// sends it once changes flow again, so that nothing after the
	// Snapshot is missed.
	ChangeResync
	// ChangeDisconnected: Watch lost the store (or could not reach it
	// when it started); changes may be missed until the next
	// ChangeResync. It comes once per loss, not once per failed attempt.
	ChangeDisconnected
)

// Change is one change to the store's state, as Watch, Clear and ClearAll
// report it. See quotabreaker.Change for how to apply one.
type Change struct {
	Kind ChangeKind
	// Scope is the scope that changed; empty for ChangeResync and
	// ChangeDisconnected.
	Scope string
	// Epoch is the scope's epoch after the change: the trip's epoch for
	// ChangeOpened, the advanced one for ChangeCleared.
	Epoch uint64
	// Trip is the trip that opened the latch (ChangeOpened) or the one
	// that was open when it was cleared (ChangeCleared; zero, with an
	// empty Scope, when the latch was not open).
	Trip Trip
}

// Period is a budget period: from Start, included, to End, excluded.
type Period = quotabreaker.Period

// Spend is the spend of one budget key in one period.
type Spend = quotabreaker.Spend
