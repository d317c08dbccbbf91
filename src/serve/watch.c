/*
 * watch.c - the disconnect watcher: one epoll set of suspended connections'
 * sockets (EPOLLRDHUP, one-shot) and a thread that reports hang-ups.
 *
 * Handles are slot index + generation, so an event that arrives for a slot
 * removed (and maybe reused) meanwhile is recognised as stale and ignored.
 * mu guards the slots; the thread holds it while it calls on_gone.
 */
#include <errno.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "watch.h"

typedef struct slot {
    void *cookie; /* NULL when free */
    int fd;
    uint32_t gen;
    int next_free;
} slot_t;

struct dab_watch {
    int epfd, stopfd;
    pthread_t thread;
    dab_watch_gone_fn on_gone;
    pthread_mutex_t mu;
    slot_t *slots; /* guarded by mu */
    int cap, free_head;
};

#define STOP_TAG UINT64_MAX

static uint64_t handle_of(int i, uint32_t gen)
{
    return ((uint64_t)gen << 32) | (uint64_t)(i + 1);
}

/* The slot a handle names, or NULL when it is stale (with w->mu held). */
static slot_t *lookup(dab_watch_t *w, uint64_t h)
{
    int i = (int)(h & 0xffffffffu) - 1;
    if (i < 0 || i >= w->cap || !w->slots[i].cookie || w->slots[i].gen != (uint32_t)(h >> 32))
        return NULL;
    return &w->slots[i];
}

static void release_slot(dab_watch_t *w, slot_t *s)
{
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    s->cookie = NULL;
    s->gen++;
    s->next_free = w->free_head;
    w->free_head = (int)(s - w->slots);
}

static void *watch_main(void *arg)
{
    dab_watch_t *w = arg;
    struct epoll_event ev[64];
    for (;;) {
        int n = epoll_wait(w->epfd, ev, 64, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return NULL;
        pthread_mutex_lock(&w->mu);
        for (int k = 0; k < n; k++) {
            if (ev[k].data.u64 == STOP_TAG) {
                pthread_mutex_unlock(&w->mu);
                return NULL;
            }
            slot_t *s = lookup(w, ev[k].data.u64);
            if (!s)
                continue;
            void *cookie = s->cookie;
            release_slot(w, s);
            w->on_gone(cookie);
        }
        pthread_mutex_unlock(&w->mu);
    }
}

int dab_watch_start(dab_watch_gone_fn on_gone, dab_watch_t **out, dab_err_t *err)
{
    *out = NULL;
    dab_watch_t *w = dab_calloc(1, sizeof *w);
    if (!w)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    w->on_gone = on_gone;
    w->free_head = -1;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event se = {.events = EPOLLIN, .data.u64 = STOP_TAG};
    if (w->epfd < 0 || w->stopfd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->stopfd, &se))
        goto fail;
    pthread_mutex_init(&w->mu, NULL);
    if (pthread_create(&w->thread, NULL, watch_main, w)) {
        pthread_mutex_destroy(&w->mu);
        goto fail;
    }
    pthread_setname_np(w->thread, "conn-watch");
    *out = w;
    return 0;
fail:
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->stopfd >= 0)
        close(w->stopfd);
    dab_free(w);
    return dab_err_set(err, DAB_EIO, "cannot start the connection watcher");
}

uint64_t dab_watch_add(dab_watch_t *w, int fd, void *cookie)
{
    if (!w || fd < 0 || !cookie)
        return 0;
    pthread_mutex_lock(&w->mu);
    if (w->free_head < 0) {
        int cap = w->cap ? w->cap * 2 : 64;
        slot_t *ns = dab_realloc(w->slots, (size_t)cap * sizeof *ns);
        if (!ns) {
            pthread_mutex_unlock(&w->mu);
            return 0;
        }
        for (int i = cap - 1; i >= w->cap; i--) {
            ns[i] = (slot_t){.next_free = w->free_head};
            w->free_head = i;
        }
        w->slots = ns;
        w->cap = cap;
    }
    int i = w->free_head;
    slot_t *s = &w->slots[i];
    uint64_t h = handle_of(i, s->gen);
    struct epoll_event ev = {.events = EPOLLRDHUP | EPOLLONESHOT, .data.u64 = h};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev)) {
        pthread_mutex_unlock(&w->mu);
        return 0;
    }
    w->free_head = s->next_free;
    s->cookie = cookie;
    s->fd = fd;
    pthread_mutex_unlock(&w->mu);
    return h;
}

bool dab_watch_remove(dab_watch_t *w, uint64_t handle)
{
    if (!w || !handle)
        return false;
    pthread_mutex_lock(&w->mu);
    slot_t *s = lookup(w, handle);
    if (s)
        release_slot(w, s);
    pthread_mutex_unlock(&w->mu);
    return s != NULL;
}

void dab_watch_stop(dab_watch_t *w)
{
    if (!w)
        return;
    uint64_t one = 1;
    if (write(w->stopfd, &one, sizeof one) == sizeof one)
        pthread_join(w->thread, NULL);
    else
        pthread_detach(w->thread);
    close(w->epfd);
    close(w->stopfd);
    pthread_mutex_destroy(&w->mu);
    dab_free(w->slots);
    dab_free(w);
}
