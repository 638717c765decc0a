# Sourced by the bench scripts: the PostgreSQL they use, from PGHOST/PGPORT/PGUSER.
# shellcheck shell=bash

# pg_url DB: the URL of database DB on PGHOST: a host name or address (TCP; sqlx, like libpq,
# then uses TLS if the server offers it), or a directory (PostgreSQL's Unix socket, as libpq
# and pgbench read PGHOST; sqlx takes it as `host=`).
pg_url() {
    if [[ $PGHOST == /* ]]; then
        echo "postgres://$PGUSER@localhost:$PGPORT/$1?host=$PGHOST"
    else
        echo "postgres://$PGUSER@$PGHOST:$PGPORT/$1"
    fi
}
