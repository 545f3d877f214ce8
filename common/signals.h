/* common/signals.h — shutdown signals for service mains: block SIGTERM/SIGINT in every thread
 * (call before creating any), then wait for one on the main thread. SIGPIPE is ignored. */
#ifndef TWIN_COMMON_SIGNALS_H
#define TWIN_COMMON_SIGNALS_H

/* Call first thing in main(), before any thread starts. */
void twin_signals_block(void);
/* Blocks until SIGTERM or SIGINT (or timeout_ms passes when > 0, then returns 0); returns the
 * signal number. */
int twin_signals_wait(int timeout_ms);

#endif
