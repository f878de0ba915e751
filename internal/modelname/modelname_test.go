package modelname

import "testing"

func TestUndated(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"gpt-4o-2024-08-06", "gpt-4o", true},
		{"claude-sonnet-4-5-20250929", "claude-sonnet-4-5", true},
		{"gpt-4o", "", false},
		{"grok-4-0709", "", false},
		{"mistral-large-2411", "", false},
		{"-2024-08-06", "", false},
		{"x-2024-08-0a", "", false},
		{"x-2024_08-06", "", false},
		{"x-2024080a", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := Undated(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Undated(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}
