package destination

import (
	"errors"
	"net"
	"strings"
	"testing"
)

func TestAllowList(t *testing.T) {
	p, err := Parse("https://*.pay.internal, 10.1.0.0/16, amqp://rabbit, http://[::1], orders")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		"https://a.pay.internal/x", "https://b.c.pay.internal:8443/x", "http://10.1.2.3:8080/x", "grpc://10.1.9.9:9/p.S/M",
		"amqp://u:p@rabbit:5672/?exchange=e", "http://[::1]:9/x", "http://orders/x", "grpcs://orders/p.S/M",
	} {
		if err := p.Check(u); err != nil {
			t.Errorf("Check(%s) = %v, want allowed", u, err)
		}
	}
	for _, u := range []string{
		"http://a.pay.internal/x", "https://pay.internal/x", "https://evil.com/?x=.pay.internal", "http://10.2.0.1/x",
		"amqps://rabbit/", "http://169.254.169.254/latest", "http://orders.evil.com/", "nats://orders:4222,evil:4222?subject=s",
		"https://a.pay.internal@evil.com/", "not a url",
	} {
		if err := p.Check(u); !errors.Is(err, ErrRefused) {
			t.Errorf("Check(%s) = %v, want refused", u, err)
		}
	}
	if err := p.Check("https://a.pay.internal@evil.com/"); err == nil || !strings.Contains(err.Error(), "evil.com") {
		t.Errorf("refusal does not name the host: %v", err)
	}
}

func TestEmptyAllowsAny(t *testing.T) {
	p, err := Parse(" , ")
	if err != nil || p.Restricted() {
		t.Fatalf("Parse = %v, %v", p, err)
	}
	if err := p.Check("http://169.254.169.254/"); err != nil {
		t.Error(err)
	}
	var nilPolicy *Policy
	if err := nilPolicy.Check("http://x/"); err != nil {
		t.Error(err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, spec := range []string{"http://", "10.0.0.0/33", "a*b.com", "*foo.com", "://x", "user@host"} {
		if _, err := Parse(spec); err == nil {
			t.Errorf("Parse(%q) accepted", spec)
		}
	}
}

func TestSelf(t *testing.T) {
	for _, tc := range []struct {
		listen  string
		refused []string
		allowed []string
	}{
		{"127.0.0.1:7070",
			[]string{"http://127.0.0.1:7070/x", "http://localhost:7070/", "http://[::1]:7070/", "http://0.0.0.0:7070/", "grpc://127.0.0.2:7070/a.B/C"},
			[]string{"http://127.0.0.1:7071/", "http://10.0.0.1:7070/", "http://127.0.0.1/"}},
		{"0.0.0.0:80",
			[]string{"http://127.0.0.1/", "http://localhost/", "grpc://127.0.0.1/a.B/C"},
			[]string{"https://127.0.0.1/", "http://127.0.0.1:8080/"}},
		{"10.9.9.9:7070",
			[]string{"http://10.9.9.9:7070/"},
			[]string{"http://127.0.0.1:7070/", "http://10.9.9.8:7070/"}},
	} {
		addr, err := net.ResolveTCPAddr("tcp", tc.listen)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := Parse("")
		p.SetSelf(addr)
		for _, u := range tc.refused {
			if err := p.Check(u); err == nil || !strings.Contains(err.Error(), "own listener") {
				t.Errorf("listen %s: Check(%s) = %v, want refused as own listener", tc.listen, u, err)
			}
		}
		for _, u := range tc.allowed {
			if err := p.Check(u); err != nil {
				t.Errorf("listen %s: Check(%s) = %v, want allowed", tc.listen, u, err)
			}
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://guest:s3cret@rabbit:5672/vh?exchange=e&routing_key=k": "amqp://guest:xxxxx@rabbit:5672/vh?exchange=e&routing_key=k",
		"redis://:s3cret@r:6379/0?stream=s":                           "redis://:xxxxx@r:6379/0?stream=s",
		"nats://u:s3cret@a:4222,b:4222?subject=s":                     "nats://u:xxxxx@a:4222,b:4222?subject=s",
		"https://hooks.example/x?token=s3cret&a=b":                    "https://hooks.example/x?token=xxxxx&a=b",
		"http://user@host/p":                                          "http://user@host/p",
		"http://host/p@x:y":                                           "http://host/p@x:y",
		"plain":                                                       "plain",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestSecrets(t *testing.T) {
	got := Secrets("https://u:p%40ss@h/x?token=t0k&a=b&api_key=k#f")
	want := []string{"p%40ss", "p@ss", "t0k", "k"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Secrets = %q, want %q", got, want)
	}
}

func TestCheckDial(t *testing.T) {
	p, _ := Parse("")
	if err := p.CheckDial("tcp", "127.0.0.1:7070"); err != nil {
		t.Errorf("no listener set: %v", err)
	}
	addr, _ := net.ResolveTCPAddr("tcp", "127.0.0.1:7070")
	p.SetSelf(addr)
	for address, refused := range map[string]bool{
		"127.0.0.1:7070": true, "[::1]:7070": true, "127.0.0.1:7071": false, "10.0.0.1:7070": false,
	} {
		if err := p.CheckDial("tcp", address); (err != nil) != refused {
			t.Errorf("CheckDial(%s) = %v, want refused %v", address, err, refused)
		}
	}
}
