/* llm-svc/engine/stop_strings.h — an incremental stop-string matcher over the detokenized text
 * stream of one sequence. Fed text deltas, it returns the text that is safe to emit now and
 * holds back any suffix that could still grow into a stop string (or that ends inside an
 * unfinished UTF-8 character). When a stop string completes, possibly across many deltas, it
 * reports which one and returns the text before it; the stop string itself is never emitted. */

/* Which stop wins: the first to complete in the stream (earliest end byte), and among those
 * ending at the same byte the longest. This is what feeding one byte at a time would give, so
 * the result never depends on how the text was cut into deltas. Matching is on bytes; stop
 * strings must be valid UTF-8, and emitted text is always cut at character boundaries. */
#ifndef TWIN_ENGINE_STOP_STRINGS_H
#define TWIN_ENGINE_STOP_STRINGS_H

#include <stddef.h>

#include "common/error.h"

#define TWIN_STOP_MAX_STRINGS 64   /* stop strings per request */
#define TWIN_STOP_MAX_BYTES 1024   /* bytes per stop string */

typedef struct twin_stop_matcher twin_stop_matcher;

/* The result of one feed or flush. text is borrowed from the matcher: valid until its next
 * call. Everything emitted over a stream, concatenated, is the stream's text cut before the
 * winning stop string (or all of it when none matched). */
typedef struct twin_stop_output {
  const char *text; /* [len] bytes safe to emit; not NUL-terminated */
  size_t len;
  int stopped;      /* 1: a stop string completed; text is what came before it */
  int stop_index;   /* index of the winning stop string in the create-time array; -1 if none */
} twin_stop_output;

/* stops [n_stops] are copied. n_stops may be 0 (only UTF-8 holding then). Refuses, naming the
 * index, an empty, over-long or invalid-UTF-8 stop string, or more than TWIN_STOP_MAX_STRINGS. */
int twin_stop_matcher_create(const char *const *stops, int n_stops, twin_stop_matcher **out,
                             twin_err *err);
void twin_stop_matcher_destroy(twin_stop_matcher *m);

/* Feeds a delta (borrowed, [len] bytes, may be empty or end inside a character). Once a stop
 * has matched, later feeds emit nothing and report the same stop again. */
int twin_stop_matcher_feed(twin_stop_matcher *m, const char *delta, size_t len,
                           twin_stop_output *out, twin_err *err);

/* End of stream: emits everything still held back (as is, even an unfinished character) and
 * leaves the matcher empty. After a stop it emits nothing. */
void twin_stop_matcher_flush(twin_stop_matcher *m, twin_stop_output *out);

/* Bytes currently held back. */
size_t twin_stop_matcher_held(const twin_stop_matcher *m);

/* Forgets the stream (held text and stop state), keeping the stop strings. */
void twin_stop_matcher_reset(twin_stop_matcher *m);

#endif
