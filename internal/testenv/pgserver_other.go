//go:build !unix

package testenv

import (
	"context"
	"errors"
)

// pgServer is a private PostgreSQL server; only Unix systems start one.
type pgServer struct{}

var errNoPostgresBinaries = errors.New("a private PostgreSQL server needs a Unix system")

func postgresBinDir() (string, error) { return "", errNoPostgresBinaries }

func startPostgres(context.Context, string, ...string) (*pgServer, error) {
	return nil, errNoPostgresBinaries
}

func (s *pgServer) dsn(string) string { return "" }
func (s *pgServer) stop() error       { return nil }
