package testenv

import (
	"strings"
	"testing"
)

func TestUniqueName(t *testing.T) {
	a, b := UniqueName(t, "barrier"), UniqueName(t, "barrier")
	if a == b {
		t.Fatalf("UniqueName returned %q twice", a)
	}
	if !strings.HasPrefix(a, "barrier_") {
		t.Fatalf("UniqueName(barrier) = %q, want prefix barrier_", a)
	}
	long := UniqueName(t, strings.Repeat("x", 100))
	if len(long) > 63 {
		t.Fatalf("UniqueName(long) has %d bytes, want <= 63", len(long))
	}
}

func TestRedact(t *testing.T) {
	if got := redactURL("postgres://u:secret@h:5432/db"); strings.Contains(got, "secret") {
		t.Errorf("redactURL leaked the password: %q", got)
	}
	if got := redactMySQL("u:secret@tcp(h:3306)/db"); strings.Contains(got, "secret") {
		t.Errorf("redactMySQL leaked the password: %q", got)
	}
}

func TestServices(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		var one int
		if err := Postgres(t).QueryRowContext(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1 = %d, %v", one, err)
		}
	})
	t.Run("mariadb", func(t *testing.T) {
		var one int
		if err := MariaDB(t).QueryRowContext(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1 = %d, %v", one, err)
		}
	})
	t.Run("redis", func(t *testing.T) {
		if addr := RedisAddr(t); addr == "" {
			t.Fatal("RedisAddr returned an empty address")
		}
	})
}

func TestMain(m *testing.M) { Main(m) }
