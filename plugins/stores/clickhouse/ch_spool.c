/**
 * @file ch_spool.c
 * The clickhouse store's on-disk spool (see ch_spool.h): segment files of CRC-checked frames,
 * each appended and fsync'ed whole. Blocking; the plugin calls it from the offload pool only.
 */
#include "ch_spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHS_SUFFIX ".chspool"

static uint32_t chs_crc_table[256];
static pthread_once_t chs_crc_once = PTHREAD_ONCE_INIT;

static void chs_crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        chs_crc_table[i] = c;
    }
}

/* CRC-32 (IEEE 802.3, as zlib's crc32). */
static uint32_t chs_crc32(const void *data, size_t len)
{
    pthread_once(&chs_crc_once, chs_crc_init);
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++)
        c = chs_crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void chs_path(char *out, size_t cap, const char *dir, uint64_t seq, const char *extra)
{
    snprintf(out, cap, "%s/%020" PRIu64 CHS_SUFFIX "%s", dir, seq, extra ? extra : "");
}

static int chs_fail(char *why, size_t cap, const char *what, const char *path)
{
    snprintf(why, cap, "%s %s: %s", what, path, strerror(errno));
    return -1;
}

static int chs_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int chs_lock(const char *dir, char *why, size_t cap)
{
    char path[4096];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return chs_fail(why, cap, "cannot create", dir);
    snprintf(path, sizeof(path), "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return chs_fail(why, cap, "cannot open", path);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        if (e == EWOULDBLOCK) {
            snprintf(why, cap, "%s is in use by another process or instance", dir);
            return -1;
        }
        return chs_fail(why, cap, "cannot lock", path);
    }
    return fd;
}

/* Read all of @p path. Ownership: *buf malloc'ed. */
static int chs_slurp(const char *path, unsigned char **buf, size_t *len, char *why, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    *buf = NULL;
    *len = 0;
    if (fd < 0)
        return chs_fail(why, cap, "cannot open", path);
    if (fstat(fd, &st) != 0) {
        chs_fail(why, cap, "cannot stat", path);
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size, got = 0;
    unsigned char *b = malloc(size ? size : 1);
    if (!b) {
        snprintf(why, cap, "out of memory reading %s (%zu bytes)", path, size);
        close(fd);
        return -1;
    }
    while (got < size) {
        ssize_t r = read(fd, b + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *buf = b;
    *len = got;
    return 0;
}

/* Length of the valid frame prefix of @p b; *points gets their point count. */
static size_t chs_valid(const unsigned char *b, size_t len, uint64_t *points)
{
    size_t off = 0;
    *points = 0;
    while (len - off >= CHS_HEADER) {
        const unsigned char *h = b + off;
        uint32_t plen = get32(h + 4);
        if (memcmp(h, "SNC1", 4) != 0 || plen > CHS_MAX_FRAME || len - off - CHS_HEADER < plen ||
            chs_crc32(h + CHS_HEADER, plen) != get32(h + 12))
            break;
        *points += get32(h + 8);
        off += CHS_HEADER + plen;
    }
    return off;
}

static int chs_cmp(const void *a, const void *b)
{
    uint64_t x = ((const chs_seg_t *)a)->seq, y = ((const chs_seg_t *)b)->seq;
    return x < y ? -1 : x > y;
}

int chs_scan(const char *dir, chs_seg_t **segs, size_t *n, uint64_t *cut_bytes, size_t *rejected,
             char *why, size_t cap)
{
    chs_seg_t *v = NULL;
    size_t nv = 0, vcap = 0;
    int rc = -1;
    *segs = NULL;
    *n = 0;
    *cut_bytes = 0;
    *rejected = 0;
    DIR *d = opendir(dir);
    if (!d)
        return chs_fail(why, cap, "cannot list", dir);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t nl = strlen(name), sl = strlen(CHS_SUFFIX);
        if (nl > sl + 9 && strcmp(name + nl - 9, ".rejected") == 0) {
            (*rejected)++;
            continue;
        }
        if (nl != 20 + sl || strcmp(name + 20, CHS_SUFFIX) != 0 || strspn(name, "0123456789") != 20)
            continue;
        if (nv == vcap) {
            size_t nc = vcap ? vcap * 2 : 16;
            chs_seg_t *nvp = realloc(v, nc * sizeof(*v));
            if (!nvp) {
                snprintf(why, cap, "out of memory listing %s", dir);
                goto out;
            }
            v = nvp;
            vcap = nc;
        }
        v[nv].seq = strtoull(name, NULL, 10);
        v[nv].bytes = v[nv].points = 0;
        nv++;
    }
    if (nv > 1)
        qsort(v, nv, sizeof(*v), chs_cmp);
    size_t k = 0;
    for (size_t i = 0; i < nv; i++) {
        char path[4096];
        unsigned char *b = NULL;
        size_t len = 0;
        uint64_t pts = 0;
        chs_path(path, sizeof(path), dir, v[i].seq, NULL);
        if (chs_slurp(path, &b, &len, why, cap) != 0)
            goto out;
        size_t ok = chs_valid(b, len, &pts);
        free(b);
        if (ok < len) {
            /* A torn append (crash mid-write) or damage: keep the valid frames before it. */
            *cut_bytes += len - ok;
            if (truncate(path, (off_t)ok) != 0) {
                chs_fail(why, cap, "cannot truncate", path);
                goto out;
            }
        }
        if (ok == 0) {
            if (unlink(path) != 0) {
                chs_fail(why, cap, "cannot remove", path);
                goto out;
            }
            continue;
        }
        v[k].seq = v[i].seq;
        v[k].bytes = ok;
        v[k].points = pts;
        k++;
    }
    *segs = v;
    *n = k;
    v = NULL;
    rc = 0;
out:
    closedir(d);
    free(v);
    return rc;
}

static int chs_write_all(int fd, const void *p, size_t len)
{
    const char *c = p;
    while (len > 0) {
        ssize_t w = write(fd, c, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        len -= (size_t)w;
    }
    return 0;
}

int chs_append(const char *dir, uint64_t seq, const void *payload, size_t len, uint32_t npoints,
               uint64_t *size, char *why, size_t cap)
{
    char path[4096];
    unsigned char h[CHS_HEADER];
    struct stat st;
    if (len > CHS_MAX_FRAME) {
        snprintf(why, cap, "batch of %zu bytes is over the frame bound", len);
        return -1;
    }
    chs_path(path, sizeof(path), dir, seq, NULL);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return chs_fail(why, cap, "cannot open", path);
    if (fstat(fd, &st) != 0) {
        chs_fail(why, cap, "cannot stat", path);
        close(fd);
        return -1;
    }
    off_t before = st.st_size;
    memcpy(h, "SNC1", 4);
    put32(h + 4, (uint32_t)len);
    put32(h + 8, npoints);
    put32(h + 12, chs_crc32(payload, len));
    if (lseek(fd, before, SEEK_SET) < 0 || chs_write_all(fd, h, sizeof(h)) != 0 ||
        chs_write_all(fd, payload, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        if (ftruncate(fd, before) == 0)
            (void)fsync(fd);
        close(fd);
        errno = e;
        return chs_fail(why, cap, "cannot append to", path);
    }
    close(fd);
    if (before == 0 && chs_fsync_dir(dir) != 0)
        return chs_fail(why, cap, "cannot sync", dir);
    *size = (uint64_t)before + sizeof(h) + len;
    return 0;
}

int chs_read(const char *dir, uint64_t seq, char **buf, size_t *len, uint64_t *points, char *why,
             size_t cap)
{
    char path[4096];
    unsigned char *b = NULL;
    size_t blen = 0;
    *buf = NULL;
    *len = 0;
    *points = 0;
    chs_path(path, sizeof(path), dir, seq, NULL);
    if (chs_slurp(path, &b, &blen, why, cap) != 0)
        return -1;
    size_t ok = chs_valid(b, blen, points);
    /* Strip the headers in place: the payloads become one RowBinary stream. */
    size_t in = 0, out = 0;
    while (in < ok) {
        uint32_t plen = get32(b + in + 4);
        memmove(b + out, b + in + CHS_HEADER, plen);
        out += plen;
        in += CHS_HEADER + plen;
    }
    *buf = (char *)b;
    *len = out;
    return 0;
}

int chs_drop(const char *dir, uint64_t seq, int reject, char *why, size_t cap)
{
    char path[4096], to[4200];
    chs_path(path, sizeof(path), dir, seq, NULL);
    if (reject) {
        chs_path(to, sizeof(to), dir, seq, ".rejected");
        if (rename(path, to) != 0)
            return chs_fail(why, cap, "cannot rename", path);
    } else if (unlink(path) != 0 && errno != ENOENT) {
        return chs_fail(why, cap, "cannot remove", path);
    }
    (void)chs_fsync_dir(dir);
    return 0;
}
