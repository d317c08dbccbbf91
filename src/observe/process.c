/*
 * process.c - the process metrics every /metrics scrape carries: resident
 * memory, CPU time, start time and open descriptors (read from /proc, as the
 * Prometheus client libraries do), the counting allocator's live bytes, and
 * the build version. They are computed at render time, not stored.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "observe_int.h"

static const char *const g_reserved[] = {
    "dabba_process_resident_memory_bytes",
    "dabba_process_cpu_seconds_total",
    "dabba_process_start_time_seconds",
    "dabba_process_open_fds",
    "dabba_heap_live_bytes",
    "dabba_build_info",
    "dabba_metric_series_overflow_total",
};

int dab_obs_reserved_name(const char *name)
{
    for (size_t i = 0; i < DAB_ARRAY_LEN(g_reserved); i++)
        if (!strcmp(name, g_reserved[i]))
            return 1;
    return 0;
}

/* Reads a small /proc file into buf (NUL-terminated); its length, or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = 0;
    return (ssize_t)len;
}

/* Fields of /proc/self/stat after the command name (which may hold spaces and
 * parentheses, hence the last ')'): field 3 (state) is fields[0]. */
static int stat_fields(unsigned long long *utime, unsigned long long *stime,
                       unsigned long long *start_ticks)
{
    char buf[1024];
    if (read_small("/proc/self/stat", buf, sizeof buf) < 0)
        return -1;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p++;
    /* After ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) cutime cstime priority nice
     * num_threads itrealvalue starttime(22). */
    unsigned long long v[20];
    int field = 3;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok && field <= 22;
         tok = strtok_r(NULL, " ", &save), field++)
        v[field - 3] = strtoull(tok, NULL, 10);
    if (field <= 22)
        return -1;
    *utime = v[14 - 3];
    *stime = v[15 - 3];
    *start_ticks = v[22 - 3];
    return 0;
}

static double g_start_time_s = -1;
static pthread_once_t g_start_once = PTHREAD_ONCE_INIT;

/* The start time: boot time (btime in /proc/stat) plus the process's start
 * ticks; the first render's clock when /proc cannot tell. */
static void find_start_time(void)
{
    unsigned long long ut, st, start_ticks;
    long tck = sysconf(_SC_CLK_TCK);
    char buf[8192];
    if (tck > 0 && stat_fields(&ut, &st, &start_ticks) == 0 &&
        read_small("/proc/stat", buf, sizeof buf) >= 0) {
        char *b = strstr(buf, "\nbtime ");
        if (b) {
            g_start_time_s = (double)strtoull(b + 7, NULL, 10) + (double)start_ticks / (double)tck;
            return;
        }
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    g_start_time_s = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int put_family(dab_buf_t *b, const char *name, const char *type, const char *help,
                      const char *labels, double v)
{
    char num[40];
    dab_obs_fmt_double(num, sizeof num, v);
    return dab_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s%s %s\n", name, help, name, type, name,
                          labels, num);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

int dab_obs_render_process(dab_buf_t *b)
{
    int rc = 0;
    char buf[256];
    long page = sysconf(_SC_PAGESIZE);
    if (page > 0 && read_small("/proc/self/statm", buf, sizeof buf) > 0) {
        unsigned long long size, resident;
        if (sscanf(buf, "%llu %llu", &size, &resident) == 2)
            rc = put_family(b, "dabba_process_resident_memory_bytes", "gauge",
                            "Resident memory size in bytes.", "",
                            (double)resident * (double)page);
    }
    unsigned long long ut, st, start_ticks;
    long tck = sysconf(_SC_CLK_TCK);
    if (!rc && tck > 0 && stat_fields(&ut, &st, &start_ticks) == 0)
        rc = put_family(b, "dabba_process_cpu_seconds_total", "counter",
                        "Total user and system CPU time spent in seconds.", "",
                        (double)(ut + st) / (double)tck);
    pthread_once(&g_start_once, find_start_time);
    if (!rc)
        rc = put_family(b, "dabba_process_start_time_seconds", "gauge",
                        "Start time of the process since unix epoch in seconds.", "",
                        g_start_time_s);
    int fds = count_fds();
    if (!rc && fds >= 0)
        rc = put_family(b, "dabba_process_open_fds", "gauge", "Number of open file descriptors.",
                        "", fds);
    dab_alloc_stats_t a;
    dab_alloc_stats(&a);
    if (!rc)
        rc = put_family(b, "dabba_heap_live_bytes", "gauge",
                        "Bytes currently allocated through dabba's counting allocator.", "",
                        (double)a.live_bytes);
    if (!rc)
        rc = put_family(b, "dabba_build_info", "gauge", "Build information; the value is 1.",
                        "{version=\"" DABBA_VERSION "\"}", 1);
    return rc;
}
