/**
 * @file ui.h
 * The operator console's static files, embedded at build time (cmake/embed-ui.cmake over
 * core/ui/) and served by the HTTP API under /ui/.
 */
#ifndef SENTINEL_UI_H
#define SENTINEL_UI_H

#include <stddef.h>

typedef struct sn_ui_asset {
    const char *name; /**< file name under /ui/ */
    const char *content_type;
    const unsigned char *data;
    size_t len;
} sn_ui_asset_t;

/** Every file, ending with a zeroed entry. */
extern const sn_ui_asset_t sn_ui_assets[];

#endif /* SENTINEL_UI_H */
