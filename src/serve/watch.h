/*
 * watch.h - notices when the client of a suspended request goes away, so that a
 * request still waiting in a queue is dropped rather than run for nobody.
 * libmicrohttpd does not poll suspended connections; this watches their sockets
 * for the peer's FIN or an error on its own epoll thread.
 */
#ifndef DAB_SERVE_WATCH_H
#define DAB_SERVE_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/base.h"

typedef struct dab_watch dab_watch_t;

/* Called on the watcher's thread, at most once per handle, with the watcher's lock held
 * (so dab_watch_remove of that handle waits until it returns; from inside on_gone, the
 * handle is already gone and must not be removed). */
typedef void (*dab_watch_gone_fn)(void *cookie);

/* Starts the watcher thread. On error nothing is left running. */
int dab_watch_start(dab_watch_gone_fn on_gone, dab_watch_t **out, dab_err_t *err);

/*
 * Watches fd for the peer hanging up; returns a handle (never 0), or 0 when it cannot be
 * watched (out of memory, epoll refused: the request is then simply not watched). The
 * caller must dab_watch_remove the handle before cookie dies, unless on_gone ran for it.
 * Any thread.
 */
uint64_t dab_watch_add(dab_watch_t *w, int fd, void *cookie);

/*
 * Stops watching; after the return on_gone is not running for this handle and never
 * will. Returns false when the handle was already gone (on_gone ran or is running on
 * this thread). Any thread but the watcher's own.
 */
bool dab_watch_remove(dab_watch_t *w, uint64_t handle);

/* Stops the thread and frees the watcher (handles left are dropped). NULL is fine. */
void dab_watch_stop(dab_watch_t *w);

#endif
