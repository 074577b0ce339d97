package store

import (
	"bytes"
	"testing"
)

func TestPrefixEnd(t *testing.T) {
	for _, c := range []struct{ in, want []byte }{
		{nil, nil},
		{[]byte{0xff, 0xff}, nil},
		{[]byte("topic/"), []byte("topic0")},
		{[]byte{'a', 0xff}, []byte{'b'}},
		{[]byte{'a', 0xfe, 0xff}, []byte{'a', 0xff}},
		{[]byte("c"), []byte("d")},
		{[]byte{1, 0xff}, []byte{2}},
	} {
		if got := PrefixEnd(c.in); !bytes.Equal(got, c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("PrefixEnd(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	in := []byte("ab")
	PrefixEnd(in)
	if string(in) != "ab" {
		t.Errorf("PrefixEnd changed its argument to %q", in)
	}
}
