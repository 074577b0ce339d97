#!/usr/bin/env bash
# Fills a PostgreSQL store with N finished two-branch sagas (realistic
# records, ~1 KB each), for the "large store" benchmark in
# docs/performance.md:
#
#   scripts/fill-pg-store.sh big_ 10000000
#   concord bench --mode saga --concurrency 50 --duration 10s \
#     --store 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable&table_prefix=big_' --store-as-is
#
# Env: PGURL (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable).
# The records are written in chunks of 1M rows, server-side.
set -euo pipefail
prefix=${1:?usage: fill-pg-store.sh TABLE_PREFIX COUNT}
count=${2:?usage: fill-pg-store.sh TABLE_PREFIX COUNT}
[[ $prefix =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "bad prefix $prefix" >&2; exit 2; }
pgurl=${PGURL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
cd "$(dirname "$0")/.."
go run ./cmd/concord migrate -store "${pgurl}&table_prefix=${prefix}" >/dev/null
# One finished saga as the coordinator encodes it; GIDX is replaced per row.
template='{"v":1,"txn":{"gid":"GIDX","mode":"saga","status":"succeeded","options":{"timeout":60000000000,"branch_timeout":10000000000,"max_attempts":8,"max_total_attempts":64,"retry_initial":200000000,"retry_max":30000000000},"branches":[{"id":"1","fwd_op":"action","bwd_op":"compensate","fwd_url":"http://127.0.0.1:8081/action","bwd_url":"http://127.0.0.1:8081/compensate","payload":"eyJvcmRlciI6Im8tMSIsImFtb3VudCI6MzB9","fwd":{"status":"done","attempts":1,"tries":1},"bwd":{"status":"idle"},"history":[{"op":"action","n":1,"started":1,"dur":1000000,"outcome":"success"}]},{"id":"2","fwd_op":"action","bwd_op":"compensate","fwd_url":"http://127.0.0.1:8081/action","bwd_url":"http://127.0.0.1:8081/compensate","payload":"eyJvcmRlciI6Im8tMSIsImFtb3VudCI6MzB9","fwd":{"status":"done","attempts":1,"tries":1},"bwd":{"status":"idle"},"history":[{"op":"action","n":1,"started":1,"dur":1000000,"outcome":"success"}]}],"created_at":1,"updated_at":2,"decided_at":2,"spec_hash":"0123456789abcdef01234567"}}'
chunk=1000000
for ((lo = 1; lo <= count; lo += chunk)); do
	hi=$((lo + chunk - 1)); ((hi > count)) && hi=$count
	psql -X -q -v ON_ERROR_STOP=1 "$pgurl" -c "
	INSERT INTO ${prefix}records (gid, mode, status, finished, created_at, updated_at, owner, version, data)
	SELECT g, 'saga', 'succeeded', true, t, t + 5000000, '', 1, convert_to(replace('$template', 'GIDX', g), 'UTF8')
	FROM (SELECT 'old-' || lpad(i::text, 10, '0') AS g,
	             (extract(epoch FROM now() - interval '30 days') * 1e9)::bigint + i::bigint * 100000 AS t
	      FROM generate_series($lo, $hi) AS i) s"
	echo "filled $hi / $count"
done
psql -X -q "$pgurl" -c "ANALYZE ${prefix}records"
