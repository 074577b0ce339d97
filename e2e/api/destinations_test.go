package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/participant"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	file string // the CA certificate, PEM
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "concord test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pool: x509.NewCertPool(), file: filepath.Join(dir, "ca.pem")}
	ca.pool.AddCert(cert)
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue signs a leaf certificate (server or client) and writes it and its
// key as PEM files in dir named after name.
func (ca *testCA) issue(t *testing.T, dir, name string, serial int64, usage x509.ExtKeyUsage) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	pair, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDestinationCredentials: the coordinator authenticates to its
// participants with what -destinations-config gives it (a bearer token and
// a header to one, a client certificate and a private CA to the other);
// without them or with wrong ones the calls fail with an unknown outcome
// (401, a failed handshake) and are retried, never taken for a "no"; and
// the secrets appear neither in API answers nor in the log.
func TestDestinationCredentials(t *testing.T) {
	t.Parallel()
	const token = "tok-5ecret-8d1f"
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	_, _, serverPair := ca.issue(t, dir, "participant", 2, x509.ExtKeyUsageServerAuth)
	clientCert, clientKey, _ := ca.issue(t, dir, "coordinator", 3, x509.ExtKeyUsageClientAuth)

	var tokenCalls, certCalls atomic.Int64
	var sawTeam atomic.Value
	bearer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		sawTeam.Store(r.Header.Get("X-Team"))
		tokenCalls.Add(1)
		participant.WriteResult(w, nil)
	}))
	t.Cleanup(bearer.Close)

	mtls := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		certCalls.Add(1)
		participant.WriteResult(w, nil)
	}))
	mtls.TLS = &tls.Config{Certificates: []tls.Certificate{serverPair}, ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert}
	mtls.StartTLS()
	t.Cleanup(mtls.Close)

	// A gRPC participant over TLS that wants both a client certificate and
	// the token (as metadata).
	var grpcCalls atomic.Int64
	path, h := participant.GRPCHandler("/shop.Ledger/Post", func(context.Context, participant.Branch, []byte) error {
		grpcCalls.Add(1)
		return nil
	})
	mux := http.NewServeMux()
	mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "16") // UNAUTHENTICATED
			w.WriteHeader(http.StatusOK)
			return
		}
		h.ServeHTTP(w, r)
	}))
	grpcTLS := httptest.NewUnstartedServer(mux)
	grpcTLS.EnableHTTP2 = true
	grpcTLS.TLS = &tls.Config{Certificates: []tls.Certificate{serverPair}, ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert}
	grpcTLS.StartTLS()
	t.Cleanup(grpcTLS.Close)
	grpcHost := strings.TrimPrefix(grpcTLS.URL, "https://")
	grpcURL := "grpcs://" + grpcHost + "/shop.Ledger/Post"

	writeJSON := func(name string, v any) string {
		raw, _ := json.Marshal(v)
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	mtlsHost := strings.TrimPrefix(mtls.URL, "https://")
	good := writeJSON("good.json", map[string]any{
		bearer.URL + "/":            map[string]any{"bearer_token": token, "headers": map[string]string{"X-Team": "payments"}},
		mtlsHost:                    map[string]any{"tls_cert": clientCert, "tls_key": clientKey, "ca": ca.file},
		"grpcs://" + grpcHost + "/": map[string]any{"bearer_token": token, "tls_cert": clientCert, "tls_key": clientKey, "ca": ca.file},
	})
	wrong := writeJSON("wrong.json", map[string]any{
		bearer.URL + "/":            map[string]any{"bearer_token": "not-the-token"},
		mtlsHost:                    map[string]any{"ca": ca.file}, // trusts the server, presents no certificate
		"grpcs://" + grpcHost + "/": map[string]any{"bearer_token": "not-the-token", "tls_cert": clientCert, "tls_key": clientKey, "ca": ca.file},
	})

	saga := func(t *testing.T, c *client.Client) *client.Transaction {
		t.Helper()
		tx, err := c.NewSaga("").
			Add(bearer.URL+"/pay", bearer.URL+"/refund", `{}`).
			Add(mtls.URL+"/ship", mtls.URL+"/unship", `{}`).
			Add(grpcURL, grpcURL, `{}`).
			WithOptions(client.Options{MaxAttempts: 2, RetryInitial: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}).
			SubmitAndWait(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}

	t.Run("configured: both participants accept the coordinator", func(t *testing.T) {
		srv := serve(t, "-destinations-config", good, "-log-level", "debug")
		c := client.New(srv.URL)
		tx := saga(t, c)
		wantStatus(t, tx, "succeeded")
		if tokenCalls.Load() == 0 || certCalls.Load() == 0 || grpcCalls.Load() == 0 {
			t.Fatalf("bearer participant called %d times, mTLS participant %d times, gRPC participant %d times", tokenCalls.Load(), certCalls.Load(), grpcCalls.Load())
		}
		if got, _ := sawTeam.Load().(string); got != "payments" {
			t.Errorf("X-Team header %q, want the configured %q", got, "payments")
		}
		raw := post(t, srv.URL, "GetTransaction", `{"gid":"`+tx.GID+`"}`)
		for where, text := range map[string]string{"GetTransaction": string(raw.body), "log": srv.Stderr()} {
			if strings.Contains(text, token) || strings.Contains(text, "BEGIN") {
				t.Errorf("%s shows a secret:\n%s", where, text)
			}
		}
	})

	for name, args := range map[string][]string{
		"missing": nil,
		"wrong":   {"-destinations-config", wrong},
	} {
		t.Run(name+" credentials: unknown outcome, retried, never rejected", func(t *testing.T) {
			srv := serve(t, args...)
			c := client.New(srv.URL)
			for i, url := range []string{bearer.URL + "/pay", mtls.URL + "/pay", grpcURL} {
				tx, err := c.NewSaga("").Add(url, url, `{}`).
					WithOptions(client.Options{MaxAttempts: 2, RetryInitial: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}).
					SubmitAndWait(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				b := branchOf(t, tx, tx.Branches[0].ID)
				if tx.Status != "stuck" || b.ForwardStatus != "failed" {
					t.Fatalf("participant %d: status %s, action %s; want stuck with the action failed (unknown)", i, tx.Status, b.ForwardStatus)
				}
				var outcomes []string
				for _, a := range b.Attempts {
					outcomes = append(outcomes, a.Outcome+": "+a.Error)
					if a.Outcome != "unknown" {
						t.Errorf("participant %d: attempt %s %d outcome %s (%s), want unknown", i, a.Op, a.Number, a.Outcome, a.Error)
					}
				}
				if len(b.Attempts) < 2 {
					t.Errorf("participant %d: attempts %v, want the action retried", i, outcomes)
				}
				wantErr := []string{"401", "certificate", map[string]string{"missing": "certificate", "wrong": "unauthenticated"}[name]}[i]
				if len(b.Attempts) > 0 && !strings.Contains(b.Attempts[0].Error, wantErr) {
					t.Errorf("participant %d: first error %q, want it to mention %q", i, b.Attempts[0].Error, wantErr)
				}
			}
		})
	}
}
