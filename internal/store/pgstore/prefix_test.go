package pgstore

import (
	"strings"
	"testing"
)

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"a-", "a.", true},
		{"ab", "ac", true},
		{"\u00ff", "\u0100", true},
		{"a\U0010FFFF", "b", true},
		{"\uD7FF", "\uE000", true},
		{"\U0010FFFF", "", false},
	} {
		got, ok := prefixEnd(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("prefixEnd(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok && (strings.Compare(tc.in+"\U0010FFFF\U0010FFFF", got) >= 0 || got <= tc.in) {
			t.Errorf("prefixEnd(%q) = %q does not bound the strings with that prefix", tc.in, got)
		}
	}
}
