package xa

import (
	"strings"
	"testing"
)

func TestXID(t *testing.T) {
	long := strings.Repeat("g", 70)
	tests := []struct {
		gid, branch string
		want        string // "" for a hashed XID
	}{
		{"20250101T000000.000-0123456789abcdef", "01", "cx/20250101T000000.000-0123456789abcdef/01"},
		{"order-1", "reserve", "cx/order-1/reserve"},
		{"a:b.c_d", "x-y", "cx/a:b.c_d/x-y"},
		{strings.Repeat("g", 59), "b", "cx/" + strings.Repeat("g", 59) + "/b"}, // exactly 64 bytes
		{strings.Repeat("g", 60), "b", ""},                                     // 65: hashed
		{long, "b", ""},
		{"with space", "b", ""},
		{"slash/gid", "b", ""},
		{"g", "quote'", ""},
		{"ünïcode", "b", ""},
	}
	for _, tt := range tests {
		x := XID(tt.gid, tt.branch)
		checkShape(t, x)
		if tt.want != "" {
			if x != tt.want {
				t.Errorf("XID(%q, %q) = %q, want %q", tt.gid, tt.branch, x, tt.want)
			}
			g, b, ok := ParseXID(x)
			if !ok || g != tt.gid || b != tt.branch {
				t.Errorf("ParseXID(%q) = %q, %q, %v; want %q, %q, true", x, g, b, ok, tt.gid, tt.branch)
			}
			continue
		}
		if !hashed(x) {
			t.Errorf("XID(%q, %q) = %q, want the hashed form", tt.gid, tt.branch, x)
		}
		if _, _, ok := ParseXID(x); ok {
			t.Errorf("ParseXID(%q) decoded a hashed XID", x)
		}
	}
	if got := XID(long, "b"); !strings.HasPrefix(got, "cx#gggggggggggggggggggg/") {
		t.Errorf("XID(long) = %q, want a readable gid prefix", got)
	}
	// The hash covers the split between gid and branch.
	if XID("ab c", "d") == XID("ab", " cd") {
		t.Error("XID ignores where gid ends")
	}
}

func TestParseXIDRejectsForeign(t *testing.T) {
	for _, x := range []string{"", "cx/", "cx/a", "cx/a/", "cx//b", "cx/a/b/c", "cx/a b/c", "xid-1", "cx#abc/0123"} {
		if g, b, ok := ParseXID(x); ok {
			t.Errorf("ParseXID(%q) = %q, %q, true; want false", x, g, b)
		}
	}
}

func checkShape(t *testing.T, x string) {
	t.Helper()
	if len(x) > MaxXIDLen {
		t.Errorf("XID %q is %d bytes, more than %d", x, len(x), MaxXIDLen)
	}
	if _, err := quote(x); err != nil {
		t.Errorf("XID %q cannot be quoted: %v", x, err)
	}
}

// FuzzXID checks that every XID fits both databases, that plain XIDs decode
// to their ids, and that two different pairs never share an XID.
func FuzzXID(f *testing.F) {
	f.Add("order-1", "reserve", "order-1", "reserv")
	f.Add("a", "b/c", "a/b", "c")
	f.Add(strings.Repeat("x", 100), "1", strings.Repeat("x", 100), "2")
	f.Fuzz(func(t *testing.T, g1, b1, g2, b2 string) {
		x1, x2 := XID(g1, b1), XID(g2, b2)
		checkShape(t, x1)
		if g, b, ok := ParseXID(x1); ok && (g != g1 || b != b1) {
			t.Fatalf("ParseXID(XID(%q, %q)) = %q, %q", g1, b1, g, b)
		}
		if x1 == x2 && (g1 != g2 || b1 != b2) {
			t.Fatalf("XID(%q, %q) = XID(%q, %q) = %q", g1, b1, g2, b2, x1)
		}
	})
}
