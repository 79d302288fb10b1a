/**
 * @file auth.h
 * API keys (stored as SHA-256, compared in constant time) and roles.
 */
#ifndef SENTINEL_AUTH_H
#define SENTINEL_AUTH_H
#include "sentinel-internal.h"
typedef enum {
    SN_ROLE_NONE = 0,
    SN_ROLE_INGEST,
    SN_ROLE_VIEWER,
    SN_ROLE_OPERATOR,
    SN_ROLE_ADMIN
} sn_role_t;
typedef struct sn_auth sn_auth_t;
sn_auth_t *sn_auth_new(const char *const *specs, const char *file, int line, sn_diag_t *d);
void sn_auth_free(sn_auth_t *a);
size_t sn_auth_count(const sn_auth_t *a);
sn_role_t sn_auth_check(const sn_auth_t *a, const char *presented, const char **name);
bool sn_role_allows(sn_role_t have, sn_role_t need);
const char *sn_role_name(sn_role_t r);
int sn_role_parse(const char *s, sn_role_t *out);
const char *sn_auth_bearer(const char *authorization);
#endif
