// Package destination decides which URLs the coordinator may call: the
// operator's allow-list of hosts, CIDRs and schemes (-allow-destinations),
// and never the coordinator's own listener. The API checks every branch,
// check-back, message and subscription URL at submission; the coordinator
// checks again before every call, so a record written before the list
// changed is not called either.
package destination

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// ErrRefused wraps every refusal.
var ErrRefused = errors.New("destination refused")

// Policy is an allow-list plus the coordinator's own addresses. The zero
// value allows every destination.
type Policy struct {
	rules []rule
	self  []netip.AddrPort // listener addresses (an unspecified IP expanded to this host's)
	port  uint16           // the listener's port, 0 if none
}

// rule is one allow-list entry: an optional scheme, and a host pattern
// ("*", "name", "*.suffix") or a prefix (CIDR or single IP).
type rule struct {
	scheme string // "" matches any scheme
	host   string // lower case; "" when prefix is set
	prefix netip.Prefix
}

// Parse reads a comma-separated allow-list. Each entry is
// [scheme://]host, where host is "*", a name ("pay.internal"), a name
// pattern ("*.internal": any name under it), an IP or a CIDR
// ("10.0.0.0/8"). Names match URLs that use names; IPs and CIDRs match
// URLs that use IP literals (no DNS lookup is made). An empty spec allows
// every destination.
func Parse(spec string) (*Policy, error) {
	p := &Policy{}
	for _, e := range strings.Split(spec, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		var r rule
		host := e
		if s, h, ok := strings.Cut(e, "://"); ok {
			if s == "" || strings.ContainsAny(s, "/*:") {
				return nil, fmt.Errorf("allow-destinations entry %q: bad scheme", e)
			}
			r.scheme, host = strings.ToLower(s), h
		}
		host = strings.ToLower(strings.TrimSuffix(host, "/"))
		switch {
		case host == "":
			return nil, fmt.Errorf("allow-destinations entry %q: no host (use * for any)", e)
		case strings.Contains(host, "/"):
			pfx, err := netip.ParsePrefix(host)
			if err != nil {
				return nil, fmt.Errorf("allow-destinations entry %q: %v", e, err)
			}
			r.prefix = pfx.Masked()
		default:
			if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
				r.prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			} else if host != "*" && (strings.ContainsAny(host, ":/@") || strings.Contains(host[1:], "*") || (host[0] == '*' && !strings.HasPrefix(host, "*."))) {
				return nil, fmt.Errorf("allow-destinations entry %q: want *, a name, *.name, an IP or a CIDR", e)
			} else {
				r.host = host
			}
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

// Restricted reports whether an allow-list is in force.
func (p *Policy) Restricted() bool { return p != nil && len(p.rules) > 0 }

// SetSelf records the coordinator's listener address: URLs that point at it
// are refused. A listener on an unspecified IP (0.0.0.0, ::) stands for
// every address of this host.
func (p *Policy) SetSelf(addr net.Addr) {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return
	}
	p.port = uint16(ta.Port)
	ip, _ := netip.AddrFromSlice(ta.IP)
	ip = ip.Unmap()
	p.self = append(p.self, netip.AddrPortFrom(ip, p.port))
	if ip.IsUnspecified() {
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					p.self = append(p.self, netip.AddrPortFrom(ip.Unmap(), p.port))
				}
			}
		}
	}
}

// defaultPorts are the ports a URL without one is called on.
var defaultPorts = map[string]string{
	"http": "80", "https": "443", "grpc": "80", "grpcs": "443",
	"amqp": "5672", "amqps": "5671", "nats": "4222", "redis": "6379", "rediss": "6379", "kafka": "9092",
}

// Check returns nil if raw may be called, or an error wrapping ErrRefused
// that names the problem. Every host of a multi-host broker URL
// (nats://a:4222,b:4222) must pass.
func (p *Policy) Check(raw string) error {
	if p == nil {
		return nil
	}
	scheme, hosts, ok := split(raw)
	if !ok {
		return fmt.Errorf("%w: %q is not an absolute URL", ErrRefused, Redact(raw))
	}
	for _, hp := range hosts {
		host, port := hp, ""
		if h, pt, err := net.SplitHostPort(hp); err == nil {
			host, port = h, pt
		}
		host = strings.ToLower(strings.Trim(host, "[]"))
		if p.port != 0 && p.isSelf(scheme, host, port) {
			return fmt.Errorf("%w: %s://%s is the coordinator's own listener", ErrRefused, scheme, hp)
		}
		if len(p.rules) > 0 && !p.allowed(scheme, host) {
			return fmt.Errorf("%w: %s://%s is not in -allow-destinations", ErrRefused, scheme, hp)
		}
	}
	return nil
}

// split returns a URL's lower-case scheme and the host[:port] parts of its
// authority, without user info.
func split(raw string) (scheme string, hosts []string, ok bool) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || scheme == "" {
		return "", nil, false
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	if rest == "" {
		return "", nil, false
	}
	return strings.ToLower(scheme), strings.Split(rest, ","), true
}

func (p *Policy) allowed(scheme, host string) bool {
	ip, ipErr := netip.ParseAddr(host)
	for _, r := range p.rules {
		if r.scheme != "" && r.scheme != scheme {
			continue
		}
		switch {
		case r.prefix.IsValid():
			if ipErr == nil && r.prefix.Contains(ip.Unmap()) {
				return true
			}
		case r.host == "*":
			return true
		case strings.HasPrefix(r.host, "*."):
			if ipErr != nil && strings.HasSuffix(host, r.host[1:]) {
				return true
			}
		case r.host == host:
			return true
		}
	}
	return false
}

// isSelf reports whether host:port (port empty: the scheme's default) is
// one of the listener's addresses. Names other than localhost are not
// resolved.
func (p *Policy) isSelf(scheme, host, port string) bool {
	if port == "" {
		port = defaultPorts[scheme]
	}
	if port != strconv.Itoa(int(p.port)) {
		return false
	}
	var ip netip.Addr
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		ip = netip.IPv6Loopback()
	} else if a, err := netip.ParseAddr(host); err == nil {
		ip = a.Unmap()
	} else {
		return false
	}
	return p.selfIP(ip)
}

// CheckDial refuses a connection about to be made to address (ip:port,
// after DNS) when it is the coordinator's own listener: a name that
// resolves to the coordinator, which Check cannot see, is refused here.
// The branch callers use it as their dialer's Control.
func (p *Policy) CheckDial(network, address string) error {
	if p == nil || p.port == 0 {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil || ap.Port() != p.port {
		return nil
	}
	if p.selfIP(ap.Addr().Unmap()) {
		return fmt.Errorf("%w: %s is the coordinator's own listener", ErrRefused, address)
	}
	return nil
}

func (p *Policy) selfIP(ip netip.Addr) bool {
	for _, s := range p.self {
		a := s.Addr()
		switch {
		case a == ip, ip.IsUnspecified():
			return true
		case ip.IsLoopback() && (a.IsLoopback() || a.IsUnspecified()):
			return true
		}
	}
	return false
}

// Redact returns raw with the password of its user info (user:pass@) and
// the values of secret-looking query parameters replaced by "xxxxx", for
// API answers and logs. A string that is not a URL is returned as is.
func Redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	end := len(rest)
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		end = i
	}
	authority, tail := rest[:end], rest[end:]
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		if user, _, hasPass := strings.Cut(authority[:i], ":"); hasPass {
			authority = user + ":xxxxx" + authority[i:]
		}
	}
	if path, query, ok := strings.Cut(tail, "?"); ok {
		parts := strings.Split(query, "&")
		for j, kv := range parts {
			k, _, hasValue := strings.Cut(kv, "=")
			if hasValue && secretKey(k) {
				parts[j] = k + "=xxxxx"
			}
		}
		tail = path + "?" + strings.Join(parts, "&")
	}
	return scheme + "://" + authority + tail
}

func secretKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"pass", "secret", "token", "key", "auth", "sig"} {
		if strings.Contains(k, s) && k != "routing_key" {
			return true
		}
	}
	return false
}

// Secrets returns what Redact hides in raw: the password of its user info
// and the values of secret-looking query parameters, each as written and
// decoded.
func Secrets(raw string) []string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil
	}
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if dec, err := url.QueryUnescape(s); err == nil && dec != s {
			out = append(out, dec)
		}
	}
	end := len(rest)
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		end = i
	}
	if i := strings.LastIndex(rest[:end], "@"); i >= 0 {
		_, pass, _ := strings.Cut(rest[:i], ":")
		add(pass)
	}
	if _, query, ok := strings.Cut(rest[end:], "?"); ok {
		query, _, _ = strings.Cut(query, "#")
		for _, kv := range strings.Split(query, "&") {
			if k, v, ok := strings.Cut(kv, "="); ok && secretKey(k) {
				add(v)
			}
		}
	}
	return out
}
