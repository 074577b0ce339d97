package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files in dir, and returns their paths and a pool trusting the
// certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "concord e2e"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	srv := serve(t, "-tls-cert", certFile, "-tls-key", keyFile)
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatalf("server with -tls-cert announced %q, want an https URL", srv.URL)
	}
	trusting := func() *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	}

	for name, c := range map[string]*client.Client{
		"connect": client.New(srv.URL, client.WithHTTPClient(trusting())),
		"grpc":    client.New(srv.URL, client.WithHTTPClient(trusting()), client.WithGRPC()),
	} {
		t.Run(name, func(t *testing.T) {
			p := newRecorder(t)
			gid := newGID("tls-" + name)
			tx, err := c.NewSaga(gid).Add(p.url("/a"), p.url("/a/undo"), "over tls").SubmitAndWait(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			wantStatus(t, tx, client.StatusSucceeded)
			if got := p.only(t, "/a"); got.Body != "over tls" || got.gid() != gid {
				t.Errorf("participant got body %q gid %q", got.Body, got.gid())
			}
		})
	}

	t.Run("untrusted certificate", func(t *testing.T) {
		_, err := client.New(srv.URL).NewGID(t.Context())
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("a client not trusting the certificate: %v, want a certificate error", err)
		}
	})

	t.Run("plain HTTP to the TLS port", func(t *testing.T) {
		_, err := client.New("http://" + strings.TrimPrefix(srv.URL, "https://")).NewGID(t.Context())
		if err == nil {
			t.Error("plain HTTP to a TLS server succeeded")
		}
	})
}
