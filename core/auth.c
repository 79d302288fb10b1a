/**
 * @file auth.c
 * API keys configured as "NAME:ROLE:sha256:HEX": only the hash is ever in the config. A
 * presented key is hashed and compared with every stored hash in constant time, without
 * stopping at the first match, so timing says nothing about which key nearly matched.
 */
#include "auth.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct key {
    char name[64];
    sn_role_t role;
    char hash[65];
} key_t_;

struct sn_auth {
    key_t_ *keys;
    size_t n;
};

static const char *const role_names[] = {"none", "ingest", "viewer", "operator", "admin"};

const char *sn_role_name(sn_role_t r)
{
    return r <= SN_ROLE_ADMIN ? role_names[r] : "none";
}

int sn_role_parse(const char *s, sn_role_t *out)
{
    for (int r = SN_ROLE_INGEST; r <= SN_ROLE_ADMIN; r++)
        if (strcmp(s, role_names[r]) == 0) {
            *out = (sn_role_t)r;
            return 0;
        }
    return SN_EINVAL;
}

bool sn_role_allows(sn_role_t have, sn_role_t need)
{
    if (have == SN_ROLE_ADMIN)
        return true;
    if (need == SN_ROLE_INGEST || have == SN_ROLE_INGEST)
        return have == need;
    return have >= need;
}

sn_auth_t *sn_auth_new(const char *const *specs, const char *file, int line, sn_diag_t *d)
{
    sn_auth_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    size_t n = 0;
    for (; specs && specs[n]; n++)
        ;
    a->keys = calloc(n ? n : 1, sizeof(*a->keys));
    for (size_t i = 0; i < n; i++) {
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", specs[i]);
        char *save = NULL;
        char *name = strtok_r(buf, ":", &save), *role = strtok_r(NULL, ":", &save),
             *alg = strtok_r(NULL, ":", &save), *hex = strtok_r(NULL, ":", &save),
             *extra = strtok_r(NULL, ":", &save);
        sn_role_t r;
        if (!name || !role || !alg || !hex || extra || strcmp(alg, "sha256") != 0) {
            sn_diag_add(d, file, line, "api_key #%zu: expected NAME:ROLE:sha256:HEX", i + 1);
            continue;
        }
        if (strlen(name) >= sizeof(a->keys[0].name)) {
            sn_diag_add(d, file, line, "api_key #%zu: name longer than %zu characters", i + 1,
                        sizeof(a->keys[0].name) - 1);
            continue;
        }
        if (sn_role_parse(role, &r) != 0) {
            sn_diag_add(d, file, line,
                        "api_key '%s': unknown role '%s' (ingest, viewer, operator, admin)", name,
                        role);
            continue;
        }
        int ok = strlen(hex) == 64;
        for (char *c = hex; *c && ok; c++)
            ok = isxdigit((unsigned char)*c);
        if (!ok) {
            sn_diag_add(d, file, line, "api_key '%s': the hash must be 64 hex digits", name);
            continue;
        }
        const char *same_hash = NULL;
        int dup = 0;
        for (size_t k = 0; k < a->n; k++) {
            dup |= strcmp(a->keys[k].name, name) == 0;
            if (strncasecmp(a->keys[k].hash, hex, 64) == 0)
                same_hash = a->keys[k].name;
        }
        if (dup) {
            sn_diag_add(d, file, line, "api_key '%s' is duplicate", name);
            continue;
        }
        if (same_hash) {
            /* One key, two roles: whichever matched first would win silently. */
            sn_diag_add(d, file, line, "api_key '%s': same hash as '%s'", name, same_hash);
            continue;
        }
        key_t_ *k = &a->keys[a->n++];
        snprintf(k->name, sizeof(k->name), "%s", name);
        k->role = r;
        for (int j = 0; j < 64; j++)
            k->hash[j] = (char)tolower((unsigned char)hex[j]);
        k->hash[64] = '\0';
    }
    return a;
}

void sn_auth_free(sn_auth_t *a)
{
    if (!a)
        return;
    free(a->keys);
    free(a);
}

size_t sn_auth_count(const sn_auth_t *a)
{
    return a ? a->n : 0;
}

sn_role_t sn_auth_check(const sn_auth_t *a, const char *presented, const char **name)
{
    char h[65];
    sn_sha256_hex(presented, strlen(presented), h);
    sn_role_t role = SN_ROLE_NONE;
    for (size_t i = 0; i < a->n; i++) {
        if (sn_ct_equal(h, a->keys[i].hash) && role == SN_ROLE_NONE) {
            role = a->keys[i].role;
            if (name)
                *name = a->keys[i].name;
        }
    }
    return role;
}

const char *sn_auth_bearer(const char *authorization)
{
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return NULL;
    const char *k = authorization + 7;
    while (*k == ' ')
        k++;
    return *k ? k : NULL;
}
