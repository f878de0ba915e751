package balance

import (
	"errors"
	"math"
	"math/bits"
	"strconv"
)

// Amount is money in millionths of a currency's unit: micro-dollars for
// USD, micro-yuan for CNY. An integer keeps sums exact and compares exactly
// against thresholds; a millionth is finer than any provider states a
// balance (DeepSeek and SiliconFlow give cents, Moonshot five decimals, xAI
// cents) and matches the micro-dollars the prices package counts spend in.
// Figures finer than that (OpenRouter's floats) are rounded to the nearest
// millionth, halves away from zero.
type Amount int64

// Float returns a in the currency's unit, for display and for metrics.
func (a Amount) Float() float64 { return float64(a) / 1e6 }

// String returns a in the currency's unit with at least two decimals and
// no trailing zeros beyond them: "110.00", "49.58894", "-2.50".
func (a Amount) String() string {
	u := uint64(a)
	neg := a < 0
	if neg {
		u = -u
	}
	s := strconv.FormatUint(u/1e6, 10) + "." + strconv.FormatUint(1e6+u%1e6, 10)[1:]
	for s[len(s)-1] == '0' && s[len(s)-3] != '.' {
		s = s[:len(s)-1]
	}
	if neg {
		return "-" + s
	}
	return s
}

// rounding is how parseDecimal treats digits beyond the integer it returns.
type rounding uint8

const (
	// nearest rounds halves away from zero: a balance read as exactly as
	// an integer of millionths can hold it.
	nearest rounding = iota
	// up rounds toward +∞, as prices.Cost does, so that a sum of costs
	// never falls short of the bill.
	up
)

var errNotDecimal = errors.New("not a decimal number")

// parseDecimal returns the decimal number s times 10^scale as an integer,
// exactly but for the rounding of the digits beyond it. s is a JSON number
// or the decimal text of one (an optional sign, digits with an optional
// fraction, an optional exponent), as providers write amounts in strings
// ("110.00") and in numbers (49.58894, 1e-5). It never goes through a
// float64: 0.1 stays a tenth.
func parseDecimal(s string, scale int, r rounding) (int64, error) {
	i := 0
	neg := false
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	// The significant digits, leading zeros dropped, and the power of ten
	// of the last one.
	var digits []byte
	exp := 0
	seen := false
	for ; i < len(s) && isDigit(s[i]); i++ {
		seen = true
		if len(digits) > 0 || s[i] != '0' {
			digits = append(digits, s[i])
		}
	}
	if i < len(s) && s[i] == '.' {
		i++
		frac := false
		for ; i < len(s) && isDigit(s[i]); i++ {
			frac = true
			if len(digits) > 0 || s[i] != '0' {
				digits = append(digits, s[i])
			}
			exp--
		}
		if !frac {
			return 0, errNotDecimal
		}
	}
	if !seen && exp == 0 {
		return 0, errNotDecimal
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			eneg = s[i] == '-'
			i++
		}
		e, n := 0, 0
		for ; i < len(s) && isDigit(s[i]); i++ {
			if e < 1e6 { // beyond any int64, either way
				e = e*10 + int(s[i]-'0')
			}
			n++
		}
		if n == 0 {
			return 0, errNotDecimal
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(s) {
		return 0, errNotDecimal
	}
	if len(digits) == 0 {
		return 0, nil
	}
	shift := exp + scale // value = digits × 10^shift
	keep := len(digits) + shift
	if keep > 19 {
		return 0, strconv.ErrRange
	}
	var whole uint64
	roundUp := false
	if keep < 0 {
		// Every digit lies below the first one dropped: the value is less
		// than half a unit, and not zero (digits[0] is not '0').
		keep = 0
		digits = digits[:0]
		roundUp = r == up && !neg
	}
	for j := 0; j < keep; j++ {
		d := uint64('0')
		if j < len(digits) {
			d = uint64(digits[j])
		}
		hi, lo := bits.Mul64(whole, 10)
		lo, carry := bits.Add64(lo, d-'0', 0)
		if hi != 0 || carry != 0 {
			return 0, strconv.ErrRange
		}
		whole = lo
	}
	if keep < len(digits) {
		rest := digits[keep:]
		switch r {
		case nearest:
			roundUp = rest[0] >= '5'
		case up:
			// Toward +∞: a positive value with any digit dropped goes up; a
			// negative one is already rounded up by dropping them.
			if !neg {
				for _, d := range rest {
					if d != '0' {
						roundUp = true
						break
					}
				}
			}
		}
	}
	if roundUp {
		whole++
	}
	if whole > math.MaxInt64 {
		return 0, strconv.ErrRange
	}
	if neg {
		return -int64(whole), nil
	}
	return int64(whole), nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
