// Package modelname holds the rules for model names that the price
// snapshot's generator and its lookup must share.
package modelname

// Undated strips a date suffix, -YYYY-MM-DD or -YYYYMMDD, from a model
// name, as providers append to their dated snapshots (gpt-4o-2024-08-06,
// claude-sonnet-4-5-20250929).
func Undated(model string) (string, bool) {
	n := len(model)
	if n > 11 && model[n-11] == '-' && model[n-6] == '-' && model[n-3] == '-' &&
		digits(model[n-10:n-6]) && digits(model[n-5:n-3]) && digits(model[n-2:]) {
		return model[:n-11], true
	}
	if n > 9 && model[n-9] == '-' && digits(model[n-8:]) {
		return model[:n-9], true
	}
	return "", false
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
