package server

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"time"

	v1 "github.com/concordtm/concord/gen/concord/v1"
)

// Limits bound what one request may ask for. Zero fields take defaults.
type Limits struct {
	MaxBranches     int           // per transaction (100)
	MaxPayloadBytes int           // per branch payload (64 KiB)
	MaxRequestBytes int           // whole request body (4 MiB)
	MaxWait         time.Duration // longest a wait=true call blocks (60s)
}

func (l Limits) withDefaults() Limits {
	if l.MaxBranches <= 0 {
		l.MaxBranches = 100
	}
	if l.MaxPayloadBytes <= 0 {
		l.MaxPayloadBytes = 64 << 10
	}
	if l.MaxRequestBytes <= 0 {
		l.MaxRequestBytes = 4 << 20
	}
	if l.MaxWait <= 0 {
		l.MaxWait = 60 * time.Second
	}
	return l
}

const maxIDLen = 128

// checkID accepts ids made of letters, digits and . _ : - (so they are safe
// in URLs, headers, logs and file names).
func checkID(what, id string, required bool) error {
	if id == "" {
		if required {
			return fmt.Errorf("%s is required", what)
		}
		return nil
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("%s is %d bytes long, at most %d allowed", what, len(id), maxIDLen)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == ':' || r == '-'
		if !ok {
			return fmt.Errorf("%s %q contains %q: use letters, digits and . _ : -", what, id, r)
		}
	}
	return nil
}

// checkMessagePayload checks that the payload of a branch whose gRPC URL ends in
// ?message=base64 (the payload is the method's own request message, its
// wire bytes in base64) decodes.
func checkMessagePayload(what, url, payload string) error {
	if !strings.HasSuffix(url, "?message=base64") {
		return nil
	}
	if _, err := base64.StdEncoding.DecodeString(payload); err != nil {
		return fmt.Errorf("%s.payload: the URL says message=base64, but the payload is not base64: %v", what, err)
	}
	return nil
}

// checkURL accepts absolute http and https URLs, and grpc/grpcs URLs that
// name a method: grpc://host:port/package.Service/Method.
func checkURL(what, raw string) error {
	if raw == "" {
		return fmt.Errorf("%s URL is required", what)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s URL %q: %v", what, raw, err)
	}
	switch u.Scheme {
	case "http", "https":
	case "grpc", "grpcs":
		parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
		if len(parts) != 2 || !strings.Contains(parts[0], ".") || parts[1] == "" || (u.RawQuery != "" && u.RawQuery != "message=base64") || strings.Contains(raw, "#") {
			return fmt.Errorf("%s URL %q: a gRPC branch URL names one method: grpc://host:port/package.Service/Method, optionally with ?message=base64", what, raw)
		}
	default:
		return fmt.Errorf("%s URL %q: scheme must be http, https, grpc or grpcs", what, raw)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%s URL %q has no host", what, raw)
	}
	return nil
}

const maxDuration = int64(30 * 24 * time.Hour / time.Millisecond)

func checkOptions(o *v1.TransactionOptions) error {
	if o == nil {
		return nil
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"timeout_ms", o.TimeoutMs}, {"branch_timeout_ms", o.BranchTimeoutMs}, {"retry_initial_ms", o.RetryInitialMs}, {"retry_max_ms", o.RetryMaxMs}} {
		if f.v < 0 || f.v > maxDuration {
			return fmt.Errorf("options.%s = %d: must be between 0 and %d (30 days)", f.name, f.v, maxDuration)
		}
	}
	if o.MaxAttempts < 0 || o.MaxAttempts > 1000 {
		return fmt.Errorf("options.max_attempts = %d: must be between 0 and 1000", o.MaxAttempts)
	}
	if o.MaxTotalAttempts < 0 || o.MaxTotalAttempts > 100000 {
		return fmt.Errorf("options.max_total_attempts = %d: must be between 0 and 100000", o.MaxTotalAttempts)
	}
	return nil
}

func (s *Service) checkPayload(what, p string) error {
	if len(p) > s.limits.MaxPayloadBytes {
		return fmt.Errorf("%s payload is %d bytes, at most %d allowed", what, len(p), s.limits.MaxPayloadBytes)
	}
	return nil
}

func (s *Service) checkSaga(r *v1.SubmitSagaRequest) error {
	if err := checkID("gid", r.Gid, false); err != nil {
		return err
	}
	if len(r.Branches) == 0 {
		return fmt.Errorf("branches: a saga needs at least one branch")
	}
	if len(r.Branches) > s.limits.MaxBranches {
		return fmt.Errorf("branches: %d given, at most %d allowed", len(r.Branches), s.limits.MaxBranches)
	}
	for i, b := range r.Branches {
		what := fmt.Sprintf("branches[%d]", i)
		if err := checkID(what+".id", b.Id, false); err != nil {
			return err
		}
		if err := s.checkBranchURL(what+".action", b.Action); err != nil {
			return err
		}
		if err := s.checkBranchURL(what+".compensate", b.Compensate); err != nil {
			return err
		}
		if err := s.checkPayload(what, b.Payload); err != nil {
			return err
		}
		if err := checkMessagePayload(what, b.Action, b.Payload); err != nil {
			return err
		}
		if err := checkMessagePayload(what, b.Compensate, b.Payload); err != nil {
			return err
		}
		for _, a := range b.After {
			if err := checkID(what+".after", a, true); err != nil {
				return err
			}
		}
	}
	return checkOptions(r.Options)
}

// checkCommit checks a 2PC or 3PC submission (mode names it in errors).
func (s *Service) checkCommit(mode, gid string, branches []*v1.TwoPCBranch, o *v1.TransactionOptions) error {
	if err := checkID("gid", gid, false); err != nil {
		return err
	}
	if len(branches) == 0 {
		return fmt.Errorf("branches: a %s transaction needs at least one branch", mode)
	}
	if len(branches) > s.limits.MaxBranches {
		return fmt.Errorf("branches: %d given, at most %d allowed", len(branches), s.limits.MaxBranches)
	}
	for i, b := range branches {
		what := fmt.Sprintf("branches[%d]", i)
		if err := checkID(what+".id", b.Id, false); err != nil {
			return err
		}
		if err := s.checkBranchURL(what+".url", b.Url); err != nil {
			return err
		}
		if err := s.checkPayload(what, b.Payload); err != nil {
			return err
		}
		if err := checkMessagePayload(what, b.Url, b.Payload); err != nil {
			return err
		}
	}
	return checkOptions(o)
}

func (s *Service) checkRegister(r *v1.RegisterBranchRequest) error {
	if err := checkID("gid", r.Gid, true); err != nil {
		return err
	}
	if err := checkID("branch_id", r.BranchId, true); err != nil {
		return err
	}
	if err := s.checkBranchURL("confirm", r.Confirm); err != nil {
		return err
	}
	if err := s.checkBranchURL("cancel", r.Cancel); err != nil {
		return err
	}
	if err := checkMessagePayload("branch", r.Confirm, r.Payload); err != nil {
		return err
	}
	if err := checkMessagePayload("branch", r.Cancel, r.Payload); err != nil {
		return err
	}
	return s.checkPayload("branch", r.Payload)
}

// checkBranchURL is checkURL, then the destination policy (allow-list, and
// never the coordinator's own listener).
func (s *Service) checkBranchURL(what, raw string) error {
	if err := checkURL(what, raw); err != nil {
		return err
	}
	return s.allowed(what, raw)
}

// checkDestination is the package's checkDestination (branch or broker
// URL), then the destination policy.
func (s *Service) checkDestination(what, raw string) error {
	if err := checkDestination(what, raw); err != nil {
		return err
	}
	return s.allowed(what, raw)
}

// allowed asks the destination policy (see WithDestinations).
func (s *Service) allowed(what, raw string) error {
	if err := s.dest.Check(raw); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
