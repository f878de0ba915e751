package redisstore

// The store's types are the root package's: a Store keeps a
// quotabreaker.Trip as its JSON, and speaks quotabreaker.Change.

import (
	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/classify"
)

type (
	Trip       = quotabreaker.Trip
	Cause      = quotabreaker.Cause
	Mode       = quotabreaker.Mode
	Provider   = classify.Provider
	ScopeState = quotabreaker.ScopeState
	Snapshot   = quotabreaker.Snapshot
	ChangeKind = quotabreaker.ChangeKind
	Change     = quotabreaker.Change
	Period     = quotabreaker.Period
	Spend      = quotabreaker.Spend
	SpendWrite = quotabreaker.SpendWrite
)

const (
	ChangeOpened       = quotabreaker.ChangeOpened
	ChangeCleared      = quotabreaker.ChangeCleared
	ChangeResync       = quotabreaker.ChangeResync
	ChangeDisconnected = quotabreaker.ChangeDisconnected
	ChangeInvalid      = quotabreaker.ChangeInvalid
	ChangeMode         = quotabreaker.ChangeMode

	CauseAnswer = quotabreaker.CauseAnswer
	CauseStream = quotabreaker.CauseStream
	CauseBudget = quotabreaker.CauseBudget

	ModeEnforce = quotabreaker.ModeEnforce
	ModeObserve = quotabreaker.ModeObserve
)

var (
	_ quotabreaker.Store     = (*Store)(nil)
	_ quotabreaker.ModeStore = (*Store)(nil)
)
