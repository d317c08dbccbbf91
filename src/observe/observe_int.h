/*
 * observe_int.h - what the files of src/observe share and nobody else uses:
 * UTF-8 checking, number formatting and the process metrics.
 */
#ifndef DAB_OBSERVE_INT_H
#define DAB_OBSERVE_INT_H

#include <stddef.h>

#include "observe.h"

/* The UTF-8 bytes of U+FFFD, written in place of each invalid byte. */
#define DAB_OBS_REPLACEMENT "\xEF\xBF\xBD"

/*
 * Length (1..4) of the well-formed UTF-8 sequence at p (n > 0 bytes
 * available), or 0 when the bytes there are not one: a stray continuation
 * byte, a truncated sequence, an overlong form, a surrogate or a code point
 * past U+10FFFF. Pure; any thread.
 */
int dab_obs_utf8_len(const unsigned char *p, size_t n);

/*
 * Writes v into out (cap >= 32) as the shortest decimal that reads back as
 * the same double, with the exposition format's spellings "NaN", "+Inf" and
 * "-Inf". Returns the length. Pure; any thread.
 */
int dab_obs_fmt_double(char *out, size_t cap, double v);

/*
 * Appends the process metric families (memory, CPU, start time, open file
 * descriptors, heap bytes, build info) to out; a value that cannot be read
 * (no /proc) is left out. Returns 0 or DAB_ENOMEM. Any thread.
 */
int dab_obs_render_process(dab_buf_t *out);

/* Whether name is one of the families dab_obs_render_process or the registry
 * itself writes, so that no metric may take it. */
int dab_obs_reserved_name(const char *name);

#endif
