/**
 * @file pg_schema.c
 * Versioned schema migrations of the `postgres` store, applied by the first connection that
 * comes up, asynchronously like every other statement.
 *
 * One transaction: BEGIN, pg_advisory_xact_lock (so two instances starting together serialise
 * here and the second finds the work done), CREATE TABLE IF NOT EXISTS schema_migrations, read
 * the version, then every pending migration followed by its row in schema_migrations, COMMIT. Any
 * error drops the connection, which rolls the transaction back server-side; the next connection
 * tries again. A database whose version is newer than this plugin's is refused for good:
 * operations then fail at once with SN_EIO and health says why.
 *
 * Functions pin their search_path (SET search_path FROM CURRENT), so they resolve the tables
 * they were created beside whatever the calling session's path. sentinel_audit_retain() is
 * SECURITY DEFINER (runs as the schema owner, callable only by roles granted EXECUTE), so the
 * role sentineld connects as may be left without DELETE on the audit table at all.
 *
 * Audit protection. The audit table is append-only through triggers: every UPDATE, every
 * TRUNCATE and every DELETE raises "audit is append-only", except a DELETE of rows at or below
 * the newest anchor while the transaction-local setting sentinel.audit_retention is 'on'. Only
 * sentinel_audit_retain() sets it, inside its own statement, after recording the anchor (seq and
 * hash of the newest record it drops). audit_anchor itself accepts INSERTs only under the same
 * flag and never an UPDATE or DELETE. A role that may run SET could imitate the flag, so the
 * guarantee against a hostile database user comes from the hash chain (sentinelctl audit verify)
 * and from privileges (see docs/stores/postgres.md), not from the triggers alone; the triggers
 * stop every accidental or naive change, psql included.
 */
#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Entry i brings the schema from version i to i + 1. Never edit an entry that has shipped;
 * append a new one.
 */
static const char *const pg_migrations[] = {
    /* 1: checkpoints, append-only audit with anchors, telemetry points */
    "CREATE TABLE checkpoints ("
    " id text PRIMARY KEY,"
    " version bigint NOT NULL CHECK (version > 0),"
    " open boolean NOT NULL,"
    " doc jsonb NOT NULL,"
    " updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    " lease_owner text,"
    " lease_until timestamptz);"
    "CREATE INDEX checkpoints_open ON checkpoints (updated_at, id) WHERE open;"
    "CREATE TABLE audit ("
    " seq bigint PRIMARY KEY CHECK (seq > 0),"
    " ts text COLLATE \"C\" NOT NULL,"
    " actor text,"
    " action text,"
    " incident text,"
    " prev_hash text,"
    " hash text NOT NULL,"
    " record text NOT NULL);"
    "CREATE INDEX audit_ts ON audit (ts);"
    "CREATE INDEX audit_incident ON audit (incident, seq);"
    "CREATE TABLE audit_anchor ("
    " seq bigint PRIMARY KEY,"
    " hash text NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT clock_timestamp());"
    "CREATE FUNCTION sentinel_audit_guard() RETURNS trigger LANGUAGE plpgsql"
    " SET search_path FROM CURRENT AS $$\n"
    "BEGIN\n"
    "  IF TG_OP = 'DELETE'\n"
    "     AND coalesce(current_setting('sentinel.audit_retention', true), '') = 'on'\n"
    "     AND OLD.seq <= (SELECT coalesce(max(seq), 0) FROM audit_anchor) THEN\n"
    "    RETURN OLD;\n"
    "  END IF;\n"
    "  RAISE EXCEPTION 'audit is append-only: % refused', TG_OP\n"
    "    USING ERRCODE = 'insufficient_privilege';\n"
    "END $$;"
    "CREATE FUNCTION sentinel_audit_guard_stmt() RETURNS trigger LANGUAGE plpgsql"
    " SET search_path FROM CURRENT AS $$\n"
    "BEGIN\n"
    "  RAISE EXCEPTION 'audit is append-only: % on % refused', TG_OP, TG_TABLE_NAME\n"
    "    USING ERRCODE = 'insufficient_privilege';\n"
    "END $$;"
    "CREATE FUNCTION sentinel_anchor_guard() RETURNS trigger LANGUAGE plpgsql"
    " SET search_path FROM CURRENT AS $$\n"
    "BEGIN\n"
    "  IF TG_OP = 'INSERT'\n"
    "     AND coalesce(current_setting('sentinel.audit_retention', true), '') = 'on' THEN\n"
    "    RETURN NEW;\n"
    "  END IF;\n"
    "  RAISE EXCEPTION 'audit anchors are append-only: % refused', TG_OP\n"
    "    USING ERRCODE = 'insufficient_privilege';\n"
    "END $$;"
    "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit"
    " FOR EACH ROW EXECUTE FUNCTION sentinel_audit_guard();"
    "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit"
    " FOR EACH STATEMENT EXECUTE FUNCTION sentinel_audit_guard_stmt();"
    "CREATE TRIGGER audit_anchor_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_anchor"
    " FOR EACH ROW EXECUTE FUNCTION sentinel_anchor_guard();"
    "CREATE TRIGGER audit_anchor_no_truncate BEFORE TRUNCATE ON audit_anchor"
    " FOR EACH STATEMENT EXECUTE FUNCTION sentinel_audit_guard_stmt();"
    /* Retention: the newest record older than the cutoff (never the newest of all) becomes the
     * anchor; every record at or below it goes. One statement, one transaction. */
    "CREATE FUNCTION sentinel_audit_retain(cutoff text) RETURNS bigint LANGUAGE plpgsql"
    " SECURITY DEFINER SET search_path FROM CURRENT AS $$\n"
    "DECLARE\n"
    "  a_seq bigint;\n"
    "  a_hash text;\n"
    "  n bigint;\n"
    "BEGIN\n"
    "  PERFORM pg_advisory_xact_lock(1397050964, 2);\n"
    "  SELECT seq, hash INTO a_seq, a_hash FROM audit\n"
    "   WHERE ts < cutoff COLLATE \"C\" AND seq < (SELECT max(seq) FROM audit)\n"
    "   ORDER BY seq DESC LIMIT 1;\n"
    "  IF a_seq IS NULL THEN\n"
    "    RETURN 0;\n"
    "  END IF;\n"
    "  PERFORM set_config('sentinel.audit_retention', 'on', true);\n"
    "  INSERT INTO audit_anchor (seq, hash) VALUES (a_seq, a_hash) ON CONFLICT (seq) DO "
    "NOTHING;\n"
    "  DELETE FROM audit WHERE seq <= a_seq;\n"
    "  GET DIAGNOSTICS n = ROW_COUNT;\n"
    "  PERFORM set_config('sentinel.audit_retention', 'off', true);\n"
    "  RETURN n;\n"
    "END $$;"
    "REVOKE ALL ON FUNCTION sentinel_audit_retain(text) FROM PUBLIC;"
    "CREATE TABLE points ("
    " series bigint NOT NULL,"
    " ts bigint NOT NULL,"
    " value double precision NOT NULL);"
    "CREATE INDEX points_series_ts ON points (series, ts);",
};

const int pg_schema_version = (int)(sizeof(pg_migrations) / sizeof(pg_migrations[0]));

enum { MIG_READ = 1, MIG_APPLY, MIG_ABANDON };

void pg_schema_begin(pg_conn_t *c)
{
    c->mig_step = MIG_READ;
    /* The table is created only when missing, so a role without CREATE (see the least-privilege
     * setup in docs/stores/postgres.md) starts fine on a current schema. */
    pg_conn_send_simple(c, "BEGIN;"
                           "SELECT pg_advisory_xact_lock(1397050964, 1);"
                           "DO $$ BEGIN IF to_regclass('schema_migrations') IS NULL THEN"
                           " CREATE TABLE schema_migrations ("
                           " version integer PRIMARY KEY,"
                           " applied_at timestamptz NOT NULL DEFAULT now());"
                           " END IF; END $$;"
                           "SELECT coalesce(max(version), 0) FROM schema_migrations");
}

static void failed(pg_conn_t *c, const char *what, const PGresult *res)
{
    pg_t *s = c->s;
    char line[160];
    pg_oneline(res ? PQresultErrorMessage(res) : "no result", line, sizeof(line));
    snprintf(s->schema_err, sizeof(s->schema_err), "%s: %s", what, line);
    s->host->log(s->host, SN_LOG_ERROR, "schema migration failed: %s", s->schema_err);
    pg_conn_drop(c, s->schema_err); /* the server rolls the transaction back */
}

static void apply(pg_conn_t *c, int from)
{
    pg_t *s = c->s;
    size_t len = 64;
    for (int i = from; i < pg_schema_version; i++)
        len += strlen(pg_migrations[i]) + 96;
    char *sql = malloc(len), *p = sql;
    if (!sql) {
        failed(c, "out of memory", NULL);
        return;
    }
    for (int i = from; i < pg_schema_version; i++)
        p += sprintf(p, "%s;INSERT INTO schema_migrations (version) VALUES (%d);", pg_migrations[i],
                     i + 1);
    strcpy(p, "COMMIT");
    c->mig_step = MIG_APPLY;
    c->mig_from = from;
    pg_conn_send_simple(c, sql);
    free(sql);
    (void)s;
}

void pg_schema_result(pg_conn_t *c, const PGresult *res)
{
    pg_t *s = c->s;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    switch (c->mig_step) {
    case MIG_READ: {
        if (!ok || st != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            failed(c, "cannot read the schema version", ok ? NULL : res);
            return;
        }
        int v = atoi(PQgetvalue(res, 0, 0));
        if (v > pg_schema_version) {
            snprintf(s->schema_err, sizeof(s->schema_err),
                     "database schema version %d is newer than this plugin's %d", v,
                     pg_schema_version);
            s->host->log(s->host, SN_LOG_ERROR, "%s: refusing to use it", s->schema_err);
            s->schema_fatal = 1;
            pg_fail_queued(s, SN_EIO, s->schema_err);
            c->mig_step = MIG_ABANDON;
            pg_conn_send_simple(c, "ROLLBACK");
            return;
        }
        apply(c, v);
        return;
    }
    case MIG_APPLY:
        if (!ok) {
            failed(c, "applying the migrations", res);
            return;
        }
        if (c->mig_from < pg_schema_version)
            s->host->log(s->host, SN_LOG_INFO, "schema migrated from version %d to %d on %s",
                         c->mig_from, pg_schema_version, s->where);
        pg_conn_migrated(c);
        return;
    case MIG_ABANDON:
    default:
        /* Stays connected but unused: nothing is dispatched while schema_fatal is set. */
        s->migrating = 0;
        c->state = PGC_IDLE;
        return;
    }
}
