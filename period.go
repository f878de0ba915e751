package quotabreaker

import "time"

// This file holds budget periods: the Period a key's spend counts in, and
// the functions a Budget's Period may be, calendar days, weeks and months in
// UTC or in a location of its own.

// Period is a budget period: from Start, included, to End, excluded.
type Period struct {
	Start, End time.Time
}

// MonthlyUTC is the default budget period: the calendar month of t in UTC.
func MonthlyUTC(t time.Time) (start, end time.Time) {
	y, m, _ := t.UTC().Date()
	start = time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 1, 0)
}

// DailyUTC is a budget period: the calendar day of t in UTC, from midnight
// to midnight.
func DailyUTC(t time.Time) (start, end time.Time) { return daily(t, time.UTC) }

// WeeklyUTC is a budget period: the ISO week of t in UTC, from Monday
// midnight to the next.
func WeeklyUTC(t time.Time) (start, end time.Time) { return weekly(t, time.UTC) }

// DailyIn returns a budget period: the calendar day in loc, from midnight
// to midnight in loc, so a day of a change to or from daylight saving time
// lasts 23 or 25 hours. Load loc with time.LoadLocation once, at start-up;
// nil means UTC.
func DailyIn(loc *time.Location) func(t time.Time) (start, end time.Time) {
	loc = orUTC(loc)
	return func(t time.Time) (time.Time, time.Time) { return daily(t, loc) }
}

// WeeklyIn returns a budget period: the ISO week in loc, from Monday
// midnight in loc to the next. nil means UTC.
func WeeklyIn(loc *time.Location) func(t time.Time) (start, end time.Time) {
	loc = orUTC(loc)
	return func(t time.Time) (time.Time, time.Time) { return weekly(t, loc) }
}

// MonthlyIn returns a budget period: the calendar month in loc, from the
// first's midnight in loc to the next. nil means UTC.
func MonthlyIn(loc *time.Location) func(t time.Time) (start, end time.Time) {
	loc = orUTC(loc)
	return func(t time.Time) (time.Time, time.Time) {
		y, m, _ := t.In(loc).Date()
		return midnight(y, m, 1, loc), midnight(y, m+1, 1, loc)
	}
}

func orUTC(loc *time.Location) *time.Location {
	if loc == nil {
		return time.UTC
	}
	return loc
}

func daily(t time.Time, loc *time.Location) (start, end time.Time) {
	y, m, d := t.In(loc).Date()
	return midnight(y, m, d, loc), midnight(y, m, d+1, loc)
}

func weekly(t time.Time, loc *time.Location) (start, end time.Time) {
	y, m, d := t.In(loc).Date()
	back := (int(t.In(loc).Weekday()) + 6) % 7 // days since Monday
	return midnight(y, m, d-back, loc), midnight(y, m, d-back+7, loc)
}

// midnight is the first instant of a day in loc (d may be out of range:
// the 32nd of March is the 1st of April). Where the clocks skip midnight
// (Chile and others change to daylight saving time at 00:00), time.Date
// may give an instant of the day before, which would belong to two days;
// the day starts at its first quarter hour that exists instead.
func midnight(y int, m time.Month, d int, loc *time.Location) time.Time {
	t := time.Date(y, m, d, 0, 0, 0, 0, loc)
	wy, wm, wd := time.Date(y, m, d, 12, 0, 0, 0, time.UTC).Date()
	for i := 0; i < 4*24; i++ {
		if ty, tm, td := t.Date(); ty == wy && tm == wm && td == wd {
			return t
		}
		t = t.Add(15 * time.Minute)
	}
	return t
}
